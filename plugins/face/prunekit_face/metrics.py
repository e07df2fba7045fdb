"""Face-verification metrics over pair scores (numpy only).

Conventions: ``scores`` are similarities (higher = more likely the same person); ``labels`` are
1 for genuine (same-person) pairs and 0 for impostor pairs; a pair is accepted when its score is
``>=`` the threshold. Thresholds are placed at the unique scores, so tied scores are always
accepted or rejected together and no operating point is reported that no threshold can reach.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = [
    "auc",
    "best_threshold",
    "cosine_scores",
    "eer",
    "flip_fused",
    "frr_at_far",
    "fuse_templates",
    "kfold_accuracy",
    "roc",
    "tar_at_far",
    "verification_report",
]


def cosine_scores(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of each row of ``a`` with the same row of ``b`` (``[N, D]`` -> ``[N]``)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.einsum("nd,nd->n", a, b) / np.maximum(norms, np.finfo(np.float64).tiny)


def flip_fused(embed_fn: Callable[[np.ndarray], np.ndarray], images: np.ndarray) -> np.ndarray:
    """``embed_fn(images) + embed_fn(mirrored images)``: a cheap, usually more robust embedding.

    ``images`` is a batch whose last axis is the image width (e.g. ``[N, C, H, W]``).
    """
    mirrored = np.ascontiguousarray(images[..., ::-1])
    return np.asarray(embed_fn(images)) + np.asarray(embed_fn(mirrored))


def fuse_templates(embeddings: np.ndarray, k: int) -> np.ndarray:
    """Mean of each consecutive group of ``k`` embeddings: ``[N*k, D]`` -> ``[N, D]``.

    This is the multi-image template of the SqueezerFaceNet evaluation (k = 5 images per
    template), compared with :func:`cosine_scores` like single embeddings.
    """
    embeddings = np.asarray(embeddings, dtype=np.float64)
    if k < 1 or len(embeddings) % k:
        raise ValueError(f"cannot split {len(embeddings)} embeddings into templates of {k}")
    return embeddings.reshape(len(embeddings) // k, k, -1).mean(axis=1)


def roc(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC curve: false accept rate, true accept rate and threshold at each operating point.

    Thresholds are the unique scores in decreasing order, preceded by ``+inf`` (accept nothing),
    so the curve runs from (0, 0) to (1, 1).
    """
    scores, labels = _checked(scores, labels)
    order = np.argsort(-scores, kind="stable")
    scores, labels = scores[order], labels[order]
    # The last index of each run of equal scores: accepting down to that score.
    last = np.flatnonzero(np.append(np.diff(scores) != 0, True))
    genuine = np.cumsum(labels)[last]
    impostor = (last + 1) - genuine
    far = np.concatenate([[0.0], impostor / (len(labels) - labels.sum())])
    tar = np.concatenate([[0.0], genuine / labels.sum()])
    thresholds = np.concatenate([[np.inf], scores[last]])
    return far, tar, thresholds


def eer(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Equal error rate and the threshold nearest to it.

    The EER is where the false accept and false reject rates cross, linearly interpolated
    between the two operating points that bracket the crossing; the threshold returned is the
    one of those two whose FAR and FRR are closer.
    """
    far, tar, thresholds = roc(scores, labels)
    gap = far - (1.0 - tar)  # rises from -1 at +inf to +1 at the lowest score
    i = int(np.argmax(gap >= 0))
    if gap[i] == 0:
        return float(far[i]), float(thresholds[i])
    alpha = -gap[i - 1] / (gap[i] - gap[i - 1])
    rate = far[i - 1] + alpha * (far[i] - far[i - 1])
    nearest = i if gap[i] <= -gap[i - 1] else i - 1
    return float(rate), float(thresholds[nearest])


def tar_at_far(scores: np.ndarray, labels: np.ndarray, far: float) -> float | None:
    """Best true accept rate at a false accept rate of at most ``far``.

    ``None`` when there are fewer than ``1 / far`` impostor pairs: such a FAR cannot be
    measured (a single false accept already exceeds it), so any number would be made up.
    """
    scores, labels = _checked(scores, labels)
    if (len(labels) - labels.sum()) * far < 1 - 1e-9:
        return None
    fars, tars, _ = roc(scores, labels)
    return float(tars[fars <= far].max())


def frr_at_far(scores: np.ndarray, labels: np.ndarray, far: float) -> float | None:
    """False reject rate ``1 - TAR`` at a FAR of at most ``far`` (``None`` when unmeasurable)."""
    tar = tar_at_far(scores, labels, far)
    return None if tar is None else 1.0 - tar


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve: the chance that a genuine pair outscores an impostor pair.

    Ties count one half (the ROC joins tied scores with a straight segment).
    """
    far, tar, _ = roc(scores, labels)
    return float(np.sum(np.diff(far) * (tar[1:] + tar[:-1]) / 2))


def best_threshold(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """The threshold that maximises verification accuracy on these pairs, and that accuracy.

    The threshold is the midpoint between the lowest accepted and the highest rejected score
    (``+inf``/``-inf`` when rejecting/accepting everything); on ties the highest wins.
    """
    far, tar, thresholds = roc(scores, labels)
    positives = float(np.sum(labels))
    correct = tar * positives + (1.0 - far) * (len(labels) - positives)
    i = int(np.argmax(correct))
    if i == 0 or i == len(thresholds) - 1:
        threshold = np.inf if i == 0 else -np.inf
    else:
        threshold = (thresholds[i] + thresholds[i + 1]) / 2
    return float(threshold), float(correct[i] / len(labels))


def kfold_accuracy(
    scores: np.ndarray, labels: np.ndarray, folds: np.ndarray
) -> tuple[float, float]:
    """Mean and standard deviation (``ddof=0``) of k-fold verification accuracy.

    The LFW protocol: for each fold the threshold is chosen with :func:`best_threshold` on the
    other folds and the held-out fold's accuracy is measured with it. ``folds`` gives each
    pair's fold id.
    """
    scores, labels = _checked(scores, labels)
    folds = np.asarray(folds)
    if folds.shape != scores.shape:
        raise ValueError(f"folds has shape {folds.shape}, scores {scores.shape}")
    accuracies = []
    for fold in np.unique(folds):
        held_out = folds == fold
        threshold, _ = best_threshold(scores[~held_out], labels[~held_out])
        accepted = scores[held_out] >= threshold
        accuracies.append(np.mean(accepted == labels[held_out].astype(bool)))
    return float(np.mean(accuracies)), float(np.std(accuracies))


def verification_report(
    scores: np.ndarray, labels: np.ndarray, folds: np.ndarray | None = None
) -> dict[str, float | int | None]:
    """The usual verification numbers in one dict.

    With ``folds``: ``kfold_accuracy`` and ``kfold_accuracy_std`` (unbiased: thresholds never see
    the pairs they are scored on). Without: ``best_threshold_accuracy``, an optimistic upper
    bound because the threshold is tuned on the evaluation pairs themselves. Always: ``eer``,
    ``eer_threshold``, ``auc``, ``tar@far=1e-2``, ``tar@far=1e-3``, ``frr@far=1e-2``,
    ``frr@far=1e-3`` (``None`` when too few impostor pairs), ``genuine_pairs``,
    ``impostor_pairs``.
    """
    scores, labels = _checked(scores, labels)
    report: dict[str, float | int | None] = {}
    if folds is not None:
        report["kfold_accuracy"], report["kfold_accuracy_std"] = kfold_accuracy(
            scores, labels, folds
        )
    else:
        report["best_threshold_accuracy"] = best_threshold(scores, labels)[1]
    report["eer"], report["eer_threshold"] = eer(scores, labels)
    report["auc"] = auc(scores, labels)
    for name, far in (("1e-2", 1e-2), ("1e-3", 1e-3)):
        report[f"tar@far={name}"] = tar_at_far(scores, labels, far)
        report[f"frr@far={name}"] = frr_at_far(scores, labels, far)
    report["genuine_pairs"] = int(labels.sum())
    report["impostor_pairs"] = int(len(labels) - labels.sum())
    return report


def _checked(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scores as float64 and labels as 0/1 int64, both 1-D and non-empty in both classes."""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels).ravel()
    if scores.shape != labels.shape:
        raise ValueError(f"{scores.size} scores but {labels.size} labels")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("labels must be 0 (impostor) or 1 (genuine)")
    labels = labels.astype(np.int64)
    if labels.sum() in (0, len(labels)):
        raise ValueError("need both genuine (1) and impostor (0) pairs")
    if not np.isfinite(scores).all():
        raise ValueError("scores must be finite")
    return scores, labels
