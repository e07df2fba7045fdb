"""Decode a list of image files once into a uint8 array cached on disk.

JPEG decoding dominates a face-training epoch on a CPU, so every file is decoded exactly once per
preprocessing: the pixels go to ``<cache>/images/<key>.npy`` with a JSON manifest beside it, both
written atomically. The key hashes the file list (path, size, mtime) and
:meth:`Preprocess.key`, so editing an image or changing the preprocessing starts a new cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NoReturn

import numpy as np
from PIL import Image
from tqdm import tqdm

from prunekit import atomic
from prunekit.cache import cache_dir
from prunekit.errors import PrunekitError
from prunekit_face.data.preprocess import Preprocess

log = logging.getLogger(__name__)

BadImagePolicy = Literal["fail", "skip"]

# What Pillow raises for a missing, truncated, corrupt or absurdly large file.
_BAD_IMAGE_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)
_CHUNK = 64  # images per pool task: few enough tasks for millions of files, fine-grained progress
_FORMAT = 1


@dataclass(frozen=True)
class CachedImages:
    """Decoded pixels: ``images[i]`` ([H, W, C] uint8) comes from ``paths[i]``.

    ``indices[i]`` is the position of ``paths[i]`` in the list asked for, so per-image data
    (labels) follows with ``labels[indices]``; ``skipped`` lists the unreadable files dropped
    under ``on_bad_image="skip"``; ``file`` is the cache's ``.npy``.
    """

    images: np.ndarray
    paths: tuple[Path, ...]
    indices: np.ndarray
    skipped: tuple[Path, ...]
    file: Path


class BadImageError(PrunekitError):
    """A missing or undecodable image under ``on_bad_image="fail"``; ``path`` and ``reason``
    let a caller word its own advice (an image that may not be skipped, say)."""

    def __init__(self, path: Path, reason: object) -> None:
        super().__init__(
            f"bad image {path} ({reason}); delete or replace it, or drop it with "
            "on_bad_image='skip' (CLI: --set data.on_bad_image=skip)"
        )
        self.path, self.reason = path, reason


def load_images(
    paths: Sequence[str | os.PathLike[str]],
    preprocess: Preprocess | None = None,
    *,
    on_bad_image: BadImagePolicy = "fail",
    mmap: bool = True,
    workers: int | None = None,
    progress: bool = True,
) -> CachedImages:
    """Pixels of ``paths`` under ``preprocess`` (default :class:`Preprocess`), decoding only once.

    ``on_bad_image="fail"`` raises on the first missing or undecodable file; ``"skip"`` drops it
    and lists it in ``skipped``. ``mmap`` maps the cache read-only instead of reading it into
    memory. Decoding runs on ``workers`` threads (default: one per CPU) with a progress bar.
    """
    if on_bad_image not in ("fail", "skip"):
        raise PrunekitError(f"on_bad_image={on_bad_image!r} is not one of 'fail', 'skip'")
    preprocess = preprocess or Preprocess()
    given = [Path(p) for p in paths]
    files = [p.absolute() for p in given]
    key = _cache_key(files, preprocess, on_bad_image)
    npy = cache_dir() / "images" / f"{key}.npy"
    manifest = npy.with_suffix(".json")

    loaded = _read_cache(npy, manifest, mmap)
    if loaded is None:
        images, bad = _decode(files, preprocess, on_bad_image, workers or os.cpu_count(), progress)
        npy.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_with(npy, lambda f: np.save(f, images))
        record = {"format": _FORMAT, "shape": list(images.shape), "skipped": bad}
        atomic.write_with(manifest, lambda f: f.write(json.dumps(record).encode()))
        if mmap:
            images = np.load(npy, mmap_mode="r")
    else:
        images, bad = loaded
        if bad and on_bad_image == "fail":
            _fail(files[bad[0]], "skipped as unreadable when this cache was built")
    if bad:
        log.warning(
            "skipped %d unreadable images of %d, e.g. %s", len(bad), len(files), files[bad[0]]
        )
    indices = np.delete(np.arange(len(given), dtype=np.int64), bad)
    kept = tuple(given[i] for i in indices)
    return CachedImages(images, kept, indices, tuple(given[i] for i in bad), npy)


def _cache_key(files: list[Path], preprocess: Preprocess, on_bad_image: str) -> str:
    """Hash of the preprocessing and every file's path, size and mtime (missing: fail or mark)."""
    digest = hashlib.sha256(f"{preprocess.key()}\n".encode())
    for file in files:
        try:
            stat = file.stat()
        except OSError as err:
            if on_bad_image == "fail":
                _fail(file, err.strerror)
            digest.update(f"{file}\0missing\n".encode())
        else:
            digest.update(f"{file}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:32]


def _read_cache(npy: Path, manifest: Path, mmap: bool) -> tuple[np.ndarray, list[int]] | None:
    """The cached pixels and skipped indices, or None when absent or inconsistent."""
    try:
        record = json.loads(manifest.read_text())
        images = np.load(npy, mmap_mode="r" if mmap else None)
    except (OSError, ValueError):
        return None
    if record.get("format") != _FORMAT or list(images.shape) != record.get("shape"):
        return None
    return images, record["skipped"]


def _decode(
    files: list[Path],
    preprocess: Preprocess,
    on_bad_image: BadImagePolicy,
    workers: int,
    progress: bool,
) -> tuple[np.ndarray, list[int]]:
    """Decode every file on a thread pool (Pillow releases the GIL while decoding)."""
    out = np.empty((len(files), *preprocess.shape, preprocess.channels), np.uint8)

    def decode_chunk(start: int) -> list[tuple[int, Exception]]:
        errors = []
        for i in range(start, min(start + _CHUNK, len(files))):
            try:
                out[i] = preprocess.load(files[i])
            except _BAD_IMAGE_ERRORS as err:
                errors.append((i, err))
        return errors

    bad: list[int] = []
    pool = ThreadPoolExecutor(max(1, workers))
    bar = tqdm(total=len(files), desc="decoding images", unit="img", disable=not progress)
    try:
        starts = range(0, len(files), _CHUNK)
        for start, errors in zip(starts, pool.map(decode_chunk, starts)):
            for i, err in errors:
                if on_bad_image == "fail":
                    _fail(files[i], err)
                bad.append(i)
            bar.update(min(_CHUNK, len(files) - start))
    finally:
        bar.close()
        pool.shutdown(cancel_futures=True)
    return (np.delete(out, bad, axis=0) if bad else out), bad


def _fail(path: Path, reason: object) -> NoReturn:
    raise BadImageError(path, reason)
