"""Procedural synthetic faces: identities a network can learn to verify, with no data to download.

An identity is a fixed face geometry and texture (head shape, hair, skin tone, eye, brow, nose
and mouth placement and size, moles, glasses, beard); every image of it adds nuisances (pose,
illumination, expression, gaze, background, sensor noise). Faces are drawn as soft-edged ellipses
on coordinate grids, a whole chunk of images per tensor operation.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from prunekit.errors import PrunekitError

# Uniform ranges of the identity parameters; lengths in face units (the head is about 1.3 tall).
_IDENTITY = {
    "head_rx": (0.50, 0.68),
    "head_ry": (0.66, 0.84),
    "skin_tone": (0.0, 1.0),
    "skin_red": (-0.06, 0.06),
    "hair_dark": (0.0, 1.0),
    "hair_red": (0.0, 1.0),
    "hairline": (-0.72, -0.30),
    "hair_volume": (1.02, 1.22),
    "hair_length": (-0.2, 0.5),
    "eye_dx": (0.20, 0.32),
    "eye_y": (-0.22, -0.04),
    "eye_rx": (0.08, 0.13),
    "eye_ry": (0.035, 0.06),
    "iris_blue": (0.0, 1.0),
    "brow_gap": (0.07, 0.14),
    "brow_tilt": (-0.35, 0.35),
    "brow_thick": (0.015, 0.035),
    "nose_y": (0.06, 0.20),
    "nose_len": (0.10, 0.20),
    "nose_w": (0.035, 0.08),
    "mouth_y": (0.34, 0.50),
    "mouth_w": (0.12, 0.24),
    "mouth_h": (0.025, 0.05),
    "lip_red": (0.0, 1.0),
    "mole_x": (-0.45, 0.45),
    "mole_y": (-0.3, 0.5),
    "mole_size": (0.0, 0.035),
    "glasses": (0.0, 1.0),  # worn below 0.25
    "beard": (0.0, 1.0),  # grown below 0.3
    "beard_length": (0.6, 1.1),
}
# Uniform ranges of the per-image nuisances.
_NUISANCE = {
    "angle": (-0.12, 0.12),  # radians, about +-7 degrees
    "scale": (1.12, 1.3),  # a tight crop, as of aligned faces
    "shift_x": (-0.05, 0.05),
    "shift_y": (-0.05, 0.05),
    "light_x": (-0.2, 0.2),
    "light_y": (-0.15, 0.15),
    "brightness": (0.85, 1.1),
    "tint_r": (0.96, 1.04),
    "tint_b": (0.96, 1.04),
    "eye_open": (0.35, 1.2),
    "mouth_open": (0.0, 1.0),
    "gaze_x": (-0.3, 0.3),
    "background": (0.0, 1.0),
    "noise": (2.0, 6.0),
}
_CHUNK = 256  # images rendered per tensor operation: bounds memory at any size


class SyntheticFaces:
    """``images[k]`` (uint8 [H, W, 3]) shows identity ``labels[k]``; same ``seed``, same bytes.

    Images are grouped by identity: ``images_per_identity`` consecutive images per label. As a
    yardstick, a 3-block CNN trained 3 epochs on 300 identities x 10 images at 32 px verifies
    unseen identities with about 88% accuracy (see the slow test).
    """

    def __init__(
        self, num_identities: int, images_per_identity: int, size: int = 113, seed: int = 0
    ) -> None:
        if min(num_identities, images_per_identity, size) <= 0:
            raise PrunekitError(
                f"SyntheticFaces({num_identities}, {images_per_identity}, size={size}) needs "
                "positive counts and size"
            )
        generator = torch.Generator().manual_seed(seed)
        identity = _draw(_IDENTITY, num_identities, generator)
        nuisance = _draw(_NUISANCE, num_identities * images_per_identity, generator)
        per_image = {k: v.repeat_interleave(images_per_identity) for k, v in identity.items()}
        self.labels: np.ndarray = np.repeat(
            np.arange(num_identities, dtype=np.int64), images_per_identity
        )
        n = len(self.labels)
        self.images: np.ndarray = np.empty((n, size, size, 3), np.uint8)
        for start in range(0, n, _CHUNK):
            part = slice(start, start + _CHUNK)
            params = {k: v[part] for k, v in {**per_image, **nuisance}.items()}
            self.images[part] = _render(params, size, generator).numpy()

    def __len__(self) -> int:
        return len(self.labels)


def _draw(
    ranges: dict[str, tuple[float, float]], n: int, generator: torch.Generator
) -> dict[str, Tensor]:
    uniform = torch.rand(n, len(ranges), generator=generator)
    return {
        name: low + (high - low) * uniform[:, i]
        for i, (name, (low, high)) in enumerate(ranges.items())
    }


def _render(p: dict[str, Tensor], size: int, generator: torch.Generator) -> Tensor:
    """Draw one chunk of faces: uint8 [B, size, size, 3]."""
    b = len(p["angle"])

    def col(name: str) -> Tensor:  # a parameter shaped to broadcast over [B, H, W]
        return p[name].view(b, 1, 1)

    def rgb(red: Tensor, green: Tensor, blue: Tensor) -> Tensor:  # [B] each -> [B, 3, 1, 1]
        return torch.stack([red, green, blue], dim=1).view(b, 3, 1, 1)

    def gray(level: float) -> Tensor:
        return torch.full((b, 3, 1, 1), level)

    axis = (torch.arange(size) + 0.5) * (2 / size) - 1
    y, x = axis.view(1, size, 1), axis.view(1, 1, size)
    # Face coordinates (u, v) of every pixel: undo each image's rotation, shift and scale.
    cos, sin, scale = col("angle").cos(), col("angle").sin(), col("scale")
    dx, dy = x - col("shift_x"), y - col("shift_y")
    u = (cos * dx + sin * dy) / scale
    v = (cos * dy - sin * dx) / scale
    pixel = 2 / size / scale  # one pixel in face units: the width of the soft edges

    def window(cx: Tensor, cy: Tensor, radius: Tensor) -> tuple[slice, slice]:
        """Pixel rows and columns that hold the disc (cx, cy, radius) in every image."""
        centre_x = scale * (cos * cx - sin * cy) + col("shift_x")
        centre_y = scale * (sin * cx + cos * cy) + col("shift_y")
        reach = scale * radius + 2 / size
        return tuple(
            slice(
                max(0, math.floor((float((c - reach).min()) + 1) * size / 2)),
                min(size, math.ceil((float((c + reach).max()) + 1) * size / 2)),
            )
            for c in (centre_y, centre_x)
        )

    background = 40 + 180 * p["background"]
    canvas = rgb(background, background * 0.95, background * 0.9)
    canvas = canvas.expand(b, 3, size, size).contiguous()

    def paint(
        colour: Tensor,
        cx: Tensor,
        cy: Tensor,
        rx: Tensor,
        ry: Tensor,
        *,
        tilt: Tensor | None = None,
        alpha: Tensor | float = 1.0,
        v_max: Tensor | None = None,
    ) -> None:
        """Blend ``colour`` over an ellipse (tilted, cut at v < v_max), anti-aliased over a pixel.

        Only the window holding the ellipse in every image of the chunk is computed: the small
        features then cost a fraction of a full-image pass.
        """
        rows, cols = window(cx, cy, torch.maximum(rx, ry))
        du, dv = u[:, rows, cols] - cx, v[:, rows, cols] - cy
        if tilt is not None:
            c, s = tilt.cos(), tilt.sin()
            du, dv = c * du + s * dv, c * dv - s * du
        radius2 = (du / rx).square_() + (dv / ry).square_()
        # Near the edge, radius - 1 ~ (radius^2 - 1) / 2: no square root needed.
        sharp = torch.minimum(rx, ry) / pixel / 2
        cover = (sharp + 0.5 - sharp * radius2).clamp_(0, 1) * alpha
        if v_max is not None:
            cover *= v[:, rows, cols] < v_max
        region = canvas[:, :, rows, cols]
        region.lerp_(colour.expand_as(region), cover.unsqueeze(1))

    tone, hair_dark = p["skin_tone"], p["hair_dark"]
    skin = rgb(95 + 150 * tone + 255 * p["skin_red"], 62 + 140 * tone, 45 + 130 * tone)
    hair = rgb(
        (25 + 190 * (1 - hair_dark)) * (0.75 + 0.25 * p["hair_red"]),
        (20 + 160 * (1 - hair_dark)) * (0.7 + 0.15 * p["hair_red"]),
        (15 + 110 * (1 - hair_dark)) * 0.7,
    )
    zero = torch.zeros(b, 1, 1)
    head_rx, head_ry = col("head_rx"), col("head_ry")
    hair_rx, hair_ry = head_rx * col("hair_volume"), head_ry * col("hair_volume")
    # Hair behind the head down to hair_length, then the head, then the fringe above hairline.
    paint(hair, zero, zero, hair_rx, hair_ry, v_max=col("hair_length"))
    paint(skin, zero, zero + 0.04, head_rx, head_ry)
    paint(hair, zero, zero, hair_rx, hair_ry, v_max=col("hairline"))

    beard = (col("beard") < 0.3).float()
    beard_y = col("mouth_y") + 0.1
    paint(hair, zero, beard_y, head_rx * 0.78, 0.3 * col("beard_length"), alpha=beard)

    eye_y, eye_rx, eye_ry = col("eye_y"), col("eye_rx"), col("eye_ry")
    glasses = (col("glasses") < 0.25).float()
    bridge = col("eye_dx") - eye_rx * 1.5
    paint(gray(30.0), zero, eye_y, bridge + 0.02, 0.012 + zero, alpha=glasses)
    open_ry = eye_ry * col("eye_open")
    iris = rgb(90 - 50 * p["iris_blue"], 60 + 40 * p["iris_blue"], 30 + 120 * p["iris_blue"])
    brow_y, brow_rx = eye_y - col("brow_gap"), eye_rx * 1.25
    for side in (-1.0, 1.0):
        ex = side * col("eye_dx")
        paint(gray(30.0), ex, eye_y, eye_rx * 1.6, eye_rx * 1.3, alpha=glasses)
        paint(skin * 0.9 + 20, ex, eye_y, eye_rx * 1.45, eye_rx * 1.15, alpha=glasses)
        paint(gray(235.0), ex, eye_y, eye_rx, open_ry)
        # The iris is squashed, not clipped, by a half-closed eye.
        iris_x = ex + col("gaze_x") * eye_rx
        paint(iris, iris_x, eye_y, eye_ry * 0.9, torch.minimum(eye_ry * 0.9, open_ry))
        paint(hair * 0.8, ex, brow_y, brow_rx, col("brow_thick"), tilt=side * col("brow_tilt"))

    nose_y, nose_w, nose_len = col("nose_y"), col("nose_w"), col("nose_len")
    paint(skin * 0.72, zero, nose_y, nose_w, nose_len, alpha=0.6)
    for side in (-1.0, 1.0):
        paint(
            skin * 0.4, side * nose_w * 0.6, nose_y + nose_len * 0.8, nose_w * 0.35, nose_w * 0.22
        )

    lip = rgb(150 + 80 * p["lip_red"], 70 + 20 * p["lip_red"], 70 + 10 * p["lip_red"])
    mouth_y, mouth_w, mouth_open = col("mouth_y"), col("mouth_w"), col("mouth_open")
    mouth_h = col("mouth_h") * (1 + mouth_open)
    paint(lip, zero, mouth_y, mouth_w, mouth_h)
    opening = (mouth_open > 0.15).float()
    paint(gray(35.0), zero, mouth_y, mouth_w * 0.8, mouth_h * mouth_open + 1e-3, alpha=opening)
    mole = col("mole_size")
    paint(skin * 0.45, col("mole_x"), col("mole_y"), mole, mole, alpha=(mole > 0.015).float())

    light = col("brightness") * (1 + col("light_x") * x + col("light_y") * y)
    canvas *= light.unsqueeze(1) * rgb(p["tint_r"], torch.ones(b), p["tint_b"])
    canvas += torch.randn(canvas.shape, generator=generator) * p["noise"].view(b, 1, 1, 1)
    return canvas.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
