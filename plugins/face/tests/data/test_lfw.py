"""LFW View 2 pairs parsing and identity-disjoint splits (toy files and the real LFW)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from prunekit.errors import PrunekitError
from prunekit_face.data import LFW, read_pairs

# 2 folds of 2 matched + 2 mismatched pairs; folds are person-disjoint as in the real file.
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
def lfw_root(tmp_path) -> Path:
    root = tmp_path / "lfw"
    for name, count in PEOPLE.items():
        (root / name).mkdir(parents=True)
        for i in range(1, count + 1):
            (root / name / f"{name}_{i:04d}.jpg").touch()
    (root / "pairs.txt").write_text(PAIRS)
    return root


def test_read_pairs(lfw_root) -> None:
    pairs = read_pairs(lfw_root / "pairs.txt")
    assert len(pairs) == 8
    assert pairs.fold.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    assert pairs.same.tolist() == [True, True, False, False] * 2
    images = np.asarray(pairs.images)
    assert (
        images[pairs.left[1]] == "Bob/Bob_0001.jpg" and images[pairs.right[1]] == "Bob/Bob_0003.jpg"
    )
    assert (
        images[pairs.left[3]] == "Bob/Bob_0002.jpg" and images[pairs.right[3]] == "Dee/Dee_0001.jpg"
    )
    assert len(pairs.images) == 13 and list(pairs.images) == sorted(pairs.images)


def test_select_narrows_images(lfw_root) -> None:
    fold1 = read_pairs(lfw_root / "pairs.txt").select([1])
    assert len(fold1) == 4 and fold1.fold.tolist() == [1, 1, 1, 1]
    names = ["Eve/Eve_0001", "Eve/Eve_0002", "Fay/Fay_0001", "Fay/Fay_0002", "Gus/Gus_0001"]
    assert fold1.images == tuple(f"{name}.jpg" for name in [*names, "Hal/Hal_0001"])


def _replace_line(text: str, lineno: int, new: str | None) -> str:
    lines = text.splitlines()
    if new is None:
        del lines[lineno - 1 :]
    else:
        lines[lineno - 1] = new
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("lineno", "new", "message"),
    [
        (1, "10", ":1: expected the header '<folds> <pairs per fold>'"),
        (1, "ten 300", ":1: expected the header"),
        (3, "Bob\t1\tCid\t3", ":3: expected a matched pair 'name idx1 idx2' (fold 0, pair 2 of 2)"),
        (
            4,
            "Ann\t1\tCid",
            ":4: expected a mismatched pair 'name1 idx1 name2 idx2' (fold 0, pair 1",
        ),
        (7, "Eve\tone\t2", ":7: expected a matched pair 'name idx1 idx2' (fold 1, pair 2 of 2)"),
        (8, "Eve\t0\tGus\t1", ":8: expected a mismatched pair"),
        (9, "Fay\t1\tHal\t-1", ":9: expected a mismatched pair"),
        (7, None, ":7: the file ends, but its header promises 2 folds of 2 x 2 pairs (9 lines)"),
    ],
)
def test_malformed_pairs_name_the_line(tmp_path, lineno, new, message) -> None:
    path = tmp_path / "pairs.txt"
    path.write_text(_replace_line(PAIRS, lineno, new))
    with pytest.raises(PrunekitError, match=re.escape(f"{path}{message}")):
        read_pairs(path)


def test_trailing_text_is_an_error_but_blank_lines_are_not(tmp_path) -> None:
    path = tmp_path / "pairs.txt"
    path.write_text(PAIRS + "\n\n")
    assert len(read_pairs(path)) == 8
    path.write_text(PAIRS + "\nZed\t1\t2\n")
    with pytest.raises(
        PrunekitError, match=re.escape(f"{path}:11: unexpected text after the last")
    ):
        read_pairs(path)


def test_missing_pairs_file(tmp_path) -> None:
    with pytest.raises(
        PrunekitError,
        match=re.escape(f"cannot read LFW pairs file {tmp_path / 'pairs.txt'} (No such file"),
    ):
        read_pairs(tmp_path / "pairs.txt")


def test_identity_disjoint_training_people(lfw_root) -> None:
    every_fold = LFW(lfw_root)
    assert len(every_fold.pairs) == 8
    assert every_fold.train_identities == ("Ivy", "Kim")  # Jon has one image
    assert [p.stem for p in every_fold.train_paths] == [
        "Ivy_0001",
        "Ivy_0002",
        "Kim_0001",
        "Kim_0002",
        "Kim_0003",
        "Kim_0004",
    ]
    assert every_fold.train_labels.tolist() == [0, 0, 1, 1, 1, 1]
    assert every_fold.pair_paths()[0] == lfw_root / "Ann" / "Ann_0001.jpg"

    fold0 = LFW(lfw_root, eval_folds=[0], min_images=1)
    assert len(fold0.pairs) == 4
    assert fold0.train_identities == ("Eve", "Fay", "Gus", "Hal", "Ivy", "Jon", "Kim")
    wider = LFW(lfw_root, eval_folds=[0], train_exclude_folds=[0, 1])
    assert wider.train_identities == ("Ivy", "Kim")


def test_eval_folds_must_be_excluded_from_training(lfw_root) -> None:
    with pytest.raises(
        PrunekitError, match=r"must include every evaluation fold \[0, 1\].*add \[1\]"
    ):
        LFW(lfw_root, train_exclude_folds=[0])
    with pytest.raises(PrunekitError, match=r"eval_folds=\[2\] names folds outside 0..1"):
        LFW(lfw_root, eval_folds=[2])


def test_missing_image_is_reported_up_front(lfw_root) -> None:
    (lfw_root / "Gus" / "Gus_0001.jpg").unlink()
    with pytest.raises(PrunekitError, match=re.escape(f"LFW image {lfw_root}/Gus/Gus_0001.jpg")):
        LFW(lfw_root)
    assert len(LFW(lfw_root, eval_folds=[0]).pairs) == 4  # fold 0 does not need it


def test_missing_root(tmp_path) -> None:
    with pytest.raises(
        PrunekitError, match=re.escape(f"LFW root {tmp_path / 'nowhere'} is not a folder")
    ):
        LFW(tmp_path / "nowhere")


def test_real_lfw_statistics(shared) -> None:
    root = shared / "data" / "lfw"
    pairs = read_pairs(root / "pairs.txt")
    assert len(pairs) == 6000 and int(pairs.same.sum()) == 3000 and len(pairs.images) == 7701
    assert np.bincount(pairs.fold).tolist() == [600] * 10

    half = LFW(root, eval_folds=range(5))
    assert len(half.pairs) == 3000
    assert len(half.train_identities) == 906 and len(half.train_paths) == 5103
    assert np.bincount(half.train_labels).min() == 2

    unpaired = LFW(root, min_images=1)
    assert len(unpaired.train_identities) == 1468 and len(unpaired.train_paths) == 1549
    evaluated = {key.split("/")[0] for key in unpaired.pairs.images}
    assert evaluated.isdisjoint(unpaired.train_identities)


def test_recovery_paths_are_everyone_outside_the_evaluated_folds(lfw_root) -> None:
    def stems(lfw: LFW) -> list[str]:
        return [p.stem for p in lfw.recovery_paths]

    every_fold = LFW(lfw_root)
    # the training people first (a prefix), then single-image Jon
    assert every_fold.recovery_paths[: len(every_fold.train_paths)] == every_fold.train_paths
    assert stems(every_fold)[len(every_fold.train_paths) :] == ["Jon_0001"]

    fold0 = LFW(lfw_root, eval_folds=[0])
    assert fold0.train_identities == ("Eve", "Fay", "Gus", "Ivy", "Kim")
    assert stems(fold0)[len(fold0.train_paths) :] == ["Hal_0001", "Jon_0001"]
    # people of excluded but unevaluated folds are not trained on, but may be recovered on
    wider = LFW(lfw_root, eval_folds=[0], train_exclude_folds=[0, 1])
    assert {p.parent.name for p in wider.recovery_paths} == {
        "Eve",
        "Fay",
        "Gus",
        "Hal",
        "Ivy",
        "Jon",
        "Kim",
    }
    assert len(wider.recovery_paths) == sum(
        PEOPLE[n] for n in ["Eve", "Fay", "Gus", "Hal", "Ivy", "Jon", "Kim"]
    )
    evaluated = {key.split("/")[0] for key in wider.pairs.images}
    assert evaluated.isdisjoint(p.parent.name for p in wider.recovery_paths)
