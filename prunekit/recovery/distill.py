"""Label-free distillation: train the pruned network to reproduce its unpruned parent."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.dropout import _DropoutNd

from prunekit.errors import PrunekitError
from prunekit.recovery.base import Recovery, RecoveryContext, check_positive
from prunekit.recovery.data import stream
from prunekit.registry import register_recovery

LOSSES = ("cosine", "mse", "kl")
SCHEDULES = ("constant", "cosine")
Features = tuple[torch.Tensor, dict[str, torch.Tensor]]


def output_loss(student: torch.Tensor, teacher: torch.Tensor, loss: str, T: float) -> torch.Tensor:
    """Mean over the batch of ``1 - cos`` (``"cosine"``), squared distance of L2-normalised
    vectors (``"mse"``) or ``T²``-scaled KL(teacher || student) at temperature ``T`` (``"kl"``)."""
    s, t = student.flatten(1).float(), teacher.flatten(1).float()
    if loss == "cosine":
        return 1 - F.cosine_similarity(s, t, dim=1).mean()
    if loss == "mse":
        return (F.normalize(s, dim=1) - F.normalize(t, dim=1)).pow(2).sum(1).mean()
    log_s, log_t = F.log_softmax(s / T, dim=1), F.log_softmax(t / T, dim=1)
    return F.kl_div(log_s, log_t, log_target=True, reduction="batchmean") * T * T


def feature_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Squared distance of per-sample L2-normalised feature maps, averaged over the batch."""
    s, t = student.flatten(1).float(), teacher.flatten(1).float()
    return (F.normalize(s, dim=1) - F.normalize(t, dim=1)).pow(2).sum(1).mean()


def shifted(x: torch.Tensor, pixels: int, generator: torch.Generator) -> torch.Tensor:
    """Each image of ``x`` (N, C, H, W) translated by its own random offset of up to ``pixels``
    in each direction, the border reflected."""
    n, _, h, w = x.shape
    if pixels >= min(h, w):
        raise PrunekitError(
            f"distill: shift={pixels} is not smaller than the {h}x{w} images: give a smaller shift"
        )
    padded = F.pad(x, (pixels, pixels, pixels, pixels), mode="reflect")
    dy, dx = torch.randint(0, 2 * pixels + 1, (2, n), generator=generator).tolist()
    return torch.stack([padded[i, :, y : y + h, z : z + w] for i, (y, z) in enumerate(zip(dy, dx))])


def _tensor(value: object, where: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise PrunekitError(f"distill: {where} is a {type(value).__name__}, not a tensor")
    return value


def _forward(model: nn.Module, x: torch.Tensor, layers: Sequence[str], who: str) -> Features:
    """``model(x)`` and the outputs of its ``layers``, captured by forward hooks."""
    modules = dict(model.named_modules())
    missing = [n for n in layers if n not in modules]
    if missing:
        raise PrunekitError(
            f"distill: the {who} has no layer {missing[0]!r}: name modules of model.named_modules()"
        )
    captured: dict[str, torch.Tensor] = {}

    def hook(name: str):
        def keep(module: nn.Module, args: object, output: object) -> None:
            captured.setdefault(name, _tensor(output, f"the output of {who} layer {name!r}"))

        return keep

    handles = [modules[n].register_forward_hook(hook(n)) for n in layers]
    try:
        out = _tensor(model(x), f"the {who}'s output")
    finally:
        for h in handles:
            h.remove()
    return out, captured


@register_recovery("distill")
class Distill(Recovery):
    """Label-free distillation from the unpruned parent, with Adam, to the image.

    ``loss``: ``"cosine"`` (default for embeddings), ``"mse"`` on L2-normalised vectors, or
    ``"kl"`` at temperature ``T`` (default for logits). ``flip`` also trains on horizontally
    flipped inputs (each flipped copy counts as an image). BatchNorm layers stay in eval mode
    unless ``bn_train``, so that a few hundred images cannot corrupt their running statistics, and
    dropout layers are off unless ``dropout``: the teacher's outputs are deterministic, and on few
    images dropout noise only slows matching them.
    ``layers`` (MiR-style) also match these intermediate layers' outputs, restricted to their
    kept channels, with weight ``layer_weight``. ``batch``: rows per optimizer step; each
    calibration batch (with its flipped copy) is split into steps of at most that many rows, so
    a small image budget still takes enough steps (default: one step per calibration batch).
    ``schedule``: ``"constant"`` learning rate, or ``"cosine"`` decay from ``lr`` to zero over
    the image budget (a short run then ends on small steps instead of on Adam's noise).
    ``shift``: translate every image by a random offset of up to this many pixels (reflected
    at the border), the same view for parent and model, so that a budget of several passes over
    a small calibration set shows new images on each pass instead of repeating the same ones.
    Teacher outputs (and features) of every calibration batch are cached in the context, except
    with ``shift``, whose views are new each time and go through the parent as they come.
    """

    needs_parent = True
    default_images = 512

    def __init__(
        self,
        images: int | None = None,
        lr: float = 3e-4,
        weight_decay: float = 0.0,
        loss: str | None = None,
        T: float = 4.0,
        flip: bool = False,
        bn_train: bool = False,
        dropout: bool = False,
        layers: Sequence[str] | None = None,
        layer_weight: float = 1.0,
        batch: int | None = None,
        schedule: str = "constant",
        shift: int = 0,
    ) -> None:
        super().__init__(images)
        if loss not in (None, *LOSSES):
            raise PrunekitError(
                f"distill: loss={loss!r} is unknown: use {', '.join(map(repr, LOSSES))} or None"
            )
        if (
            isinstance(weight_decay, bool)
            or not isinstance(weight_decay, (int, float))
            or not (weight_decay >= 0)
        ):
            raise PrunekitError(
                f"distill: weight_decay={weight_decay!r} is out of range: give a number >= 0"
            )
        if isinstance(layers, str):
            raise PrunekitError(f"distill: layers={layers!r} must be a list of layer names")
        self.lr = check_positive(lr, "lr", "distill")
        self.weight_decay = float(weight_decay)
        self.loss = loss
        self.T = check_positive(T, "T", "distill")
        self.flip = bool(flip)
        self.bn_train = bool(bn_train)
        self.dropout = bool(dropout)
        self.layers = list(layers or [])
        self.layer_weight = check_positive(layer_weight, "layer_weight", "distill")
        if batch is not None and (
            isinstance(batch, bool) or not isinstance(batch, int) or batch < 1
        ):
            raise PrunekitError(
                f"distill: batch={batch!r} is out of range: give an int >= 1 or None"
            )
        self.batch = batch
        if schedule not in SCHEDULES:
            raise PrunekitError(
                f"distill: schedule={schedule!r} is unknown: use "
                f"{' or '.join(map(repr, SCHEDULES))}"
            )
        self.schedule = schedule
        if isinstance(shift, bool) or not isinstance(shift, int) or shift < 0:
            raise PrunekitError(f"distill: shift={shift!r} is out of range: give an int >= 0")
        self.shift = shift

    def run(
        self, model: nn.Module, context: RecoveryContext, images: int, deadline: float | None
    ) -> dict[str, float]:
        parent = context.parent
        loss_name = self.loss or ("cosine" if context.outputs == "embedding" else "kl")
        params = [p for p in model.parameters() if p.requires_grad]
        if not params:
            raise PrunekitError("distill: the model has no trainable parameter")
        optimizer = torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay)
        copies = 2 if self.flip else 1
        used, steps, losses = 0, 0, []

        # Drawn from the run's seed, so that a step run again (a resume) sees the same views.
        generator = torch.Generator().manual_seed(torch.initial_seed())

        def teacher(index: int, x: torch.Tensor, flipped: bool) -> Features:
            with torch.no_grad():
                if self.shift:
                    return _forward(parent, x, self.layers, "parent")
                key = ("distill", index, flipped, tuple(self.layers))
                return context.cached(key, x, lambda: _forward(parent, x, self.layers, "parent"))

        model.train()
        for m in model.modules():
            if (isinstance(m, _BatchNorm) and not self.bn_train) or (
                isinstance(m, _DropoutNd) and not self.dropout
            ):
                m.eval()

        def rows(batch: object) -> int:
            return copies * context.rows(batch)

        try:
            for index, batch, n in stream(context.batches, images, rows, "distill"):
                if deadline is not None and time.monotonic() >= deadline:
                    break
                x = context.input(batch)
                seen = [x, torch.flip(x, dims=[-1])] if self.flip and n > x.shape[0] else [x]
                if self.shift:
                    seen = [shifted(v, self.shift, generator) for v in seen]
                views = [(v, teacher(index, v, i == 1)) for i, v in enumerate(seen)]
                xs = torch.cat([v[0] for v in views])[:n]
                t_out = self._kept_output(torch.cat([v[1][0] for v in views])[:n], context)
                t_feats = {
                    name: torch.cat([v[1][1][name] for v in views])[:n] for name in self.layers
                }
                size = self.batch or n
                for start in range(0, n, size):
                    part = slice(start, start + size)
                    if self.schedule == "cosine":
                        done = (used + start) / images
                        for g in optimizer.param_groups:
                            g["lr"] = self.lr * 0.5 * (1 + math.cos(math.pi * done))
                    s_out, s_feats = _forward(model, xs[part], self.layers, "model")
                    loss = output_loss(s_out, t_out[part], loss_name, self.T)
                    for name in self.layers:
                        t_feat = self._restrict(name, t_feats[name][part], s_feats[name], context)
                        loss = loss + self.layer_weight * feature_loss(s_feats[name], t_feat)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    losses.append(float(loss.detach()))
                    steps += 1
                used += n
        finally:
            optimizer.zero_grad(set_to_none=True)
            model.eval()
        stats: dict[str, float] = {"images": used, "steps": steps}
        if losses:
            stats |= {"loss_first": losses[0], "loss_last": losses[-1]}
        return stats

    @staticmethod
    def _kept_output(teacher: torch.Tensor, context: RecoveryContext) -> torch.Tensor:
        """The parent's output on the features the pruned model still returns."""
        kept = context.output_kept
        if kept is None:
            return teacher
        if teacher.dim() < 2 or int(kept.max()) >= teacher.shape[1]:
            raise PrunekitError(
                f"distill: the parent's output {tuple(teacher.shape)} has no feature "
                f"{int(kept.max())} of the kept output: prune_outputs needs an output whose "
                "features are the channels of its last layer (e.g. pooled, then flattened)"
            )
        return teacher.index_select(1, kept.to(teacher.device))

    @staticmethod
    def _restrict(
        name: str, teacher: torch.Tensor, student: torch.Tensor, context: RecoveryContext
    ) -> torch.Tensor:
        """The teacher's features of layer ``name`` on the student's kept channels."""
        kept = context.kept.get(name)
        if kept is not None:
            teacher = teacher.index_select(1, kept.to(teacher.device))
        if teacher.shape != student.shape:
            raise PrunekitError(
                f"distill: layer {name!r} gives {tuple(student.shape)} in the model but "
                f"{tuple(teacher.shape)} in the parent (after kept): choose conv/linear layers "
                "whose kept channels are known, or layers that were not pruned"
            )
        return teacher
