"""export(): BatchNorms folded first unless ``fuse=False``; checked against the PyTorch model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from prunekit_toy.task import ToyTask

import prunekit as pk
from prunekit.runner import export
from prunekit.runner.config import resolve
from tests.engine.architectures import randomize_norms

BATCHNORMS = 3  # one per conv block of the toy network


def toy_model() -> torch.nn.Module:
    return ToyTask(resolve("toy")).build_model()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pruned toy network with non-trivial BatchNorm statistics, saved for the toy task."""
    torch.manual_seed(0)
    model = randomize_norms(toy_model()).eval()
    pk.Pruner(model, torch.randn(1, 3, 16, 16), target=pk.Target(params=0.3)).step()
    return pk.save(tmp_path_factory.mktemp("export") / "pruned.pt", model, meta={"task": "toy"})


def reference(path: Path, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return pk.load(path, toy_model()).eval()(x)


def batchnorm_ops(path: Path) -> int:
    graph = torch.export.load(path).graph
    return sum("batch_norm" in str(node.target) for node in graph.nodes)


@pytest.mark.parametrize("fuse", [True, False], ids=["fused", "kept"])
def test_pt2_export_folds_the_batchnorms_unless_told_not_to(checkpoint, tmp_path, fuse):
    out = export.export(checkpoint, "pt2", tmp_path / "model.pt2", fuse=fuse)
    assert batchnorm_ops(out) == (0 if fuse else BATCHNORMS)
    x = torch.randn(1, 3, 16, 16)  # the exported batch size
    got = torch.export.load(out).module()(x)
    torch.testing.assert_close(got, reference(checkpoint, x), atol=1e-5, rtol=0)


def test_onnx_export_of_the_folded_model_matches(checkpoint, tmp_path):
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    out = export.export(checkpoint, "onnx", tmp_path / "model.onnx")  # checked to 1e-4 there
    # (torch.onnx's own optimiser folds BatchNorm too: ONNX files hold none either way)
    ops = [node.op_type for node in onnx.load(out).graph.node]
    assert "BatchNormalization" not in ops and ops.count("Conv") == BATCHNORMS


def test_a_folded_checkpoint_exports(checkpoint, tmp_path):
    model = pk.load(checkpoint, toy_model()).eval()
    folded = pk.save(tmp_path / "folded.pt", pk.fuse(model)[0], meta={"task": "toy"})
    out = export.export(folded, "pt2", tmp_path / "model.pt2", fuse=False)
    assert batchnorm_ops(out) == 0
    x = torch.randn(1, 3, 16, 16)  # the exported batch size
    torch.testing.assert_close(torch.export.load(out).module()(x), reference(checkpoint, x))


@pytest.mark.parametrize(("flag", "expected"), [([], 0), (["--no-fuse"], BATCHNORMS)])
def test_the_cli_folds_unless_no_fuse(checkpoint, tmp_path, flag, expected):
    from prunekit.cli.main import main

    out = tmp_path / "model.pt2"
    assert main(["export", str(checkpoint), "--format", "pt2", "--out", str(out), *flag]) == 0
    assert batchnorm_ops(out) == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt2"]  # nothing else left
