"""Convert a SqueezeFacePoseNet-DWC MATLAB model (``.mat`` ``LayerGraph``) to safetensors.

``python -m prunekit_face.convert SRC.mat OUT.safetensors`` (needs ``mat-io``: ``pip install
"prunekit-face[mat]"``) writes the ``state_dict`` of :func:`~prunekit_face.squeezefacenet_dwc`
holding the MATLAB weights, with the source's sha256 and the format version in the file's
metadata. :func:`~prunekit_face.pretrained.load_safetensors` reads it back, without pickle and
without mat-io. The weights shipped with this package were made this way from the authors'
``SqueezeFacePoseNet_with_separable_DWC.mat``.
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import sys
from collections.abc import Sequence
from pathlib import Path

from safetensors.torch import save_file

from prunekit.errors import PrunekitError
from prunekit_face.pretrained import (
    FORMAT,
    FORMAT_VERSION,
    INPUT_SIZE,
    MEAN_RGB,
    load_squeezefaceposenet_dwc,
    sha256_of,
)

__all__ = ["convert", "main"]


def convert(src: str | Path, out: str | Path) -> dict[str, str]:
    """Import the MATLAB model ``src`` and write its weights to ``out``; returns the metadata.

    The metadata (all strings, as safetensors requires) records ``format``,
    ``format_version``, ``arch``, ``embedding_size``, ``source`` (file name) and
    ``source_sha256``, plus the preprocessing the network expects (``input_size``,
    ``mean_rgb``).
    """
    src, out = Path(src), Path(out)
    model = load_squeezefaceposenet_dwc(src)
    state = {name: tensor.detach().contiguous() for name, tensor in model.state_dict().items()}
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "arch": "squeezefacenet_dwc",
        "embedding_size": str(model.conv10.out_channels),
        "source": src.name,
        "source_sha256": sha256_of(src),
        "input_size": str(INPUT_SIZE),
        "mean_rgb": ",".join(str(m) for m in MEAN_RGB),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        save_file(state, str(out), metadata=metadata)
        _canonical_header(out)
        os.chmod(out, 0o644)
    except OSError as exc:
        raise PrunekitError(f"cannot write {out} ({exc.strerror})") from None
    return metadata


def _canonical_header(path: Path) -> None:
    """Rewrite the JSON header with sorted keys, so that a conversion is byte-reproducible.

    safetensors writes the metadata in hash-map order, which varies from run to run; the sorted,
    compact header has the same length (padded with spaces, as the format allows), so the
    tensor data stays where it is.
    """
    with open(path, "r+b") as file:
        (length,) = struct.unpack("<Q", file.read(8))
        header = json.loads(file.read(length))
        canonical = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
        if len(canonical) > length:  # cannot happen for safetensors' compact header
            return
        file.seek(8)
        file.write(canonical.ljust(length))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m prunekit_face.convert",
        description="Convert a SqueezeFacePoseNet-DWC MATLAB model (.mat) to safetensors.",
    )
    parser.add_argument("src", metavar="SRC.mat", help="MATLAB LayerGraph file (variable lgraph_1)")
    parser.add_argument("out", metavar="OUT.safetensors", help="file to write")
    args = parser.parse_args(argv)
    try:
        metadata = convert(args.src, args.out)
    except PrunekitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(
        f"wrote {args.out}: {metadata['arch']}, {metadata['embedding_size']}-D embedding, "
        f"sha256 {sha256_of(args.out)} (source sha256 {metadata['source_sha256']})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
