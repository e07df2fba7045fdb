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
  ``pairs.txt`` (an ``lfw/`` folder without ``pairs.txt`` is an error), ``folders`` if it is any
  other folder, else ``synthetic``.

Real images are decoded once and cached on disk (:func:`~prunekit_face.data.load_images`).
Data the task cannot use (no training image left, pairs the k-fold protocol cannot score) is
refused with the setting to change before anything trains.
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
    LFW_SOURCES,
    BadImageError,
    CachedImages,
    IdentityFolders,
    ImageTooSmall,
    Pairs,
    Preprocess,
    SyntheticFaces,
    balanced_pairs,
    load_images,
)
from prunekit_face.pretrained import LFW_CROP_BOX, MEAN_RGB

__all__ = ["SOURCES", "FaceData", "check_kfold", "load_face_data", "resolve_source"]

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

    Raises a :class:`PrunekitError` for an unknown source, a root that is not a folder, a
    real source without a root, or LFW without its ``pairs.txt``.
    """
    cfg = _data_section(cfg)
    source = cfg["source"]
    if source not in SOURCES:
        raise PrunekitError(f"data.source={source!r} is unknown: choose one of {SOURCES}")
    root = _root(cfg)
    if source == "auto":
        if root is None:
            return "synthetic", None
        lfw = _lfw_root(root) is not None or (root / "lfw").is_dir()
        source = "lfw" if lfw else "folders"
    elif source != "synthetic" and root is None:
        raise PrunekitError(
            f"data.source={source} needs a data folder: pass --data DIR or set PRUNEKIT_DATA"
        )
    if source == "lfw" and _lfw_root(root) is None:
        folder = root / "lfw" if (root / "lfw").is_dir() else root
        raise PrunekitError(
            f"{folder} has no pairs.txt, the LFW evaluation pairs: put the official View 2 "
            f"pairs.txt ({LFW_SOURCES['pairs.txt'].url}) in {folder}"
        )
    return source, root


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
    lfw_root = _lfw_root(root)
    assert lfw_root is not None  # resolve_source checked it
    lfw = LFW(lfw_root, eval_folds=cfg["eval_folds"], min_images=int(cfg["min_images"]))
    if not lfw.train_paths:
        raise PrunekitError(
            f"no person in {lfw_root} outside the evaluated folds "
            f"{sorted(set(cfg['eval_folds']))} has data.min_images={cfg['min_images']} or more "
            "images, so there is nobody to train on: lower data.min_images or evaluate fewer "
            "folds (data.eval_folds)"
        )
    # One decode serves both: the recovery images start with the training images.
    paths = lfw.recovery_paths
    n_train = len(lfw.train_paths)
    assert paths[:n_train] == lfw.train_paths
    recovery = _decoded(paths, prep, cfg, "lfw", progress)
    kept = int(np.searchsorted(recovery.indices, n_train))  # training images that decoded
    evaluation = _decoded(lfw.pair_paths(), prep, cfg, "lfw", progress, evaluation=True)
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
    train = _decoded(train_ids.paths, prep, cfg, "folders", progress)
    evaluation = _decoded(eval_ids.paths, prep, cfg, "folders", progress, evaluation=True)
    pairs = _balanced(eval_ids.labels, int(cfg["eval_pairs"]), seed)
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


def check_kfold(data: FaceData, cfg: dict[str, Any]) -> FaceData:
    """``data`` if the k-fold protocol can score its pairs, else a one-line error naming the
    setting to change: each fold's threshold is chosen on the other folds, so there must be two
    folds or more and the others must hold genuine and impostor pairs alike."""
    cfg = _data_section(cfg)
    folds, same = data.pairs.fold, data.pairs.same
    rest = [same[folds != f] for f in np.unique(folds)]
    if len(rest) >= 2 and all(r.any() and not r.all() for r in rest):
        return data
    if data.source == "lfw":
        evaluated = sorted(set(cfg["eval_folds"]))
        raise PrunekitError(
            f"data.eval_folds={evaluated} evaluates {len(evaluated)} fold(s), but the k-fold "
            "protocol chooses each fold's threshold on the other evaluated folds: evaluate 2 or "
            "more (e.g. --set data.eval_folds=[0,1])"
        )
    raise PrunekitError(
        f"data.eval_pairs={cfg['eval_pairs']} is too few: the k-fold protocol spreads the pairs "
        "over 10 folds and chooses each fold's threshold on the others, which then need genuine "
        "and impostor pairs; raise data.eval_pairs (e.g. --set data.eval_pairs=200)"
    )


# ---------------------------------------------------------------------- helpers
def _decoded(
    paths: Any,
    prep: Preprocess,
    cfg: dict[str, Any],
    source: str,
    progress: bool,
    evaluation: bool = False,
) -> CachedImages:
    """:func:`load_images` of training images under ``data.on_bad_image``, or of evaluation
    images, which are never skipped (the pairs need them), with advice that works from the
    command line."""
    policy = "fail" if evaluation else cfg["on_bad_image"]
    try:
        return load_images(paths, prep, on_bad_image=policy, progress=progress)
    except BadImageError as err:
        hint = ""
        if isinstance(err.reason, ImageTooSmall):  # only the lfw source crops
            hint = (
                f"; the lfw source cuts the face box {LFW_CROP_BOX} out of 250x250 LFW images: "
                "for images of another size use --set data.source=folders"
            )
        if not evaluation:
            raise PrunekitError(f"{err}{hint}") from None
        fix = "restore it from lfw.tgz" if source == "lfw" else "delete or replace it"
        raise PrunekitError(
            f"bad evaluation image {err.path} ({err.reason}); evaluation images are never "
            f"skipped (data.on_bad_image applies to training images), so {fix}{hint}"
        ) from None


def _lfw_root(root: Path) -> Path | None:
    """The folder holding LFW's ``pairs.txt``: ``root/lfw`` or ``root`` (None: neither)."""
    return next((f for f in (root / "lfw", root) if (f / "pairs.txt").is_file()), None)


def _face_data(
    train_images: np.ndarray,
    train_labels: np.ndarray,
    eval_images: np.ndarray,
    pairs: Pairs,
    **rest: Any,
) -> FaceData:
    """The :class:`FaceData` of decoded arrays; refuses data left without a training image."""
    skipped = rest.get("skipped", ())
    if not len(train_images) and skipped:
        raise PrunekitError(
            f"no training image is left: all {len(skipped)} were unreadable and skipped "
            f"(data.on_bad_image=skip), e.g. {skipped[0]}; replace them or point data.root at "
            "a complete copy"
        )
    _warn_skipped(skipped)
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
            stacklevel=4,  # load_face_data's caller
        )
