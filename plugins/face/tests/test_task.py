"""The ``face`` task end to end through the CLI, on ORL (real faces) and synthetic data."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from importlib import resources
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from prunekit.cli.main import main
from prunekit.registry import TASKS
from prunekit.runner.checkpoint import EpochFile
from prunekit.runner.config import resolve as resolve_config
from prunekit.runner.interrupt import Interrupted
from prunekit.runner.seeding import seed_everything
from prunekit_face.pretrained import MEAN_RGB, released_model
from prunekit_face.task import FaceTask

TINY = [
    "--preset",
    "scratch",  # the paper's SqueezeNet trained here: small and fast at 32x32
    "--set",
    "data.size=32",
    "--set",
    "baseline.epochs=3",
    "--set",
    "baseline.lr=0.05",
    "--set",
    "data.batch_size=32",
    "--set",
    "prune.score_batches=2",
    "--set",
    "recovery.options={finetune: {images: 256}}",
    "--steps",
    "2",
    "--target",
    "params=0.3",
    "--quiet",
]


def _log(run_dir):
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


def test_face_task_on_orl(shared, tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNEKIT_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    rc = main(
        [
            "run",
            "face",
            "--criterion",
            "taylor",
            "--data",
            str(shared / "data" / "orl"),
            "--out",
            str(out),
            "--set",
            "data.eval_identities=10",
            *TINY,
        ]
    )
    assert rc == 0
    log = _log(out)
    assert [r["step"] for r in log] == [0, 1, 2]
    # real learning: verification of held-out people well above chance after the baseline
    assert log[0]["metrics"]["accuracy"] > 0.6
    assert log[-1]["params"] < log[0]["params"]
    for name in ("config.yaml", "report.md", "curve.png", "final.pt", "best.pt"):
        assert (out / name).is_file()


def test_face_task_defaults_to_synthetic_and_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("PRUNEKIT_DATA", raising=False)
    out = tmp_path / "run"
    rc = main(
        [
            "run",
            "face",
            "--criterion",
            "l1",
            "--out",
            str(out),
            "--set",
            "data.synthetic_identities=30",
            "--set",
            "data.synthetic_images=6",
            *TINY[:-1],  # not --quiet: the synthetic warning is part of the banner
        ]
    )
    assert rc == 0
    printed = capsys.readouterr().out
    assert "SYNTHETIC faces" in printed and "PRUNEKIT_DATA" in printed
    assert len(_log(out)) == 3


def test_missing_data_dir_is_a_clear_error(tmp_path, capsys):
    rc = main(["run", "face", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "r")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "PRUNEKIT_DATA" in err
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_face_task_on_lfw(shared, tmp_path, monkeypatch):
    """Identity-disjoint LFW training, official pairs of fold 0 (threshold from the others)."""
    monkeypatch.setenv("PRUNEKIT_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    rc = main(
        [
            "run",
            "face",
            "--criterion",
            "l1",
            "--data",
            str(shared / "data"),
            "--out",
            str(out),
            "--set",
            "data.eval_folds=[0,1]",
            *TINY,
        ]
    )
    assert rc == 0
    log = _log(out)
    assert log[0]["metrics"]["accuracy"] > 0.55


# ---------------------------------------------------------------------- the task in Python
def synthetic_task(**data: Any) -> FaceTask:
    settings = {
        "data.source": "synthetic",
        "data.size": 32,
        "data.synthetic_identities": 10,
        "data.synthetic_images": 4,
        "data.eval_pairs": 400,
        "data.batch_size": 5,
        "model.width": 0.25,
        "model.embedding_size": 32,
        **{f"data.{k}": v for k, v in data.items()},
    }
    sets = [f"{k}={v}" for k, v in settings.items()]
    return FaceTask(resolve_config("face", sets=sets, preset="scratch"))


@pytest.fixture(autouse=True)
def no_data_env(monkeypatch):
    monkeypatch.delenv("PRUNEKIT_DATA", raising=False)


def test_presets_come_from_the_packaged_yaml():
    assert TASKS.get("face") is FaceTask  # registered by the entry point
    assert set(FaceTask.presets) == {"quick", "scratch", "taught", "paper"}
    assert FaceTask.presets["quick"] == {}
    paper = FaceTask.presets["paper"]
    assert paper["data"] == {"size": 113, "batch_size": 128}
    assert paper["prune"]["criterion_options"] == {"variant": "param"}
    assert paper["prune"]["score_batches"] is None
    assert paper["recovery"]["options"]["finetune"]["lr"] == 0.001
    assert FaceTask.presets["taught"]["model"]["teacher"] == "released"
    for name in FaceTask.presets:  # every preset is a valid configuration
        assert resolve_config("face", preset=name)["task"] == "face"
    folder = resources.files("prunekit_face") / "presets"
    assert all((folder / f"{name}.yaml").is_file() for name in FaceTask.presets)


def test_recovery_batches_are_fixed_unaugmented_normalised_channels_last():
    task = synthetic_task()
    assert FaceTask.outputs == "embedding"
    first, second = list(task.recovery_batches()), list(task.recovery_batches())
    order = np.random.default_rng(task.config["seed"]).permutation(32)
    images = task.data.recovery_images[order]  # the 8 training identities' 32 images, shuffled
    assert [len(b) for b in first] == [5] * 6 + [2]
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
    for batch in first:
        assert batch.dtype == torch.float32 and batch.device == task.device
        assert batch.is_contiguous(memory_format=torch.channels_last)
    expected = torch.from_numpy(np.array(images)).permute(0, 3, 1, 2).float()
    expected -= torch.tensor(MEAN_RGB).view(1, 3, 1, 1)
    assert torch.equal(torch.cat(first), expected)
    assert task.model_inputs(first[0]) is first[0]
    train_images, labels = next(iter(task.train_batches()))
    assert task.model_inputs((train_images, labels)) is train_images


def test_evaluate_gives_the_metrics_and_describe_data_the_provenance():
    task = synthetic_task()
    model = task.build_model()
    metrics = task.evaluate(model)
    assert {"accuracy", "accuracy_std", "eer", "auc", "tar@far=1e-2"} <= set(metrics)
    assert set(metrics) <= {
        "accuracy",
        "accuracy_std",
        "eer",
        "auc",
        "tar@far=1e-2",
        "tar@far=1e-3",
    }
    assert all(isinstance(v, float) for v in metrics.values())
    assert 0 <= metrics[FaceTask.primary_metric] <= 1
    line = task.describe_data()
    assert line.startswith("SYNTHETIC faces") and "PRUNEKIT_DATA" in line
    assert "32 training images of 8 identities" in line and "400 evaluation pairs" in line
    assert task.data.pairs_sha256 in line and "32 recovery images" in line


def test_baseline_trains_the_bare_network():
    task = synthetic_task()
    task.config["baseline"].update(epochs=1, lr=0.01)
    model = task.build_model()
    before = model.conv1.weight.detach().clone()
    assert task.prepare_baseline(model) == "trained from scratch for 1 epoch"
    assert not torch.equal(model.conv1.weight, before)
    assert set(task.state_dict()) == set(task.head.state_dict())


def test_an_interrupted_baseline_resumes_after_its_last_epoch(tmp_path):
    """From-scratch training (2 epochs, one-cycle LR, dropout, augmentation) interrupted in its
    2nd epoch, resumed from the epoch file: the 2nd epoch alone, the same weights."""
    path, notes = tmp_path / "baseline-epoch.pt", []

    def baseline(checkpointed: bool, interrupt_in: int = 0) -> tuple[FaceTask, nn.Module, int]:
        seed_everything(0)  # as the runner does: before building the model and before training
        task = synthetic_task()
        task.config["baseline"].update(epochs=2, lr=0.01)
        if checkpointed:
            task.epoch_checkpoint = EpochFile(path, task.config, True, notes.append)
        model, batches, epochs = task.build_model(), task.train_batches, []

        def counted() -> Iterator[Any]:
            epochs.append(1)
            for index, batch in enumerate(batches()):
                if len(epochs) == interrupt_in and index == 1:
                    raise Interrupted("SIGINT")
                yield batch

        task.train_batches = counted
        seed_everything(0)
        with contextlib.suppress(Interrupted):
            task.prepare_baseline(model)
        return task, model, len(epochs)

    reference, reference_model, _ = baseline(checkpointed=False)
    assert baseline(checkpointed=True, interrupt_in=2)[2] == 2
    task, model, epochs = baseline(checkpointed=True)
    assert epochs == 1 and notes == [f"baseline: resuming its training after epoch 1 ({path})"]
    for a, b in [(model, reference_model), (task.head, reference.head)]:
        ours, theirs = a.state_dict(), b.state_dict()
        assert all(torch.equal(ours[k], theirs[k]) for k in theirs)


def test_the_taught_preset_distils_the_released_network_label_free():
    sets = [
        "data.source=synthetic",
        "data.size=32",
        "data.synthetic_identities=10",
        "data.synthetic_images=4",
        "data.eval_pairs=40",
        "data.batch_size=8",
        "model.width=0.25",
        "baseline.epochs=3",
    ]
    task = FaceTask(resolve_config("face", sets=sets, preset="taught"))
    student = task.build_model()
    teacher = released_model().eval()
    images = torch.cat(list(task.recovery_batches()))

    def agreement() -> float:
        with torch.no_grad():
            return float(torch.cosine_similarity(student(images), teacher(images)).mean())

    before = agreement()
    how = task.prepare_baseline(student)
    assert how == "distilled from released for 3 epochs of the recovery images"
    assert agreement() > before + 0.05
    assert task.head is not None  # fitted afterwards, for Taylor scores and fine-tuning


def test_a_pruned_embedding_reaches_the_classifier_head_in_the_parents_coordinates():
    task = synthetic_task()
    images, labels = next(iter(task.train_batches()))
    full = task.build_model().eval()
    kept = [0, 3, 4, 9, 31]

    class Narrowed(nn.Module):  # what a step with prune.prune_outputs leaves: kept features
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return full(x)[:, kept]

    zeroed = full(images).clone()
    zeroed[:, [i for i in range(32) if i not in kept]] = 0
    task.outputs_pruned(kept)
    torch.testing.assert_close(task.loss(Narrowed(), (images, labels)), task.head(zeroed, labels))


def test_taylor_and_finetune_run_on_a_network_whose_embedding_is_pruned(tmp_path, monkeypatch):
    out = tmp_path / "run"
    flags = ["--criterion", "taylor", "--recovery", "reconstruct,distill,finetune"]
    sets = ["prune.prune_outputs=true", "data.synthetic_identities=30", "data.synthetic_images=6"]
    rc = main(["run", "face", "--out", str(out), *flags, *TINY, *[f"--set={s}" for s in sets]])
    assert rc == 0
    log = _log(out)
    assert len(log) == 3 and all("accuracy" in r["metrics"] for r in log)
    width = torch.load(out / "final.pt", weights_only=False)["model"]["conv10.weight"].shape[0]
    assert width < 1000  # the scratch network's embedding lost features
    mapped: list[list[int]] = []
    monkeypatch.setattr(FaceTask, "outputs_pruned", lambda self, kept: mapped.append(kept))
    assert main(["run", "--resume", str(out), "--quiet"]) == 0  # restored, then re-reported
    assert len(mapped) == 1 and len(mapped[0]) == width
