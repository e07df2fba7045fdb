"""Classifier heads: margins against hand-computed logits, and gradients."""

from __future__ import annotations

import math

import pytest
import torch

from prunekit.errors import PrunekitError
from prunekit_face.losses import ArcFaceHead, CosFaceHead, SoftmaxHead, make_head


def at_angles(head: torch.nn.Module, degrees: list[float]) -> torch.Tensor:
    """Point the two class centres along the axes; return 2-D embeddings at these angles."""
    with torch.no_grad():
        head.weight.copy_(torch.eye(2))
    radians = torch.tensor(degrees, dtype=torch.float64).deg2rad()
    return torch.stack([radians.cos(), radians.sin()], dim=1).float() * 3.0  # norm is ignored


def test_cosface_margin() -> None:
    head = CosFaceHead(2, 2)
    embedding = at_angles(head, [60.0])
    logits = head.logits(embedding, torch.tensor([0]))
    expected = [30 * (0.5 - 0.35), 30 * math.sqrt(3) / 2]
    torch.testing.assert_close(logits, torch.tensor([expected]))
    loss = head(embedding, torch.tensor([0]))
    assert loss.item() == pytest.approx(math.log1p(math.exp(expected[1] - expected[0])), rel=1e-5)


def test_arcface_margin() -> None:
    head = ArcFaceHead(2, 2)
    # Target class 0 at 60 and at 170 degrees: 170 > 180 - m (151.4), so it gets the fallback
    # cos(theta) - m * sin(m) instead of cos(theta + m).
    embedding = at_angles(head, [60.0, 170.0])
    logits = head.logits(embedding, torch.tensor([0, 0]))
    rad = math.radians
    expected = [
        [30 * math.cos(rad(60) + 0.5), 30 * math.sin(rad(60))],
        [30 * (math.cos(rad(170)) - 0.5 * math.sin(0.5)), 30 * math.sin(rad(170))],
    ]
    torch.testing.assert_close(logits, torch.tensor(expected), rtol=1e-5, atol=1e-4)


def test_arcface_easy_margin_skips_obtuse_angles() -> None:
    head = ArcFaceHead(2, 2, s=10.0, m=0.2, easy_margin=True)
    embedding = at_angles(head, [30.0, 100.0])
    logits = head.logits(embedding, torch.tensor([0, 0]))
    rad = math.radians
    expected = [
        [10 * math.cos(rad(30) + 0.2), 10 * math.sin(rad(30))],
        [10 * math.cos(rad(100)), 10 * math.sin(rad(100))],
    ]
    torch.testing.assert_close(logits, torch.tensor(expected), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("name", ["softmax", "cosface", "ArcFace"])
def test_gradients_reach_embedding_and_head(name: str) -> None:
    head = make_head(name, 8, 5)
    embedding = torch.randn(6, 8, requires_grad=True)
    labels = torch.tensor([0, 1, 2, 3, 4, 0])
    loss = head(embedding, labels)
    loss.backward()
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert embedding.grad is not None and embedding.grad.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in head.parameters())


def test_arcface_gradient_is_finite_at_zero_angle() -> None:
    head = ArcFaceHead(2, 2)
    embedding = at_angles(head, [0.0]).requires_grad_()
    head(embedding, torch.tensor([0])).backward()
    assert torch.isfinite(embedding.grad).all()


def test_make_head() -> None:
    assert isinstance(make_head("softmax", 4, 3), SoftmaxHead)
    head = make_head("cosface", 4, 3, s=16.0, m=0.2)
    assert (head.s, head.m, head.weight.shape) == (16.0, 0.2, (3, 4))
    with pytest.raises(PrunekitError, match="unknown classifier head 'center'"):
        make_head("center", 4, 3)
