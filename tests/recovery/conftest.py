"""One intra-op thread for these tiny-tensor tests: on a shared 2-core machine, threading ops of
a few kilobytes costs far more in synchronisation than it saves (unfold: 0.1 s against 0.1 ms)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
