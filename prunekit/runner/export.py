"""Exporting a pruned model to ONNX or ``torch.export``'s ``.pt2``, verified right away."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

import prunekit as pk
from prunekit import atomic
from prunekit.errors import PrunekitError
from prunekit.runner.checkpoint import open_checkpoint

TOLERANCE = 1e-4
Runner = Callable[[torch.Tensor], torch.Tensor]


def export(
    path: Path, fmt: str, out: Path | None = None, task: str | None = None, fuse: bool = True
) -> Path:
    """Export the model of checkpoint or run dir ``path``; check it matches PyTorch to 1e-4.

    With ``fuse`` (the default) the BatchNorms are folded into the layers before them first
    (:func:`prunekit.fuse`): fewer layers to run where the model is deployed; ``fuse=False``
    keeps them. The exported model is run on random inputs shaped like the task's example
    inputs and compared with the checkpoint's PyTorch model, unfolded; a mismatch is an error.
    """
    if fmt not in EXPORTERS:
        raise PrunekitError(f"unknown export format {fmt!r}: choose one of {', '.join(FORMATS)}")
    opened = open_checkpoint(path, task)
    out = Path(out) if out else opened.path.with_suffix(f".{fmt}")
    example = opened.task.example_inputs()
    if not isinstance(example, torch.Tensor):
        raise PrunekitError("export supports tasks whose example inputs are a single tensor")
    model = pk.fuse(opened.model, example.cpu())[0] if fuse else opened.model
    # written and checked in a folder beside `out`, then moved into place: a failed or
    # mismatching export leaves no file behind
    with atomic.atomic_files(out) as draft:
        run = EXPORTERS[fmt](model, example.cpu(), draft)
        inputs = torch.randn(example.shape, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            expected = opened.model(inputs)
        error = (run(inputs) - expected).abs().max().item()
        if not error <= TOLERANCE:
            raise PrunekitError(f"exported {fmt} model differs from PyTorch by {error:.3g} > 1e-4")
    return out


def _export_onnx(model: torch.nn.Module, example: torch.Tensor, out: Path) -> Runner:
    try:  # optional dependencies, needed only here
        import onnxruntime
        import onnxscript  # noqa: F401  (torch.onnx's exporter is built on it)
    except ImportError as exc:
        raise PrunekitError(
            f"ONNX export needs {exc.name}: pip install onnx onnxscript onnxruntime"
        ) from exc

    torch.onnx.export(model, (example,), out, input_names=["input"], dynamo=True, verbose=False)
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    return lambda x: torch.from_numpy(session.run(None, {"input": x.numpy()})[0])


def _export_pt2(model: torch.nn.Module, example: torch.Tensor, out: Path) -> Runner:
    torch.export.save(torch.export.export(model, (example,)), out)
    loaded = torch.export.load(out).module()
    return lambda x: loaded(x).detach()


#: format -> function that writes the file and returns a runner of the exported model
EXPORTERS: dict[str, Callable[[torch.nn.Module, torch.Tensor, Path], Runner]] = {
    "onnx": _export_onnx,
    "pt2": _export_pt2,
}
FORMATS = tuple(EXPORTERS)
