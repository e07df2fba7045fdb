"""Preprocess (decode, key, normalise) and Augment (batched flips and crops)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from prunekit.errors import PrunekitError
from prunekit_face.data import SQUEEZEFACE_MEAN, Augment, Preprocess


def test_key_is_stable_and_covers_only_baked_fields() -> None:
    base = Preprocess()
    assert base.key() == Preprocess(size=(113, 113)).key() == "a57cf06ceda51762"
    assert base.key() == Preprocess(mean=None, std=(2.0, 2.0, 2.0)).key()
    others = {
        Preprocess(size=112).key(),
        Preprocess(size=(112, 96)).key(),
        Preprocess(crop_box=(64, 55, 186, 196)).key(),
        Preprocess(gray_to_rgb=False, mean=None).key(),
    }
    assert len(others) == 4 and base.key() not in others


def test_load_crops_resizes_bilinear_and_replicates_gray(tmp_path, write_image) -> None:
    path = write_image(tmp_path / "a.png", seed=0, size=(250, 250))
    pre = Preprocess(crop_box=(64, 55, 186, 196))
    pixels = pre.load(path)
    expected = np.asarray(
        Image.open(path).crop((64, 55, 186, 196)).resize((113, 113), Image.Resampling.BILINEAR)
    )
    assert pixels.shape == (113, 113, 3) and pixels.dtype == np.uint8
    for channel in range(3):
        np.testing.assert_array_equal(pixels[..., channel], expected)


def test_load_gray_keeps_one_channel_and_converts_colour(tmp_path, write_image) -> None:
    path = write_image(tmp_path / "c.jpg", seed=1, size=(92, 112), mode="RGB")
    pixels = Preprocess(size=(112, 92), gray_to_rgb=False, mean=None).load(path)
    assert pixels.shape == (112, 92, 1)
    np.testing.assert_array_equal(pixels[..., 0], np.asarray(Image.open(path).convert("L")))


def test_crop_box_outside_the_image_names_the_file(tmp_path, write_image) -> None:
    path = write_image(tmp_path / "small.png", seed=0, size=(100, 100))
    with pytest.raises(PrunekitError, match=r"small\.png: crop_box=\(0, 0, 120, 90\) does not fit"):
        Preprocess(crop_box=(0, 0, 120, 90)).load(path)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"size": 0}, "size=0 must be a positive side"),
        ({"size": (1, 2, 3)}, r"size=\(1, 2, 3\) must be"),
        ({"crop_box": (10, 0, 5, 20)}, "is not a box"),
        ({"gray_to_rgb": False}, "has 3 values for 1-channel images"),
        ({"std": (1.0, 0.0, 1.0)}, "must be positive"),
    ],
)
def test_invalid_preprocess(kwargs, message) -> None:
    with pytest.raises(PrunekitError, match=message):
        Preprocess(**kwargs)


def test_normalize_subtracts_mean_and_divides_std() -> None:
    batch = torch.arange(2 * 3 * 4 * 4, dtype=torch.uint8).view(2, 3, 4, 4)
    out = Preprocess(std=(2.0, 4.0, 8.0)).normalize(batch)
    expected = batch.double() - torch.tensor(SQUEEZEFACE_MEAN, dtype=torch.float64).view(3, 1, 1)
    expected /= torch.tensor([2.0, 4.0, 8.0], dtype=torch.float64).view(3, 1, 1)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, expected.float())
    assert torch.equal(Preprocess(mean=None).normalize(batch), batch.float())


def _batch(n: int = 16, size: int = 12) -> torch.Tensor:
    """Random nonzero pixels (zero marks the fill of shifted images)."""
    generator = torch.Generator().manual_seed(0)
    return torch.randint(1, 256, (n, 3, size, size), generator=generator, dtype=torch.uint8)


def test_flip_only_flips_some_images_whole() -> None:
    batch = _batch()
    out = Augment(crop_padding=0)(batch, torch.Generator().manual_seed(3))
    # The flips are the generator's first draws: one uniform per image, flipped below 0.5.
    flip = torch.rand(16, generator=torch.Generator().manual_seed(3)) < 0.5
    assert 0 < int(flip.sum()) < 16
    for image, source, flipped in zip(out, batch, flip):
        assert torch.equal(image, source.flip(-1) if flipped else source)
    assert out.dtype == torch.uint8


def test_shift_translates_each_image_with_zero_fill() -> None:
    batch = _batch()
    out = Augment(flip=False, crop_padding=3)(batch, torch.Generator().manual_seed(1))
    size = batch.shape[-1]
    for image, source in zip(out, batch):
        # Recover the shift from the zero border, then compare the overlap exactly.
        rows = torch.nonzero(image[0].sum(1)).flatten()
        cols = torch.nonzero(image[0].sum(0)).flatten()
        dy = int(rows[0]) if rows[0] > 0 else int(rows[-1]) - (size - 1)
        dx = int(cols[0]) if cols[0] > 0 else int(cols[-1]) - (size - 1)
        assert abs(dy) <= 3 and abs(dx) <= 3
        expected = torch.zeros_like(source)
        expected[:, max(dy, 0) : size + min(dy, 0), max(dx, 0) : size + min(dx, 0)] = source[
            :, max(-dy, 0) : size + min(-dy, 0), max(-dx, 0) : size + min(-dx, 0)
        ]
        assert torch.equal(image, expected)


def test_augment_is_reproducible_from_the_generator() -> None:
    batch = _batch()
    for augment in (Augment(), Augment(scale=(0.5, 1.0))):
        first = augment(batch, torch.Generator().manual_seed(7))
        again = augment(batch, torch.Generator().manual_seed(7))
        other = augment(batch, torch.Generator().manual_seed(8))
        assert torch.equal(first, again) and not torch.equal(first, other)


def test_resized_crop_of_the_whole_image_is_the_identity() -> None:
    batch = _batch()
    augment = Augment(flip=False, crop_padding=0, scale=(1.0, 1.0), ratio=(1.0, 1.0))
    out = augment(batch, torch.Generator().manual_seed(0))
    assert out.dtype == torch.float32 and out.shape == batch.shape
    torch.testing.assert_close(out, batch.float(), atol=1e-3, rtol=0)


def test_resized_crop_zooms_in() -> None:
    batch = _batch(n=4, size=32)
    out = Augment(flip=False, crop_padding=0, scale=(0.25, 0.25), ratio=(1.0, 1.0))(
        batch, torch.Generator().manual_seed(0)
    )
    assert float(out.min()) >= 0 and float(out.max()) <= 255
    # A quarter of the area blown up 2x: neighbouring pixels become much more alike.
    rough = (batch.float().diff(dim=-1).abs().mean(), out.diff(dim=-1).abs().mean())
    assert rough[1] < 0.7 * rough[0]
