"""Fine-tuning with the task's own loss, to the image."""

from __future__ import annotations

import time

from torch import nn

from prunekit.recovery.base import Recovery, RecoveryContext, check_positive
from prunekit.recovery.data import stream, truncate
from prunekit.registry import register_recovery


@register_recovery("finetune")
class Finetune(Recovery):
    """Fine-tune with the task's own loss for exactly ``images`` images, in train mode.

    Batches come from ``task.train_batches()`` (epochs repeat as needed; the last batch is cut
    short), the loss from ``task.loss`` and the optimiser from ``task.make_optimizer(model, lr)``.
    """

    needs_task = True
    extra_training = True
    default_images = 1024

    def __init__(self, images: int | None = None, lr: float = 0.01) -> None:
        super().__init__(images)
        self.lr = check_positive(lr, "lr", "finetune")

    def run(
        self, model: nn.Module, context: RecoveryContext, images: int, deadline: float | None
    ) -> dict[str, float]:
        task = context.task
        optimizer = task.make_optimizer(model, self.lr)
        used, steps, losses = 0, 0, []
        model.train()
        try:
            for _, batch, n in stream(task.train_batches, images, context.rows, "finetune"):
                if deadline is not None and time.monotonic() >= deadline:
                    break
                optimizer.zero_grad(set_to_none=True)
                loss = task.loss(model, truncate(batch, n, context.rows(batch)))
                loss.backward()
                optimizer.step()
                losses.append(float(loss.detach()))
                used, steps = used + n, steps + 1
        finally:
            optimizer.zero_grad(set_to_none=True)
            model.eval()
        stats: dict[str, float] = {"images": used, "steps": steps}
        if losses:
            stats |= {"loss_first": losses[0], "loss_last": losses[-1]}
        return stats
