"""The reference that defines correct removal: zero the consumers' inputs instead of pruning."""

from __future__ import annotations

import copy

import torch
from torch import nn

from prunekit import StepReport


def _plain(module: nn.Module) -> bool:
    return isinstance(module, nn.Linear) or (
        isinstance(module, nn.modules.conv._ConvNd) and module.groups == 1
    )


def masked_reference(before: nn.Module, report: StepReport) -> nn.Module:
    """A copy of the unpruned ``before`` whose consumers ignore the removed channels."""
    ref = copy.deepcopy(before)
    modules = dict(ref.named_modules())
    with torch.no_grad():
        for name, sides in report.removed.items():
            module = modules[name]
            if "in" in sides and _plain(module):
                module.weight[:, sorted(set(sides["in"]))] = 0
    return ref


def _keep(size: int, gone: list[int] | None) -> torch.Tensor:
    return torch.tensor(sorted(set(range(size)) - set(gone or [])), dtype=torch.long)


def assert_kept_weights_identical(before: nn.Module, after: nn.Module, report: StepReport) -> None:
    """Every surviving weight of ``after`` is bit-identical to its original in ``before``."""
    old = dict(before.named_modules())
    for name, module in after.named_modules():
        sides = report.removed.get(name, {})
        for pname, tensor in list(module.named_parameters(recurse=False)) + list(
            module.named_buffers(recurse=False)
        ):
            if tensor.dim() == 0:
                continue
            ref = getattr(old[name], pname)
            ref = ref.index_select(0, _keep(ref.shape[0], sides.get("out")))
            if pname == "weight" and _plain(module) and ref.dim() > 1:
                ref = ref.index_select(1, _keep(ref.shape[1], sides.get("in")))
            assert torch.equal(ref, tensor), f"{name}.{pname} changed"
