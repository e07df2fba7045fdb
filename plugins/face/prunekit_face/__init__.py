"""prunekit-face: face verification for prunekit.

SqueezeNet face networks (:mod:`~prunekit_face.models`), the authors' released
SqueezeFacePoseNet-DWC shipped with the package (:func:`released_model`) and the importer of
their MATLAB models (:mod:`~prunekit_face.pretrained`, :mod:`~prunekit_face.convert`),
verification metrics (:mod:`~prunekit_face.metrics`), training heads
(:mod:`~prunekit_face.losses`) and the ``face`` task's data sources
(:mod:`~prunekit_face.sources`). The task itself (:mod:`~prunekit_face.task`) is registered by
the ``prunekit.tasks`` entry point.
"""

from prunekit_face import losses, metrics
from prunekit_face.models import Fire, SqueezeFaceNet, squeezefacenet, squeezefacenet_dwc
from prunekit_face.pretrained import load_squeezefaceposenet_dwc, released_model

__all__ = [
    "Fire",
    "SqueezeFaceNet",
    "load_squeezefaceposenet_dwc",
    "losses",
    "metrics",
    "released_model",
    "squeezefacenet",
    "squeezefacenet_dwc",
]
