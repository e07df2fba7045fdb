"""Helpers shared by the reliability tests."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

#: a small toy run that takes seconds: 2 steps on a quarter of the data, short training
TOY = [
    "--steps", "2", "--quiet",
    "--set", "toy.train_samples=128", "--set", "toy.test_samples=64",
    "--set", "baseline.epochs=2",
]  # fmt: skip
TAYLOR_RUN = ["run", "toy", "--criterion", "taylor", *TOY]


def log(run_dir: Path) -> list[dict]:
    """A run's records without their timings (they differ from run to run)."""
    lines = (run_dir / "log.jsonl").read_text().splitlines()
    return [
        {k: v for k, v in json.loads(ln).items() if k not in ("wall_s", "latency_ms")}
        for ln in lines
    ]


def snapshot(root: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every file under ``root``."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }
