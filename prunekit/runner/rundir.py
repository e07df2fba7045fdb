"""The layout of a run directory, in one place."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from prunekit.errors import PrunekitError
from prunekit.runner.config import validate


@dataclass(frozen=True)
class RunDir:
    """``config.yaml``, ``log.jsonl``, ``checkpoints/step-N.pt``, ``final.pt``, ``best.pt``,
    ``report.md`` and ``curve.png`` under :attr:`root`."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def log(self) -> Path:
        return self.root / "log.jsonl"

    @property
    def final(self) -> Path:
        return self.root / "final.pt"

    @property
    def best(self) -> Path:
        return self.root / "best.pt"

    @property
    def report(self) -> Path:
        return self.root / "report.md"

    @property
    def curve(self) -> Path:
        return self.root / "curve.png"

    def checkpoint(self, step: int) -> Path:
        return self.root / "checkpoints" / f"step-{step}.pt"

    def latest_checkpoint(self) -> Path | None:
        """The checkpoint of the highest completed step, if any."""
        steps = [
            int(m.group(1))
            for p in self.root.glob("checkpoints/step-*.pt")
            if (m := re.fullmatch(r"step-(\d+)\.pt", p.name))
        ]
        return self.checkpoint(max(steps)) if steps else None

    def ensure_new(self) -> None:
        """Refuse to start a run over an existing one."""
        if self.root.exists() and any(self.root.iterdir()):
            raise PrunekitError(
                f"{self.root} already exists: choose another --out, or continue that run with "
                f"`prunekit run --resume {self.root}`"
            )

    def write_config(self, config: dict[str, Any]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.config.write_text(yaml.safe_dump(config, sort_keys=False))

    def read_config(self) -> dict[str, Any]:
        """The run's validated configuration."""
        if not self.config.is_file():
            raise PrunekitError(f"{self.root} is not a run directory: it has no config.yaml")
        return validate(yaml.safe_load(self.config.read_text()) or {}, str(self.config))

    def read_log(self) -> list[dict[str, Any]]:
        """One record per completed step, step 0 being the baseline."""
        if not self.log.is_file():
            raise PrunekitError(f"{self.root} is not a run directory: it has no log.jsonl")
        return [json.loads(line) for line in self.log.read_text().splitlines() if line]

    def write_log(self, records: list[dict[str, Any]]) -> None:
        _write_atomic(self.log, "".join(json.dumps(r) + "\n" for r in records))

    def append_log(self, record: dict[str, Any]) -> None:
        with open(self.log, "a") as fh:
            fh.write(json.dumps(record) + "\n")


def default_root(task: str, criterion: str) -> Path:
    """``runs/<task>-<criterion>-<YYYYmmdd-HHMMSS>``."""
    return Path("runs") / f"{task}-{criterion}-{time.strftime('%Y%m%d-%H%M%S')}"


def copy_atomic(src: Path, dst: Path) -> None:
    """Copy ``src`` to ``dst`` so that ``dst`` is never half-written."""
    tmp = dst.with_name(f".{dst.name}.tmp-{os.getpid()}")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)
