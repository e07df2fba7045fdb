"""``torchrun ... dist_worker.py DUMP ARGS...``: ``prunekit ARGS...`` that also saves, at every
pruning step, this rank's scores, removed channels and fine-tuned model to
``DUMP/rank<R>-step<N>.pt``."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

import prunekit as pk
from prunekit.cli.main import main
from prunekit.runner import run


def instrument(dump: Path, rank: int) -> None:
    prune, step = pk.Pruner.step, run._Session._step

    def pruner_step(self: pk.Pruner) -> pk.StepReport:
        self.seen = {"scores": self.criterion.scores(self.groups, self.step_index)}
        report = prune(self)
        self.seen["removed"] = report.removed
        return report

    def session_step(self: run._Session) -> dict:
        record = step(self)
        seen = {**self.pruner.seen, "model": self.model.state_dict()}
        torch.save(seen, dump / f"rank{rank}-step{record['step']}.pt")
        return record

    pk.Pruner.step, run._Session._step = pruner_step, session_step


if __name__ == "__main__":
    instrument(Path(sys.argv[1]), int(os.environ["RANK"]))
    sys.exit(main(sys.argv[2:]))
