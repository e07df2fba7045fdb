"""Layer-wise Optimal Brain Surgeon for channels: the error a removal leaves after a refit.

Removing a channel deletes columns ``S`` of each layer that consumes it. If that layer is then
refitted by least squares on its inputs (what the ``reconstruct`` recovery does), the output
error that remains is ``tr(W_S [H^-1]_SS^-1 W_S^T)``, with ``H = X^T X`` the Gram of the layer's
inputs (Hassibi & Stork 1993; layer-wise: Dong et al., NeurIPS 2017; the data-driven channel
choice of ThiNet and He et al. 2017). Channels whose information the other channels carry score
low, however large their weights. The statistics come from plain forward passes on unlabeled
images: no loss, no gradients.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import nn

from prunekit.criteria.base import Criterion
from prunekit.engine.patches import layer_patches
from prunekit.errors import PrunekitError
from prunekit.registry import register_criterion

if TYPE_CHECKING:
    from prunekit.engine.groups import ChannelGroup, ParamSlice


def _dense(module: nn.Module) -> bool:
    dense = isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Linear))
    return dense and getattr(module, "groups", 1) == 1


def _output_producer(s: ParamSlice, group: ChannelGroup) -> bool:
    """A dense layer's output rows that are the model's output (``prune_outputs``): nothing
    consumes them, so no refit can make up for a removal."""
    weight = s.role == "out" and s.param_name == "weight"
    return group.reaches_output and weight and _dense(s.module)


def _consumer(s: ParamSlice) -> bool:
    """A dense conv/linear layer's input side: the layers whose refit the score assumes. Grouped
    and depth-wise convs lose the removed channel's whole group (their outputs go with the
    unit), so the error shows in the dense layer after them."""
    return s.role == "in" and s.param_name == "weight" and _dense(s.module)


@register_criterion("obs")
class OBS(Criterion):
    """Least-squares error each channel's removal leaves in its consumers after their refit.

    Needs forward passes only (:meth:`prunekit.Pruner.observing`). A unit's score is the sum,
    over the dense conv/linear layers reading it, of the output error left by an optimal refit
    without its columns, relative to that layer's output energy; a unit of the model's output
    (``prune_outputs``) scores the variance it carries relative to that output's energy, which
    no refit recovers. ``damp``: ridge added to each Gram, relative to its mean diagonal.
    ``max_positions``: rows (images x positions) sampled
    per forward pass and layer. Layers with more than ``max_features`` inputs (times kernel)
    use the Gram's diagonal alone (activation-weighted magnitude) instead of its inverse.
    """

    needs_inputs: ClassVar[bool] = True

    def __init__(
        self,
        damp: float = 1e-3,
        max_positions: int = 8192,
        max_features: int = 4096,
        seed: int = 0,
        normalize: str | None = None,
    ) -> None:
        super().__init__(normalize)
        if isinstance(damp, bool) or not isinstance(damp, (int, float)) or not damp > 0:
            raise PrunekitError(f"obs: damp={damp!r} is out of range: give a number > 0")
        for name, value in (("max_positions", max_positions), ("max_features", max_features)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise PrunekitError(f"obs: {name}={value!r} is out of range: give an int >= 1")
        self.damp = float(damp)
        self.max_positions = max_positions
        self.max_features = max_features
        self._generator = torch.Generator().manual_seed(seed)
        self._grams: dict[nn.Module, torch.Tensor] = {}
        #: per layer, the sum of its sampled input rows and their count (their mean)
        self._sums: dict[nn.Module, tuple[torch.Tensor, int]] = {}
        self._means_of: set[nn.Module] = set()

    def observed(self, groups: Sequence[ChannelGroup]) -> list[nn.Module]:
        outputs = [s.module for g in groups for s in g.slices if _output_producer(s, g)]
        self._means_of = set(outputs)  # only their scores need the inputs' mean
        consumers = [s.module for g in groups for s in g.slices if _consumer(s)]
        return list(dict.fromkeys(consumers + outputs))

    def observe(self, module: nn.Module, x: torch.Tensor) -> None:
        rows = layer_patches(module, x.detach())
        if rows.shape[0] > self.max_positions:
            pick = torch.randperm(rows.shape[0], generator=self._generator)[: self.max_positions]
            rows = rows.index_select(0, pick.to(rows.device))
        rows = rows.double()
        diagonal_only = rows.shape[1] > self.max_features
        gram = rows.pow(2).sum(0) if diagonal_only else rows.T @ rows
        known = self._grams.get(module)
        self._grams[module] = gram if known is None else known + gram
        if module in self._means_of:
            total, count = self._sums.get(module, (0.0, 0))
            self._sums[module] = (rows.sum(0) + total, rows.shape[0] + count)

    def statistics(self) -> list[torch.Tensor]:
        return list(self._grams.values())

    def reset(self) -> None:
        self._grams, self._sums = {}, {}

    def score(self, groups: Sequence[ChannelGroup], step: int) -> list[torch.Tensor]:
        if not self._grams:
            raise PrunekitError(
                "obs has no statistics: run forward passes inside `with pruner.observing():` "
                "before pruner.step()"
            )
        inverses = {m: self._inverse(g) for m, g in self._grams.items()}
        out = []
        for group in groups:
            total = torch.zeros(group.num_units, dtype=torch.float64)
            for s in group.slices:
                if s.module not in self._grams:
                    continue
                if _consumer(s):
                    total += self._slice_error(s, group.num_units, inverses[s.module])
                elif _output_producer(s, group):
                    total += self._output_share(s, group.num_units)
            out.append(total)
        return out

    def _inverse(self, gram: torch.Tensor) -> torch.Tensor:
        """The damped inverse Gram (a vector: the inverse diagonal, for diagonal-only Grams)."""
        diag = gram if gram.dim() == 1 else gram.diagonal()
        lam = self.damp * float(diag.mean().clamp_min(1e-30))
        if gram.dim() == 1:
            return 1.0 / (gram + lam)
        eye = torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)
        return torch.linalg.inv(gram + lam * eye)

    def _output_share(self, s: ParamSlice, units: int) -> torch.Tensor:
        """Per unit, the variance of its output rows (``w_i^T Cov(X) w_i``: what tells one
        input from another) relative to the layer's output energy. A feature's mean is left
        out: an offset that every input shares barely moves the comparisons an embedding
        serves (measured on the face network: dropping its features by variance loses less
        than by energy)."""
        gram = self._grams[s.module].cpu()
        total, count = self._sums[s.module]
        mean = total.cpu() / count
        w = s.module.weight.detach().double().cpu().reshape(s.module.weight.shape[0], -1)
        if gram.dim() == 1:
            energy = (w.pow(2) * gram).sum(1)
            variance = (w.pow(2) * (gram - count * mean.pow(2))).sum(1)
        else:
            energy = torch.einsum("oi,ij,oj->o", w, gram, w)
            variance = energy - count * (w @ mean).pow(2)
        share = torch.zeros(units, dtype=torch.float64)
        share.index_add_(0, s.unit.cpu(), variance.clamp_min(0)[s.index.cpu()])
        return share / energy.sum().clamp_min(1e-30)

    def _slice_error(self, s: ParamSlice, units: int, inverse: torch.Tensor) -> torch.Tensor:
        """Per unit, the refit error of removing its columns from ``s.module``, relative."""
        module = s.module
        gram = self._grams[module]
        w = module.weight.detach().double().cpu()
        kernel = w[0, 0].numel()  # columns per input channel
        w = w.reshape(w.shape[0], -1)
        inverse, gram = inverse.cpu(), gram.cpu()
        if gram.dim() == 1:
            energy = (w.pow(2) * gram).sum()
        else:
            energy = torch.einsum("oi,ij,oj->", w, gram, w)
        errors = torch.zeros(units, dtype=torch.float64)
        index, unit = s.index.cpu(), s.unit.cpu()
        # units owning the same number of channels are solved as one batch
        counts = torch.bincount(unit, minlength=units)
        for count in counts.unique().tolist():
            if count == 0:
                continue
            members = (counts == count).nonzero().reshape(-1)
            picked = torch.stack([index[unit == u] for u in members.tolist()])  # [U, count]
            cols = (picked[..., None] * kernel + torch.arange(kernel)).reshape(len(members), -1)
            ws = w[:, cols]  # [out, U, m]
            if inverse.dim() == 1:
                err = (ws.pow(2) / inverse[cols]).sum((0, 2))
            else:
                block = inverse[cols[:, :, None], cols[:, None, :]]  # [U, m, m]
                solved = torch.linalg.solve(block, ws.permute(1, 2, 0))  # [U, m, out]
                err = torch.einsum("oum,umo->u", ws, solved)
            errors[members] = err
        return errors / energy.clamp_min(1e-30)
