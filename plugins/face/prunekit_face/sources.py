"""The face task's data sources: one call turns the ``data`` config into decoded arrays.

:func:`load_face_data` dispatches on ``data.source``:

* ``lfw`` — LFW in its official layout (``<root>/lfw/<Name>/<Name>_NNNN.jpg`` + ``pairs.txt``,
  or the same directly in ``<root>``): evaluation on the official pairs of ``data.eval_folds``,
  training on the people who appear in none of them and have ``data.min_images`` images or
  more, recovery on every image of every person outside the evaluated folds.
* ``folders`` — any ``<root>/<identity>/<image>`` dataset (ORL, VGGFace2, CASIA-WebFace):
  ``data.eval_identities`` identities held out, ``data.eval_pairs`` balanced pairs among them
  drawn by the seed; training and recovery on the other identities.
* ``synthetic`` — procedural identities generated from the seed (the offline default): the last
  fifth of the identities is evaluated, the rest trained and recovered on.
* ``auto`` — ``lfw`` if ``data.root`` (or ``$PRUNEKIT_DATA``) holds ``lfw/pairs.txt`` or
  ``pairs.txt``, ``folders`` if it is any other folder, else ``synthetic``.

Real images are decoded once and cached on disk (:func:`~prunekit_face.data.load_images`).
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from prunekit.errors import PrunekitError
from prunekit_face.data import (
    LFW,
    IdentityFolders,
    Pairs,
    Preprocess,
    SyntheticFaces,
    balanced_pairs,
    load_images,
)
from prunekit_face.pretrained import LFW_CROP_BOX, MEAN_RGB

__all__ = ["SOURCES", "FaceData", "load_face_data", "resolve_source"]

SOURCES = ("auto", "lfw", "folders", "synthetic")


@dataclass(frozen=True)
class FaceData:
    """Decoded face data of one configuration, and where it came from.

    Images are uint8 ``[N, H, W, 3]`` arrays (possibly read-only memory maps of the decode
    cache). ``train_labels[i]`` (int64, ``0..num_classes-1``) is the identity of
    ``train_images[i]``; ``pairs`` index ``eval_images``; ``recovery_images`` need no labels
    and show nobody who is evaluated. ``normalize`` maps a 0-255 NCHW batch to the network's
    input (:meth:`Preprocess.normalize`).

    Provenance: ``source`` (``lfw``, ``folders`` or ``synthetic``, never ``auto``), ``root``
    (the absolute folder read, or None for synthetic data), the counts, ``pairs_sha256`` (a
    short sha256 of the pairs file for ``lfw``, of the drawn pairs otherwise) and ``skipped``
    (the unreadable images dropped under ``data.on_bad_image=skip``).
    """

    train_images: np.ndarray
    train_labels: np.ndarray
    eval_images: np.ndarray
    pairs: Pairs
    recovery_images: np.ndarray
    num_classes: int
    normalize: Callable[[torch.Tensor], torch.Tensor]
    source: str
    root: Path | None
    train_count: int
    eval_count: int
    pair_count: int
    pairs_sha256: str
    skipped: tuple[Path, ...] = ()


def resolve_source(cfg: dict[str, Any]) -> tuple[str, Path | None]:
    """``(source, root)`` of a ``data`` config, without reading any image: ``auto`` resolved,
    ``root`` from ``data.root`` or ``$PRUNEKIT_DATA`` (absolute; None when neither is set).

    Raises a :class:`PrunekitError` for an unknown source, a root that is not a folder, or a
    real source without a root.
    """
    cfg = _data_section(cfg)
    source = cfg["source"]
    if source not in SOURCES:
        raise PrunekitError(f"data.source={source!r} is unknown: choose one of {SOURCES}")
    root = _root(cfg)
    if source != "auto":
        if source != "synthetic" and root is None:
            raise PrunekitError(
                f"data.source={source} needs a data folder: pass --data DIR or set PRUNEKIT_DATA"
            )
        return source, root
    if root is None:
        return "synthetic", None
    lfw = (root / "lfw" / "pairs.txt").is_file() or (root / "pairs.txt").is_file()
    return ("lfw" if lfw else "folders"), root


def load_face_data(cfg: dict[str, Any], seed: int, progress: bool) -> FaceData:
    """Decode (once, cached on disk) or generate the data that ``cfg`` describes.

    ``cfg`` is the ``data`` section of a resolved face configuration (a whole configuration,
    holding ``data``, is accepted too); ``seed`` draws the synthetic identities, the
    ``folders`` split and the generated pairs; ``progress`` shows decoding progress bars.
    """
    cfg = _data_section(cfg)
    source, root = resolve_source(cfg)
    crop = LFW_CROP_BOX if source == "lfw" else None
    prep = Preprocess(size=int(cfg["size"]), crop_box=crop, mean=MEAN_RGB)
    if source == "synthetic":
        return _synthetic(cfg, seed, prep)
    assert root is not None
    if source == "lfw":
        return _lfw(cfg, root, prep, progress)
    return _folders(cfg, root, seed, prep, progress)


# ---------------------------------------------------------------------- the sources
def _synthetic(cfg: dict[str, Any], seed: int, prep: Preprocess) -> FaceData:
    n_id = int(cfg["synthetic_identities"])
    faces = SyntheticFaces(n_id, int(cfg["synthetic_images"]), int(cfg["size"]), seed=seed)
    held_out = max(2, n_id // 5)  # the last fifth of identities is evaluated
    is_eval = faces.labels >= n_id - held_out
    train_x = faces.images[~is_eval]
    eval_y = faces.labels[is_eval]
    pairs = _balanced(eval_y, int(cfg["eval_pairs"]), seed)
    keys = [str(k) for k in range(len(eval_y))]
    return _face_data(
        train_x,
        faces.labels[~is_eval],
        faces.images[is_eval],
        pairs,
        recovery_images=train_x,
        normalize=prep.normalize,
        source="synthetic",
        root=None,
        pairs_sha256=_pairs_hash(pairs, keys),
    )


def _lfw(cfg: dict[str, Any], root: Path, prep: Preprocess, progress: bool) -> FaceData:
    lfw_root = root / "lfw" if (root / "lfw" / "pairs.txt").is_file() else root
    lfw = LFW(lfw_root, eval_folds=cfg["eval_folds"], min_images=int(cfg["min_images"]))
    # One decode serves both: the recovery images start with the training images.
    paths = lfw.recovery_paths
    n_train = len(lfw.train_paths)
    assert paths[:n_train] == lfw.train_paths
    recovery = load_images(paths, prep, on_bad_image=cfg["on_bad_image"], progress=progress)
    kept = int(np.searchsorted(recovery.indices, n_train))  # training images that decoded
    evaluation = load_images(lfw.pair_paths(), prep, on_bad_image="fail", progress=progress)
    _warn_skipped(recovery.skipped)
    return _face_data(
        recovery.images[:kept],
        lfw.train_labels[recovery.indices[:kept]],
        evaluation.images,
        lfw.pairs,
        recovery_images=recovery.images,
        normalize=prep.normalize,
        source="lfw",
        root=lfw_root,
        pairs_sha256=_file_hash(lfw_root / "pairs.txt"),
        skipped=recovery.skipped,
    )


def _folders(
    cfg: dict[str, Any], root: Path, seed: int, prep: Preprocess, progress: bool
) -> FaceData:
    every = IdentityFolders.scan(root)
    train_ids, eval_ids = every.split(int(cfg["eval_identities"]), seed)
    train = load_images(train_ids.paths, prep, on_bad_image=cfg["on_bad_image"], progress=progress)
    evaluation = load_images(eval_ids.paths, prep, on_bad_image="fail", progress=progress)
    pairs = _balanced(eval_ids.labels, int(cfg["eval_pairs"]), seed)
    _warn_skipped(train.skipped)
    keys = [path.relative_to(root).as_posix() for path in eval_ids.paths]
    return _face_data(
        train.images,
        train_ids.labels[train.indices],
        evaluation.images,
        pairs,
        recovery_images=train.images,
        normalize=prep.normalize,
        source="folders",
        root=root,
        pairs_sha256=_pairs_hash(pairs, keys),
        skipped=train.skipped,
    )


# ---------------------------------------------------------------------- helpers
def _face_data(
    train_images: np.ndarray,
    train_labels: np.ndarray,
    eval_images: np.ndarray,
    pairs: Pairs,
    **rest: Any,
) -> FaceData:
    # labels must be 0..K-1 for the classifier head (skipped images may empty an identity)
    _, labels = np.unique(np.asarray(train_labels), return_inverse=True)
    labels = labels.astype(np.int64).reshape(-1)
    return FaceData(
        train_images=train_images,
        train_labels=labels,
        eval_images=eval_images,
        pairs=pairs,
        num_classes=int(labels.max()) + 1 if len(labels) else 0,
        train_count=len(train_images),
        eval_count=len(eval_images),
        pair_count=len(pairs),
        **rest,
    )


def _data_section(cfg: dict[str, Any]) -> dict[str, Any]:
    return cfg["data"] if isinstance(cfg.get("data"), dict) else cfg


def _root(cfg: dict[str, Any]) -> Path | None:
    root = cfg.get("root")  # prunekit fills it from --data or $PRUNEKIT_DATA
    if not root:
        return None
    path = Path(root).expanduser()
    if not path.is_dir():
        raise PrunekitError(
            f"data root {path} does not exist: pass --data DIR / data.root or set "
            "PRUNEKIT_DATA to a folder holding lfw/ or <identity>/<image> folders"
        )
    return path.absolute()


def _balanced(labels: np.ndarray, n_pairs: int, seed: int) -> Pairs:
    """Balanced pairs over images ``0..N-1`` spread over 10 folds (for threshold selection)."""
    i, j, same = balanced_pairs(np.asarray(labels), n_pairs, seed)
    fold = np.random.default_rng(seed).integers(0, 10, len(same))
    return Pairs(tuple(str(k) for k in range(len(labels))), i, j, same, fold)


def _pairs_hash(pairs: Pairs, keys: list[str]) -> str:
    """Short sha256 of the pairs written as lines ``left right same fold`` (images by key)."""
    lines = (
        f"{keys[a]} {keys[b]} {int(s)} {f}\n"
        for a, b, s, f in zip(
            pairs.left.tolist(), pairs.right.tolist(), pairs.same.tolist(), pairs.fold.tolist()
        )
    )
    digest = hashlib.sha256()
    for line in lines:
        digest.update(line.encode())
    return digest.hexdigest()[:16]


def _file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def _warn_skipped(skipped: tuple[Path, ...]) -> None:
    if skipped:
        warnings.warn(
            f"skipped {len(skipped)} unreadable training images (data.on_bad_image=skip), "
            f"e.g. {skipped[0]}",
            stacklevel=3,
        )
