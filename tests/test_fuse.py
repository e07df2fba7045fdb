"""pk.fuse: BatchNorm folded into the layer before it, the same eval outputs, skips reported."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import prunekit as pk
from tests.engine.architectures import EmbeddingHead, MobileNetV2, ResNet, randomize_norms

TRACERS = ["fx", "hooks"]


class Untraceable(nn.Module):
    """``inner`` behind data-dependent control flow: torch.fx cannot trace it, hooks can."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x) if x.sum() > float("-inf") else x


def fuse_by(tracer: str, model: nn.Module, x: torch.Tensor) -> tuple[nn.Module, pk.FuseReport]:
    """``pk.fuse`` of ``model`` through ``tracer``; names in the report are ``model``'s own."""
    wrapped = Untraceable(model) if tracer == "hooks" else model
    fused, report = pk.fuse(wrapped, x[:1])
    assert report.traced_by == tracer
    inner = "inner."
    report.fused = [(p.removeprefix(inner), b.removeprefix(inner)) for p, b in report.fused]
    report.skipped = {k.removeprefix(inner): v for k, v in report.skipped.items()}
    return fused, report


def assert_same_outputs(fused: nn.Module, model: nn.Module, x: torch.Tensor) -> None:
    with torch.no_grad():
        torch.testing.assert_close(fused(x), model(x), atol=1e-5, rtol=0)


def batchnorms(model: nn.Module) -> int:
    return sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


CONVS = {
    "conv1d": (lambda: nn.Conv1d(4, 8, 3, padding=1), nn.BatchNorm1d, (2, 4, 10)),
    "conv2d": (lambda: nn.Conv2d(4, 8, 3, padding=1), nn.BatchNorm2d, (2, 4, 8, 8)),
    "conv3d": (lambda: nn.Conv3d(4, 8, 3, padding=1), nn.BatchNorm3d, (2, 4, 5, 5, 5)),
    "grouped": (lambda: nn.Conv2d(4, 8, 3, groups=2), nn.BatchNorm2d, (2, 4, 8, 8)),
    "depthwise": (lambda: nn.Conv2d(8, 8, 3, groups=8), nn.BatchNorm2d, (2, 8, 8, 8)),
    "multiplier": (lambda: nn.Conv2d(4, 8, 3, groups=4), nn.BatchNorm2d, (2, 4, 8, 8)),
    "no_bias": (lambda: nn.Conv2d(4, 8, 3, bias=False), nn.BatchNorm2d, (2, 4, 8, 8)),
    "strided": (lambda: nn.Conv2d(4, 8, 3, stride=2, dilation=2), nn.BatchNorm2d, (2, 4, 9, 9)),
}


@pytest.mark.parametrize("tracer", TRACERS)
@pytest.mark.parametrize("relu", [False, True], ids=["bn", "bn_relu"])
@pytest.mark.parametrize("kind", CONVS)
def test_conv_batchnorm_folds_to_the_same_outputs(kind, relu, tracer):
    torch.manual_seed(0)
    conv, norm, shape = CONVS[kind]
    layers = [conv(), norm(8)] + ([nn.ReLU(inplace=True)] if relu else [])
    model = randomize_norms(nn.Sequential(*layers)).eval()
    x = torch.randn(shape)
    fused, report = fuse_by(tracer, model, x)
    assert report.fused == [("0", "1")] and report.skipped == {}
    assert_same_outputs(fused, model, x)
    inner = fused.inner if tracer == "hooks" else fused
    assert isinstance(inner[1], nn.Identity) and inner[0].bias is not None
    assert isinstance(model[1], norm) and (kind != "no_bias" or model[0].bias is None)


def test_a_batchnorm_without_affine_parameters_folds():
    model = nn.Sequential(nn.Conv2d(3, 6, 3), nn.BatchNorm2d(6, affine=False))
    model[1].running_var.uniform_(0.5, 2.0)
    model[1].running_mean.normal_()
    model.eval()
    x = torch.randn(2, 3, 8, 8)
    fused, report = pk.fuse(model)
    assert len(report.fused) == 1
    assert_same_outputs(fused, model, x)


@pytest.mark.parametrize("tracer", TRACERS)
def test_linear_batchnorm1d_folds_when_the_inputs_show_a_2d_output(tracer):
    model = randomize_norms(nn.Sequential(nn.Linear(6, 5), nn.BatchNorm1d(5), nn.ReLU())).eval()
    x = torch.randn(4, 6)
    fused, report = fuse_by(tracer, model, x)
    assert report.fused == [("0", "1")]
    assert_same_outputs(fused, model, x)


def test_linear_needs_example_inputs_and_a_2d_output():
    model = randomize_norms(nn.Sequential(nn.Linear(6, 5), nn.BatchNorm1d(5))).eval()
    _, report = pk.fuse(model)
    assert report.fused == [] and "pass example_inputs" in report.skipped["1"]
    # (batch, length, features): BatchNorm1d normalises the length dim, not the features
    tokens = randomize_norms(nn.Sequential(nn.Linear(6, 5), nn.BatchNorm1d(7))).eval()
    fused, report = pk.fuse(tokens, torch.randn(1, 7, 6))
    assert report.fused == [] and "not (batch, features)" in report.skipped["1"]
    assert isinstance(fused[1], nn.BatchNorm1d)


@pytest.mark.parametrize("tracer", TRACERS)
@pytest.mark.parametrize(
    ("build", "count"), [(ResNet, 6), (MobileNetV2, 10), (EmbeddingHead, 3)], ids=lambda v: str(v)
)
def test_whole_networks_fold_every_batchnorm(build, count, tracer):
    torch.manual_seed(0)
    model = randomize_norms(build()).eval()
    x = torch.randn(3, 3, 16, 16)
    fused, report = fuse_by(tracer, model, x)
    assert len(report.fused) == count == batchnorms(model) and report.skipped == {}
    assert batchnorms(fused) == 0
    assert_same_outputs(fused, model, x)


def pruned_resnet() -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    model = randomize_norms(ResNet()).eval()
    x = torch.randn(3, 3, 16, 16)
    pk.Pruner(model, x[:1], criterion="l1", target=pk.Target(params=0.3)).step()
    return model.eval(), x


def test_a_pruned_model_folds():
    model, x = pruned_resnet()
    assert pk.measure(model, x[:1])["params"] < 0.8 * pk.measure(ResNet(), x[:1])["params"]
    fused, report = pk.fuse(model, x[:1])
    assert len(report.fused) == 6 and report.skipped == {}
    assert_same_outputs(fused, model, x)


class Graphs(nn.Module):
    """One foldable pair beside BatchNorms that read what they cannot be folded into."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.a, self.b, self.cat_bn = nn.Conv2d(3, 2, 1), nn.Conv2d(3, 2, 1), nn.BatchNorm2d(4)
        self.twice, self.twice_bn = nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4)
        self.shared, self.shared_bn1, self.shared_bn2 = (
            nn.Conv2d(3, 4, 1),
            nn.BatchNorm2d(4),
            nn.BatchNorm2d(4),
        )
        self.returned, self.returned_bn = nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4)
        self.again_bn = nn.BatchNorm2d(4)
        self.up, self.up_bn = nn.ConvTranspose2d(3, 4, 1), nn.BatchNorm2d(4)
        self.unused_bn = nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.bn(self.conv(x))
        out = out + self.cat_bn(torch.cat([self.a(x), self.b(x)], dim=1))  # after a concat
        twice = self.twice(x)
        out = out + self.twice_bn(twice) + twice  # its producer's output is read twice
        out = out + self.shared_bn1(self.shared(x)) + self.shared_bn2(self.shared(x))
        out = out + self.again_bn(self.again_bn(out))  # a BatchNorm called twice
        out = out + self.up_bn(self.up(x))
        returned = self.returned(x)
        return out + self.returned_bn(returned), returned  # returned: read by the caller too


@pytest.mark.parametrize("tracer", TRACERS)
def test_batchnorms_reading_what_cannot_be_folded_are_skipped_with_the_reason(tracer):
    torch.manual_seed(0)
    model = randomize_norms(Graphs()).eval()
    x = torch.randn(2, 3, 6, 6)
    fused, report = fuse_by(tracer, model, x)
    assert report.fused == [("conv", "bn")]
    reasons = report.skipped
    assert set(reasons) == {name for name in dict(model.named_children()) if "_bn" in name}
    assert "not a layer's output" in reasons["cat_bn"]
    assert "twice' is also used elsewhere" in reasons["twice_bn"]
    assert "returned' is also used elsewhere" in reasons["returned_bn"]
    assert "calls 2 times" in reasons["shared_bn1"] and "calls 2 times" in reasons["shared_bn2"]
    assert "calls it 2 times" in reasons["again_bn"]
    assert "transposed convolutions are not folded" in reasons["up_bn"]
    assert "does not call it" in reasons["unused_bn"]
    with torch.no_grad():
        for got, expected in zip(fused(x), model(x), strict=True):
            torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_batchnorms_in_training_mode_or_without_running_stats_are_skipped():
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3),
        nn.BatchNorm2d(4),
        nn.Conv2d(4, 4, 3),
        nn.BatchNorm2d(4, track_running_stats=False),
        nn.Conv2d(4, 4, 3),
        nn.BatchNorm2d(4),
    )
    model.eval()[1].train()
    x = torch.randn(2, 3, 10, 10)
    fused, report = pk.fuse(model, x[:1])
    assert report.fused == [("4", "5")]
    assert "training mode" in report.skipped["1"]
    assert "track_running_stats=False" in report.skipped["3"]
    assert fused[1].training and not fused[0].training  # every module keeps its own mode
    assert batchnorms(fused) == 2
    model[1].eval()
    fused[1].eval()
    assert_same_outputs(fused, model, x)


def test_a_model_in_training_mode_folds_nothing():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).train()
    fused, report = pk.fuse(model)
    assert report.fused == [] and "call model.eval()" in report.skipped["1"]
    assert fused.training and batchnorms(fused) == 1


def test_an_untraceable_model_needs_example_inputs():
    model = Untraceable(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))).eval()
    with pytest.raises(pk.PrunekitError, match="pass example_inputs"):
        pk.fuse(model)


def test_fuse_copies_unless_inplace():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).eval()
    fused, _ = pk.fuse(model)
    assert fused is not model and isinstance(model[1], nn.BatchNorm2d)
    same, report = pk.fuse(model, inplace=True)
    assert same is model and isinstance(model[1], nn.Identity) and len(report.fused) == 1


def test_a_folded_pruned_model_saves_and_loads(tmp_path):
    model, x = pruned_resnet()
    fused, report = pk.fuse(model, x[:1])
    assert len(report.fused) == 6
    path = pk.save(tmp_path / "fused.pt", fused)
    assert len(pk.read_checkpoint(path)["fused"]) == 6
    loaded = pk.load(path, ResNet()).eval()
    assert batchnorms(loaded) == 0 and loaded.layer1.conv1.bias is not None
    with torch.no_grad():
        assert torch.equal(loaded(x), fused(x))
    assert_same_outputs(loaded, model, x)
    again = pk.load(pk.save(tmp_path / "again.pt", loaded), ResNet()).eval()  # and once more
    with torch.no_grad():
        assert torch.equal(again(x), fused(x))


def test_a_folded_checkpoint_is_refused_by_a_model_without_those_layers(tmp_path):
    fused, _ = pk.fuse(randomize_norms(ResNet()).eval())
    path = pk.save(tmp_path / "fused.pt", fused)
    other = EmbeddingHead()
    with pytest.raises(pk.PrunekitError, match="folded BatchNorm 'stem.1' into 'stem.0'"):
        pk.load(path, other)
    assert batchnorms(other) == 3  # refused before anything changed


def test_a_checkpoint_with_corrupt_fused_pairs_is_refused(tmp_path):
    path = pk.save(tmp_path / "fused.pt", pk.fuse(nn.Sequential(nn.Conv2d(3, 4, 3)))[0])
    data = torch.load(path, weights_only=True)
    torch.save({**data, "fused": [["0"]]}, path)
    with pytest.raises(pk.PrunekitError, match="its 'fused' is not a list of layer name pairs"):
        pk.read_checkpoint(path)
