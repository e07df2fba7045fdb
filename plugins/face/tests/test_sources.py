"""``load_face_data``: every data source's arrays, splits and provenance."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from prunekit.errors import PrunekitError
from prunekit_face.data import LFW, IdentityFolders, Preprocess, SyntheticFaces, load_images
from prunekit_face.pretrained import MEAN_RGB
from prunekit_face.settings import DataSettings
from prunekit_face.sources import FaceData, load_face_data, resolve_source


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An isolated decode cache, and no $PRUNEKIT_DATA from the environment."""
    monkeypatch.setenv("PRUNEKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("PRUNEKIT_DATA", raising=False)
    return tmp_path / "cache"


def data_config(**overrides: Any) -> dict[str, Any]:
    """The declared ``data`` defaults at 48x48 (fast), with ``overrides``."""
    return {**DataSettings().model_dump(), "size": 48, **overrides}


def check_common(data: FaceData) -> None:
    """What holds for every source: shapes, dtypes, labels 0..K-1, consistent counts."""
    for images in (data.train_images, data.eval_images, data.recovery_images):
        assert images.dtype == np.uint8 and images.ndim == 4 and images.shape[-1] == 3
    assert data.train_labels.dtype == np.int64
    assert data.train_labels.shape == (len(data.train_images),)
    assert sorted(set(data.train_labels.tolist())) == list(range(data.num_classes))
    assert data.train_count == len(data.train_images)
    assert data.eval_count == len(data.eval_images) == len(data.pairs.images)
    assert data.pair_count == len(data.pairs)
    assert len(data.pairs_sha256) == 16 and int(data.pairs_sha256, 16) >= 0
    assert data.root is None or data.root.is_absolute()
    batch = torch.zeros(1, 3, 2, 2, dtype=torch.uint8)
    assert torch.equal(data.normalize(batch)[0, :, 0, 0], -torch.tensor(MEAN_RGB))


# ---------------------------------------------------------------------- synthetic
def test_synthetic_data() -> None:
    cfg = data_config(source="synthetic", size=24, synthetic_identities=20, synthetic_images=4)
    cfg["eval_pairs"] = 60
    data = load_face_data(cfg, seed=3, progress=False)
    check_common(data)
    # the last fifth of the identities (4 of 20) is evaluated, the rest trained and recovered on
    assert (data.train_count, data.eval_count, data.pair_count) == (64, 16, 60)
    assert data.num_classes == 16 and data.train_labels.tolist() == np.repeat(range(16), 4).tolist()
    assert data.recovery_images is data.train_images
    assert (data.source, data.root, data.skipped) == ("synthetic", None, ())
    faces = SyntheticFaces(20, 4, 24, seed=3)  # identity-disjoint: exactly these images
    assert np.array_equal(data.train_images, faces.images[:64])
    assert np.array_equal(data.eval_images, faces.images[64:])
    assert int(data.pairs.same.sum()) == 30 and data.pairs.left.max() < 16

    again = load_face_data(cfg, seed=3, progress=False)
    assert again.pairs_sha256 == data.pairs_sha256
    assert load_face_data(cfg, seed=4, progress=False).pairs_sha256 != data.pairs_sha256


def test_whole_config_is_accepted_too() -> None:
    config = {"data": data_config()}
    config["data"].update(source="synthetic", size=16, synthetic_identities=10)
    config["data"].update(synthetic_images=2, eval_pairs=10)
    assert load_face_data(config, seed=0, progress=False).train_count == 16


# ---------------------------------------------------------------------- folders (ORL)
def test_orl_folders(shared: Path) -> None:
    root = shared / "data" / "orl"
    cfg = data_config(root=str(root), size=32, eval_identities=10, eval_pairs=200)
    assert resolve_source(cfg) == ("folders", root.absolute())  # auto: no pairs.txt
    data = load_face_data(cfg, seed=0, progress=False)
    check_common(data)
    # 40 people x 10 images, 10 people held out
    assert (data.train_count, data.eval_count, data.pair_count) == (300, 100, 200)
    assert data.num_classes == 30 and np.bincount(data.train_labels).tolist() == [10] * 30
    assert data.recovery_images is data.train_images
    assert (data.source, data.root, data.skipped) == ("folders", root.absolute(), ())

    # identity-disjoint, checked on the pixels: decode every image, independently of the split
    every = IdentityFolders.scan(root)
    prep = Preprocess(size=32, mean=MEAN_RGB)
    decoded = load_images(every.paths, prep, progress=False).images
    owner = {img.tobytes(): every.identities[label] for img, label in zip(decoded, every.labels)}
    train_people = [owner[img.tobytes()] for img in data.train_images]
    eval_people = {owner[img.tobytes()] for img in data.eval_images}
    assert len(set(train_people)) == 30 and len(eval_people) == 10
    assert eval_people.isdisjoint(train_people)
    # one label per person
    assert len(set(zip(train_people, data.train_labels.tolist()))) == 30

    assert load_face_data(cfg, seed=0, progress=False).pairs_sha256 == data.pairs_sha256
    other = load_face_data(cfg, seed=1, progress=False)
    assert other.pairs_sha256 != data.pairs_sha256


# ---------------------------------------------------------------------- lfw
# 2 folds of 2 matched + 2 mismatched pairs, person-disjoint as in the real file.
PAIRS = """2\t2
Ann\t1\t2
Bob\t1\t3
Ann\t1\tCid\t1
Bob\t2\tDee\t1
Eve\t1\t2
Fay\t1\t2
Eve\t2\tGus\t1
Fay\t1\tHal\t1
"""
# name -> number of images; Ivy, Jon and Kim appear in no pair.
PEOPLE = dict(Ann=2, Bob=3, Cid=1, Dee=2, Eve=2, Fay=2, Gus=3, Hal=1, Ivy=2, Jon=1, Kim=4)


@pytest.fixture
def data_root(tmp_path: Path) -> Path:
    """``<data_root>/lfw/``: a toy LFW of 250x250 gray JPEGs in the official layout."""
    lfw = tmp_path / "data" / "lfw"
    rng = np.random.default_rng(0)
    for name, count in PEOPLE.items():
        (lfw / name).mkdir(parents=True)
        for i in range(1, count + 1):
            pixels = rng.integers(0, 256, (250, 250), dtype=np.uint8)
            Image.fromarray(pixels, "L").save(lfw / name / f"{name}_{i:04d}.jpg")
    (lfw / "pairs.txt").write_text(PAIRS)
    return tmp_path / "data"


def test_lfw_data(data_root: Path) -> None:
    cfg = data_config(root=str(data_root), size=16, eval_folds=[0])
    lfw_root = data_root.absolute() / "lfw"
    assert resolve_source(cfg) == ("lfw", data_root.absolute())
    data = load_face_data(cfg, seed=0, progress=False)
    check_common(data)
    # fold 0 evaluated (Ann, Bob, Cid, Dee: 7 images); trained on Eve, Fay, Gus, Ivy, Kim
    assert (data.train_count, data.eval_count, data.pair_count) == (13, 7, 4)
    assert data.num_classes == 5 and data.train_labels.tolist() == [
        0,
        0,
        1,
        1,
        2,
        2,
        2,
        3,
        3,
        4,
        4,
        4,
        4,
    ]
    # ... plus single-image Hal and Jon for recovery; the training images come first
    assert len(data.recovery_images) == 15
    assert np.array_equal(data.recovery_images[:13], data.train_images)
    assert (data.source, data.root, data.skipped) == ("lfw", lfw_root, ())
    full = hashlib.sha256((lfw_root / "pairs.txt").read_bytes()).hexdigest()
    assert data.pairs_sha256 == full[:16]


def test_lfw_skips_bad_training_images(data_root: Path) -> None:
    bad = data_root / "lfw" / "Fay" / "Fay_0002.jpg"  # in fold 1 only: trained on under fold 0
    bad.write_bytes(b"not a jpeg")
    cfg = data_config(root=str(data_root), size=16, eval_folds=[0], on_bad_image="skip")
    with pytest.warns(UserWarning, match="skipped 1 unreadable training images"):
        data = load_face_data(cfg, seed=0, progress=False)
    check_common(data)
    assert data.skipped == (bad.absolute(),)
    assert (data.train_count, len(data.recovery_images), data.num_classes) == (12, 14, 5)
    assert np.array_equal(data.recovery_images[:12], data.train_images)
    with pytest.raises(PrunekitError, match="bad image"):
        load_face_data({**cfg, "on_bad_image": "fail"}, seed=0, progress=False)


def test_lfw_recovery_paths_on_the_real_lfw(shared: Path) -> None:
    """The LFW path logic on the real pairs, without decoding a single image."""
    half = LFW(shared / "data" / "lfw", eval_folds=range(5))
    paths = half.recovery_paths
    assert paths[: len(half.train_paths)] == half.train_paths  # 906 people, 5,103 images
    people = {p.parent.name for p in paths}
    assert (len(paths), len(people)) == (7860, 3663)
    assert people.isdisjoint(key.split("/")[0] for key in half.pairs.images)

    every = LFW(shared / "data" / "lfw", eval_folds=range(10))
    # the people not in pairs.txt, single-image people included
    assert len(every.recovery_paths) == 1549
    assert len({p.parent.name for p in every.recovery_paths}) == 1468


# ---------------------------------------------------------------------- resolving the source
def test_resolve_source(tmp_path: Path) -> None:
    assert resolve_source(data_config()) == ("synthetic", None)
    root = str(tmp_path)  # prunekit fills data.root from --data or $PRUNEKIT_DATA
    assert resolve_source(data_config(root=root)) == ("folders", tmp_path.absolute())
    (tmp_path / "pairs.txt").touch()
    assert resolve_source(data_config(root=root)) == ("lfw", tmp_path.absolute())
    synthetic = data_config(root=root, source="synthetic")
    assert resolve_source(synthetic) == ("synthetic", tmp_path.absolute())


def test_resolve_source_errors(tmp_path: Path) -> None:
    with pytest.raises(PrunekitError, match="data.source='web' is unknown"):
        resolve_source(data_config(source="web"))
    with pytest.raises(PrunekitError, match="data.source=lfw needs a data folder"):
        resolve_source(data_config(source="lfw"))
    with pytest.raises(PrunekitError, match="does not exist: pass --data DIR"):
        load_face_data(data_config(root=str(tmp_path / "nope")), seed=0, progress=False)
