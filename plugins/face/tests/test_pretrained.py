"""Import of the authors' released SqueezeFacePoseNet-DWC MATLAB model."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from prunekit.errors import PrunekitError
from prunekit_face.metrics import cosine_scores
from prunekit_face.pretrained import INPUT_SIZE, MEAN_RGB, load_squeezefaceposenet_dwc

MODEL_DIR = Path("models/squeezefaceposenet")
MAT_FILE = MODEL_DIR / "SqueezeFacePoseNet_with_separable_DWC.mat"


def test_loads_the_released_weights(shared: Path) -> None:
    model = load_squeezefaceposenet_dwc(shared / MAT_FILE)
    assert sum(p.numel() for p in model.parameters()) == 694_056
    assert not model.training
    # MATLAB conv1 weights [H, W, Cin, Cout] start with 0.71297133 at (0, 0, 0, 0).
    assert model.conv1.weight[0, 0, 0, 0].item() == pytest.approx(0.71297133)
    assert model.features.fire2.expand3x3.groups == 16


def test_example_crops_give_sensible_embeddings(shared: Path) -> None:
    model = load_squeezefaceposenet_dwc(shared / MAT_FILE)
    crops = [
        np.asarray(Image.open(shared / MODEL_DIR / f"image_example{i}.png").convert("RGB"))
        for i in (1, 2, 3)
    ]
    assert crops[0].shape == (INPUT_SIZE, INPUT_SIZE, 3)
    images = torch.from_numpy(np.stack(crops).astype(np.float32) - np.float32(MEAN_RGB))
    images = images.permute(0, 3, 1, 2)
    with torch.inference_mode():
        embeddings = model(images).numpy()
        mirrored = model(images.flip(3)).numpy()
    assert embeddings.shape == (3, 1000)
    assert np.isfinite(embeddings).all() and (embeddings >= 0).all()
    same = cosine_scores(embeddings, mirrored)  # each crop against its own mirror image
    different = cosine_scores(embeddings, np.roll(embeddings, 1, axis=0))  # three people
    assert same.min() > different.max()


def test_missing_file_is_a_one_line_error(tmp_path: Path) -> None:
    path = tmp_path / "absent.mat"
    with pytest.raises(PrunekitError, match=f"not found: {path}$"):
        load_squeezefaceposenet_dwc(path)


def test_corrupt_file_is_a_one_line_error(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.mat"
    path.write_bytes(b"MATLAB 5.0 MAT-file, but not really" + bytes(200))
    with pytest.raises(PrunekitError, match=f"cannot read {path}") as error:
        load_squeezefaceposenet_dwc(path)
    assert "\n" not in str(error.value)


def test_missing_mat_io_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matio", None)  # makes `import matio` fail
    with pytest.raises(PrunekitError, match=r'pip install "prunekit-face\[mat\]"'):
        load_squeezefaceposenet_dwc("any.mat")
