"""What to remove: a fraction of the model's parameters, MACs or prunable channels."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, model_serializer, model_validator

from prunekit.errors import PrunekitError
from prunekit.settings import Settings

METRICS = ("params", "macs", "channels")

#: a fraction of a metric to remove: strictly between 0 and 1
Fraction = Annotated[float, Field(gt=0.0, lt=1.0)]
_FRACTION = {"allowed": "a fraction in (0, 1)"}


class Target(Settings):
    """A pruning target: the fraction of ONE metric to remove, relative to the unpruned model.

    * ``params``: every element of every ``nn.Parameter`` of the model (weights, biases,
      BatchNorm affine terms, PReLU slopes; ignored layers included; buffers such as BatchNorm
      running statistics are not counted).
    * ``macs``: multiply-accumulates of all convolutions and linear layers for one forward pass
      of the example inputs (``positions x kept weight elements``; biases, norms and activations
      are not counted).
    * ``channels``: output channels of the prunable dependency groups (one per group root).

    Exactly one of the three must be given, in the open interval (0, 1).
    """

    model_config = Settings.model_config | {
        "title": "a mapping of one of params, macs, channels to a fraction in (0, 1)"
    }
    atomic = True

    params: Fraction | None = Field(None, json_schema_extra=_FRACTION)
    macs: Fraction | None = Field(None, json_schema_extra=_FRACTION)
    channels: Fraction | None = Field(None, json_schema_extra=_FRACTION)

    @model_validator(mode="after")
    def _exactly_one(self) -> Target:
        if sum(v is not None for v in (self.params, self.macs, self.channels)) != 1:
            raise ValueError(
                f"name exactly one of {', '.join(METRICS)} with the fraction to remove "
                "(e.g. params=0.4)"
            )
        return self

    @model_serializer
    def _as_config(self) -> dict[str, float]:
        """``{metric: fraction}``: the form a configuration holds."""
        return {self.metric: self.fraction}

    @property
    def metric(self) -> str:
        """Which metric the target is expressed in."""
        return next(m for m in METRICS if getattr(self, m) is not None)

    @property
    def fraction(self) -> float:
        """The fraction of :attr:`metric` to remove."""
        return float(getattr(self, self.metric))

    @classmethod
    def parse(cls, text: str | dict[str, Any] | Target) -> Target:
        """Build from ``"params=0.4"``, ``{"params": 0.4}`` or a Target."""
        if isinstance(text, Target):
            return text
        return cls(**(text if isinstance(text, dict) else cls.split(text)))

    @staticmethod
    def split(text: str) -> dict[str, float]:
        """``"params=0.4"`` -> ``{"params": 0.4}``: the syntax only (the range is checked when
        a Target is built from it)."""
        key, sep, value = str(text).partition("=")
        try:
            number = float(value)
        except ValueError:
            number = None
        if not sep or number is None or key.strip() not in METRICS:
            raise PrunekitError(
                f"target {text!r} is malformed: write METRIC=FRACTION with METRIC one of "
                f"{'|'.join(METRICS)} (e.g. params=0.4)"
            )
        return {key.strip(): number}

    def __str__(self) -> str:
        return f"{self.metric}={self.fraction:g}"
