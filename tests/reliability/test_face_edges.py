"""Face data at its edges: no one to train on, too few folds or pairs, a batch larger than the
training set, unusable evaluation images, LFW without or with an unusual pairs.txt, undersized
images. Each is one line naming the setting to change (one that the CLI can set), found before
anything trains; tiny generated images, never the real LFW."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from prunekit_face.data.folders import IdentityFolders
from tests.reliability.test_bad_input import (
    assert_no_checkpoint,
    error_line,
    face_run,
    truncate,
    write_faces,
)

#: two folds of one matched and one mismatched pair: Ann and Bob are evaluated
PAIRS = "2\t1\nAnn\t1\t2\nAnn\t2\tBob\t1\nBob\t1\t2\nBob\t2\tAnn\t3\n"
FOLDERS = ["data.source=folders", "data.eval_identities=2"]


@pytest.fixture
def lfw(tmp_path) -> Path:
    """An LFW layout of decodable 200x200 images (the LFW face box fits): Ann and Bob are
    evaluated, Cid and Dan trained on."""
    root = tmp_path / "lfw"
    rng = np.random.default_rng(0)
    for name in ("Ann", "Bob", "Cid", "Dan"):
        (root / name).mkdir(parents=True)
        for i in (1, 2, 3):
            pixels = rng.integers(0, 256, (200, 200, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{name}_{i:04d}.jpg")
    (root / "pairs.txt").write_text(PAIRS)
    return root


def lfw_run(cli, root: Path, out: Path, *sets: str) -> tuple[int, str, str]:
    return face_run(cli, root, out, "data.eval_folds=[0,1]", *sets)


def split(root: Path) -> tuple[IdentityFolders, IdentityFolders]:
    """The (train, eval) identities the face task draws from ``root``."""
    return IdentityFolders.scan(root).split(2, seed=0)


# ---------------------------------------------------------------------- no one to train on
def test_no_lfw_person_left_to_train_on(cli, tmp_path, lfw):
    out = tmp_path / "out"
    error_line(
        lfw_run(cli, lfw, out, "data.min_images=5"),
        f"no person in {lfw} outside the evaluated folds [0, 1] has data.min_images=5 or more "
        "images, so there is nobody to train on: lower data.min_images or evaluate fewer folds",
    )
    assert_no_checkpoint(out)


def test_every_training_image_skipped(cli, tmp_path):
    root = write_faces(tmp_path / "faces")
    train, _ = split(root)
    for path in train.paths:
        path.write_bytes(b"not an image")
    out = tmp_path / "out"
    error_line(
        face_run(cli, root, out, *FOLDERS, "data.on_bad_image=skip"),
        f"no training image is left: all 6 were unreadable and skipped (data.on_bad_image=skip), "
        f"e.g. {train.paths[0]}; replace them or point data.root at a complete copy",
    )
    assert_no_checkpoint(out)


# ---------------------------------------------------------------------- the k-fold protocol
@pytest.mark.parametrize(
    ("folds", "shown", "count"), [("[0]", "[0]", 1), ("[]", "[]", 0), ("[1,1]", "[1]", 1)]
)
def test_fewer_than_two_folds_fail_before_training(folds, shown, count, cli, tmp_path, lfw):
    out = tmp_path / "out"
    error_line(
        face_run(cli, lfw, out, f"data.eval_folds={folds}"),
        f"data.eval_folds={shown} evaluates {count} fold(s), but the k-fold "
        "protocol chooses each fold's threshold on the other evaluated folds: evaluate 2 or "
        "more (e.g. --set data.eval_folds=[0,1])",
    )
    assert_no_checkpoint(out)  # nothing trained


def test_too_few_generated_pairs_fail_before_training(cli, tmp_path):
    out = tmp_path / "out"
    error_line(
        face_run(cli, tmp_path, out, "data.source=synthetic", "data.eval_pairs=2"),
        "data.eval_pairs=2 is too few: the k-fold protocol spreads the pairs over 10 folds",
        "raise data.eval_pairs (e.g. --set data.eval_pairs=200)",
    )
    assert_no_checkpoint(out)


# ---------------------------------------------------------------------- batch size
@pytest.mark.parametrize(
    "sets",
    [
        pytest.param(["prune.criterion=taylor"], id="taylor-scoring"),
        pytest.param(["model.pretrained=null", "baseline.epochs=1"], id="scratch-baseline"),
    ],
)
def test_a_batch_larger_than_the_training_set(sets, cli, tmp_path):
    root = write_faces(tmp_path / "faces")
    out = tmp_path / "out"
    error_line(
        face_run(cli, root, out, *FOLDERS, "data.batch_size=7", *sets),
        "data.batch_size=7 is larger than the 6 training images, so an epoch would have no "
        "batch: lower it (e.g. --set data.batch_size=6)",
    )
    if "baseline.epochs=1" in sets:
        assert_no_checkpoint(out)  # refused before the baseline trains


# ---------------------------------------------------------------------- evaluation images
def test_a_bad_evaluation_image_is_not_skippable(cli, tmp_path):
    root = write_faces(tmp_path / "faces")
    _, evaluated = split(root)
    bad = evaluated.paths[0]
    truncate(bad)
    line = error_line(
        face_run(cli, root, tmp_path / "out", *FOLDERS, "data.on_bad_image=skip"),
        f"bad evaluation image {bad} (",
        "evaluation images are never skipped (data.on_bad_image applies to training images), "
        "so delete or replace it",
    )
    assert "on_bad_image='skip'" not in line and "--set data.on_bad_image=skip" not in line


def test_a_bad_lfw_evaluation_image_is_restored_not_deleted(cli, tmp_path, lfw):
    bad = lfw / "Bob" / "Bob_0001.jpg"
    truncate(bad)
    error_line(
        lfw_run(cli, lfw, tmp_path / "out", "data.on_bad_image=skip"),
        f"bad evaluation image {bad} (",
        "evaluation images are never skipped (data.on_bad_image applies to training images), "
        "so restore it from lfw.tgz",
    )


# ---------------------------------------------------------------------- pairs.txt
def test_lfw_folder_without_pairs_says_where_to_put_it(cli, tmp_path, lfw):
    root = tmp_path / "data"
    shutil.move(lfw, root / "lfw")
    (root / "lfw" / "pairs.txt").unlink()
    for data, sets in ((root, []), (root / "lfw", ["data.source=lfw"])):
        out = tmp_path / "out"
        line = error_line(
            face_run(cli, data, out, *sets),
            f"{root / 'lfw'} has no pairs.txt, the LFW evaluation pairs: put the official View "
            f"2 pairs.txt (http://vis-www.cs.umass.edu/lfw/pairs.txt) in {root / 'lfw'}",
        )
        assert "remove the folder" not in line
        assert not out.exists()


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_pairs_txt_with_a_byte_order_mark(newline, cli, tmp_path, lfw):
    (lfw / "pairs.txt").write_bytes(b"\xef\xbb\xbf" + PAIRS.replace("\n", newline).encode())
    code, _, err = lfw_run(cli, lfw, tmp_path / "out")
    assert code == 0, err


# ---------------------------------------------------------------------- undersized images
def shrink(path: Path) -> None:
    Image.new("RGB", (100, 100)).save(path)


def test_an_undersized_lfw_training_image(cli, tmp_path, lfw):
    small = lfw / "Cid" / "Cid_0001.jpg"
    shrink(small)
    line = error_line(
        lfw_run(cli, lfw, tmp_path / "out"),
        f"bad image {small} ({small}: crop_box=(64, 55, 186, 196) does not fit in its 100x100 "
        "pixels); delete or replace it, or drop it with on_bad_image='skip' (CLI: --set "
        "data.on_bad_image=skip); the lfw source cuts the face box (64, 55, 186, 196) out of "
        "250x250 LFW images: for images of another size use --set data.source=folders",
    )
    assert "smaller crop_box" not in line


def test_an_undersized_lfw_training_image_can_be_skipped(cli, tmp_path, lfw):
    shrink(lfw / "Cid" / "Cid_0001.jpg")
    with pytest.warns(UserWarning, match="skipped 1 unreadable training images"):
        code, _, err = lfw_run(cli, lfw, tmp_path / "out", "data.on_bad_image=skip")
    assert code == 0, err


def test_an_undersized_lfw_evaluation_image(cli, tmp_path, lfw):
    small = lfw / "Ann" / "Ann_0002.jpg"
    shrink(small)
    error_line(
        lfw_run(cli, lfw, tmp_path / "out"),
        f"bad evaluation image {small} ({small}: crop_box=(64, 55, 186, 196) does not fit",
        "so restore it from lfw.tgz; the lfw source cuts the face box",
        "for images of another size use --set data.source=folders",
    )


# ---------------------------------------------------------------------- ranges
@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (f"data.size={10**20}", f"must be an integer in [16, 1024], got {10**20}"),
        ("data.synthetic_identities=2", "must be an integer >= 3, got 2"),
    ],
)
def test_face_integers_out_of_range(key, expected, cli, tmp_path):
    out = tmp_path / "out"
    name = key.split("=")[0]
    error_line(
        face_run(cli, tmp_path, out, "data.source=synthetic", key),
        f"config key {name!r} in --set {expected}",
    )
    assert not out.exists()


# ---------------------------------------------------------------------- portable paths
def test_a_relative_data_root_is_stored_absolute_and_moved_data_is_pointed_at(
    cli, tmp_path, monkeypatch
):
    """A run started with a relative ``data.root`` evaluates and resumes from any directory;
    when its data move, ``eval --data`` and ``run --resume --data`` point it at them."""
    write_faces(tmp_path / "faces")
    monkeypatch.chdir(tmp_path)
    code, _, err = face_run(cli, Path("faces"), tmp_path / "run", *FOLDERS)
    assert code == 0, err
    stored = (tmp_path / "run" / "config.yaml").read_text()
    assert f"root: {tmp_path / 'faces'}\n" in stored
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    code, out, err = cli("eval", str(tmp_path / "run" / "final.pt"), "--quiet")
    assert code == 0, err
    assert "note:" not in out and "accuracy: " in out
    moved = shutil.move(tmp_path / "faces", tmp_path / "moved")
    error_line(
        cli("eval", str(tmp_path / "run" / "final.pt"), "--quiet"),
        f"data root {tmp_path / 'faces'} does not exist: pass --data DIR",
    )
    code, out, err = cli("eval", str(tmp_path / "run" / "final.pt"), "--data", "../moved")
    assert code == 0, err
    assert "note: evaluating on other data than the run used" in out
    code, out, err = cli("run", "--resume", str(tmp_path / "run"), "--data", str(moved))
    assert code == 0, err
    assert f"root: {moved}\n" in (tmp_path / "run" / "config.yaml").read_text()
