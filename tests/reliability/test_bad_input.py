"""Bad input through the command line: one line that names the culprit and the fix, exit status
2, and nothing lost or half-written (an earlier run stays byte-for-byte intact)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from prunekit_toy.task import ToyTask
from torch import nn

import prunekit as pk
from prunekit.registry import TASKS
from prunekit_face.data.folders import IdentityFolders
from tests.engine.architectures import SqueezeNet
from tests.reliability.conftest import Cli
from tests.reliability.support import snapshot

#: a face run of seconds: tiny images and network, no training, one l1 step, one latency pass
FACE = [
    "--criterion", "l1", "--steps", "1", "--quiet",
    "--set", "data.size=16", "--set", "data.batch_size=4", "--set", "data.eval_pairs=20",
    "--set", "model.width=0.25", "--set", "model.embedding_size=8",
    "--set", "baseline.epochs=0", "--set", "recovery.methods=[]",
    "--set", "latency.batch_size=1", "--set", "latency.repeats=1", "--set", "latency.warmup=0",
]  # fmt: skip


def error_line(result: tuple[int, str, str], *expected: str) -> str:
    """The one ``prunekit: error:`` line of a command that must fail with status 2."""
    code, _, err = result
    assert code == 2, err
    lines = err.splitlines()
    assert [ln for ln in lines if ln.startswith("prunekit: error: ")] == lines[-1:], err
    for text in expected:
        assert text in lines[-1]
    return lines[-1]


# ---------------------------------------------------------------------- configuration
@pytest.mark.parametrize(
    ("args", "expected"),
    [
        pytest.param(
            ["toyy"], ["unknown task 'toyy': did you mean 'toy'? known tasks are"], id="task"
        ),
        pytest.param(
            ["toy", "--criterion", "taylr"],
            ["unknown criterion 'taylr': did you mean 'taylor'? known criteria are bn_scale"],
            id="criterion",
        ),
        pytest.param(
            ["toy", "--schedule", "cosine"],
            ["unknown schedule 'cosine': known schedules are agp, constant"],
            id="schedule",
        ),
        pytest.param(
            ["toy", "--config", "bad.yaml"],
            ["malformed YAML in bad.yaml, line 3, column 2: expected <block end>"],
            id="yaml",
        ),
        pytest.param(
            ["toy", "--set", "prune.stesp=3"],
            ["unknown config key 'prune.stesp' in --set: did you mean 'prune.steps'?"],
            id="unknown-key",
        ),
        pytest.param(
            ["toy", "--set", "prune.steps=three"],
            ["config key 'prune.steps' in --set must be an integer >= 1, got 'three' (str)"],
            id="mistyped-key",
        ),
        pytest.param(
            ["toy", "--target", "params=0"],
            ["'prune.target.params' in the flags must be a fraction in (0, 1), got 0.0"],
            id="target-0",
        ),
        pytest.param(
            ["toy", "--target", "params=1"],
            ["'prune.target.params' in the flags must be a fraction in (0, 1), got 1.0"],
            id="target-1",
        ),
        pytest.param(
            ["toy", "--steps", "0"],
            ["'prune.steps' in the flags must be an integer >= 1, got 0"],
            id="steps",
        ),
        pytest.param(  # checked before any process is launched
            ["toy", "--nproc", "2", "--steps", "0"],
            ["'prune.steps' in the flags must be an integer >= 1, got 0"],
            id="nproc-config",
        ),
        pytest.param(
            ["toy", "--nproc", "0"], ["--nproc 0 is out of range: give an integer >= 1"], id="nproc"
        ),
    ],
)
def test_config_mistake(args, expected, cli, finished_run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.yaml").write_text("prune:\n  steps: 3\n bad: [\n")
    before = snapshot(finished_run)
    error_line(cli("run", *args, "--out", "new"), *expected)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml"]  # not even runs/
    assert snapshot(finished_run) == before


# ---------------------------------------------------------------------- face data
def write_faces(root: Path, people: int = 4, images: int = 3) -> Path:
    """``root/p<i>/<j>.jpg``: small random RGB images."""
    rng = np.random.default_rng(0)
    for i in range(people):
        (root / f"p{i}").mkdir(parents=True)
        for j in range(images):
            pixels = rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / f"p{i}" / f"{j}.jpg")
    return root


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def face_run(cli: Cli, root: Path, out: Path, *sets: str) -> tuple[int, str, str]:
    args = [a for s in sets for a in ("--set", s)]
    return cli("run", "face", *FACE, "--set", f"data.root={root}", *args, "--out", str(out))


def assert_no_checkpoint(out: Path) -> None:
    """A run that failed before its baseline wrote at most its config (it can be resumed)."""
    assert not out.exists() or [p.name for p in out.iterdir()] == ["config.yaml"]


def test_missing_data_directory(cli, tmp_path):
    out = tmp_path / "out"
    error_line(
        face_run(cli, tmp_path / "nowhere", out),
        f"data root {tmp_path / 'nowhere'} does not exist: pass --data DIR / data.root",
    )
    assert not out.exists()


def test_identity_folder_without_images(cli, tmp_path):
    root = write_faces(tmp_path / "faces")
    (root / "p9").mkdir()
    (root / "p9" / "notes.txt").write_text("no faces here")
    out = tmp_path / "out"
    error_line(
        face_run(cli, root, out, "data.source=folders", "data.eval_identities=2"),
        f"identity folder {root / 'p9'} has no images (.bmp, .gif",
        "add images or remove the folder",
    )
    assert_no_checkpoint(out)


@pytest.fixture
def faces_with_a_bad_image(tmp_path) -> tuple[Path, Path]:
    """Identity folders with one truncated JPEG among the training identities."""
    root = write_faces(tmp_path / "faces")
    train, _ = IdentityFolders.scan(root).split(2, seed=0)  # the split the task makes
    bad = root / train.identities[0] / "bad.jpg"
    shutil.copyfile(root / train.identities[0] / "0.jpg", bad)
    truncate(bad)
    return root, bad


def test_corrupt_image_fails_by_default(cli, tmp_path, faces_with_a_bad_image):
    root, bad = faces_with_a_bad_image
    out = tmp_path / "out"
    error_line(
        face_run(cli, root, out, "data.source=folders", "data.eval_identities=2"),
        f"bad image {bad} (",
        "delete or replace it, or drop it with on_bad_image='skip' "
        "(CLI: --set data.on_bad_image=skip)",
    )
    assert_no_checkpoint(out)


def test_corrupt_image_is_skipped_and_counted(cli, tmp_path, faces_with_a_bad_image):
    root, bad = faces_with_a_bad_image
    sets = ["data.source=folders", "data.eval_identities=2", "data.on_bad_image=skip"]
    with pytest.warns(UserWarning, match="skipped 1 unreadable") as warned:
        code, _, err = face_run(cli, root, tmp_path / "out", *sets)
    assert code == 0, err
    assert any(str(bad) in str(w.message) for w in warned)  # named, as well as counted
    assert (tmp_path / "out" / "final.pt").is_file()


PAIRS = "1\t2\nAnn\t1\t2\nBob\t1\t2\nAnn\t1\tBob\t1\nBob\t2\tAnn\t2\n"


@pytest.fixture
def lfw(tmp_path) -> Path:
    """An LFW layout (empty image files: these errors come before any decoding)."""
    root = tmp_path / "lfw"
    for name in ("Ann", "Bob", "Cid"):
        (root / name).mkdir(parents=True)
        for i in (1, 2):
            (root / name / f"{name}_{i:04d}.jpg").touch()
    (root / "pairs.txt").write_text(PAIRS)
    return root


def test_malformed_pairs_file_names_the_line(cli, tmp_path, lfw):
    (lfw / "pairs.txt").write_text(PAIRS.replace("Bob\t1\t2", "Bob\t1\ttwo"))
    out = tmp_path / "out"
    error_line(
        face_run(cli, lfw, out, "data.source=lfw", "data.eval_folds=[0]"),
        f"{lfw / 'pairs.txt'}:3: expected a matched pair 'name idx1 idx2' (fold 0, pair 2 of 2)",
        "got 'Bob\\t1\\ttwo'; fix the line or use the official LFW View 2 pairs.txt",
    )
    assert_no_checkpoint(out)


def test_pairs_naming_a_missing_image(cli, tmp_path, lfw):
    (lfw / "Bob" / "Bob_0002.jpg").unlink()
    out = tmp_path / "out"
    error_line(
        face_run(cli, lfw, out, "data.source=lfw", "data.eval_folds=[0]"),
        f"LFW image {lfw / 'Bob' / 'Bob_0002.jpg'} named by the evaluation pairs is missing",
        "re-extract lfw.tgz there or point root at a complete copy",
    )
    assert_no_checkpoint(out)


# ---------------------------------------------------------------------- model
class Pairwise(nn.Module):
    """Averages the samples of a batch two by two: it cannot run on a batch of one."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(2, -1, *x.shape[1:]).mean(0)


class UntraceableTask(ToyTask):
    def build_model(self) -> nn.Module:
        model = super().build_model()
        model.features.insert(0, Pairwise())
        return model


def test_untraceable_model_names_the_module(cli, tmp_path):
    out = tmp_path / "out"
    with TASKS.temporarily("untraceable", UntraceableTask):
        result = cli("run", "untraceable", "--quiet", "--out", str(out))
    error_line(
        result,
        "cannot trace ToyNet in module 'features.0' (RuntimeError: shape '[2, -1, 3, 16, 16]'",
        "make forward() run on the example inputs",
    )
    assert not out.exists()


# ---------------------------------------------------------------------- checkpoints
@pytest.fixture
def run_copy(finished_run, tmp_path) -> Path:
    """A copy of the finished run, to damage."""
    return Path(shutil.copytree(finished_run, tmp_path / "run"))


def test_checkpoint_of_another_architecture(cli, run_copy):
    pk.save(run_copy / "checkpoints" / "step-2.pt", SqueezeNet())
    before = snapshot(run_copy)
    error_line(
        cli("run", "--resume", str(run_copy), "--quiet"),
        f"checkpoint {run_copy / 'checkpoints' / 'step-2.pt'} does not fit ToyNet: layer",
        "build the model the checkpoint was saved from",
    )
    assert snapshot(run_copy) == before


def test_truncated_checkpoint_then_the_earlier_one(cli, run_copy):
    latest = run_copy / "checkpoints" / "step-2.pt"
    truncate(latest)
    before = snapshot(run_copy)
    error_line(
        cli("run", "--resume", str(run_copy), "--quiet"),
        f"checkpoint {latest} is truncated or corrupt (",
        "use an earlier checkpoint or re-create it",
    )
    assert snapshot(run_copy) == before
    latest.unlink()  # the fix the message suggests: go on from step 1
    code, _, err = cli("run", "--resume", str(run_copy), "--quiet")
    assert code == 0, err
    assert pk.read_checkpoint(run_copy / "final.pt")["meta"]["history"][-1]["step"] == 2


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_payload_is_refused_not_executed(cli, tmp_path):
    marker, evil = tmp_path / "pwned", tmp_path / "evil.pt"
    torch.save({"format": "prunekit-checkpoint", "model": _Payload(marker)}, evil)
    error_line(
        cli("eval", str(evil), "--task", "toy"),
        f"checkpoint {evil} holds objects other than tensors and plain data (a pickle payload?);",
        "refusing to load it: use a checkpoint written by prunekit.save",
    )
    assert not marker.exists()
