"""Identity-folder datasets (``root/<identity>/<image>``: VGGFace2, CASIA-WebFace, ORL, ...).

Listings are sorted in natural order (``s2`` before ``s10``), so labels are the same on every
machine; pair sampling and identity splits are reproducible from a seed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from prunekit.errors import PrunekitError
from prunekit_face.data.pairs import Pairs

#: file suffixes (lower case) taken as images; Pillow reads them all
IMAGE_EXTENSIONS = frozenset(
    {".bmp", ".gif", ".jpeg", ".jpg", ".pbm", ".pgm", ".png", ".ppm", ".tif", ".tiff", ".webp"}
)


def _natural(name: str) -> list[str | int]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


@dataclass(frozen=True)
class IdentityFolders:
    """Image ``paths[i]`` shows identity ``identities[labels[i]]``; paths grouped by identity."""

    root: Path
    identities: tuple[str, ...]
    paths: tuple[Path, ...]
    labels: np.ndarray

    @classmethod
    def scan(
        cls, root: str | os.PathLike[str], extensions: Iterable[str] = IMAGE_EXTENSIONS
    ) -> IdentityFolders:
        """List every identity folder under ``root`` and its images (other files are ignored)."""
        root = Path(root)
        if not root.is_dir():
            raise PrunekitError(
                f"dataset root {root} is not a folder; pass the folder holding <identity>/<image>"
            )
        suffixes = {s.lower() for s in extensions}
        folders = sorted(
            (e for e in os.scandir(root) if e.is_dir() and not e.name.startswith(".")),
            key=lambda e: _natural(e.name),
        )
        if not folders:
            raise PrunekitError(f"dataset root {root} has no identity folders <identity>/<image>")
        identities, paths, counts = [], [], []
        for folder in folders:
            files = sorted(
                (f for f in os.listdir(folder.path) if Path(f).suffix.lower() in suffixes),
                key=_natural,
            )
            if not files:
                raise PrunekitError(
                    f"identity folder {folder.path} has no images ({', '.join(sorted(suffixes))}); "
                    "add images or remove the folder"
                )
            identities.append(folder.name)
            paths += [root / folder.name / f for f in files]
            counts.append(len(files))
        labels = np.repeat(np.arange(len(identities), dtype=np.int64), counts)
        return cls(root, tuple(identities), tuple(paths), labels)

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, identities: Iterable[str]) -> IdentityFolders:
        """Only the images of ``identities``, relabelled 0.. in their sorted order."""
        chosen = set(identities)
        unknown = chosen - set(self.identities)
        if unknown:
            raise PrunekitError(f"identities {sorted(unknown)} are not folders of {self.root}")
        kept = [i for i, name in enumerate(self.identities) if name in chosen]
        mask = np.isin(self.labels, kept)
        relabel = np.full(len(self.identities), -1, np.int64)
        relabel[kept] = np.arange(len(kept))
        return IdentityFolders(
            self.root,
            tuple(self.identities[i] for i in kept),
            tuple(p for p, m in zip(self.paths, mask) if m),
            relabel[self.labels[mask]],
        )

    def split(self, num_eval: int, seed: int) -> tuple[IdentityFolders, IdentityFolders]:
        """Identity-disjoint ``(train, eval)`` parts, ``num_eval`` identities drawn by ``seed``."""
        if not 0 < num_eval < len(self.identities):
            raise PrunekitError(
                f"num_eval={num_eval} must be between 1 and {len(self.identities) - 1} "
                f"(the number of identities in {self.root} minus one)"
            )
        order = np.random.default_rng(seed).permutation(len(self.identities))
        held_out = {self.identities[i] for i in order[:num_eval]}
        train = [name for name in self.identities if name not in held_out]
        return self.subset(train), self.subset(held_out)


def balanced_pairs(
    labels: np.ndarray, n_pairs: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(i, j, same)``: ``n_pairs // 2`` genuine pairs then impostor ones, drawn by ``seed``.

    A genuine pair joins a uniformly drawn image (of an identity with two or more) with another
    image of its identity; an impostor pair joins a uniform image with one of another identity.
    Pairs are drawn with replacement, so a pair may repeat.
    """
    labels = np.asarray(labels)
    order = np.argsort(labels, kind="stable")
    names, start, count = np.unique(labels[order], return_index=True, return_counts=True)
    group = np.searchsorted(names, labels)  # identity index of every image
    rank = np.empty(len(labels), np.int64)  # position of every image within its identity
    rank[order] = np.arange(len(labels)) - np.repeat(start, count)
    if len(names) < 2 or count.max() < 2:
        raise PrunekitError(
            f"balanced_pairs needs 2+ identities and one with 2+ images; got {len(names)} "
            f"identities with at most {count.max(initial=0)} images"
        )
    rng = np.random.default_rng(seed)
    n_same = n_pairs // 2
    n_diff = n_pairs - n_same

    candidates = np.flatnonzero(count[group] >= 2)
    i_same = candidates[rng.integers(0, len(candidates), n_same)]
    g = group[i_same]
    # Another member of the same identity: skip over the anchor's own rank.
    r = rng.integers(0, count[g] - 1)
    j_same = order[start[g] + r + (r >= rank[i_same])]

    i_diff = rng.integers(0, len(labels), n_diff)
    g = group[i_diff]
    # An image outside the anchor's identity: skip over its block in sorted order.
    r = rng.integers(0, len(labels) - count[g])
    j_diff = order[r + count[g] * (r >= start[g])]

    same = np.arange(n_pairs) < n_same
    return np.concatenate([i_same, i_diff]), np.concatenate([j_same, j_diff]), same


def read_pair_list(
    path: str | os.PathLike[str], root: str | os.PathLike[str] | None = None
) -> Pairs:
    """Read ``path1 path2 label`` lines (label 1 = same identity, 0 = different).

    Relative paths are taken under ``root`` (default: the list's folder); blank lines and lines
    starting with ``#`` are ignored. Malformed lines and missing images are reported with their
    line number.
    """
    path = Path(path)
    base = path.parent if root is None else Path(root)
    try:
        lines = path.read_text().splitlines()
    except OSError as err:
        raise PrunekitError(f"cannot read pair list {path} ({err.strerror})") from None
    left, right, same = [], [], []
    for lineno, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if len(fields) != 3 or fields[2] not in ("0", "1"):
            raise PrunekitError(
                f"{path}:{lineno}: expected 'path1 path2 label' with label 0 or 1, got {line!r}"
            )
        first, second = base / fields[0], base / fields[1]
        for image in (first, second):
            if not image.is_file():
                raise PrunekitError(
                    f"{path}:{lineno}: image {image} does not exist; fix the path or pass root="
                )
        left.append(str(first))
        right.append(str(second))
        same.append(fields[2] == "1")
    return Pairs.from_keys(left, right, same)
