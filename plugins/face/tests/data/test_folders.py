"""Identity-folder datasets: listing, ORL, identity splits, balanced pairs and pair lists."""

from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image

from prunekit.errors import PrunekitError
from prunekit_face.data import (
    IdentityFolders,
    Preprocess,
    balanced_pairs,
    load_images,
    read_pair_list,
)


@pytest.fixture
def toy(tmp_path, write_image) -> IdentityFolders:
    root = tmp_path / "faces"
    for name, files in {
        "id10": ["b.png", "a.jpg"],
        "id2": ["x10.pgm", "x9.PGM"],
        "id1": ["z.bmp"],
    }.items():
        for i, file in enumerate(files):
            write_image(root / name / file, seed=i)
    (root / "id1" / "notes.txt").write_text("not an image")
    (root / "README").write_text("a file at the root")
    return IdentityFolders.scan(root)


def test_scan_sorts_naturally_and_ignores_other_files(toy) -> None:
    assert toy.identities == ("id1", "id2", "id10")
    files = ["id1/z.bmp", "id2/x9.PGM", "id2/x10.pgm", "id10/a.jpg", "id10/b.png"]
    assert [p.relative_to(toy.root).as_posix() for p in toy.paths] == files
    assert toy.labels.tolist() == [0, 1, 1, 2, 2] and len(toy) == 5


def test_scan_errors(tmp_path) -> None:
    with pytest.raises(
        PrunekitError, match=re.escape(f"dataset root {tmp_path / 'x'} is not a folder")
    ):
        IdentityFolders.scan(tmp_path / "x")
    with pytest.raises(PrunekitError, match="has no identity folders"):
        IdentityFolders.scan(tmp_path)
    (tmp_path / "alice").mkdir()
    (tmp_path / "alice" / "notes.txt").touch()
    with pytest.raises(
        PrunekitError, match=re.escape(f"identity folder {tmp_path / 'alice'} has no images")
    ):
        IdentityFolders.scan(tmp_path)


def test_real_orl(shared) -> None:
    orl = IdentityFolders.scan(shared / "data" / "orl")
    assert len(orl.identities) == 40 and len(orl) == 400
    assert orl.identities[:3] == ("s1", "s2", "s3") and orl.identities[-1] == "s40"
    assert [p.name for p in orl.paths[:10]] == [f"{i}.pgm" for i in range(1, 11)]
    assert np.bincount(orl.labels).tolist() == [10] * 40

    native = load_images(
        orl.paths, Preprocess(size=(112, 92), gray_to_rgb=False, mean=None), progress=False
    )
    assert native.images.shape == (400, 112, 92, 1)
    np.testing.assert_array_equal(native.images[0, ..., 0], np.asarray(Image.open(orl.paths[0])))
    rgb = load_images(orl.paths, Preprocess(), progress=False).images
    assert rgb.shape == (400, 113, 113, 3)
    assert np.array_equal(rgb[..., 0], rgb[..., 2])


def test_split_is_identity_disjoint_and_seeded(shared) -> None:
    orl = IdentityFolders.scan(shared / "data" / "orl")
    train, held_out = orl.split(10, seed=0)
    assert len(train.identities) == 30 and len(held_out.identities) == 10
    assert set(train.identities).isdisjoint(held_out.identities)
    assert set(train.identities) | set(held_out.identities) == set(orl.identities)
    assert len(train) == 300 and np.bincount(train.labels).tolist() == [10] * 30
    assert all(
        p.parent.name == held_out.identities[label]
        for p, label in zip(held_out.paths, held_out.labels)
    )
    assert orl.split(10, seed=0)[1].identities == held_out.identities
    assert orl.split(10, seed=1)[1].identities != held_out.identities
    with pytest.raises(PrunekitError, match="num_eval=40 must be between 1 and 39"):
        orl.split(40, seed=0)


def test_subset_relabels(toy) -> None:
    part = toy.subset(["id10", "id1"])
    assert part.identities == ("id1", "id10") and part.labels.tolist() == [0, 1, 1]
    with pytest.raises(PrunekitError, match=r"identities \['bob'\] are not folders"):
        toy.subset(["bob"])


def test_balanced_pairs() -> None:
    labels = np.repeat(np.arange(7), [1, 2, 3, 4, 5, 1, 6])[
        np.random.default_rng(0).permutation(22)
    ]
    i, j, same = balanced_pairs(labels, 1001, seed=3)
    assert len(i) == len(j) == len(same) == 1001 and int(same.sum()) == 500
    assert (labels[i[same]] == labels[j[same]]).all() and (i[same] != j[same]).all()
    assert (labels[i[~same]] != labels[j[~same]]).all()
    # Every image of an identity with 2+ images can be an anchor, and the draws reach them all.
    assert set(i[same]) == set(np.flatnonzero(np.isin(labels, [1, 2, 3, 4, 6])))
    again = balanced_pairs(labels, 1001, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip((i, j, same), again))
    assert not np.array_equal(balanced_pairs(labels, 1001, seed=4)[1], j)


def test_balanced_pairs_needs_two_identities() -> None:
    with pytest.raises(PrunekitError, match="got 1 identities with at most 3 images"):
        balanced_pairs(np.zeros(3), 10, seed=0)
    with pytest.raises(PrunekitError, match="got 3 identities with at most 1 images"):
        balanced_pairs(np.arange(3), 10, seed=0)


def test_read_pair_list(toy, tmp_path) -> None:
    path = tmp_path / "pairs.txt"
    path.write_text("# path1 path2 label\nid1/z.bmp id2/x9.PGM 0\n\nid10/a.jpg  id10/b.png\t1\n")
    pairs = read_pair_list(path, root=toy.root)
    assert len(pairs) == 2 and pairs.same.tolist() == [False, True]
    images = np.asarray(pairs.images)
    assert images[pairs.left].tolist() == [
        str(toy.root / "id1/z.bmp"),
        str(toy.root / "id10/a.jpg"),
    ]
    assert images[pairs.right].tolist() == [
        str(toy.root / "id2/x9.PGM"),
        str(toy.root / "id10/b.png"),
    ]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("id1/z.bmp id2/x9.PGM", ":3: expected 'path1 path2 label' with label 0 or 1"),
        ("id1/z.bmp id2/x9.PGM yes", ":3: expected 'path1 path2 label'"),
        ("id1/z.bmp id2/nope.png 1", ":3: image {root}/id2/nope.png does not exist"),
    ],
)
def test_read_pair_list_errors(toy, tmp_path, line, message) -> None:
    path = tmp_path / "pairs.txt"
    path.write_text(f"id1/z.bmp id2/x9.PGM 0\n\n{line}\n")
    with pytest.raises(PrunekitError, match=re.escape(f"{path}{message.format(root=toy.root)}")):
        read_pair_list(path, root=toy.root)
