"""Resumable, verified downloads and path-safe archive extraction, used to fetch LFW.

Nothing here runs at import: fetching is always an explicit call.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from prunekit.errors import PrunekitError

_BLOCK = 1 << 20


@dataclass(frozen=True)
class Source:
    """Where a file comes from and, when known, its sha256 (hex)."""

    url: str
    sha256: str | None = None


#: The official LFW files. The sha256 of ``pairs.txt`` was computed on a copy whose MD5 equals the
#: published one (``9f1ba174e4e1c508ff7cdf10ac338a7d``, as checked by torchvision). No sha256 of
#: ``lfw.tgz`` could be verified here (its published MD5 is ``a17d05bd522c52d84eca14327a23d494``),
#: so it is None. Note that ``lfw.tgz`` holds the original colour images, not the LFW-a
#: alignment (grayscale) that the reference numbers in the docs were measured on.
LFW_SOURCES: Mapping[str, Source] = {
    "lfw.tgz": Source("http://vis-www.cs.umass.edu/lfw/lfw.tgz"),
    "pairs.txt": Source(
        "http://vis-www.cs.umass.edu/lfw/pairs.txt",
        "ea42330c62c92989f9d7c03237ed5d591365e89b3e649747777b70e692dc1592",
    ),
}


def download(
    url: str,
    dest: str | os.PathLike[str],
    sha256: str | None = None,
    *,
    resume: bool = True,
    progress: bool = True,
    timeout: float = 60.0,
) -> Path:
    """Fetch ``url`` into ``dest`` (kept as is when it already exists) and return ``dest``.

    Bytes stream into ``dest.part``; an interrupted download resumes from it with an HTTP
    Range request (starting over when the server ignores the range). With ``sha256`` the file
    is verified before the atomic rename into place; a mismatch deletes it.
    """
    dest = Path(dest)
    if dest.exists():
        if sha256 is not None and _sha256(dest) != sha256.lower():
            raise PrunekitError(
                f"{dest} exists but its sha256 is not {sha256}; delete it to download it again"
            )
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    if not resume:
        part.unlink(missing_ok=True)
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            if response.status != 206:  # a full body: the server ignored (or got no) Range
                offset = 0
            total = None if response.length is None else offset + response.length
            bar = tqdm(
                total=total,
                initial=offset,
                desc=dest.name,
                unit="B",
                unit_scale=True,
                disable=not progress,
            )
            with bar, open(part, "ab" if offset else "wb") as f:
                while block := response.read(_BLOCK):
                    f.write(block)
                    bar.update(len(block))
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:  # the partial file is as long as (or longer than) the file
            return download(url, dest, sha256, resume=False, progress=progress, timeout=timeout)
        raise PrunekitError(
            f"download of {url} failed: HTTP {err.code} {err.reason}; check the URL, or fetch "
            f"the file by hand into {dest}"
        ) from None
    except (OSError, http.client.HTTPException) as err:
        raise PrunekitError(
            f"download of {url} stopped ({err}); run again to resume from {part}"
        ) from None
    size = part.stat().st_size
    if total is not None and size != total:
        raise PrunekitError(
            f"download of {url} stopped at {size} of {total} bytes; run again to resume"
        )
    if sha256 is not None:
        actual = _sha256(part)
        if actual != sha256.lower():
            part.unlink()
            raise PrunekitError(
                f"download of {url} has sha256 {actual}, expected {sha256}; the file was deleted: "
                "check the URL and checksum, then run again"
            )
    os.replace(part, dest)
    return dest


def extract(archive: str | os.PathLike[str], dest_dir: str | os.PathLike[str]) -> Path:
    """Unpack a .tgz/.tar.gz/.tar or .zip into ``dest_dir``; returns ``dest_dir``.

    Every member is checked before anything is written: one that would land outside
    ``dest_dir`` (absolute path, ``..``, escaping link) or is not a plain file, folder or link
    rejects the whole archive.
    """
    archive, dest = Path(archive), Path(dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    name = archive.name.lower()
    try:
        if name.endswith((".tgz", ".tar.gz", ".tar")):
            with tarfile.open(archive) as tar:
                members = tar.getmembers()
                for member in members:
                    _check_member(archive, dest, member.name)
                    if member.issym():
                        link = os.path.join(os.path.dirname(member.name), member.linkname)
                        _check_member(archive, dest, member.name, link)
                    elif member.islnk():
                        _check_member(archive, dest, member.name, member.linkname)
                    elif not (member.isfile() or member.isdir()):
                        raise PrunekitError(
                            f"archive {archive} member {member.name!r} is a device or pipe; "
                            "refusing to extract it"
                        )
                # The "data" filter (Python 3.12, backported) re-checks all of the above.
                extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
                tar.extractall(dest, members, **extra)
        elif name.endswith(".zip"):
            with zipfile.ZipFile(archive) as zipped:
                for info in zipped.infolist():
                    _check_member(archive, dest, info.filename)
                zipped.extractall(dest)
        else:
            raise PrunekitError(
                f"cannot extract {archive}: only .tgz, .tar.gz, .tar and .zip are supported"
            )
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as err:
        raise PrunekitError(
            f"cannot extract {archive} ({err}); delete it and download it again"
        ) from None
    return dest


def download_lfw(
    dest_dir: str | os.PathLike[str],
    *,
    sources: Mapping[str, Source] = LFW_SOURCES,
    progress: bool = True,
) -> Path:
    """Fetch and unpack LFW into ``dest_dir/lfw`` (the folder :class:`LFW` reads); returns it.

    Already-done steps are skipped, so an interrupted call can simply be repeated. The archive
    is unpacked beside ``dest_dir/lfw`` and moved into place only when complete.
    """
    dest = Path(dest_dir)
    root = dest / "lfw"
    archive = download(
        sources["lfw.tgz"].url, dest / "lfw.tgz", sources["lfw.tgz"].sha256, progress=progress
    )
    if not root.is_dir():
        staging = Path(tempfile.mkdtemp(dir=dest, prefix=".lfw-"))
        try:
            if not (extract(archive, staging) / "lfw").is_dir():
                raise PrunekitError(
                    f"{archive} has no top-level lfw/ folder; delete it and download it again"
                )
            os.replace(staging / "lfw", root)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    pairs = sources["pairs.txt"]
    download(pairs.url, root / "pairs.txt", pairs.sha256, progress=progress)
    return root


def _check_member(archive: Path, dest: Path, name: str, link: str | None = None) -> None:
    """Reject member ``name`` when it (or the ``link`` target it points to) escapes ``dest``."""
    base = dest.resolve()
    path = name if link is None else link
    target = (base / path).resolve()
    if os.path.isabs(path) or (target != base and base not in target.parents):
        verb = "would be written" if link is None else f"links to {link!r},"
        raise PrunekitError(
            f"archive {archive} member {name!r} {verb} outside {dest}; refusing to extract an "
            "unsafe archive"
        )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()
