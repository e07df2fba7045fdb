"""One training step of the paper's network on a loader-sized batch (figures, no asserts).

Compare with ``test_bench_face_loader``: the loader must deliver at least twice the images/s
that this step consumes (the ratio prints at the end of a benchmark run).
"""

from __future__ import annotations

import torch

from prunekit_face.losses import make_head
from prunekit_face.models import squeezefacenet

BATCH = 128


def test_bench_face_train_step(benchmark) -> None:
    torch.manual_seed(0)
    torch.set_num_threads(2)
    model = squeezefacenet(bn=True).train()
    head = make_head("softmax", 1000, 1000)
    params = [*model.parameters(), *head.parameters()]
    optimizer = torch.optim.SGD(params, lr=0.01, momentum=0.9)
    images = torch.randn(BATCH, 3, 113, 113)
    labels = torch.randint(0, 1000, (BATCH,))

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        head(model(images), labels).backward()
        optimizer.step()

    benchmark.pedantic(step, rounds=3, warmup_rounds=1)
    benchmark.extra_info["images_per_s"] = round(BATCH / benchmark.stats.stats.median, 1)
