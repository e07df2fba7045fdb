"""Verification metrics on small cases worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from prunekit_face import metrics

# Genuine pairs score 0.9, 0.8, 0.4; impostors 0.7, 0.3, 0.2.
SCORES = np.array([0.9, 0.8, 0.7, 0.4, 0.3, 0.2])
LABELS = np.array([1, 1, 0, 1, 0, 0])


def test_cosine_scores() -> None:
    a = np.array([[1.0, 0.0], [3.0, 4.0], [1.0, 1.0], [0.0, 0.0]])
    b = np.array([[0.0, 2.0], [6.0, 8.0], [-2.0, -2.0], [1.0, 0.0]])
    np.testing.assert_allclose(metrics.cosine_scores(a, b), [0.0, 1.0, -1.0, 0.0], atol=1e-12)


def test_flip_fused_mirrors_the_width_axis() -> None:
    images = np.array([[[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]]])  # [N=1, C=1, H=2, W=3]
    fused = metrics.flip_fused(lambda x: x.reshape(len(x), -1), images)
    np.testing.assert_array_equal(fused, [[4.0, 4.0, 4.0, 10.0, 10.0, 10.0]])


def test_fuse_templates() -> None:
    embeddings = np.array([[1.0, 0.0], [3.0, 2.0], [0.0, 4.0], [2.0, 0.0]])
    np.testing.assert_array_equal(metrics.fuse_templates(embeddings, 2), [[2.0, 1.0], [1.0, 2.0]])
    with pytest.raises(ValueError, match="templates of 3"):
        metrics.fuse_templates(embeddings, 3)


def test_roc_points() -> None:
    far, tar, thresholds = metrics.roc(SCORES, LABELS)
    np.testing.assert_array_equal(thresholds, [np.inf, 0.9, 0.8, 0.7, 0.4, 0.3, 0.2])
    np.testing.assert_allclose(far, [0, 0, 0, 1 / 3, 1 / 3, 2 / 3, 1])
    np.testing.assert_allclose(tar, [0, 1 / 3, 2 / 3, 2 / 3, 1, 1, 1])


def test_ties_share_one_threshold() -> None:
    scores, labels = [0.5, 0.5, 0.5, 0.1], [1, 0, 1, 0]
    far, tar, thresholds = metrics.roc(scores, labels)
    np.testing.assert_array_equal(thresholds, [np.inf, 0.5, 0.1])
    np.testing.assert_allclose(far, [0, 0.5, 1])
    np.testing.assert_allclose(tar, [0, 1, 1])
    # Each genuine beats the 0.1 impostor and ties the 0.5 one: (1 + 1/2) / 2.
    assert metrics.auc(scores, labels) == pytest.approx(0.75)
    # FAR rises 0 -> 1/2 while FRR falls 1 -> 0 across the tie: they meet at 1/3.
    assert metrics.eer(scores, labels) == pytest.approx((1 / 3, 0.5))


def test_eer_at_an_exact_crossing() -> None:
    # At threshold 0.7 one impostor (of 3) is accepted and one genuine (0.4) rejected.
    assert metrics.eer(SCORES, LABELS) == pytest.approx((1 / 3, 0.7))


def test_eer_interpolates_between_operating_points() -> None:
    scores = [0.9, 0.6, 0.7, 0.1, 0.05, 0.0]
    labels = [1, 1, 0, 0, 0, 0]
    # At 0.7: FAR 1/4, FRR 1/2; at 0.6: FAR 1/4, FRR 0. The rates cross halfway, at 1/4; both
    # points are 1/4 from the crossing and the lower threshold wins the tie.
    assert metrics.eer(scores, labels) == pytest.approx((0.25, 0.6))


def test_auc() -> None:
    # Genuine 0.9 and 0.8 beat all three impostors, 0.4 beats two: 8 of 9 pairs.
    assert metrics.auc(SCORES, LABELS) == pytest.approx(8 / 9)


def test_tar_and_frr_at_far() -> None:
    impostors = np.arange(10) / 10  # 0.0 ... 0.9
    genuine = np.array([0.95, 0.85, 0.55, 0.05])
    scores = np.concatenate([impostors, genuine])
    labels = np.concatenate([np.zeros(10), np.ones(4)])
    # FAR <= 0.1 allows accepting the 0.9 impostor, so 0.95 and 0.85 pass.
    assert metrics.tar_at_far(scores, labels, 0.1) == pytest.approx(0.5)
    assert metrics.frr_at_far(scores, labels, 0.1) == pytest.approx(0.5)
    assert metrics.tar_at_far(scores, labels, 0.5) == pytest.approx(0.75)
    # 10 impostors cannot measure a FAR of 0.05: one false accept is already 0.1.
    assert metrics.tar_at_far(scores, labels, 0.05) is None
    assert metrics.frr_at_far(scores, labels, 0.05) is None


def test_best_threshold() -> None:
    # Accepting down to 0.8 or to 0.4 both get 5 of 6 right; the higher one wins, placed
    # midway between 0.8 and the next score 0.7.
    assert metrics.best_threshold(SCORES, LABELS) == pytest.approx((0.75, 5 / 6))
    assert metrics.best_threshold([0.1, 0.9], [1, 0]) == (np.inf, 0.5)


def test_kfold_accuracy() -> None:
    scores = np.array([0.8, 0.6, 0.3, 0.55, 0.9, 0.65, 0.2, 0.4])
    labels = np.array([1, 1, 0, 0, 1, 1, 0, 0])
    folds = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    # Fold 0 is scored with fold 1's threshold 0.525 (0.65 | 0.4): the 0.55 impostor is
    # accepted, 3/4. Fold 1 is scored with fold 0's 0.575 (0.6 | 0.55): all right, 4/4.
    assert metrics.kfold_accuracy(scores, labels, folds) == pytest.approx((0.875, 0.125))
    with pytest.raises(ValueError, match="folds"):
        metrics.kfold_accuracy(scores, labels, folds[:4])


def test_verification_report() -> None:
    report = metrics.verification_report(SCORES, LABELS)
    assert report == pytest.approx(
        {
            "best_threshold_accuracy": 5 / 6,
            "eer": 1 / 3,
            "eer_threshold": 0.7,
            "auc": 8 / 9,
            "tar@far=1e-2": None,
            "frr@far=1e-2": None,
            "tar@far=1e-3": None,
            "frr@far=1e-3": None,
            "genuine_pairs": 3,
            "impostor_pairs": 3,
        }
    )
    folds = np.array([0, 1, 0, 1, 0, 1])
    with_folds = metrics.verification_report(SCORES, LABELS, folds)
    assert "best_threshold_accuracy" not in with_folds
    assert {"kfold_accuracy", "kfold_accuracy_std"} <= with_folds.keys()


@pytest.mark.parametrize(
    ("scores", "labels", "message"),
    [
        ([0.1, 0.2], [1, 1], "both genuine"),
        ([0.1, 0.2], [1, 2], "0 .impostor. or 1"),
        ([0.1], [1, 0], "1 scores but 2 labels"),
        ([np.nan, 0.2], [1, 0], "finite"),
    ],
)
def test_bad_input(scores, labels, message) -> None:
    with pytest.raises(ValueError, match=message):
        metrics.roc(scores, labels)
