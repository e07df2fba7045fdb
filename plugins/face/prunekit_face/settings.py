"""The face task's own configuration sections, declared once: ``model``, ``data``, ``train``.

prunekit checks every key against these declarations before a run writes anything, and the
docs list them; the ranges and choices here are the only ones.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from prunekit import Settings


class ModelSettings(Settings):
    """Which network is pruned."""

    pretrained: str | None = Field(
        "released",
        description="`released`: the authors' SqueezeFacePoseNet-DWC shipped with the plugin "
        "(113x113 input); a path: a `.mat` (MATLAB `LayerGraph`) or `.safetensors` file of that "
        "network; `null`: build `arch` untrained and train it (`baseline.*`).",
    )
    arch: Literal["squeezefacenet", "squeezefacenet_dwc"] = Field(
        "squeezefacenet",
        description="Architecture built when `pretrained` is null: the paper's SqueezeNet or "
        "its depth-wise variant.",
    )
    bn: bool = Field(True, description="BatchNorm after every convolution (`arch` only).")
    width: float = Field(1.0, gt=0, description="Channel-width multiplier (`arch` only).")
    embedding_size: int = Field(1000, ge=1, description="Embedding size (`arch` only).")
    teacher: str | None = Field(
        None,
        description="Distil the baseline from this network (`released` or a file, as for "
        "`pretrained`) instead of training it with labels: label-free, on the recovery images.",
    )


class DataSettings(Settings):
    """Where the faces come from and how they are prepared."""

    source: Literal["auto", "lfw", "folders", "synthetic"] = Field(
        "auto",
        description="`auto`: `lfw` if the data folder holds `lfw/pairs.txt`, `folders` if it is "
        "an identity-folder dataset, else `synthetic` (numbers that mean nothing).",
    )
    root: str | None = Field(
        None, description="The data folder (`--data DIR`, default `$PRUNEKIT_DATA`)."
    )
    size: int = Field(113, ge=16, le=1024, description="Input height and width in pixels.")
    eval_folds: list[Annotated[int, Field(ge=0, le=9)]] = Field(
        default_factory=lambda: [0, 1, 2, 3, 4],
        description="LFW folds evaluated (threshold chosen on the other evaluated folds); "
        "training and recovery use only people in none of them.",
    )
    min_images: int = Field(2, ge=2, description="LFW: fewest images of a training identity.")
    eval_identities: int = Field(
        10, ge=2, description="folders: identities held out for evaluation."
    )
    eval_pairs: int = Field(600, ge=2, description="folders / synthetic: evaluation pairs.")
    synthetic_identities: int = Field(
        200,
        ge=3,
        description="synthetic: identities (the last fifth, at least 2, is evaluated; the rest "
        "trained on).",
    )
    synthetic_images: int = Field(12, ge=2, description="synthetic: images per identity.")
    on_bad_image: Literal["fail", "skip"] = Field(
        "fail", description="An unreadable training image stops the run or is skipped."
    )
    batch_size: int = Field(64, ge=1, description="Training and recovery batch size.")
    flip_fusion: bool = Field(
        True, description="Embed every image and its mirror image and sum the two."
    )


class TrainSettings(Settings):
    """How the network (or its classifier head) is trained."""

    head: Literal["softmax", "cosface", "arcface"] = Field(
        "softmax",
        description="Training-only classifier head over the training identities (never "
        "pruned or exported).",
    )
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum.")
    weight_decay: float = Field(5e-4, ge=0, description="SGD weight decay.")


SECTIONS: dict[str, type[Settings]] = {
    "model": ModelSettings,
    "data": DataSettings,
    "train": TrainSettings,
}
