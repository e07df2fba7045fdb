"""BatchNorm recalibration: re-estimate running statistics after the channels changed."""

from __future__ import annotations

import time
import warnings

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from prunekit.recovery.base import Recovery, RecoveryContext
from prunekit.recovery.data import stream
from prunekit.registry import register_recovery


class _Moments:
    """Per-channel count, mean and sum of squared deviations, merged batch by batch (Chan et
    al.) in float64, so the result is the exact pooled mean and variance of every image."""

    def __init__(self) -> None:
        self.count = 0
        self.mean: torch.Tensor | None = None
        self.m2: torch.Tensor | None = None

    def add(self, x: torch.Tensor) -> None:
        x = x.detach().transpose(0, 1).reshape(x.shape[1], -1).double()
        n = x.shape[1]
        mean = x.mean(1)
        m2 = (x - mean[:, None]).pow(2).sum(1)
        if self.mean is None or self.m2 is None:
            self.count, self.mean, self.m2 = n, mean, m2
            return
        total = self.count + n
        delta = mean - self.mean
        self.mean = self.mean + delta * (n / total)
        self.m2 = self.m2 + m2 + delta.pow(2) * (self.count * n / total)
        self.count = total


@register_recovery("bn_recalibrate")
class BNRecalibrate(Recovery):
    """Re-estimate every BatchNorm's running mean/var on calibration images (no gradients).

    The BatchNorm layers run in train mode (normalising with batch statistics, as when the
    statistics were first estimated) and everything else in eval mode (dropout off). The new
    statistics are the pooled mean and unbiased variance of each layer's input over exactly
    ``images`` images, whatever the batch sizes.
    """

    default_images = 256

    def __init__(self, images: int | None = None) -> None:
        super().__init__(images)

    def run(
        self, model: nn.Module, context: RecoveryContext, images: int, deadline: float | None
    ) -> dict[str, float]:
        norms = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
        if not norms:
            warnings.warn(
                "bn_recalibrate: the model has no BatchNorm layer with running statistics, so "
                "there is nothing to recalibrate; drop 'bn_recalibrate' from its recovery methods",
                stacklevel=2,
            )
            return {"images": 0, "layers": 0}
        moments = {bn: _Moments() for bn in norms}
        handles = [
            bn.register_forward_pre_hook(lambda mod, args: moments[mod].add(args[0]))
            for bn in norms
        ]
        used = steps = 0
        model.eval()
        for bn in norms:
            bn.train()
        try:
            with torch.no_grad():
                for _, batch, n in stream(context.batches, images, context.rows, "bn_recalibrate"):
                    if deadline is not None and time.monotonic() >= deadline:
                        break
                    model(context.input(batch)[:n])
                    used, steps = used + n, steps + 1
        finally:
            for h in handles:
                h.remove()
            model.eval()
        with torch.no_grad():
            for bn, m in moments.items():
                if m.count > 1 and m.mean is not None and m.m2 is not None:
                    bn.running_mean.copy_(m.mean)
                    bn.running_var.copy_(m.m2 / (m.count - 1))
                    if bn.num_batches_tracked is not None:  # as if estimated from scratch
                        bn.num_batches_tracked.fill_(steps)
        return {"images": used, "layers": len(norms)}
