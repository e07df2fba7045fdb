"""prunekit-face: face verification for prunekit.

SqueezeNet face networks (:mod:`~prunekit_face.models`), the authors' released
SqueezeFacePoseNet-DWC weights (:mod:`~prunekit_face.pretrained`), verification metrics
(:mod:`~prunekit_face.metrics`) and training heads (:mod:`~prunekit_face.losses`).
"""

from prunekit_face import losses, metrics
from prunekit_face.models import Fire, SqueezeFaceNet, squeezefacenet, squeezefacenet_dwc
from prunekit_face.pretrained import load_squeezefaceposenet_dwc

__all__ = [
    "Fire",
    "SqueezeFaceNet",
    "load_squeezefaceposenet_dwc",
    "losses",
    "metrics",
    "squeezefacenet",
    "squeezefacenet_dwc",
]
