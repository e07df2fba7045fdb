"""The layout of a run directory and of a comparison directory, in one place."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from prunekit import atomic
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
        """Refuse to start a run over an existing one (an empty folder is fine)."""
        _ensure_new(self.root, f"or continue that run with `prunekit run --resume {self.root}`")

    def write_config(self, config: dict[str, Any]) -> None:
        atomic.write_text(self.config, yaml.safe_dump(config, sort_keys=False))

    def read_config(self) -> dict[str, Any]:
        """The run's validated configuration."""
        if not self.config.is_file():
            raise PrunekitError(f"{self.root} is not a run directory: it has no config.yaml")
        try:
            data = yaml.safe_load(self.config.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise PrunekitError(
                f"{self.config} is damaged ({str(exc).splitlines()[0]}): restore it or start "
                "a new run"
            ) from None
        return validate(data or {}, str(self.config))

    def read_log(self) -> list[dict[str, Any]]:
        """One record per completed step, step 0 being the baseline."""
        if not self.log.is_file():
            raise PrunekitError(f"{self.root} is not a run directory: it has no log.jsonl")
        records = []
        for number, line in enumerate(self.log.read_text().splitlines(), start=1):
            if not line:
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                raise PrunekitError(
                    f"{self.log}, line {number}, is damaged: resume the run "
                    f"(`prunekit run --resume {self.root}`) to rewrite it from its checkpoint"
                ) from None
        return records

    def write_log(self, records: list[dict[str, Any]]) -> None:
        atomic.write_text(self.log, "".join(json.dumps(r) + "\n" for r in records))

    def append_log(self, record: dict[str, Any]) -> None:
        with open(self.log, "a") as fh:
            fh.write(json.dumps(record) + "\n")


@dataclass(frozen=True)
class CompareDir:
    """``config.yaml``, ``baseline.pt``, ``runs/<recipe>-seed<N>/`` (run directories) and the
    summary ``results.{md,csv,tex,json}`` and ``compare.png`` under :attr:`root`."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def baseline(self) -> Path:
        return self.root / "baseline.pt"

    @property
    def plot(self) -> Path:
        return self.root / "compare.png"

    def run(self, name: str, seed: int) -> RunDir:
        return RunDir(self.root / "runs" / f"{name}-seed{seed}")

    def summary(self, fmt_file: str) -> Path:
        return self.root / fmt_file

    def ensure_new(self) -> None:
        _ensure_new(self.root, "or delete it")

    def write_config(self, config: dict[str, Any]) -> None:
        atomic.write_text(self.config, yaml.safe_dump(config, sort_keys=False))


def _ensure_new(root: Path, alternative: str) -> None:
    if root.exists() and not root.is_dir():
        raise PrunekitError(f"{root} is a file, not a folder: choose another --out")
    if root.exists() and any(root.iterdir()):
        raise PrunekitError(f"{root} already exists: choose another --out, {alternative}")


def default_root(task: str, name: str) -> Path:
    """``runs/<task>-<name>-<YYYYmmdd-HHMMSS>``."""
    return Path("runs") / f"{task}-{name}-{time.strftime('%Y%m%d-%H%M%S')}"
