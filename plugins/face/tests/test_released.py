"""The released SqueezeFacePoseNet-DWC shipped as safetensors; the .mat -> safetensors converter."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file

import prunekit_face
from prunekit.errors import PrunekitError
from prunekit_face import pretrained
from prunekit_face.convert import main as convert_main
from prunekit_face.pretrained import (
    FORMAT,
    FORMAT_VERSION,
    MEAN_RGB,
    RELEASED_SHA256,
    RELEASED_WEIGHTS,
    load_safetensors,
    load_squeezefaceposenet_dwc,
    released_model,
    sha256_of,
)

MODEL_DIR = Path("models/squeezefaceposenet")
MAT_FILE = MODEL_DIR / "SqueezeFacePoseNet_with_separable_DWC.mat"
MAT_SHA256 = "c90f1bbdee9e75f475063591764da7fd102da5521a079c0daedc029175533cce"
PLUGIN = Path(__file__).resolve().parents[1]


def test_released_model_needs_no_mat_io(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matio", None)  # makes `import matio` fail
    model = prunekit_face.released_model()
    assert sum(p.numel() for p in model.parameters()) == 694_056
    assert not model.training
    # MATLAB conv1 weights [H, W, Cin, Cout] start with 0.71297133 at (0, 0, 0, 0).
    assert model.conv1.weight[0, 0, 0, 0].item() == pytest.approx(0.71297133)
    assert model.features.fire2.expand3x3.groups == 16


def test_shipped_file_is_the_recorded_one_with_its_provenance() -> None:
    assert sha256_of(RELEASED_WEIGHTS) == RELEASED_SHA256
    with safe_open(str(RELEASED_WEIGHTS), framework="pt") as file:
        metadata = file.metadata()
    assert metadata["format"] == FORMAT and metadata["format_version"] == FORMAT_VERSION
    assert metadata["source_sha256"] == MAT_SHA256
    assert metadata["source"] == MAT_FILE.name
    assert metadata["arch"] == "squeezefacenet_dwc" and metadata["embedding_size"] == "1000"
    # the authors' MIT licence travels with their weights, and the README names the sources
    weights = RELEASED_WEIGHTS.parent
    assert "MIT License" in (weights / "LICENSE.txt").read_text()
    readme = (weights / "README.md").read_text()
    assert MAT_SHA256 in readme and RELEASED_SHA256 in readme


def test_package_data_ships_the_weights_and_licence() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    config = tomllib.loads((PLUGIN / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["prunekit_face"]
    package = PLUGIN / "prunekit_face"
    shipped = {p for pattern in patterns for p in package.glob(pattern)}
    assert RELEASED_WEIGHTS in shipped and RELEASED_WEIGHTS.parent / "LICENSE.txt" in shipped
    assert "safetensors" in config["project"]["dependencies"]


def test_shipped_tensors_equal_a_fresh_import(shared: Path) -> None:
    shipped = load_file(str(RELEASED_WEIGHTS))
    fresh = load_squeezefaceposenet_dwc(shared / MAT_FILE).state_dict()
    assert shipped.keys() == fresh.keys()
    for name, tensor in fresh.items():
        assert torch.equal(shipped[name], tensor), name


def test_conversion_reproduces_the_shipped_file(
    shared: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "converted.safetensors"
    assert convert_main([str(shared / MAT_FILE), str(out)]) == 0
    assert RELEASED_SHA256 in capsys.readouterr().out
    assert out.read_bytes() == RELEASED_WEIGHTS.read_bytes()


def test_same_embeddings_as_the_mat_import(shared: Path) -> None:
    crops = [
        np.asarray(Image.open(shared / MODEL_DIR / f"image_example{i}.png").convert("RGB"))
        for i in (1, 2, 3)
    ]
    images = torch.from_numpy(np.stack(crops).astype(np.float32) - np.float32(MEAN_RGB))
    images = images.permute(0, 3, 1, 2)
    with torch.inference_mode():
        expected = load_squeezefaceposenet_dwc(shared / MAT_FILE)(images)
        got = released_model()(images)
    assert got.shape == (3, 1000)
    assert torch.equal(got, expected)


def test_corrupted_copy_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    copy = tmp_path / "squeezefaceposenet_dwc.safetensors"
    shutil.copyfile(RELEASED_WEIGHTS, copy)
    data = bytearray(copy.read_bytes())
    data[-100] ^= 0xFF  # one weight changes: still a valid safetensors file
    copy.write_bytes(bytes(data))
    monkeypatch.setattr(pretrained, "RELEASED_WEIGHTS", copy)
    with pytest.raises(PrunekitError, match="is corrupt .*reinstall prunekit-face") as error:
        pretrained.released_model()
    assert "\n" not in str(error.value)


def test_unreadable_files_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(PrunekitError, match="weights not found"):
        load_safetensors(tmp_path / "absent.safetensors")
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(RELEASED_WEIGHTS.read_bytes()[:5000])
    with pytest.raises(PrunekitError, match="cannot read .* as safetensors") as error:
        load_safetensors(truncated)
    assert "\n" not in str(error.value)


def test_convert_reports_a_missing_source(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("matio")
    assert convert_main([str(tmp_path / "absent.mat"), str(tmp_path / "out.safetensors")]) == 2
    assert "not found" in capsys.readouterr().err
    assert not (tmp_path / "out.safetensors").exists()
