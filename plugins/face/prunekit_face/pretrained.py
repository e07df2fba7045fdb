"""Import the authors' released SqueezeFacePoseNet-DWC (a MATLAB ``LayerGraph``) into PyTorch.

The model expects RGB faces cropped and resized to ``INPUT_SIZE`` x ``INPUT_SIZE``, as float
0-255 pixels minus ``MEAN_RGB``; for LFW-a (250x250, grayscale: replicate the channel) crop with
``LFW_CROP_BOX`` first.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from prunekit.errors import PrunekitError
from prunekit_face.models import Fire, SqueezeFaceNet, squeezefacenet_dwc

__all__ = ["INPUT_SIZE", "LFW_CROP_BOX", "MEAN_RGB", "load_squeezefaceposenet_dwc"]

MEAN_RGB = (131.0912, 103.8827, 91.4953)
LFW_CROP_BOX = (64, 55, 186, 196)  # (left, top, right, bottom) on the 250x250 LFW-a image
INPUT_SIZE = 113

# MATLAB layer name -> PyTorch module name, for every layer that carries weights.
_LAYER_NAMES = (
    (re.compile(r"conv(1|10)"), r"conv\1"),
    (re.compile(r"fire(\d+)-squeeze1x1"), r"features.fire\1.squeeze"),
    (re.compile(r"fire(\d+)-expand1x1"), r"features.fire\1.expand1x1"),
    (re.compile(r"fire(\d+)-expand3x3(?:-groupedconv)?"), r"features.fire\1.expand3x3"),
)


def load_squeezefaceposenet_dwc(path: str | Path) -> SqueezeFaceNet:
    """:func:`squeezefacenet_dwc` with the weights of ``SqueezeFacePoseNet_with_separable_DWC.mat``.

    Weights are matched by MATLAB layer name, checked against the module shapes and group
    counts, and every Fire's concat order is checked against the layer graph's connections, so
    a different file fails loudly instead of loading silently wrong. Returns the model in eval
    mode.
    """
    path = Path(path)
    layers, connections = _read_layer_graph(path)
    try:
        weighted = {name: props for name, props in layers.items() if "Weights" in props.dtype.names}
        embedding_size = int(_scalar(weighted["conv10"]["NumFilters"]))
    except KeyError as exc:
        raise PrunekitError(f"{path}: no layer {exc} in the SqueezeFacePoseNet graph") from None
    model = squeezefacenet_dwc(embedding_size=embedding_size)
    modules = dict(model.named_modules())
    loaded: set[str] = set()
    for matlab_name, props in weighted.items():
        target = _module_name(matlab_name)
        conv = modules.get(target) if target else None
        if not isinstance(conv, torch.nn.Conv2d):
            raise PrunekitError(f"{path}: layer {matlab_name!r} has no counterpart in the model")
        _load_conv(conv, props, f"{path}: layer {matlab_name!r}")
        loaded.add(target)
    missing = sorted(
        name for name, m in modules.items() if isinstance(m, torch.nn.Conv2d) and name not in loaded
    )
    if missing:
        raise PrunekitError(f"{path}: no weights for {', '.join(missing)}")
    fires = [name.rsplit(".", 1)[-1] for name, m in modules.items() if isinstance(m, Fire)]
    _check_concat_order(path, connections, fires)
    return model.eval()


def _read_layer_graph(path: Path) -> tuple[dict[str, np.ndarray], list[tuple[str, str]]]:
    """The layers (name -> MATLAB property record) and the (source, destination) connections."""
    try:
        with warnings.catch_warnings():  # mat-io sets a pandas option that pandas 3 deprecates
            warnings.filterwarnings("ignore", message=".*future.infer_string")
            import matio
    except ImportError:
        raise PrunekitError(
            'reading MATLAB models needs mat-io: pip install "prunekit-face[mat]"'
        ) from None
    if not path.is_file():
        raise PrunekitError(f"SqueezeFacePoseNet model file not found: {path}")
    try:
        graph = matio.load_from_mat(str(path))["lgraph_1"].properties["any"][0, 0]
        records = [layer.properties["any"][0, 0] for layer in graph["Layers"].ravel()]
        layers = {_text(record["Name"]): record for record in records}
        connections = [
            (_text(source), _text(destination))
            for source, destination in graph["Connections"].itertuples(index=False)
        ]
    except Exception as exc:  # mat-io raises many types on bad input
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise PrunekitError(
            f"cannot read {path} as the SqueezeFacePoseNet MATLAB LayerGraph ({reason})"
        ) from None
    return layers, connections


def _load_conv(conv: torch.nn.Conv2d, props: np.ndarray, where: str) -> None:
    # MATLAB stores [H, W, Cin/groups, Cout]; grouped layers put filter f of group g at output
    # index g * filters_per_group + f, which is also PyTorch's grouped-conv output layout.
    weight = torch.from_numpy(np.asarray(props["Weights"][0, 0]["Value"], dtype=np.float32))
    bias = torch.from_numpy(np.asarray(props["Bias"][0, 0]["Value"], dtype=np.float32))
    if weight.ndim == 4:
        weight = weight.permute(3, 2, 0, 1)
    groups = int(_scalar(props["NumGroups"])) if "NumGroups" in props.dtype.names else 1
    if weight.shape != conv.weight.shape or groups != conv.groups or conv.bias is None:
        raise PrunekitError(
            f"{where} has weights {tuple(weight.shape)} in {groups} group(s), "
            f"the model expects {tuple(conv.weight.shape)} in {conv.groups}"
        )
    with torch.no_grad():
        conv.weight.copy_(weight)
        conv.bias.copy_(bias.reshape(-1))


def _check_concat_order(path: Path, connections: list[tuple[str, str]], fires: list[str]) -> None:
    """Each Fire's concat must take expand1x1 first, as :class:`Fire` does."""
    inputs = {destination: source for source, destination in connections}
    for fire in fires:
        found = (inputs.get(f"{fire}-concat/in1"), inputs.get(f"{fire}-concat/in2"))
        if found != (f"{fire}-relu_expand1x1", f"{fire}-relu_expand3x3"):
            raise PrunekitError(
                f"{path}: {fire}-concat takes inputs {found}, expected (expand1x1, expand3x3)"
            )


def _module_name(matlab_name: str) -> str | None:
    for pattern, replacement in _LAYER_NAMES:
        if pattern.fullmatch(matlab_name):
            return pattern.sub(replacement, matlab_name)
    return None


def _text(value: Any) -> str:
    return str(np.asarray(value).ravel()[0])


def _scalar(value: Any) -> float:
    return float(np.asarray(value).ravel()[0])
