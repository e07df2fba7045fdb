"""Safe save/load of pruned models."""

from __future__ import annotations

import os
import pickle

import pytest
import torch

import prunekit as pk
from tests.engine.architectures import SqueezeNet, randomize_norms


def _pruned():
    torch.manual_seed(0)
    model = randomize_norms(SqueezeNet(grouped=False)).eval()
    x = torch.randn(2, 3, 32, 32)
    pruner = pk.Pruner(model, x[:1], criterion="l1", target=pk.Target(params=0.4), steps=2)
    pruner.step()
    return model, x, pruner


def test_round_trip_is_bit_identical(tmp_path):
    model, x, pruner = _pruned()
    path = pk.save(tmp_path / "pruned.pt", model, pruner=pruner, meta={"note": "hi"})
    raw = torch.load(path, weights_only=True)  # readable by plain torch, safely
    assert raw["meta"] == {"note": "hi"} and raw["pruner"]["step_index"] == 1
    fresh = pk.load(path, model=SqueezeNet(grouped=False)).eval()
    with torch.no_grad():
        assert torch.equal(fresh(x), model(x))
    assert pk.measure(fresh, x[:1]) == pk.measure(model, x[:1])


def test_resume_pruning_from_a_checkpoint(tmp_path):
    model, x, pruner = _pruned()
    pk.save(tmp_path / "a.pt", model, pruner=pruner)
    ckpt = pk.read_checkpoint(tmp_path / "a.pt")
    fresh = pk.load(tmp_path / "a.pt", model=SqueezeNet(grouped=False)).eval()
    again = pk.Pruner(fresh, x[:1], criterion="l1", target=pk.Target(params=0.4), steps=2)
    again.load_state_dict(ckpt["pruner"])
    pruner.step()
    report = again.step()
    assert again.done and report.params == pk.measure(model, x[:1])["params"]


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch " + str(MARKER),))


MARKER = None


def test_pickle_payload_is_refused_without_running(tmp_path):
    global MARKER
    MARKER = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"format": "prunekit-checkpoint", "model": {}, "evil": _Evil()}, path)
    with pytest.raises(pk.PrunekitError, match="refusing to load"):
        pk.load(path, model=SqueezeNet())
    assert not MARKER.exists()


def test_plain_pickle_file_is_refused(tmp_path):
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(_Evil()))
    with pytest.raises(pk.PrunekitError):
        pk.read_checkpoint(path)


def test_truncated_checkpoint(tmp_path):
    model, _, _ = _pruned()
    path = pk.save(tmp_path / "a.pt", model)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(pk.PrunekitError, match="truncated or corrupt"):
        pk.load(path, model=SqueezeNet())


def test_checkpoint_of_another_architecture(tmp_path):
    model, _, _ = _pruned()
    path = pk.save(tmp_path / "a.pt", model)
    with pytest.raises(pk.PrunekitError, match="does not fit SqueezeNet"):
        pk.load(path, model=SqueezeNet(width=8, bn=False))


def test_missing_checkpoint(tmp_path):
    with pytest.raises(pk.PrunekitError, match="does not exist"):
        pk.read_checkpoint(tmp_path / "nope.pt")


def test_failed_write_keeps_previous_file(tmp_path, monkeypatch):
    model, _, _ = _pruned()
    path = pk.save(tmp_path / "a.pt", model, meta={"v": 1})

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError):
        pk.save(path, model, meta={"v": 2})
    assert pk.read_checkpoint(path)["meta"] == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["a.pt"]


def test_non_plain_metadata_is_rejected(tmp_path):
    model, _, _ = _pruned()
    with pytest.raises(pk.PrunekitError, match="meta.obj holds a object"):
        pk.save(tmp_path / "a.pt", model, meta={"obj": object()})
