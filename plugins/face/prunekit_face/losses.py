"""Training-only classification heads that turn (embedding, identity label) into a loss.

They are used to train or fine-tune an embedding network on identities and are discarded for
verification, which compares embeddings directly. ``SoftmaxHead`` is the SqueezerFaceNet paper's
choice; CosFace and ArcFace add a margin on the target class in normalised cosine space, which
usually gives more separable embeddings.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from prunekit.errors import PrunekitError

__all__ = ["ArcFaceHead", "ClassifierHead", "CosFaceHead", "SoftmaxHead", "make_head"]


class ClassifierHead(nn.Module):
    """Base head: ``forward(embedding, labels)`` is the cross-entropy of :meth:`logits`."""

    def logits(self, embedding: Tensor, labels: Tensor) -> Tensor:
        """Class logits ``[N, num_classes]``; margin heads use ``labels`` to find the target."""
        raise NotImplementedError

    def forward(self, embedding: Tensor, labels: Tensor) -> Tensor:
        return F.cross_entropy(self.logits(embedding, labels), labels)


class SoftmaxHead(ClassifierHead):
    """A linear classifier with plain softmax cross-entropy."""

    def __init__(self, embedding_size: int, num_classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(embedding_size, num_classes)

    def logits(self, embedding: Tensor, labels: Tensor) -> Tensor:
        return self.fc(embedding)


class _CosineHead(ClassifierHead):
    """Shared part of the margin heads: cosines between embeddings and class centres."""

    def __init__(self, embedding_size: int, num_classes: int, s: float, m: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_size))
        nn.init.xavier_uniform_(self.weight)
        self.s = s
        self.m = m

    def cosine(self, embedding: Tensor) -> Tensor:
        return F.linear(F.normalize(embedding), F.normalize(self.weight)).clamp(-1.0, 1.0)


class CosFaceHead(_CosineHead):
    """CosFace (large-margin cosine loss): target logit ``s * (cos(theta) - m)``."""

    def __init__(
        self, embedding_size: int, num_classes: int, *, s: float = 30.0, m: float = 0.35
    ) -> None:
        super().__init__(embedding_size, num_classes, s, m)

    def logits(self, embedding: Tensor, labels: Tensor) -> Tensor:
        cosine = self.cosine(embedding)
        margin = F.one_hot(labels, cosine.shape[1]).to(cosine.dtype) * self.m
        return self.s * (cosine - margin)


class ArcFaceHead(_CosineHead):
    """ArcFace (additive angular margin): target logit ``s * cos(theta + m)``.

    ``cos(theta + m)`` stops decreasing once ``theta + m`` passes pi, which would reward
    pushing hard samples further away. By default (as in the ArcFace reference code) targets
    with ``theta > pi - m`` get the CosFace-style ``cos(theta) - m * sin(m)`` instead; with
    ``easy_margin=True`` the margin applies only where ``cos(theta) > 0``.
    """

    def __init__(
        self,
        embedding_size: int,
        num_classes: int,
        *,
        s: float = 30.0,
        m: float = 0.5,
        easy_margin: bool = False,
    ) -> None:
        super().__init__(embedding_size, num_classes, s, m)
        self.easy_margin = easy_margin

    def logits(self, embedding: Tensor, labels: Tensor) -> Tensor:
        cosine = self.cosine(embedding)
        # The clamp keeps the gradient of sqrt finite at cos = +-1.
        sine = (1.0 - cosine.square()).clamp(min=1e-7).sqrt()
        shifted = cosine * math.cos(self.m) - sine * math.sin(self.m)
        if self.easy_margin:
            shifted = torch.where(cosine > 0, shifted, cosine)
        else:
            limit = math.cos(math.pi - self.m)
            shifted = torch.where(cosine > limit, shifted, cosine - self.m * math.sin(self.m))
        target = F.one_hot(labels, cosine.shape[1]).bool()
        return self.s * torch.where(target, shifted, cosine)


_HEADS: dict[str, type[ClassifierHead]] = {
    "softmax": SoftmaxHead,
    "cosface": CosFaceHead,
    "arcface": ArcFaceHead,
}


def make_head(name: str, embedding_size: int, num_classes: int, **kwargs: float) -> ClassifierHead:
    """The head called ``name`` ("softmax", "cosface" or "arcface"); ``kwargs`` go to its class."""
    try:
        head = _HEADS[name.lower()]
    except KeyError:
        raise PrunekitError(
            f"unknown classifier head {name!r}; choose one of: {', '.join(_HEADS)}"
        ) from None
    return head(embedding_size, num_classes, **kwargs)
