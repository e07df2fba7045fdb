"""What to remove: a fraction of the model's parameters, MACs or prunable channels."""

from __future__ import annotations

from dataclasses import dataclass

from prunekit.errors import PrunekitError

METRICS = ("params", "macs", "channels")


@dataclass(frozen=True)
class Target:
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

    params: float | None = None
    macs: float | None = None
    channels: float | None = None

    def __post_init__(self) -> None:
        given = [(k, v) for k, v in self.items_all() if v is not None]
        if len(given) != 1:
            raise PrunekitError(
                "Target needs exactly one of params=, macs=, channels= (e.g. Target(params=0.4))"
            )
        key, value = given[0]
        if not isinstance(value, (int, float)) or not 0.0 < float(value) < 1.0:
            raise PrunekitError(
                f"target {key}={value!r} is out of range: give the fraction to remove, "
                f"strictly between 0 and 1 (e.g. {key}=0.4)"
            )

    def items_all(self) -> list[tuple[str, float | None]]:
        return [("params", self.params), ("macs", self.macs), ("channels", self.channels)]

    @property
    def metric(self) -> str:
        """Which metric the target is expressed in."""
        return next(k for k, v in self.items_all() if v is not None)

    @property
    def fraction(self) -> float:
        """The fraction of :attr:`metric` to remove."""
        return float(next(v for _, v in self.items_all() if v is not None))

    @classmethod
    def parse(cls, text: str | dict | Target) -> Target:
        """Build from ``"params=0.4"``, ``{"params": 0.4}`` or a Target."""
        if isinstance(text, Target):
            return text
        if isinstance(text, dict):
            items = list(text.items())
        else:
            key, sep, value = str(text).partition("=")
            if not sep:
                raise PrunekitError(
                    f"target {text!r} is malformed: write METRIC=FRACTION, e.g. params=0.4"
                )
            items = [(key.strip(), value.strip())]
        if len(items) != 1 or items[0][0] not in METRICS:
            raise PrunekitError(
                f"target {text!r} is malformed: use one of {', '.join(METRICS)} = a fraction, "
                "e.g. params=0.4"
            )
        key, value = items[0]
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise PrunekitError(
                f"target {key}={value!r} is not a number: give a fraction such as {key}=0.4"
            ) from None
        return cls(**{key: number})

    def __str__(self) -> str:
        return f"{self.metric}={self.fraction:g}"
