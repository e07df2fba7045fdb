"""Writing files so that a reader never sees half of one: the one atomic-write helper.

Every write goes to a temporary file beside the target, is flushed and fsynced, then renamed
over the target; on any failure (a full disk, an interrupt) the temporary file is removed and
the previous file, if any, is left untouched.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from prunekit.errors import PrunekitError


def _writable(path: Path) -> None:
    """Create ``path``'s folder; a one-line error when ``path`` cannot be a file there."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise PrunekitError(
            f"cannot write {path}: a parent of it is a file, not a folder; choose another path"
        ) from None
    if path.is_dir():
        raise PrunekitError(f"cannot write {path}: it is a folder; choose another path")


@contextmanager
def atomic_open(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """A binary file handle whose contents replace ``path`` only when the block succeeds."""
    path = Path(path)
    _writable(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)  # reopened by name, so the handle's .name says which file it writes
    try:
        with open(tmp, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def atomic_files(path: str | os.PathLike) -> Iterator[Path]:
    """A path in a temporary folder beside ``path`` for a writer that makes several files
    (an ONNX model and its ``.data``): when the block succeeds every file made there is moved
    beside ``path``, each replacing its namesake; otherwise the folder is removed."""
    path = Path(path)
    _writable(path)
    folder = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        yield folder / path.name
        for made in folder.iterdir():
            os.replace(made, path.parent / made.name)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Atomically replace ``path`` with ``data``."""
    with atomic_open(path) as fh:
        fh.write(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Atomically replace ``path`` with ``text`` (UTF-8)."""
    return write_bytes(path, text.encode("utf-8"))


def write_with(path: str | os.PathLike, writer: Callable[[BinaryIO], object]) -> Path:
    """Atomically replace ``path`` with what ``writer(handle)`` writes (``torch.save``, a
    figure's ``savefig``, ``numpy.save``)."""
    with atomic_open(path) as fh:
        writer(fh)
    return Path(path)


def copy(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Atomically replace ``dst`` with a copy of ``src``."""
    with open(src, "rb") as source, atomic_open(dst) as fh:
        shutil.copyfileobj(source, fh)
    return Path(dst)
