"""Batch plumbing shared by the recovery methods: image budgets, truncation, fingerprints."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch

from prunekit.errors import PrunekitError


def default_inputs(batch: Any) -> torch.Tensor:
    """The model input of a batch: ``batch[0]`` for tuples and lists, else the batch itself."""
    return batch[0] if isinstance(batch, (tuple, list)) else batch


def stream(
    batches: Callable[[], Iterable[Any]], images: int, rows: Callable[[Any], int], what: str
) -> Iterator[tuple[int, Any, int]]:
    """``(index in its epoch, batch, rows to use)`` until exactly ``images`` rows are used.

    Epochs repeat (a fresh ``batches()`` each) when one is not enough, so an image seen twice
    counts twice; the last batch is cut short by its ``rows to use``. An epoch without a single
    image raises instead of looping forever.
    """
    left = images
    while left > 0:
        seen = 0
        for index, batch in enumerate(batches()):
            n = rows(batch)
            if n <= 0:
                continue
            take = min(n, left)
            yield index, batch, take
            left -= take
            seen += take
            if left == 0:
                return
        if seen == 0:
            raise PrunekitError(f"{what}: the batches hold no images: pass non-empty batches")


def truncate(batch: Any, n: int, rows: int) -> Any:
    """``batch`` with every tensor of ``rows`` rows cut to its first ``n`` (tuples, lists and
    dicts are walked; other leaves are kept as they are)."""
    if n == rows:
        return batch
    if isinstance(batch, torch.Tensor):
        return batch[:n] if batch.dim() and batch.shape[0] == rows else batch
    if isinstance(batch, dict):
        return {k: truncate(v, n, rows) for k, v in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # a namedtuple
        return type(batch)(*(truncate(v, n, rows) for v in batch))
    if isinstance(batch, (tuple, list)):
        return type(batch)(truncate(v, n, rows) for v in batch)
    return batch


def fingerprint(x: torch.Tensor) -> tuple[Any, ...]:
    """A cheap identity of a batch (shape, dtype and a strided sum) to validate cached outputs."""
    flat = x.detach().reshape(-1)
    step = max(1, flat.numel() // 4096)
    return tuple(x.shape), str(x.dtype), float(flat[::step].double().sum())
