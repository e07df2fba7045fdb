"""The demo recovery plugin ``demo_bias_correct`` (tests/plugins/prunekit-demo-criterion):
found through the ``prunekit.recoveries`` entry point, correct on a tiny network, usable by name
from ``prunekit run``."""

from __future__ import annotations

import copy
import importlib.metadata
import json
import subprocess
import sys
from collections.abc import Iterator

import pytest
import torch
from torch import nn

import prunekit as pk
from prunekit.cli.main import main
from prunekit.recovery.base import make_recovery

try:
    VERSION = importlib.metadata.version("prunekit-demo-criterion")
except importlib.metadata.PackageNotFoundError:
    pytest.skip("tests/plugins/prunekit-demo-criterion is not installed", allow_module_level=True)

NAME = "demo_bias_correct"


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Tiny tensors on a shared machine: one intra-op thread is fastest."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ---------------------------------------------------------------------------- discovery
def test_registered_by_its_distribution_through_the_entry_point():
    recoveries = pk.registry("recoveries")
    assert NAME in pk.available("recoveries")
    assert recoveries.source(NAME) == f"prunekit-demo-criterion {VERSION}"
    assert recoveries.describe(NAME).startswith("Shift conv/linear biases")
    from prunekit_demo_criterion.recovery import BiasCorrect

    assert recoveries.get(NAME) is BiasCorrect
    assert BiasCorrect.needs_parent and not BiasCorrect.needs_task
    assert BiasCorrect.default_images == 128


def test_prunekit_list_recoveries_shows_it():
    result = subprocess.run(
        [sys.executable, "-m", "prunekit", "list", "recoveries"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    line = next(ln for ln in result.stdout.splitlines() if ln.split()[:1] == [NAME])
    assert f"prunekit-demo-criterion {VERSION}" in line


def test_an_unknown_option_value_is_a_one_line_error():
    with pytest.raises(pk.PrunekitError, match="layers='first' is unknown"):
        make_recovery(NAME, {"layers": "first"})
    with pytest.raises(pk.PrunekitError, match="has no option 'lr'"):
        make_recovery(NAME, {"lr": 0.1})


# ---------------------------------------------------------------------------- correctness
class Net(nn.Module):
    """conv (bias) -> ReLU -> conv (no bias) -> BN -> ReLU -> conv (bias) -> ReLU -> pool ->
    linear (bias): pruning shifts the mean output of every biased layer after the first."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 12, 3, padding=1)
        self.conv2 = nn.Conv2d(12, 12, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(12)
        self.conv3 = nn.Conv2d(12, 16, 3, stride=2, padding=1)
        self.head = nn.Linear(16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv1(x))
        x = torch.relu(self.bn(self.conv2(x)))
        x = torch.relu(self.conv3(x))
        return self.head(x.mean((2, 3)))


BIASED = ("conv1", "conv3", "head")


def pruned_net(seed: int = 0) -> tuple[nn.Module, nn.Module, pk.Pruner]:
    """``(pruned model, unpruned parent, pruner)``, the BatchNorm given real statistics."""
    torch.manual_seed(seed)
    model = Net()
    with torch.no_grad():
        model.bn.running_mean.uniform_(-0.2, 0.2)
        model.bn.running_var.uniform_(0.5, 1.5)
    model.eval()
    parent = copy.deepcopy(model).eval()
    pruner = pk.Pruner(
        model, torch.randn(1, 3, 8, 8), criterion="l1", target="params=0.3", round_to=None
    )
    pruner.step()
    return model, parent, pruner


def calibration(n: int = 4, size: int = 8) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return [torch.randn(size, 3, 8, 8, generator=gen) for _ in range(n)]


def layer_mean(model: nn.Module, name: str, x: torch.Tensor) -> torch.Tensor:
    """Per-channel mean output of layer ``name`` on ``x`` (float64)."""
    layer = dict(model.named_modules())[name]
    box = []
    handle = layer.register_forward_hook(lambda m, a, out: box.append(out))
    try:
        with torch.no_grad():
            model(x)
    finally:
        handle.remove()
    y = box[0].double()
    return y.mean(0) if y.dim() == 2 else y.mean((0, 2, 3))


def restricted(parent: nn.Module, name: str, x: torch.Tensor, kept: dict) -> torch.Tensor:
    """The parent's mean output of ``name`` on the channels the pruned layer kept."""
    mean = layer_mean(parent, name, x)
    return mean[torch.as_tensor(kept[name])] if name in kept else mean


def test_pruning_touched_the_layers_it_corrects():
    model, _, pruner = pruned_net()
    assert {"conv1", "conv2", "conv3"} <= set(pruner.kept)  # outputs pruned
    assert model.conv3.in_channels < 12 and model.head.in_features < 16  # inputs pruned


@pytest.mark.parametrize("how", ["budget", "option"])
def test_every_biased_layer_gets_the_parents_mean_on_exactly_the_budget(how):
    model, parent, pruner = pruned_net()
    batches = calibration(n=4, size=8)
    budget = 20  # not a multiple of the batch size: the third batch is cut to 4 images
    x = torch.cat(batches)[:budget]
    before = {n: layer_mean(model, n, x) - restricted(parent, n, x, pruner.kept) for n in BIASED}
    assert before["conv3"].abs().max() > 1e-3 and before["head"].abs().max() > 1e-3

    seen = []
    handle = parent.conv1.register_forward_pre_hook(lambda m, a: seen.append(a[0].shape[0]))
    try:
        if how == "budget":
            reports = pk.recover(
                model, parent, [NAME], batches, kept=pruner.kept, budget=pk.Budget(images=budget)
            )
        else:
            reports = pk.recover(
                model, parent, [NAME], batches, kept=pruner.kept, options={NAME: {"images": 20}}
            )
    finally:
        handle.remove()

    (report,) = reports
    assert report.method == NAME
    assert report.images == budget
    assert seen == [8, 8, 4] * len(BIASED)  # one pass of exactly the budget per layer
    assert report.stats["layers"] == len(BIASED) and report.stats["shift"] > 0
    assert not model.training
    for name in BIASED:
        got, want = layer_mean(model, name, x), restricted(parent, name, x, pruner.kept)
        assert got.shape == want.shape
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0, msg=name)
    # other images: the shift was fitted on 20 images, not on these
    other = torch.randn(6, 3, 8, 8, generator=torch.Generator().manual_seed(9))
    gap = (layer_mean(model, "head", other) - restricted(parent, "head", other, pruner.kept)).abs()
    assert gap.max() > 1e-5


def test_last_corrects_only_the_last_biased_layer():
    model, parent, pruner = pruned_net()
    batches = calibration()
    conv3 = model.conv3.bias.detach().clone()
    (report,) = pk.recover(
        model, parent, NAME, batches, kept=pruner.kept, options={NAME: {"layers": "last"}}
    )
    assert report.images == 128 and report.stats["layers"] == 1  # 4 epochs of 32
    assert torch.equal(model.conv3.bias, conv3)
    x = torch.cat(batches)
    torch.testing.assert_close(
        layer_mean(model, "head", x), restricted(parent, "head", x, pruner.kept), atol=1e-5, rtol=0
    )


@pytest.mark.parametrize("layers", ["all", "last"])
def test_reshuffled_batches_feed_the_pruned_model_and_the_parent_alike(layers):
    """A task's batches may come in a new order on each call (the toy task reshuffles its
    training set): each layer is corrected on the images of one pass, in both networks."""
    model, parent, pruner = pruned_net()
    pool = calibration(n=4, size=8)
    orders = []
    gen = torch.Generator().manual_seed(3)

    def batches():
        orders.append(torch.randperm(len(pool), generator=gen).tolist())
        return iter([pool[i] for i in orders[-1]])

    options = {NAME: {"images": 12, "layers": layers}}
    (report,) = pk.recover(model, parent, NAME, batches, kept=pruner.kept, options=options)
    assert report.images == 12 and len(orders) == (len(BIASED) if layers == "all" else 1)
    assert len({tuple(o[:2]) for o in orders}) == len(orders)  # every pass saw other images
    x = torch.cat([pool[i] for i in orders[-1]])[:12]  # the pass that measured the head
    torch.testing.assert_close(
        layer_mean(model, "head", x), restricted(parent, "head", x, pruner.kept), atol=1e-5, rtol=0
    )


def test_repeats_the_batches_when_they_hold_fewer_images_than_asked():
    model, parent, pruner = pruned_net()
    batches = calibration(n=2, size=8)
    (report,) = pk.recover(model, parent, NAME, batches, kept=pruner.kept)  # 128 by default
    assert report.images == 128
    x = torch.cat(batches)  # every image counted 8 times: the mean is the same
    torch.testing.assert_close(
        layer_mean(model, "head", x), restricted(parent, "head", x, pruner.kept), atol=1e-5, rtol=0
    )


def test_needs_the_parent():
    model, _, pruner = pruned_net()
    with pytest.raises(pk.PrunekitError, match="needs the unpruned parent"):
        pk.recover(model, None, NAME, calibration(), kept=pruner.kept)


def test_a_model_without_biases_is_left_alone():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.Flatten(), nn.Linear(144, 2, False))
    parent = copy.deepcopy(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    (report,) = pk.recover(model, parent, NAME, calibration())
    assert report.images == 0 and report.stats["layers"] == 0
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


# ---------------------------------------------------------------------------- the CLI
def test_prunekit_run_uses_it_by_name(tmp_path, capsys):
    pytest.importorskip("prunekit_toy")
    out = tmp_path / "run"
    argv = ["run", "toy", "--recovery", NAME, "--steps", "1", "--quiet"]
    code = main([*argv, "--set", "baseline.epochs=1", "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    (step,) = [r for r in log if r["step"] == 1]
    (method,) = step["recovery"]["methods"]
    assert method["method"] == NAME
    assert method["images"] == 128  # default_images: the toy task's budget does not cut it
    assert method["layers"] == 1  # the toy network's only bias is its classifier's
