"""Safe save/load of pruned models."""

from __future__ import annotations

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
    unpruned = pk.measure(SqueezeNet(grouped=False), x[:1])["params"]
    assert pk.measure(fresh, x[:1])["params"] < 0.8 * unpruned  # the pruned shapes came back


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


class _Payload:
    """Unpickling this runs ``exec``, which writes ``marker``: proof that the payload ran."""

    def __init__(self, marker) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('ran')",))


def _evil_checkpoint(tmp_path):
    marker = tmp_path / "payload-ran"
    path = tmp_path / "evil.pt"
    torch.save({"format": "prunekit-checkpoint", "model": {}, "evil": _Payload(marker)}, path)
    assert not marker.exists()  # saving does not run it
    return path, marker


def test_the_payload_runs_when_unpickled_unsafely(tmp_path):
    """The control: the payload is live, so the refusals below are meaningful."""
    path, marker = _evil_checkpoint(tmp_path)
    torch.load(path, weights_only=False)
    assert marker.read_text() == "ran"
    pickle.loads(pickle.dumps(_Payload(tmp_path / "again")))
    assert (tmp_path / "again").read_text() == "ran"


@pytest.mark.parametrize("reader", ["load", "read_checkpoint"])
def test_pickle_payload_is_refused_without_running(tmp_path, reader):
    path, marker = _evil_checkpoint(tmp_path)
    with pytest.raises(pk.PrunekitError, match="refusing to load it") as info:
        if reader == "load":
            pk.load(path, model=SqueezeNet())
        else:
            pk.read_checkpoint(path)
    assert "\n" not in str(info.value)
    assert not marker.exists()


def test_plain_pickle_file_is_refused_without_running(tmp_path):
    marker = tmp_path / "payload-ran"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(_Payload(marker), protocol=2))  # torch.load's own protocol
    with pytest.raises(pk.PrunekitError, match="a pickle payload.*refusing to load it"):
        pk.read_checkpoint(path)
    assert not marker.exists()


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


def _refusal(width_there: int, width_here: int, path) -> str:
    return (
        f"checkpoint {path} does not fit SqueezeNet: tensor 'fire2.squeeze.0.weight' is "
        f"[{width_there}, 16, 1, 1] there (before pruning) but [{width_here}, 16, 1, 1] here; "
        "build the model the checkpoint was saved from (the same settings, e.g. width)"
    )


def test_a_pruned_checkpoint_of_another_width_is_refused_before_anything_changes(tmp_path):
    model, _, pruner = _pruned()  # width 4, pruned: its layers are narrower than width 4's
    path = pk.save(tmp_path / "a.pt", model, pruner=pruner)
    wide = SqueezeNet(grouped=False, width=8)
    before = {k: v.clone() for k, v in wide.state_dict().items()}
    with pytest.raises(pk.PrunekitError) as info:
        pk.load(path, model=wide)
    assert str(info.value) == _refusal(4, 8, path)
    after = wide.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in after)


def test_an_unpruned_checkpoint_of_another_width_is_refused(tmp_path):
    path = pk.save(tmp_path / "baseline.pt", SqueezeNet(grouped=False, width=8))
    with pytest.raises(pk.PrunekitError) as info:
        pk.load(path, model=SqueezeNet(grouped=False))
    assert str(info.value) == _refusal(8, 4, path)


def test_a_pruned_model_saved_without_its_pruner_fits_a_fresh_model(tmp_path):
    model, x, _ = _pruned()
    first = pk.save(tmp_path / "a.pt", model)  # the model remembers its unpruned shapes
    reloaded = pk.load(first, model=SqueezeNet(grouped=False))
    second = pk.save(tmp_path / "b.pt", reloaded)  # and so does a model rebuilt by load
    fresh = pk.load(second, model=SqueezeNet(grouped=False)).eval()
    with torch.no_grad():
        assert torch.equal(fresh(x), model(x))


def test_a_version_1_checkpoint_without_unpruned_shapes_still_loads(tmp_path):
    model, x, pruner = _pruned()
    path = pk.save(tmp_path / "a.pt", model, pruner=pruner)
    data = torch.load(path, weights_only=True)
    del data["unpruned"]
    torch.save({**data, "version": 1}, path)
    fresh = pk.load(path, model=SqueezeNet(grouped=False)).eval()
    with torch.no_grad():
        assert torch.equal(fresh(x), model(x))


def test_missing_checkpoint(tmp_path):
    with pytest.raises(pk.PrunekitError, match="does not exist"):
        pk.read_checkpoint(tmp_path / "nope.pt")


def test_failed_write_keeps_previous_file(tmp_path, monkeypatch):
    model, _, _ = _pruned()
    path = pk.save(tmp_path / "a.pt", model, meta={"v": 1})

    real_save = torch.save

    def full_disk(obj, fh, *args, **kwargs):
        real_save(obj, fh, *args, **kwargs)
        fh.truncate(fh.tell() // 2)  # half of it is on disk when the disk fills up
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError, match="No space left"):
        pk.save(path, model, meta={"v": 2})
    assert pk.read_checkpoint(path)["meta"] == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["a.pt"]


def test_non_plain_metadata_is_rejected(tmp_path):
    model, _, _ = _pruned()
    with pytest.raises(pk.PrunekitError, match="meta.obj holds a object"):
        pk.save(tmp_path / "a.pt", model, meta={"obj": object()})
