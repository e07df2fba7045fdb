"""Labeled Faces in the Wild: the official View 2 pairs and identity-disjoint training people.

The layout is the official archive's: ``<root>/<Name>/<Name>_<NNNN>.jpg`` with ``pairs.txt``
(by default) in ``<root>``. ``pairs.txt`` holds a header ``<folds> <pairs per fold>``
(``10 300``), then per fold the matched pairs ``name idx1 idx2`` followed by as many mismatched
pairs ``name1 idx1 name2 idx2``. The folds are person-disjoint.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from prunekit.errors import PrunekitError
from prunekit_face.data.pairs import Pairs

_FIX = "fix the line or use the official LFW View 2 pairs.txt"


def image_key(name: str, index: int) -> str:
    """Path of image ``index`` (1-based) of ``name``, relative to the LFW root."""
    return f"{name}/{name}_{index:04d}.jpg"


def read_pairs(path: str | os.PathLike[str]) -> Pairs:
    """Parse an LFW View 2 ``pairs.txt``; any malformed line is reported with its number. A
    UTF-8 byte-order mark (what some Windows editors write) is ignored."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except OSError as err:
        raise PrunekitError(
            f"cannot read LFW pairs file {path} ({err.strerror}); pass the path of pairs.txt"
        ) from None
    except UnicodeDecodeError as err:
        line = err.object[: err.start].count(b"\n") + 1
        raise PrunekitError(f"{path}:{line}: not UTF-8 text; {_FIX}") from None
    header = lines[0].split() if lines else []
    if len(header) != 2 or not all(_is_index(t) for t in header):
        got = lines[0] if lines else ""
        raise PrunekitError(
            f"{path}:1: expected the header '<folds> <pairs per fold>' (e.g. '10 300'), "
            f"got {got!r}; {_FIX}"
        )
    num_folds, per_fold = int(header[0]), int(header[1])
    total = 2 * num_folds * per_fold
    left, right, same = [], [], []
    for k in range(total):
        if k + 1 == len(lines):
            raise PrunekitError(
                f"{path}:{k + 2}: the file ends, but its header promises {num_folds} folds of "
                f"2 x {per_fold} pairs ({total + 1} lines); {_FIX}"
            )
        fold, rank = divmod(k, 2 * per_fold)
        matched = rank < per_fold
        fields = lines[k + 1].split()
        if matched and len(fields) == 3 and _is_index(fields[1]) and _is_index(fields[2]):
            left.append(image_key(fields[0], int(fields[1])))
            right.append(image_key(fields[0], int(fields[2])))
        elif not matched and len(fields) == 4 and _is_index(fields[1]) and _is_index(fields[3]):
            left.append(image_key(fields[0], int(fields[1])))
            right.append(image_key(fields[2], int(fields[3])))
        else:
            kind = (
                "matched pair 'name idx1 idx2'"
                if matched
                else "mismatched pair 'name1 idx1 name2 idx2'"
            )
            raise PrunekitError(
                f"{path}:{k + 2}: expected a {kind} (fold {fold}, pair {rank % per_fold + 1} of "
                f"{per_fold}) with indices >= 1, got {lines[k + 1]!r}; {_FIX}"
            )
        same.append(matched)
    for lineno, line in enumerate(lines[total + 1 :], start=total + 2):
        if line.strip():
            raise PrunekitError(
                f"{path}:{lineno}: unexpected text after the last of {num_folds} folds, "
                f"got {line!r}; {_FIX}"
            )
    folds = np.arange(total) // (2 * per_fold)
    return Pairs.from_keys(left, right, same, folds)


def _is_index(token: str) -> bool:
    return token.isascii() and token.isdigit() and int(token) > 0


class LFW:
    """LFW evaluation pairs of ``eval_folds`` plus training people who appear in none of them.

    Training people are those named in no pair of ``train_exclude_folds`` (default: the
    evaluation folds, which it must include) with at least ``min_images`` images; since the
    folds are person-disjoint, nobody trained on is ever evaluated. Every image the evaluation
    pairs need is checked to exist up front.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        pairs_file: str | os.PathLike[str] | None = None,
        eval_folds: Iterable[int] | None = None,
        train_exclude_folds: Iterable[int] | None = None,
        min_images: int = 2,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise PrunekitError(
                f"LFW root {self.root} is not a folder; pass the folder holding "
                "<Name>/<Name>_NNNN.jpg (download_lfw creates one)"
            )
        every_pair = read_pairs(self.root / "pairs.txt" if pairs_file is None else pairs_file)
        num_folds = int(every_pair.fold.max()) + 1
        evaluated = _folds("eval_folds", eval_folds, num_folds)
        excluded = _folds("train_exclude_folds", train_exclude_folds, num_folds, evaluated)
        if not evaluated <= excluded:
            raise PrunekitError(
                f"train_exclude_folds={sorted(excluded)} must include every evaluation fold "
                f"{sorted(evaluated)}, or people trained on would be evaluated; add "
                f"{sorted(evaluated - excluded)}"
            )
        self.pairs = every_pair.select(sorted(evaluated))
        people = _scan(self.root)
        for key in self.pairs.images:
            name, file = key.split("/")
            if file not in people.get(name, ()):
                raise PrunekitError(
                    f"LFW image {self.root / key} named by the evaluation pairs is missing; "
                    "re-extract lfw.tgz there or point root at a complete copy"
                )
        held_out = {key.split("/")[0] for key in every_pair.select(excluded).images}
        train = [n for n, files in people.items() if n not in held_out and len(files) >= min_images]
        self._people = people
        self._evaluated = {key.split("/")[0] for key in self.pairs.images}
        #: training people, sorted; label ``i`` is ``train_identities[i]``
        self.train_identities: tuple[str, ...] = tuple(train)
        #: every image of every training person, grouped by person
        self.train_paths: tuple[Path, ...] = tuple(
            self.root / name / file for name in train for file in people[name]
        )
        #: the person (index into ``train_identities``) of each of ``train_paths``
        self.train_labels: np.ndarray = np.repeat(
            np.arange(len(train), dtype=np.int64), [len(people[name]) for name in train]
        )

    @property
    def recovery_paths(self) -> tuple[Path, ...]:
        """Every image of every person named in no evaluation pair, single-image people included.

        These need no identity labels (for label-free recovery after pruning) and are
        identity-disjoint from :attr:`pairs`. Ordered :attr:`train_paths` first, then the
        images of the other such people (fewer than ``min_images`` images, or only in
        ``train_exclude_folds`` outside ``eval_folds``), grouped by person in name order, so
        that one decoded array holds the training images as its prefix.
        """
        trained = set(self.train_identities)
        others = [
            name for name in self._people if name not in self._evaluated and name not in trained
        ]
        return self.train_paths + tuple(
            self.root / name / file for name in others for file in self._people[name]
        )

    def pair_paths(self) -> list[Path]:
        """Paths of ``pairs.images`` under ``root``, in order."""
        return [self.root / key for key in self.pairs.images]


def _folds(
    name: str, folds: Iterable[int] | None, num_folds: int, default: set[int] | None = None
) -> set[int]:
    if folds is None:
        return set(range(num_folds)) if default is None else default
    chosen = set(folds)
    if not chosen <= set(range(num_folds)):
        raise PrunekitError(
            f"{name}={sorted(chosen)} names folds outside 0..{num_folds - 1} of pairs.txt"
        )
    return chosen


def _scan(root: Path) -> dict[str, list[str]]:
    """Person name -> sorted ``.jpg`` file names, for every person folder under ``root``."""
    people = {}
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        if entry.is_dir() and not entry.name.startswith("."):
            files = sorted(f for f in os.listdir(entry.path) if f.endswith(".jpg"))
            if files:
                people[entry.name] = files
    return people
