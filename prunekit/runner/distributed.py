"""Data-parallel runs: ``torchrun --nproc_per_node=N -m prunekit run ...`` or ``--nproc N``.

Every process (rank) builds the same task, model and pruner from the same seed. Rank ``r``
trains and scores on batches ``r, r + N, r + 2N, ...`` of every epoch; DistributedDataParallel
averages the training gradients, and the criterion's statistics are summed over the ranks
before each pruning step, so every rank removes the same channels. Rank 0 alone evaluates,
writes checkpoints and logs; the others wait for it. Batch sizes and ``prune.score_batches``
count per process, as in any DDP job. Parameters that a task trains outside the model (the
face task's classifier head) are not averaged: rank 0's are checkpointed.
"""

from __future__ import annotations

import itertools
import os
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.elastic.multiprocessing.api import SignalException
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.launcher.api import LaunchConfig, elastic_launch
from torch.nn.parallel import DistributedDataParallel

from prunekit.errors import PrunekitError

#: the most seconds between a rank's heartbeats in the process group's store
BEAT = 1.0

T = TypeVar("T")


@dataclass(frozen=True)
class World:
    """This process's place among the data-parallel processes (one process: rank 0 of 1)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> World:
        """What torchrun tells a worker through ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``."""
        env = os.environ
        return cls(
            int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0))
        )

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0, the one that evaluates and writes files."""
        return self.rank == 0

    def shard(self, batches: Iterable[Any]) -> Iterable[Any]:
        """This rank's share of an epoch: batch ``i`` goes to rank ``i % size``. A last round of
        fewer than ``size`` batches is dropped, so that every rank takes as many steps (DDP
        needs it). Tasks reach it through :meth:`prunekit.Task.epoch_batches`."""
        if self.size == 1:
            return batches
        return (r[self.rank] for r in zip(*[iter(batches)] * self.size))

    def wrap(self, model: nn.Module) -> nn.Module:
        """``model`` in DistributedDataParallel, for training; build a new one after pruning."""
        if self.size == 1:
            return model
        cuda = next(model.parameters()).is_cuda
        return DistributedDataParallel(model, device_ids=[self.local_rank] if cuda else None)

    def sync_buffers(self, model: nn.Module) -> None:
        """Rank 0's buffers (BatchNorm statistics) on every rank: DDP broadcasts them before
        each forward pass, so after the last one every rank holds its own."""
        if self.size > 1:
            for buffer in model.buffers():
                dist.broadcast(buffer, src=0)

    def sync_state(self, model: nn.Module) -> None:
        """Rank 0's parameters and buffers on every rank (after work that each rank did on its
        own, such as recovery)."""
        if self.size > 1:
            for tensor in itertools.chain(model.parameters(), model.buffers()):
                dist.broadcast(tensor.data, src=0)

    def share(self, obj: T) -> T:
        """Rank 0's ``obj`` on every rank."""
        if self.size == 1:
            return obj
        box: list[Any] = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        """Wait until every rank gets here."""
        if self.size > 1:
            dist.barrier()


class _Heartbeat:
    """Each rank writes the time into the process group's key-value store every ``beat``
    seconds, so that a rank whose collective timed out can name the ranks that stopped
    answering (a frozen or stopped process stops beating) instead of waiting blindly."""

    def __init__(self, world: World, beat: float) -> None:
        self.world, self.beat = world, beat
        # the default group's store (torchrun's rendezvous store): a private accessor, but the
        # one place every rank already reaches
        self.store = dist.distributed_c10d._get_default_store()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True)
        self.thread.start()

    def _beat(self) -> None:
        while not self.done.is_set():
            try:
                self.store.set(f"prunekit/alive/{self.world.rank}", repr(time.time()))
            except Exception:  # the store went away: the group is ending
                return
            self.done.wait(self.beat)

    def silent(self) -> list[int]:
        """The other ranks that missed their last three heartbeats."""
        now, silent = time.time(), []
        for rank in range(self.world.size):
            if rank == self.world.rank:
                continue
            try:
                last = float(self.store.get(f"prunekit/alive/{rank}"))
            except Exception:
                last = 0.0
            if now - last > 3 * self.beat:
                silent.append(rank)
        return silent

    def stop(self) -> None:
        self.done.set()
        self.thread.join()


def _timed_out(error: BaseException) -> bool:
    text = str(error).lower()
    return isinstance(error, RuntimeError) and ("timed out" in text or "timeout" in text)


@contextmanager
def joined(device: torch.device, timeout_s: float = 1800.0) -> Iterator[World]:
    """This process's :class:`World`, in the process group while the block runs.

    Under torchrun the group is created (NCCL on CUDA, else gloo) and destroyed after the
    block, unless the caller already created one. A collective that waits more than
    ``timeout_s`` for the others fails with an error naming the ranks that stopped answering.
    """
    world = World.from_env()
    if world.size == 1 or dist.is_initialized():
        yield world
        return
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.set_device(world.local_rank)
    dist.init_process_group("nccl" if cuda else "gloo", timeout=timedelta(seconds=timeout_s))
    heartbeat = _Heartbeat(world, beat=min(BEAT, timeout_s / 10))
    try:
        yield world
    except RuntimeError as error:
        if not _timed_out(error):
            raise
        silent = heartbeat.silent()
        who = (
            f"rank(s) {', '.join(map(str, silent))} stopped answering (no heartbeat)"
            if silent
            else "every rank still answers, but one of them was busy for longer than that"
        )
        raise PrunekitError(
            f"rank {world.rank} waited timeout_s={timeout_s:g} s for the other processes: {who}; "
            "stop the run, then resume it (raise timeout_s if a rank needs longer, e.g. to "
            "evaluate)"
        ) from None
    finally:
        heartbeat.stop()
        dist.destroy_process_group()


def launch(nproc: int, args: list[str]) -> int:
    """Run ``prunekit ARGS`` in ``nproc`` processes on this machine, as
    ``torchrun --standalone --nproc_per_node=NPROC -m prunekit ARGS`` would; the exit status
    of the first process that failed (130 when interrupted), else 0."""
    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=nproc,
        run_id=uuid.uuid4().hex,
        rdzv_backend="c10d",
        rdzv_endpoint="localhost:0",
        max_restarts=0,
    )
    try:
        elastic_launch(config, sys.executable)("-m", "prunekit", *args)
    except ChildFailedError as exc:
        code = exc.get_first_failure()[1].exitcode
        return code if code > 0 else 128 - code  # killed by signal s: 128 + s, as a shell says
    except SignalException:
        return 130
    return 0
