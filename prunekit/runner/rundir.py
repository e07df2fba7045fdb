"""The layout of a run directory and of a comparison directory, in one place.

One process writes a directory at a time: a writer holds an exclusive ``flock`` on its
``.lock`` file (which records the writer's PID) while it works, and the system releases the lock
of a process that dies. Every read is checked: a damaged ``config.yaml`` or ``log.jsonl`` is a
one-line error naming the file and the line.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from prunekit import atomic, yamlfile
from prunekit.errors import PrunekitError
from prunekit.runner.config import validate

#: the lock file of a run or comparison directory (present only while a process writes it)
LOCK = ".lock"
#: the keys every record of ``log.jsonl`` has (``prunekit report`` shows them)
RECORD_KEYS = ("step", "params", "macs", "latency_ms", "metrics", "planned", "achieved")
#: the keys of a record's own dicts that ``prunekit report`` reads
RECORD_SUBKEYS = {"planned": ("target",), "achieved": ("params", "macs")}


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

    @property
    def baseline_epoch(self) -> Path:
        """The baseline training's last epoch (see :class:`~prunekit.runner.checkpoint.EpochFile`),
        until step 0's checkpoint holds the baseline."""
        return self.root / "checkpoints" / "baseline-epoch.pt"

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

    def writing(self, new: bool = False) -> contextlib.AbstractContextManager[None]:
        """Hold the run's lock while the block writes it (see :func:`_writing`); ``new``
        refuses a run already there, checked again once the lock is held."""
        return _writing(self.root, self.ensure_new if new else None)

    def write_config(self, config: dict[str, Any]) -> None:
        atomic.write_text(self.config, yaml.safe_dump(config, sort_keys=False))

    def read_config(self) -> dict[str, Any]:
        """The run's validated configuration."""
        if not self.config.is_file():
            raise PrunekitError(f"{self.root} is not a run directory: it has no config.yaml")
        try:
            data = yamlfile.load_mapping(self.config)
        except PrunekitError as exc:
            raise PrunekitError(
                f"{exc}; restore the run's config.yaml or start a new run"
            ) from None
        return validate(data, str(self.config))

    def read_log(self, note: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
        """One record per completed step, step 0 being the baseline (at least that one).

        A last line without its newline that does not parse was cut short by a crash while it
        was written: it is dropped and ``note`` (default: standard error) says so, since the
        checkpoints hold every record. Any other damaged line is an error naming it.
        """
        if not self.log.is_file():
            raise PrunekitError(f"{self.root} is not a run directory: it has no log.jsonl")
        lines = self.log.read_bytes().split(b"\n")  # the last one is b"" after a final newline
        records = []
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:  # not JSON, or not UTF-8
                if number < len(lines):
                    raise self._damaged(number, "is not a JSON record") from None
                (note or _to_stderr)(
                    f"note: {self.log}, line {number}, was cut short (the run stopped while "
                    "writing it): left out; resuming the run rewrites the log from its checkpoints"
                )
                break
            missing = _missing(record)
            if missing:
                raise self._damaged(number, f"is not a step record ({missing})")
            if records and set(record["metrics"]) != set(records[0]["metrics"]):
                raise self._damaged(number, "has other metrics than the first record")
            records.append(record)
        if not records:  # emptied by a crash or by hand: the checkpoints still hold them
            raise PrunekitError(
                f"{self.log} holds no step record: `prunekit run --resume {self.root}` "
                "rewrites it from the run's checkpoints"
            )
        return records

    def _damaged(self, number: int, what: str) -> PrunekitError:
        return PrunekitError(
            f"{self.log}, line {number}, {what}: the file is damaged; resume the run "
            f"(`prunekit run --resume {self.root}`) to rewrite it from its checkpoints"
        )

    def write_log(self, records: list[dict[str, Any]]) -> None:
        atomic.write_text(self.log, "".join(json.dumps(r) + "\n" for r in records))

    def append_log(self, record: dict[str, Any]) -> None:
        with open(self.log, "a") as fh:
            fh.write(json.dumps(record) + "\n")


def _missing(record: Any) -> str | None:
    """What a step record lacks (``"no 'planned.target'"``, ...), if anything."""
    if not isinstance(record, dict):
        return f"no {RECORD_KEYS[0]!r}"
    for key in RECORD_KEYS:
        if key not in record:
            return f"no {key!r}"
    for key in ("metrics", *RECORD_SUBKEYS):
        if not isinstance(record[key], dict):
            return f"{key!r} is not a mapping"
        for sub in RECORD_SUBKEYS.get(key, ()):
            if sub not in record[key]:
                return f"no {key + '.' + sub!r}"
    return None


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

    def writing(self) -> contextlib.AbstractContextManager[None]:
        """Hold the comparison's lock while the block writes it (see :func:`_writing`); a
        comparison is always new (it has no resume of its own)."""
        return _writing(self.root, self.ensure_new)

    def write_config(self, config: dict[str, Any]) -> None:
        atomic.write_text(self.config, yaml.safe_dump(config, sort_keys=False))


def _ensure_new(root: Path, alternative: str) -> None:
    if root.exists() and not root.is_dir():
        raise PrunekitError(f"{root} is a file, not a folder: choose another --out")
    if root.exists() and any(p.name != LOCK for p in root.iterdir()):
        raise PrunekitError(f"{root} already exists: choose another --out, {alternative}")


@contextlib.contextmanager
def _writing(root: Path, ensure_new: Callable[[], None] | None) -> Iterator[None]:
    """Hold the exclusive lock of ``root`` while the block runs; a second writer gets an error
    naming the PID of the first. ``ensure_new`` runs before and again under the lock, so two
    processes cannot both start afresh in one folder. Afterwards the lock file goes, and so do
    the folders the lock made if nothing else was written there."""
    if ensure_new is not None:
        ensure_new()  # a run already there: fail before making anything
    made = [p for p in (root, *root.parents) if not p.exists()]  # innermost first
    fd = _lock(root)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        if ensure_new is not None:
            ensure_new()
        yield
    finally:
        (root / LOCK).unlink(missing_ok=True)  # unlinked while locked: the next writer makes anew
        os.close(fd)
        with contextlib.suppress(OSError):  # not empty: a failed run to resume, or a writer
            for folder in made:
                folder.rmdir()


def _lock(root: Path) -> int:
    """A descriptor of ``root/.lock`` holding its exclusive lock."""
    path = root / LOCK
    while True:
        try:
            root.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:  # a writer that made the folder removed it meanwhile
            continue
        except (FileExistsError, NotADirectoryError):
            raise PrunekitError(f"{root} is a file, not a folder: choose another --out") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise PrunekitError(
                f"{root} is in use by another prunekit process (PID {pid}): one process writes "
                "a run directory at a time; wait for that one to end or stop it"
            ) from None
        try:
            current = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            current = False
        if current:
            return fd
        os.close(fd)  # its writer removed this file just before it was locked: lock the new one


def _to_stderr(message: str) -> None:
    print(message, file=sys.stderr)


def default_root(task: str, name: str) -> Path:
    """``runs/<task>-<name>-<YYYYmmdd-HHMMSS>``."""
    return Path("runs") / f"{task}-{name}-{time.strftime('%Y%m%d-%H%M%S')}"
