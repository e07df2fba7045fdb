"""What to remove: a fraction of the model's parameters, MACs or prunable channels, or of its
measured latency."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, model_serializer, model_validator

from prunekit.errors import PrunekitError
from prunekit.settings import Settings

#: the metrics the planner counts exactly
METRICS = ("params", "macs", "channels")
#: every key a target accepts: the counted metrics, then the measured one
TARGETS = (*METRICS, "latency")

#: a share strictly between 0 and 1
Fraction = Annotated[float, Field(gt=0.0, lt=1.0)]
_FRACTION = {"allowed": "a fraction in (0, 1)"}
_RATIO = {"allowed": "a ratio in (0, 1) of the pruned model's latency to the parent's"}


class Target(Settings):
    """A pruning target for ONE metric, relative to the unpruned model.

    * ``params``: the fraction of every element of every ``nn.Parameter`` to remove (weights,
      biases, BatchNorm affine terms, PReLU slopes; ignored layers included; buffers such as
      BatchNorm running statistics are not counted).
    * ``macs``: the fraction of multiply-accumulates of all convolutions and linear layers for
      one forward pass of the example inputs to remove (``positions x kept weight elements``;
      biases, norms and activations are not counted).
    * ``channels``: the fraction of output channels of the prunable dependency groups (one per
      group root) to remove.
    * ``latency``: unlike the others, the ratio to KEEP: ``latency=0.6`` means a measured
      forward pass takes at most 60% of the parent's time (40% of it removed; see
      :attr:`fraction`).

    Exactly one of the four must be given, in the open interval (0, 1).
    """

    model_config = Settings.model_config | {
        "title": "a mapping of one of params, macs, channels to a fraction in (0, 1), or of "
        "latency to a ratio in (0, 1)"
    }
    atomic = True

    params: Fraction | None = Field(None, json_schema_extra=_FRACTION)
    macs: Fraction | None = Field(None, json_schema_extra=_FRACTION)
    channels: Fraction | None = Field(None, json_schema_extra=_FRACTION)
    latency: Fraction | None = Field(None, json_schema_extra=_RATIO)

    @model_validator(mode="after")
    def _exactly_one(self) -> Target:
        if sum(getattr(self, m) is not None for m in TARGETS) != 1:
            raise ValueError(
                f"name exactly one of {', '.join(METRICS)} with the fraction to remove "
                "(e.g. params=0.4), or latency with the ratio to keep (e.g. latency=0.6)"
            )
        return self

    @model_serializer
    def _as_config(self) -> dict[str, float]:
        """``{metric: value}``: the form a configuration holds."""
        return {self.metric: self.value}

    @property
    def metric(self) -> str:
        """Which metric the target is expressed in."""
        return next(m for m in TARGETS if getattr(self, m) is not None)

    @property
    def value(self) -> float:
        """The number as given: a fraction to remove, or for ``latency`` the ratio to keep."""
        return float(getattr(self, self.metric))

    @property
    def fraction(self) -> float:
        """The fraction of :attr:`metric` to remove (``1 - value`` for ``latency``)."""
        return 1.0 - self.value if self.metric == "latency" else self.value

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
        if not sep or number is None or key.strip() not in TARGETS:
            raise PrunekitError(
                f"target {text!r} is malformed: write METRIC=FRACTION with METRIC one of "
                f"{'|'.join(METRICS)} (e.g. params=0.4), or latency=RATIO (e.g. latency=0.6)"
            )
        return {key.strip(): number}

    def __str__(self) -> str:
        return f"{self.metric}={self.value:g}"
