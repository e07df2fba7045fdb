"""Turning SIGINT and SIGTERM into an exception, so a run can stop cleanly and be resumed."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived; checkpoints written so far are complete (they are atomic).

    Like ``KeyboardInterrupt``, it is no ``Exception``: no ``except Exception`` may take an
    interrupt for a failure (a corrupt checkpoint, an untraceable model).
    """


@contextmanager
def raise_on_signals() -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM raise :class:`Interrupted` (main thread only)."""

    def handler(signum: int, _frame: FrameType | None) -> None:
        raise Interrupted(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
