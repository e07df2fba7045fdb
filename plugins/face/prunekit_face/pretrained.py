"""The authors' released SqueezeFacePoseNet-DWC: shipped weights and the MATLAB importer.

:func:`released_model` loads the weights shipped with this package
(``weights/squeezefaceposenet_dwc.safetensors``, converted once from the authors' MIT-licensed
``SqueezeFacePoseNet_with_separable_DWC.mat``); :func:`load_squeezefaceposenet_dwc` imports such
a MATLAB ``LayerGraph`` directly (it needs ``mat-io``), and :mod:`prunekit_face.convert` turns
one into a safetensors file that :func:`load_safetensors` reads.

The model expects RGB faces cropped and resized to ``INPUT_SIZE`` x ``INPUT_SIZE``, as float
0-255 pixels minus ``MEAN_RGB``; for LFW-a (250x250, grayscale: replicate the channel) crop with
``LFW_CROP_BOX`` first.
"""

from __future__ import annotations

import hashlib
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file

from prunekit.errors import PrunekitError
from prunekit_face.models import Fire, SqueezeFaceNet, squeezefacenet_dwc

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "INPUT_SIZE",
    "LFW_CROP_BOX",
    "MEAN_RGB",
    "RELEASED_SHA256",
    "RELEASED_WEIGHTS",
    "load_safetensors",
    "load_squeezefaceposenet_dwc",
    "released_model",
    "sha256_of",
]

MEAN_RGB = (131.0912, 103.8827, 91.4953)
LFW_CROP_BOX = (64, 55, 186, 196)  # (left, top, right, bottom) on the 250x250 LFW-a image
INPUT_SIZE = 113

#: the shipped weights: the state_dict of :func:`squeezefacenet_dwc` (no BatchNorm)
RELEASED_WEIGHTS = (
    Path(__file__).resolve().parent / "weights" / "squeezefaceposenet_dwc.safetensors"
)
#: sha256 of :data:`RELEASED_WEIGHTS`; :func:`released_model` refuses any other content
RELEASED_SHA256 = "c8121546a621689531ad81ce148ab6ccd52d1e5ba890529d307cf62c6223537d"
#: the ``format`` and ``format_version`` metadata of the safetensors files written by
#: :func:`prunekit_face.convert.convert`
FORMAT = "prunekit-face/squeezefacenet_dwc"
FORMAT_VERSION = "1"

# MATLAB layer name -> PyTorch module name, for every layer that carries weights.
_LAYER_NAMES = (
    (re.compile(r"conv(1|10)"), r"conv\1"),
    (re.compile(r"fire(\d+)-squeeze1x1"), r"features.fire\1.squeeze"),
    (re.compile(r"fire(\d+)-expand1x1"), r"features.fire\1.expand1x1"),
    (re.compile(r"fire(\d+)-expand3x3(?:-groupedconv)?"), r"features.fire\1.expand3x3"),
)


def released_model() -> SqueezeFaceNet:
    """The authors' released SqueezeFacePoseNet-DWC, from the weights shipped in this package.

    A :func:`squeezefacenet_dwc` in eval mode, 694,056 parameters, 1000-D embeddings; feed it
    113x113 RGB faces as 0-255 floats minus :data:`MEAN_RGB` (LFW-a: crop
    :data:`LFW_CROP_BOX` first). The file is checked against :data:`RELEASED_SHA256` and read
    without pickle.
    """
    return load_safetensors(RELEASED_WEIGHTS, sha256=RELEASED_SHA256)


def load_safetensors(path: str | Path, *, sha256: str | None = None) -> SqueezeFaceNet:
    """:func:`squeezefacenet_dwc` with the weights of a file written by
    :func:`prunekit_face.convert.convert` (in eval mode).

    With ``sha256`` the file's digest must match first, so a corrupt or altered file is refused
    before it is parsed. Every error is a one-line :class:`~prunekit.errors.PrunekitError`.
    """
    path = Path(path)
    if not path.is_file():
        raise PrunekitError(f"SqueezeFacePoseNet weights not found: {path}")
    if sha256 is not None:
        found = sha256_of(path)
        if found != sha256:
            raise PrunekitError(
                f"{path} is corrupt (sha256 {found[:12]}..., expected {sha256[:12]}...): "
                "reinstall prunekit-face"
            )
    try:
        with safe_open(str(path), framework="pt") as file:
            metadata = file.metadata() or {}
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise PrunekitError(f"cannot read {path} as safetensors ({reason})") from None
    if metadata.get("format") != FORMAT or metadata.get("format_version") != FORMAT_VERSION:
        raise PrunekitError(
            f"{path} is not a prunekit-face SqueezeFacePoseNet file (format "
            f"{metadata.get('format')!r} version {metadata.get('format_version')!r}, expected "
            f"{FORMAT!r} version {FORMAT_VERSION}); convert the .mat again with "
            "python -m prunekit_face.convert"
        )
    try:
        model = squeezefacenet_dwc(embedding_size=int(metadata.get("embedding_size", "1000")))
        model.load_state_dict(state, strict=True)
    except (RuntimeError, ValueError) as exc:
        reason = " ".join(str(exc).split())
        raise PrunekitError(f"{path} does not fit squeezefacenet_dwc(): {reason}") from None
    return model.eval()


def sha256_of(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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
