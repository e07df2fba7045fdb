"""Fine-tuning with the task loss, to the image."""

from __future__ import annotations

import torch
import torch.nn.functional as F

import prunekit as pk
from prunekit.recovery import recover
from tests.recovery.nets import ConvNet, RowCounter, prune


class ToyTask(pk.Task):
    """Six-way classification of random images (labels are a fixed function of the input)."""

    def __init__(self, batch_size: int = 8, n: int = 3) -> None:
        super().__init__({})
        gen = torch.Generator().manual_seed(0)
        self.data = []
        for _ in range(n):
            x = torch.randn(batch_size, 3, 8, 8, generator=gen)
            self.data.append((x, x.mean((1, 2, 3)).mul(20).long().clamp(-3, 2) + 3))

    def train_batches(self):
        return list(self.data)

    def loss(self, model, batch):
        x, y = batch
        assert len(x) == len(y)
        return F.cross_entropy(model(x), y)


def test_budget_is_honoured_to_the_image_and_the_loss_drops():
    torch.manual_seed(0)
    model = ConvNet().eval()
    prune(model)
    task = ToyTask()
    with torch.no_grad():
        before = float(sum(task.loss(model, b) for b in task.data))
    counter = RowCounter(model)
    (report,) = recover(
        model, None, "finetune", task=task, options={"finetune": {"images": 125, "lr": 0.05}}
    )
    assert report.images == counter.rows == 125  # 5 epochs of 24, then 5 of a sixth
    assert report.stats["steps"] == 16
    assert not model.training
    counter.handle.remove()
    with torch.no_grad():
        assert float(sum(task.loss(model, b) for b in task.data)) < before
