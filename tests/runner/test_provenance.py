"""The provenance hooks: Task.provenance, the face task's, git and the data comparison."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import prunekit as pk
from prunekit.reporting import counted, provenance_items
from prunekit.runner import run
from prunekit.runner.config import resolve
from prunekit.tasks.base import data_provenance


class Described(pk.Task):
    def describe_data(self) -> str:
        return "three images"


def test_the_default_provenance_is_the_data_description():
    assert Described({}).provenance() == {"data": "three images"}
    assert pk.Task({}).provenance() == {}


def test_data_provenance_keeps_the_data_keys():
    found = {"data": "x", "data.root": "/d", "database": "y", "model": "m"}
    assert data_provenance(found) == {"data": "x", "data.root": "/d"}


def test_data_changes_name_each_difference():
    history = [{"step": 0, "provenance": {"data.root": "/a", "data.pairs": 6000, "model": "m"}}]
    assert run.data_changes(history, {"data.root": "/a", "data.pairs": 6000, "model": "n"}) == ""
    changed = run.data_changes(history, {"data.root": "/b", "data.pairs": 6000, "data.x": 1})
    assert changed == "data.root: /a -> /b; data.x: (none) -> 1"
    assert run.data_changes([{"step": 0}], {"data": "x"}) is None
    assert run.data_changes([], {"data": "x"}) is None


def test_the_run_adds_software_and_machine():
    found = run.provenance(Described({}), torch.device("cpu"))
    assert found["data"] == "three images" and found["prunekit"] == pk.__version__
    assert found["torch"] == torch.__version__ and type(found["torch"]) is str  # checkpointable
    assert found["device"] == "cpu" and found["threads"] == torch.get_num_threads()


def test_without_git_there_is_no_commit_and_no_failure(monkeypatch):
    run.git_commit.cache_clear()
    monkeypatch.setenv("PATH", "")
    try:
        assert run.git_commit() is None
        assert "git" not in run.provenance(Described({}), torch.device("cpu"))
    finally:
        run.git_commit.cache_clear()


def test_counts_and_items_read_well():
    assert [counted(1, "epoch"), counted(6000, "pair")] == ["1 epoch", "6,000 pairs"]
    assert counted(2, "identity", "identities") == "2 identities"
    assert provenance_items({"data.eval_pairs": 6000, "device": "cpu"}) == [
        "data.eval_pairs: 6,000",
        "device: cpu",
    ]


def face_task(*sets: str, preset: str | None = None):
    face = pytest.importorskip("prunekit_face.task")
    tiny = ["data.source=synthetic", "data.size=32", "data.synthetic_identities=10"]
    tiny += ["data.synthetic_images=4", "data.eval_pairs=40", "data.batch_size=5"]
    task = face.FaceTask(resolve("face", sets=[*tiny, *sets], preset=preset))
    task.show_progress = False
    return task


def test_the_face_task_records_its_data_and_released_weights():
    from prunekit_face.pretrained import RELEASED_SHA256

    task = face_task()
    found, data = task.provenance(), task.data
    assert (
        found
        == {
            "data.source": "synthetic",  # no root: generated data
            "data.train_images": data.train_count,
            "data.identities": data.num_classes,
            "data.eval_pairs": data.pair_count,
            "data.eval_images": data.eval_count,
            "data.recovery_images": len(data.recovery_images),
            "data.pairs_sha256": data.pairs_sha256,
            "model": f"released SqueezeFacePoseNet-DWC weights (sha256 {RELEASED_SHA256[:16]})",
        }
    )


def test_the_face_task_records_given_or_trained_weights(tmp_path):
    from prunekit_face.pretrained import RELEASED_WEIGHTS, sha256_of

    copy = tmp_path / "weights.safetensors"
    copy.write_bytes(RELEASED_WEIGHTS.read_bytes())
    given = face_task(f"model.pretrained={copy}").provenance()["model"]
    assert given == f"weights {copy.resolve()} (sha256 {sha256_of(copy)[:16]})"
    assert face_task(preset="scratch").provenance()["model"] == "squeezefacenet trained here"


def test_the_face_task_records_the_folder_it_read(tmp_path):
    task = face_task()
    task._data = dataclasses.replace(task.data, source="folders", root=tmp_path)
    found = task.provenance()
    assert found["data.source"] == "folders" and found["data.root"] == str(tmp_path)
