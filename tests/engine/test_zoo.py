"""Coverage: CNN families written outside this project (pytorchcv, random weights) and the
face plugin's two networks, each pruned to ``params=0.4`` by l1 (local) and Taylor (global),
must land on target (40-41% removed), keep its output shape and still run forward and
backward. (Random in the local scope removes the same count from every group as l1, so it
lands where l1 does.)

pytorchcv is installed without its dependencies (``pip install --no-deps pytorchcv``: its
model modules need only torch); a case skips when its module is absent. The families pytorchcv
lacks (ConvNeXt, RepVGG, CSPDarkNet, a ViT) are re-implemented after timm in
``tests/engine/timm_families.py`` and pruned in all four criterion-scope pairs. Each case
records the fraction removed (``record_property``: ``--junitxml`` reports it).
"""

from __future__ import annotations

import pytest
import torch

import prunekit as pk
from tests.engine.timm_families import ConvNeXt, CSPDarkNet, RepVGG, VisionTransformer

#: family -> (module, builder, input size); pytorchcv's at 224, where most end in a 7x7 pool
ZOO = {
    "resnet": ("pytorchcv.models.resnet", "resnet18", 224),
    "preresnet": ("pytorchcv.models.preresnet", "preresnet18", 224),
    "resnext": ("pytorchcv.models.resnext", "resnext14_16x4d", 224),
    "seresnet": ("pytorchcv.models.seresnet", "seresnet18", 224),
    "regnet": ("pytorchcv.models.regnet", "regnetx002", 224),
    "efficientnet": ("pytorchcv.models.efficientnet", "efficientnet_b0", 224),
    "mobilenetv2": ("pytorchcv.models.mobilenetv2", "mobilenetv2_w1", 224),
    "mobilenetv3": ("pytorchcv.models.mobilenetv3", "mobilenetv3_small_w1", 224),
    "ghostnet": ("pytorchcv.models.ghostnet", "ghostnet", 224),
    "mnasnet": ("pytorchcv.models.mnasnet", "mnasnet_b1", 224),
    "proxylessnas": ("pytorchcv.models.proxylessnas", "proxylessnas_mobile", 224),
    "mixnet": ("pytorchcv.models.mixnet", "mixnet_s", 224),
    "densenet": ("pytorchcv.models.densenet", "densenet121", 224),
    "dla": ("pytorchcv.models.dla", "dla34", 224),
    "darknet": ("pytorchcv.models.darknet53", "darknet53", 224),
    "hrnet": ("pytorchcv.models.hrnet", "hrnet_w18_small_v1", 224),
    "vovnet": ("pytorchcv.models.vovnet", "vovnet27s", 224),
    "peleenet": ("pytorchcv.models.peleenet", "peleenet", 224),
    "shufflenetv2": ("pytorchcv.models.shufflenetv2", "shufflenetv2_w1", 224),
    "squeezenext": ("pytorchcv.models.squeezenext", "sqnxt23_w1", 224),
    "squeezenet": ("pytorchcv.models.squeezenet", "squeezenet_v1_1", 224),
    "squeezefaceposenet_dwc": ("prunekit_face.models", "squeezefacenet_dwc", 113),
    "squeezerfacenet": ("prunekit_face.models", "squeezefacenet", 113),
}
CASES = [("l1", "local"), ("taylor", "global")]


#: family -> builder of the timm-style re-implementations, pruned at 32x32
TIMM_STYLE = {
    "convnext": ConvNeXt,
    "repvgg": RepVGG,
    "cspdarknet": CSPDarkNet,
    "vit": VisionTransformer,
}
ALL_CASES = [(c, s) for c in ("l1", "taylor") for s in ("local", "global")]


def _lands_on_target(model, size, criterion, scope, record_property) -> None:
    x = torch.randn(1, 3, size, size)
    with torch.no_grad():
        shape = model(x).shape
    before = pk.measure(model, x)["params"]
    pruner = pk.Pruner(model, x, criterion=criterion, target="params=0.4", scope=scope, steps=1)
    if pruner.needs_grad:
        model(torch.randn(2, 3, size, size)).pow(2).mean().backward()
        pruner.accumulate()
        model.zero_grad(set_to_none=True)
    report = pruner.step()
    removed = 1 - pk.measure(model, x)["params"] / before
    record_property("removed", round(removed, 4))
    assert removed == pytest.approx(report.achieved["params"], abs=1e-12)
    assert 0.40 - 1e-12 <= removed <= 0.41, f"{criterion}-{scope}: {removed:.4f} removed"
    out = model(torch.randn(2, 3, size, size))
    assert out.shape[1:] == shape[1:]
    out.pow(2).mean().backward()
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.slow
@pytest.mark.parametrize(("criterion", "scope"), CASES, ids=[f"{c}-{s}" for c, s in CASES])
@pytest.mark.parametrize("family", list(ZOO))
def test_a_zoo_model_lands_on_target_and_still_runs(family, criterion, scope, record_property):
    module, builder, size = ZOO[family]
    torch.manual_seed(0)
    model = getattr(pytest.importorskip(module), builder)().eval()
    _lands_on_target(model, size, criterion, scope, record_property)


@pytest.mark.filterwarnings("ignore:prunekit leaves")  # the constant split and the heads: below
@pytest.mark.parametrize(("criterion", "scope"), ALL_CASES, ids=[f"{c}-{s}" for c, s in ALL_CASES])
@pytest.mark.parametrize("family", list(TIMM_STYLE))
def test_a_timm_style_model_lands_on_target_and_still_runs(
    family, criterion, scope, record_property
):
    torch.manual_seed(0)
    _lands_on_target(TIMM_STYLE[family]().eval(), 32, criterion, scope, record_property)


def test_timm_style_models_prune_layer_scales_and_keep_constant_splits_whole():
    """ConvNeXt's layer scales (bare ``nn.Parameter``s) lose their channels with the residual
    stream; CSPDarkNet splits by a constant size, so the channels through its split are kept
    whole, with the reason, and the rest pruned."""
    x = torch.randn(1, 3, 32, 32)
    convnext = ConvNeXt().eval()
    pk.Pruner(convnext, x, criterion="l1", target="params=0.4", steps=1).step()
    for stage in convnext.stages:
        block = stage[-1]
        assert block.gamma.shape == (block.conv_dw.out_channels,)
    assert convnext.stages[0][0].gamma.shape[0] < 16
    with pytest.warns(UserWarning, match="torch.split/chunk after 'stages.0.conv_exp"):
        pk.Pruner(CSPDarkNet().eval(), x, criterion="l1", target="params=0.4")


def test_a_timm_style_vit_prunes_its_mlps_and_leaves_the_heads_whole_with_the_reason():
    """The packed qkv projection is reshaped into heads along its last dim: its outputs (and
    the attention's projection back) stay whole, named in the description, and the MLP hidden
    units are pruned, so the step never breaks the model."""
    torch.manual_seed(0)
    vit = VisionTransformer().eval()
    x = torch.randn(2, 3, 32, 32)
    with pytest.warns(UserWarning, match=r"'blocks.0.attn.qkv' whole: .*\[2, 17, 96\] -> "):
        pruner = pk.Pruner(vit, x, criterion="l1", target="params=0.4", steps=1)
    left = {o.layer: o.reason for o in pruner.describe().left_out}
    assert (
        "regroups them ([2, 17, 96] -> [2, 17, 3, 4, 8], the channels last: attention heads?)"
        in left["blocks.1.attn.qkv"]
    )
    assert {g.name for g in pruner.describe().groups} == {"blocks.0.fc1", "blocks.1.fc1"}
    pruner.step()
    assert [b.attn.qkv.out_features for b in vit.blocks] == [96, 96]
    assert [b.fc1.out_features for b in vit.blocks] == [104, 104]
    assert vit(x).shape == (2, 10)
