"""SqueezeNet face networks: exact sizes, shapes, names and torch-pruning traceability."""

from __future__ import annotations

import pytest
import torch
import torch_pruning as tp
from torch import nn

from prunekit_face.models import Fire, SqueezeFaceNet, squeezefacenet, squeezefacenet_dwc


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_parameter_counts_match_the_papers() -> None:
    assert n_params(squeezefacenet(bn=False)) == 1_235_496
    assert n_params(squeezefacenet_dwc()) == 694_056
    # BN drops the 3,944 conv biases (64 + 320 squeeze + 2,560 expand + 1,000) and adds a
    # scale and shift per channel: 2 * 3,944 = 7,888.
    assert n_params(squeezefacenet()) == 1_235_496 - 3_944 + 7_888
    assert n_params(squeezefacenet_dwc(bn=True)) == 694_056 - 3_944 + 7_888


@pytest.mark.parametrize("builder", [squeezefacenet, squeezefacenet_dwc])
def test_pooling_follows_the_matlab_sizes(builder) -> None:
    model = builder().eval()
    sizes = {}
    for name in ("pool1", "features.pool4", "features.pool8", "conv10"):
        module = model.get_submodule(name)
        module.register_forward_hook(lambda m, i, o, name=name: sizes.update({name: o.shape}))
    with torch.no_grad():
        out = model(torch.randn(2, 3, 113, 113))
    assert out.shape == (2, 1000)
    assert sizes == {
        "pool1": (2, 64, 56, 56),
        "features.pool4": (2, 256, 27, 27),
        "features.pool8": (2, 512, 13, 13),
        "conv10": (2, 1000, 13, 13),
    }


def test_any_input_size_from_15_pixels() -> None:
    model = squeezefacenet(embedding_size=128).eval()
    with torch.no_grad():
        assert model(torch.randn(3, 3, 64, 64)).shape == (3, 128)
        assert model(torch.randn(1, 3, 15, 15)).shape == (1, 128)


def test_module_names_and_topology() -> None:
    model = squeezefacenet_dwc()
    names = dict(model.named_modules())
    assert isinstance(model, SqueezeFaceNet)
    assert isinstance(names["conv10"], nn.Conv2d)
    assert isinstance(names["features.fire9"], Fire)
    assert isinstance(names["features.fire2.squeeze_relu"], nn.ReLU)
    assert [n for n in names if n.startswith("features.") and n.count(".") == 1] == [
        "features.fire2",
        "features.fire3",
        "features.fire4",
        "features.pool4",
        "features.fire5",
        "features.fire6",
        "features.fire7",
        "features.fire8",
        "features.pool8",
        "features.fire9",
    ]
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    fire5 = model.features.fire5
    assert (fire5.squeeze.in_channels, fire5.squeeze.out_channels) == (256, 32)
    assert fire5.expand1x1.out_channels == fire5.expand3x3.out_channels == 128
    assert (fire5.expand3x3.groups, fire5.expand3x3.weight.shape) == (32, (128, 1, 3, 3))
    assert squeezefacenet().features.fire5.expand3x3.groups == 1


def test_fire_concatenates_expand1x1_then_expand3x3() -> None:
    fire = Fire(4, 2, 3, bn=False, depthwise=False).eval()
    x = torch.randn(1, 4, 5, 5)
    with torch.no_grad():
        squeezed = torch.relu(fire.squeeze(x))
        expected = torch.cat(
            [torch.relu(fire.expand1x1(squeezed)), torch.relu(fire.expand3x3(squeezed))], 1
        )
        assert torch.equal(fire(x), expected)


def test_width_and_channels() -> None:
    model = squeezefacenet(width=0.5, in_channels=1, embedding_size=64)
    assert model.conv1.in_channels == 1
    assert model.conv1.out_channels == 32
    assert model.features.fire2.squeeze.out_channels == 8
    assert model.features.fire2.expand3x3.out_channels == 32
    assert model.conv10.in_channels == 256
    assert squeezefacenet(width=0.01).features.fire2.squeeze.out_channels == 1


@pytest.mark.parametrize("builder", [squeezefacenet, squeezefacenet_dwc])
def test_torch_pruning_traces_the_fire_coupling(builder) -> None:
    model = builder().eval()
    graph = tp.DependencyGraph().build_dependency(model, torch.randn(1, 3, 113, 113))
    group = graph.get_pruning_group(
        model.features.fire2.squeeze, tp.prune_conv_out_channels, idxs=[0]
    )
    pruned_inputs = {
        dep.target.module for dep, _ in group if dep.handler == tp.prune_conv_in_channels
    }
    assert pruned_inputs == {model.features.fire2.expand1x1, model.features.fire2.expand3x3}
