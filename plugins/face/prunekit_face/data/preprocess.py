"""Image preprocessing: the deterministic part baked into the cache, and per-batch augmentation.

:class:`Preprocess` decodes a file once (crop, resize, channel replication) into uint8 pixels and
later normalises whole batches; :class:`Augment` draws random flips and crops for a whole batch
in a few tensor operations, driven by a ``torch.Generator`` so that a run is reproducible.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from os import PathLike

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from prunekit.errors import PrunekitError

#: per-channel means of 0-255 RGB pixels that SqueezeFacePoseNet subtracts
SQUEEZEFACE_MEAN = (131.0912, 103.8827, 91.4953)

# Bump when the decoding below changes, so that stale caches are not reused.
_DECODE_VERSION = 1


def _check_channels(name: str, values: tuple[float, ...] | None, channels: int) -> None:
    if values is not None and len(values) != channels:
        raise PrunekitError(
            f"Preprocess {name}={values} has {len(values)} values for {channels}-channel images; "
            f"give {channels} values or {name}=None"
        )


class ImageTooSmall(PrunekitError, ValueError):
    """An image that does not hold the crop box: a bad image under this preprocessing (a
    ``ValueError``, so that ``on_bad_image`` applies to it as to an undecodable file)."""


@dataclass(frozen=True)
class Preprocess:
    """How an image file becomes a uint8 [H, W, C] array, and how a batch is normalised.

    ``size`` is the output side (or ``(height, width)``); ``crop_box`` a Pillow box
    ``(left, top, right, bottom)`` cut before the bilinear resize; ``gray_to_rgb`` replicates
    one-channel images to RGB (``False`` keeps one luminance channel). ``mean`` and ``std`` act
    on 0-255 pixels in :meth:`normalize` only, so they are not part of the cache key.
    """

    size: int | tuple[int, int] = 113
    crop_box: tuple[int, int, int, int] | None = None
    gray_to_rgb: bool = True
    mean: tuple[float, ...] | None = SQUEEZEFACE_MEAN
    std: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if len(self.shape) != 2 or min(self.shape) <= 0:
            raise PrunekitError(
                f"Preprocess size={self.size} must be a positive side or (height, width)"
            )
        if self.crop_box is not None:
            left, top, right, bottom = self.crop_box
            if not 0 <= left < right or not 0 <= top < bottom:
                raise PrunekitError(
                    f"Preprocess crop_box={self.crop_box} is not a box (left, top, right, bottom) "
                    "with 0 <= left < right and 0 <= top < bottom"
                )
        _check_channels("mean", self.mean, self.channels)
        _check_channels("std", self.std, self.channels)
        if self.std is not None and min(self.std) <= 0:
            raise PrunekitError(f"Preprocess std={self.std} must be positive")

    @property
    def shape(self) -> tuple[int, int]:
        """Output ``(height, width)``."""
        return (self.size, self.size) if isinstance(self.size, int) else tuple(self.size)

    @property
    def channels(self) -> int:
        """3 for RGB output, 1 for gray."""
        return 3 if self.gray_to_rgb else 1

    def key(self) -> str:
        """Stable hash of everything baked into cached pixels (not ``mean``/``std``)."""
        spec = {
            "version": _DECODE_VERSION,
            "shape": list(self.shape),
            "crop_box": list(self.crop_box) if self.crop_box else None,
            "gray_to_rgb": self.gray_to_rgb,
        }
        return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]

    def load(self, path: str | PathLike[str]) -> np.ndarray:
        """Decode one image file into uint8 ``[H, W, C]``; Pillow's errors propagate."""
        mode = "RGB" if self.gray_to_rgb else "L"
        with Image.open(path) as image:
            # Resize in the source's own mode when it is L or RGB (cheaper for gray), else
            # convert first: Pillow resizes palette images with nearest-neighbour only.
            if image.mode not in ("L", "RGB"):
                image = image.convert(mode)
            if self.crop_box is not None:
                right, bottom = self.crop_box[2:]
                if right > image.width or bottom > image.height:
                    raise ImageTooSmall(
                        f"{path}: crop_box={self.crop_box} does not fit in its "
                        f"{image.width}x{image.height} pixels"
                    )
                image = image.crop(self.crop_box)
            height, width = self.shape
            if image.size != (width, height):
                image = image.resize((width, height), Image.Resampling.BILINEAR)
            pixels = np.asarray(image.convert(mode))
        return pixels[..., None] if pixels.ndim == 2 else pixels

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """Float32 copy of a 0-255 NCHW batch (uint8 or float) with ``mean``/``std`` applied."""
        out = images.to(torch.float32, copy=True)
        if self.mean is not None:
            out.sub_(torch.tensor(self.mean, device=out.device).view(1, -1, 1, 1))
        if self.std is not None:
            out.div_(torch.tensor(self.std, device=out.device).view(1, -1, 1, 1))
        return out


@dataclass(frozen=True)
class Augment:
    """Random horizontal flips and crops of a whole NCHW batch.

    Without ``scale`` each image is shifted by up to ``crop_padding`` pixels (zero fill), the
    classic pad-and-crop, done by one gather on uint8. With ``scale=(lo, hi)`` each image is
    a random-resized crop covering that fraction of the area (aspect ratio in ``ratio``),
    resampled bilinearly in one ``grid_sample`` call; the result is then float 0-255.
    """

    flip: bool = True
    crop_padding: int = 4
    scale: tuple[float, float] | None = None
    ratio: tuple[float, float] = (3 / 4, 4 / 3)

    def __post_init__(self) -> None:
        if self.crop_padding < 0:
            raise PrunekitError(f"Augment crop_padding={self.crop_padding} must be >= 0")
        if self.scale is not None and not 0 < self.scale[0] <= self.scale[1] <= 1:
            raise PrunekitError(f"Augment scale={self.scale} must satisfy 0 < lo <= hi <= 1")
        if not 0 < self.ratio[0] <= self.ratio[1]:
            raise PrunekitError(f"Augment ratio={self.ratio} must satisfy 0 < lo <= hi")

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Augmented copy of ``images`` (NCHW, 0-255); random draws come from ``generator``."""
        n = images.shape[0]
        # Draw on the CPU generator whatever the batch device, so results do not depend on it.
        flip = torch.rand(n, generator=generator) < 0.5 if self.flip else torch.zeros(n, dtype=bool)
        p = self.crop_padding
        shift = torch.randint(-p, p + 1, (2, n), generator=generator)
        if self.scale is not None:
            return self._resized_crop(images, flip, shift, generator)
        if p:
            images = _shift(images, shift.to(images.device))
        if self.flip:
            mask = flip.to(images.device).view(n, 1, 1, 1)
            images = torch.where(mask, images.flip(-1), images)
        return images

    def _resized_crop(
        self,
        images: torch.Tensor,
        flip: torch.Tensor,
        shift: torch.Tensor,
        generator: torch.Generator,
    ) -> torch.Tensor:
        n, _, h, w = images.shape
        area = torch.empty(n).uniform_(*self.scale, generator=generator)
        log_ratio = torch.empty(n).uniform_(*map(math.log, self.ratio), generator=generator)
        aspect = log_ratio.exp()
        # Half-extents and centres in grid_sample's [-1, 1] coordinates.
        half_w = (area * aspect).sqrt().clamp(max=1)
        half_h = (area / aspect).sqrt().clamp(max=1)
        centre = torch.rand(2, n, generator=generator) * 2 - 1
        cx = centre[0] * (1 - half_w) + shift[0] * 2 / w
        cy = centre[1] * (1 - half_h) + shift[1] * 2 / h
        theta = torch.zeros(n, 2, 3)
        theta[:, 0, 0] = torch.where(flip, -half_w, half_w)
        theta[:, 0, 2] = cx
        theta[:, 1, 1] = half_h
        theta[:, 1, 2] = cy
        theta = theta.to(images.device)
        grid = F.affine_grid(theta, list(images.shape), align_corners=False)
        return F.grid_sample(images.float(), grid, mode="bilinear", align_corners=False)


def _shift(images: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Translate image ``i`` by ``shift[:, i]`` = (dx, dy) pixels, filling with zeros."""
    n, c, h, w = images.shape
    p = int(shift.abs().max())
    padded = F.pad(images, (p, p, p, p))
    # A strided view holding every (2p+1)^2 crop of each image, without copying; one
    # advanced-indexing gather then picks each image's own crop.
    s = padded.stride()
    crops = padded.as_strided((n, c, 2 * p + 1, 2 * p + 1, h, w), (*s, s[2], s[3]))
    rows = p - shift[1]
    cols = p - shift[0]
    return crops[torch.arange(n, device=images.device), :, rows, cols]
