"""Least-squares reconstruction (He et al. 2017, ThiNet): refit pruned layers to the parent.

Layer by layer in forward order, the weights (and bias) of a conv/linear layer are refitted so
that, on the pruned network's own inputs to it, its output matches the parent's output of the
same layer on the kept channels. The statistics are the float64 Grams ``X^T X`` and ``X^T Y``,
accumulated batch by batch; activations are never stored. The forward passes of the pruned
network and of the parent halt at each layer (:mod:`prunekit.recovery.lockstep`), so the refit
of every layer costs one forward pass of each over the calibration images, whatever the depth.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.modules.conv import _ConvNd

from prunekit.engine.patches import layer_patches
from prunekit.errors import PrunekitError
from prunekit.recovery.base import Recovery, RecoveryContext, check_positive
from prunekit.recovery.data import stream
from prunekit.recovery.lockstep import HaltingForward, watch
from prunekit.registry import register_recovery

SUPPORTED = (nn.Conv1d, nn.Conv2d, nn.Linear)
LAYERS = ("pruned", "all")
MAX_PASSES = 64  # halted forward passes alive at once; more batches are merged into this many


def _inputs(context: RecoveryContext, images: int) -> list[torch.Tensor]:
    """The first ``images`` calibration inputs, as at most :data:`MAX_PASSES` tensors."""
    inputs = [
        context.input(batch)[:n]
        for _, batch, n in stream(context.batches, images, context.rows, "reconstruct")
    ]
    if len(inputs) <= MAX_PASSES:
        return inputs
    try:
        merged = torch.cat(inputs)
    except RuntimeError as error:
        raise PrunekitError(
            f"reconstruct: {len(inputs)} calibration batches of different shapes cannot be "
            f"merged into {MAX_PASSES} passes ({error}): give fewer, larger batches"
        ) from None
    return list(merged.tensor_split(MAX_PASSES))


def _width(module: nn.Module, side: str) -> int:
    if isinstance(module, nn.Linear):
        return module.in_features if side == "in" else module.out_features
    return module.in_channels if side == "in" else module.out_channels


def _targets(y: torch.Tensor, linear: bool) -> torch.Tensor:
    """``[positions, channels]`` rows of a layer output, in :func:`layer_patches`' order."""
    if linear:
        return y.reshape(-1, y.shape[-1])
    return y.flatten(2).transpose(1, 2).reshape(-1, y.shape[1])


@dataclass
class _Job:
    """One layer to refit: the pruned layer, the parent's, and the parent channels it keeps."""

    name: str
    layer: nn.Module
    parent: nn.Module
    kept: torch.Tensor | None

    @property
    def groups(self) -> int:
        return getattr(self.layer, "groups", 1)

    @property
    def bias(self) -> bool:
        return self.layer.bias is not None

    @property
    def features(self) -> int:
        """Unknowns per output channel: a group's inputs times the kernel, plus the bias."""
        return self.layer.weight[0].numel() + int(self.bias)

    def weights(self) -> torch.Tensor:
        """``[groups, outputs per group, features]`` float64, the bias as the last column."""
        w = self.layer.weight.detach().reshape(self.layer.weight.shape[0], -1).double()
        if self.bias:
            w = torch.cat([w, self.layer.bias.detach().double()[:, None]], 1)
        return w.reshape(self.groups, -1, w.shape[1])

    def load(self, w: torch.Tensor) -> None:
        w = w.reshape(-1, w.shape[-1])
        weight = self.layer.weight
        with torch.no_grad():
            weight.copy_(w[:, : weight[0].numel()].reshape(weight.shape))
            if self.bias:
                self.layer.bias.copy_(w[:, -1])


def _error(
    w: torch.Tensor, gram: torch.Tensor, cross: torch.Tensor, yy: torch.Tensor
) -> torch.Tensor:
    """Per group ``sum ||X w^T - Y||²`` from the Grams: ``tr(W G W^T) - 2 tr(W C) + tr(Y^T Y)``."""
    quad = torch.einsum("goi,gij,goj->g", w, gram, w)
    return quad - 2 * torch.einsum("goi,gio->g", w, cross) + yy


def _check_count(value: object, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise PrunekitError(f"reconstruct: {name}={value!r} is out of range: give an int >= 1")


@register_recovery("reconstruct")
class Reconstruct(Recovery):
    """Ridge least-squares refit of pruned conv/linear layers to the parent (He et al., ThiNet).

    ``layers="pruned"`` refits the layers whose input is narrower than the parent's; ``"all"``
    every Conv1d/Conv2d/Linear. Grouped and depth-wise convolutions are solved group by group.
    ``ridge`` (relative to the Gram's mean diagonal) pulls the solution toward the current
    weights, so directions the calibration data does not excite keep them and the error on the
    calibration data can only go down (a fit that rounding makes worse is discarded).
    ``max_positions`` subsamples the rows (images x positions) of each batch, ``max_features``
    skips layers with more unknowns per output than that. ``images``: calibration images; each
    layer's statistics come from the same images, which count once (plus one image to find the
    forward order).
    """

    needs_parent = True
    default_images = 256

    def __init__(
        self,
        images: int | None = None,
        layers: str = "pruned",
        ridge: float = 1e-6,
        max_positions: int | None = 8192,
        max_features: int = 4096,
        seed: int | None = None,
    ) -> None:
        super().__init__(images)
        if layers not in LAYERS:
            raise PrunekitError(f"reconstruct: layers={layers!r} is unknown: use 'pruned' or 'all'")
        if max_positions is not None:
            _check_count(max_positions, "max_positions")
        _check_count(max_features, "max_features")
        self.layers = layers
        self.ridge = check_positive(ridge, "ridge", "reconstruct")
        self.max_positions = max_positions
        self.max_features = max_features
        self.seed = seed

    def run(
        self, model: nn.Module, context: RecoveryContext, images: int, deadline: float | None
    ) -> dict[str, float]:
        model.eval()
        jobs = self._ordered(self._jobs(model, context), model, context)
        if not jobs:
            context.log("reconstruct: no layer to refit")
            return {"images": 0, "layers": 0}
        seed = self.seed if self.seed is not None else torch.initial_seed()
        generator = torch.Generator().manual_seed(seed)
        inputs = _inputs(context, images)
        handles = watch([job.layer for job in jobs], "input")
        handles += watch([job.parent for job in jobs], "output")
        pruned = [HaltingForward(model, x) for x in inputs]
        parents = [HaltingForward(context.parent, x) for x in inputs]
        before, after = [], []
        deficient: dict[str, tuple[int, int]] = {}  # layer -> (rank, unknowns) of its Gram
        try:
            for job in jobs:
                if deadline is not None and time.monotonic() >= deadline:
                    context.log(f"reconstruct: out of time before {job.name!r}; later layers kept")
                    break
                fit = self._fit(job, pruned, parents, context, generator, deficient)
                if fit is not None:
                    before.append(fit[0])
                    after.append(fit[1])
        finally:
            for forward in pruned + parents:
                forward.close()
            for handle in handles:
                handle.remove()
        model.eval()
        if deficient:  # one line per step, not one per layer
            name, (rank, d) = min(deficient.items(), key=lambda item: item[1][0] / item[1][1])
            context.log(
                f"reconstruct: {len(deficient)} of {len(before)} layers have a rank-deficient "
                f"input Gram (fewest: {name!r}, rank {rank} of {d}); the ridge keeps their old "
                "weights where the images do not determine them"
            )
        stats: dict[str, float] = {"images": sum(len(x) for x in inputs), "layers": len(before)}
        if before:
            stats["error_before"] = sum(before) / len(before)
            stats["error_after"] = sum(after) / len(after)
        return stats

    def _jobs(self, model: nn.Module, context: RecoveryContext) -> list[_Job]:
        """The layers to refit, each checked against the parent (mismatches skipped, logged)."""
        parents = dict(context.parent.named_modules())
        jobs = []
        for name, layer in model.named_modules():
            if not isinstance(layer, (_ConvNd, nn.Linear)):
                continue

            def skip(why: str, name: str = name) -> None:
                context.log(f"reconstruct: skipped {name!r}: {why}")

            parent = parents.get(name)
            if parent is None or type(parent) is not type(layer):
                skip("the parent has no layer of that name and type")
                continue
            if self.layers == "pruned" and _width(layer, "in") >= _width(parent, "in"):
                continue
            if not isinstance(layer, SUPPORTED):
                skip(f"{type(layer).__name__} is not supported (Conv1d, Conv2d and Linear are)")
                continue
            out, parent_out = _width(layer, "out"), _width(parent, "out")
            kept = context.kept.get(name)
            if kept is None and out != parent_out:
                skip(f"{out} outputs against the parent's {parent_out} and no kept entry for it")
                continue
            if kept is not None and (len(kept) != out or int(kept.max()) >= parent_out):
                skip(f"kept has {len(kept)} channels for {out} outputs (parent: {parent_out})")
                continue
            job = _Job(name, layer, parent, kept)
            if job.features > self.max_features:
                skip(f"{job.features} unknowns per output exceed max_features={self.max_features}")
                continue
            jobs.append(job)
        return jobs

    def _ordered(self, jobs: list[_Job], model: nn.Module, context: RecoveryContext) -> list[_Job]:
        """``jobs`` in the order a forward pass calls them (one image); layers called more than
        once per pass or not at all are skipped."""
        if not jobs:
            return []
        calls: list[str] = []
        handles = [
            job.layer.register_forward_pre_hook(lambda *_, name=job.name: calls.append(name))
            for job in jobs
        ]
        try:
            first = next(iter(context.batches()), None)
            if first is None:
                raise PrunekitError("reconstruct: the batches hold no images: pass non-empty ones")
            with torch.no_grad():
                model(context.input(first)[:1])
        finally:
            for h in handles:
                h.remove()
        by_name = {job.name: job for job in jobs}
        ordered = []
        for name in dict.fromkeys(calls):
            if calls.count(name) == 1:
                ordered.append(by_name[name])
            else:
                context.log(f"reconstruct: skipped {name!r}: called {calls.count(name)} times")
        for name in by_name.keys() - set(calls):
            context.log(f"reconstruct: skipped {name!r}: not called by the forward pass")
        return ordered

    def _fit(
        self,
        job: _Job,
        pruned: list[HaltingForward],
        parents: list[HaltingForward],
        context: RecoveryContext,
        generator: torch.Generator,
        deficient: dict[str, tuple[int, int]],
    ) -> tuple[float, float] | None:
        """Refit one layer; ``(relative error before, after)``, or None when skipped. Every
        halted pass is moved past the layer, skipped or not. A rank-deficient input Gram is
        noted in ``deficient``."""
        g, d = job.groups, job.features
        device = job.layer.weight.device
        gram = torch.zeros(g, d, d, dtype=torch.float64, device=device)
        cross: torch.Tensor | None = None
        yy = torch.zeros(g, dtype=torch.float64, device=device)
        linear = isinstance(job.layer, nn.Linear)
        mismatch = None
        for own, parent in zip(pruned, parents, strict=True):
            xs = layer_patches(job.layer, own.until(job.layer))
            ys = _targets(parent.until(job.parent), linear)
            if mismatch is not None or xs.shape[0] != ys.shape[0]:
                mismatch = mismatch or (xs.shape[0], ys.shape[0])
                continue
            if job.kept is not None:
                ys = ys.index_select(1, job.kept.to(ys.device))
            if self.max_positions is not None and xs.shape[0] > self.max_positions:
                pick = torch.randperm(xs.shape[0], generator=generator)[: self.max_positions]
                pick = pick.to(xs.device)
                xs, ys = xs.index_select(0, pick), ys.index_select(0, pick)
            rows = xs.shape[0]
            xg = xs.double().reshape(rows, g, -1).transpose(0, 1)
            if job.bias:
                xg = torch.cat([xg, xg.new_ones(g, rows, 1)], 2)
            yg = ys.double().reshape(rows, g, -1).transpose(0, 1)
            gram += xg.transpose(1, 2) @ xg
            step = xg.transpose(1, 2) @ yg
            cross = step if cross is None else cross + step
            yy += yg.pow(2).sum((1, 2))
        if mismatch is not None:
            context.log(
                f"reconstruct: skipped {job.name!r}: {mismatch[0]} output positions against "
                f"the parent's {mismatch[1]}"
            )
            return None
        if cross is None:
            return None
        old = job.weights()
        rank = int(torch.linalg.matrix_rank(gram, hermitian=True).min())
        if rank < gram.shape[-1]:
            deficient[job.name] = (rank, gram.shape[-1])
        new = self._solve(gram, cross, old)
        err_old, err_new = _error(old, gram, cross, yy), _error(new, gram, cross, yy)
        better = err_new <= err_old
        final = torch.where(better[:, None, None], new, old)
        job.load(final)
        total = float(yy.sum())
        scale = 1.0 / total if total > 0 else 0.0
        err_final = torch.where(better, err_new, err_old)
        return float(err_old.sum()) * scale, float(err_final.sum()) * scale

    def _solve(self, gram: torch.Tensor, cross: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
        """``argmin ||X W^T - Y||² + λ ||W - W_old||²`` per group, λ relative to the Gram."""
        d = gram.shape[-1]
        diag = gram.diagonal(dim1=1, dim2=2).mean(1)
        lam = (self.ridge * diag).clamp_min(1e-150)[:, None, None]
        eye = torch.eye(d, dtype=gram.dtype, device=gram.device)
        a = gram + lam * eye
        b = cross + lam * old.transpose(1, 2)
        chol, info = torch.linalg.cholesky_ex(a)
        solution = torch.linalg.solve(a, b) if bool(info.any()) else torch.cholesky_solve(b, chol)
        return solution.transpose(1, 2)
