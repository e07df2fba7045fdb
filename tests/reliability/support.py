"""Helpers shared by the reliability tests."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

#: a small toy run that takes seconds: 2 steps on a quarter of the data, short training
TOY = [
    "--steps", "2", "--quiet",
    "--set", "toy.train_samples=128", "--set", "toy.test_samples=64",
    "--set", "baseline.epochs=2",
]  # fmt: skip
TAYLOR_RUN = ["run", "toy", "--criterion", "taylor", *TOY]


#: record fields that are timings, or judge them: they differ from run to run
TIMINGS = ("wall_s", "phases_s", "latency_ms", "latency_note", "seconds")


def untimed(value: Any) -> Any:
    """A record (or any part of one) without its timings, at every depth."""
    if isinstance(value, dict):
        return {k: untimed(v) for k, v in value.items() if k not in TIMINGS}
    if isinstance(value, list):
        return [untimed(v) for v in value]
    return value


def log(run_dir: Path) -> list[dict]:
    """A run's records without their timings."""
    lines = (run_dir / "log.jsonl").read_text().splitlines()
    return [untimed(json.loads(ln)) for ln in lines]


def snapshot(root: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every file under ``root``."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }
