"""Face data: decode-once image caches, LFW and identity-folder datasets, synthetic identities,
fast in-memory batch loading, and verified downloads."""

from prunekit_face.data.cache import BadImageError, CachedImages, cache_dir, load_images
from prunekit_face.data.download import LFW_SOURCES, Source, download, download_lfw, extract
from prunekit_face.data.folders import (
    IMAGE_EXTENSIONS,
    IdentityFolders,
    balanced_pairs,
    read_pair_list,
)
from prunekit_face.data.lfw import LFW, read_pairs
from prunekit_face.data.loader import BatchLoader
from prunekit_face.data.pairs import Pairs
from prunekit_face.data.preprocess import SQUEEZEFACE_MEAN, Augment, ImageTooSmall, Preprocess
from prunekit_face.data.synthetic import SyntheticFaces

__all__ = [
    "IMAGE_EXTENSIONS",
    "LFW",
    "LFW_SOURCES",
    "SQUEEZEFACE_MEAN",
    "Augment",
    "BadImageError",
    "BatchLoader",
    "CachedImages",
    "IdentityFolders",
    "ImageTooSmall",
    "Pairs",
    "Preprocess",
    "Source",
    "SyntheticFaces",
    "balanced_pairs",
    "cache_dir",
    "download",
    "download_lfw",
    "extract",
    "load_images",
    "read_pair_list",
    "read_pairs",
]
