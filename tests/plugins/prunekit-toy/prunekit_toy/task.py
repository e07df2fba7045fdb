"""A complete prunekit task in one file: model, data, loss and evaluation.

The problem is synthetic so it runs anywhere in seconds: every class is a smooth random
"prototype" image and each sample is its class's prototype under heavy Gaussian noise. A small
CNN learns it to about 99 % test accuracy in a few epochs; pruning hurts, fine-tuning helps.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from prunekit import Settings, Task

Batch = tuple[torch.Tensor, torch.Tensor]


class ToyNet(nn.Module):
    """Three conv-BN-ReLU blocks, global average pooling and a linear classifier."""

    def __init__(self, classes: int, width: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = [3, width, 2 * width, 4 * width]
        for c_in, c_out in itertools.pairwise(channels):
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out)]
            layers += [nn.ReLU(inplace=True), nn.MaxPool2d(2)]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(channels[-1], classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).mean(dim=(2, 3)))


class ToySettings(Settings):
    """The toy task's own section: `prunekit run toy --set toy.width=8` is checked against it."""

    classes: int = Field(4, ge=2, description="Number of classes.")
    image_size: int = Field(16, ge=8, description="Height and width of the images.")
    train_samples: int = Field(512, ge=1, description="Training images.")
    test_samples: int = Field(256, ge=1, description="Test images.")
    batch_size: int = Field(64, ge=1, description="Training and evaluation batch size.")
    width: int = Field(16, ge=1, description="Channels of the first conv block.")
    noise: float = Field(3.0, ge=0, description="Standard deviation of the pixel noise.")
    data_seed: int = Field(
        0, ge=0, description="Seed of the data: it stays fixed while `seed` varies."
    )
    data_dir: str | None = Field(
        None,
        description="Folder holding the dataset as `toy-data.pt` (written there on first use); "
        "`null` = generate it in memory. Set by `--data DIR`.",
    )
    batch_delay: float = Field(
        0.0, ge=0, description="Seconds slept per training batch (tests interrupt runs)."
    )


class ToyTask(Task):
    """Toy: small CNN on a synthetic 4-class image problem, seconds on a CPU."""

    primary_metric = "accuracy"
    higher_is_better = True
    # The task's own keys, declared once: `prunekit run` checks them before anything starts
    # and the docs list them.
    sections: ClassVar[dict[str, type[Settings]]] = {"toy": ToySettings}
    # `prunekit run toy --data DIR` (or $PRUNEKIT_DATA) sets this key
    data_key: ClassVar[str] = "toy.data_dir"

    @classmethod
    def default_config(cls) -> dict[str, Any]:
        # Overrides of the generic defaults for a model this small.
        return {
            "threads": 1,  # a model this small runs fastest on one thread
            "baseline": {"epochs": 6, "lr": 0.05},
            "prune": {"steps": 3, "target": {"params": 0.5}, "score_batches": 4},
            "recovery": {"options": {"finetune": {"images": 512, "lr": 0.02}}},  # an epoch
            "latency": {"batch_size": 16, "repeats": 5, "warmup": 1},
        }

    def __init__(self, config: dict[str, Any], device: torch.device | str = "cpu") -> None:
        super().__init__(config, device)
        self.cfg = config["toy"]
        stored = Path(self.cfg["data_dir"]) / "toy-data.pt" if self.cfg["data_dir"] else None
        if stored is not None and stored.is_file():
            data = torch.load(stored, weights_only=True)
            self.train_set, self.test_set = tuple(data["train"]), tuple(data["test"])
            return
        generator = torch.Generator().manual_seed(self.cfg["data_seed"])
        size = self.cfg["image_size"]
        # Upsampled 4x4 noise: blobs of colour that convolutions pick out of the pixel noise.
        coarse = torch.randn(self.cfg["classes"], 3, 4, 4, generator=generator)
        prototypes = F.interpolate(coarse, size=size, mode="bilinear")

        def sample(count: int) -> Batch:
            labels = torch.randint(self.cfg["classes"], (count,), generator=generator)
            noise = torch.randn(count, 3, size, size, generator=generator)
            return prototypes[labels] + self.cfg["noise"] * noise, labels

        self.train_set = sample(self.cfg["train_samples"])
        self.test_set = sample(self.cfg["test_samples"])
        if stored is not None:
            stored.parent.mkdir(parents=True, exist_ok=True)
            torch.save({"train": list(self.train_set), "test": list(self.test_set)}, stored)

    def build_model(self) -> nn.Module:
        return ToyNet(self.cfg["classes"], self.cfg["width"])

    def example_inputs(self) -> torch.Tensor:
        return self.train_set[0][:1].to(self.device)

    def ignored_layers(self, model: nn.Module) -> list[nn.Module]:
        return [model.classifier]  # its outputs are the classes: never prune them

    def train_batches(self) -> Iterator[Batch]:
        images, labels = self.train_set
        # The global torch RNG shuffles: the runner reseeds it at every step, so a resumed run
        # sees exactly the batches an uninterrupted one would.
        order = torch.randperm(len(labels))
        for start in range(0, len(order), self.cfg["batch_size"]):
            time.sleep(self.cfg["batch_delay"])
            index = order[start : start + self.cfg["batch_size"]]
            yield images[index].to(self.device), labels[index].to(self.device)

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        images, labels = batch
        return F.cross_entropy(model(images), labels)

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        images, labels = self.test_set
        correct, loss = 0, 0.0
        for start in self.progress(range(0, len(labels), self.cfg["batch_size"]), "eval"):
            x = images[start : start + self.cfg["batch_size"]].to(self.device)
            y = labels[start : start + self.cfg["batch_size"]].to(self.device)
            logits = model(x)
            correct += int((logits.argmax(dim=1) == y).sum())
            loss += float(F.cross_entropy(logits, y, reduction="sum"))
        return {"accuracy": correct / len(labels), "loss": loss / len(labels)}

    def describe_data(self) -> str:
        c = self.cfg
        return (
            f"synthetic {c['classes']}-class {c['image_size']}x{c['image_size']} RGB images, "
            f"{c['train_samples']} train / {c['test_samples']} test, toy.data_seed={c['data_seed']}"
        )
