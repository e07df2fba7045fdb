"""Verification pairs stored as indices into a list of distinct images, so each is embedded once."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Pairs:
    """Pair ``k`` compares ``images[left[k]]`` with ``images[right[k]]``.

    ``images`` are distinct image paths (sorted; relative ones are relative to the dataset root),
    ``same[k]`` tells a genuine pair from an impostor one and ``fold[k]`` is its
    cross-validation fold (0-based).
    """

    images: tuple[str, ...]
    left: np.ndarray
    right: np.ndarray
    same: np.ndarray
    fold: np.ndarray

    @classmethod
    def from_keys(
        cls,
        left: Sequence[str],
        right: Sequence[str],
        same: Sequence[bool],
        fold: Sequence[int] | None = None,
    ) -> Pairs:
        """Pairs from per-pair image paths (``fold`` defaults to all 0)."""
        images, index = np.unique(np.asarray([*left, *right], dtype=object), return_inverse=True)
        index = index.astype(np.int64)
        return cls(
            images=tuple(images.tolist()),
            left=index[: len(left)],
            right=index[len(left) :],
            same=np.asarray(same, dtype=bool),
            fold=np.zeros(len(left), np.int64) if fold is None else np.asarray(fold, np.int64),
        )

    def __len__(self) -> int:
        return len(self.same)

    def select(self, folds: Iterable[int]) -> Pairs:
        """The pairs of ``folds`` only, with ``images`` narrowed to those they use."""
        keep = np.isin(self.fold, list(folds))
        images = np.asarray(self.images, dtype=object)
        return Pairs.from_keys(
            images[self.left[keep]].tolist(),
            images[self.right[keep]].tolist(),
            self.same[keep],
            self.fold[keep],
        )
