"""The released SqueezeFacePoseNet-DWC on LFW: the full 6,000-pair 10-fold protocol."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from prunekit_face.metrics import cosine_scores, flip_fused, verification_report
from prunekit_face.pretrained import (
    INPUT_SIZE,
    LFW_CROP_BOX,
    MEAN_RGB,
    load_squeezefaceposenet_dwc,
)

MAT_FILE = Path("models/squeezefaceposenet/SqueezeFacePoseNet_with_separable_DWC.mat")
BATCH = 16  # small batches keep activations in cache: faster than large ones on CPU

ImageKey = tuple[str, int]  # (person, image number)


def read_pairs(path: Path) -> list[tuple[ImageKey, ImageKey, int, int]]:
    """LFW View 2 pairs.txt as (image_a, image_b, genuine, fold)."""
    lines = path.read_text().splitlines()
    folds, per_fold = map(int, lines[0].split())
    pairs = []
    for index, line in enumerate(lines[1 : 1 + 2 * folds * per_fold]):
        fields = line.split()
        fold = index // (2 * per_fold)
        if len(fields) == 3:
            name, a, b = fields
            pairs.append(((name, int(a)), (name, int(b)), 1, fold))
        else:
            name_a, a, name_b, b = fields
            pairs.append(((name_a, int(a)), (name_b, int(b)), 0, fold))
    return pairs


def preprocess(lfw: Path, image: ImageKey) -> np.ndarray:
    """Crop, resize, gray -> RGB and mean-subtract one LFW-a image: ``[3, 113, 113]``."""
    name, number = image
    with Image.open(lfw / name / f"{name}_{number:04d}.jpg") as file:
        face = file.convert("L").crop(LFW_CROP_BOX)
        face = face.resize((INPUT_SIZE, INPUT_SIZE), Image.Resampling.BILINEAR)
    gray = np.asarray(face, dtype=np.float32)
    return np.stack([gray - np.float32(mean) for mean in MEAN_RGB])


@pytest.mark.slow
def test_lfw_10fold_accuracy(shared: Path) -> None:
    torch.set_num_threads(2)
    lfw = shared / "data" / "lfw"
    pairs = read_pairs(lfw / "pairs.txt")
    assert len(pairs) == 6000
    model = load_squeezefaceposenet_dwc(shared / MAT_FILE).to(memory_format=torch.channels_last)

    def embed(batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(batch).contiguous(memory_format=torch.channels_last)
        return model(x).numpy()

    images = sorted({image for a, b, _, _ in pairs for image in (a, b)})
    embeddings = {}
    with torch.inference_mode():
        for start in range(0, len(images), BATCH):
            chunk = images[start : start + BATCH]
            batch = np.stack([preprocess(lfw, image) for image in chunk])
            embeddings.update(zip(chunk, flip_fused(embed, batch), strict=True))

    a = np.stack([embeddings[pair[0]] for pair in pairs])
    b = np.stack([embeddings[pair[1]] for pair in pairs])
    labels = np.array([pair[2] for pair in pairs])
    folds = np.array([pair[3] for pair in pairs])
    report = verification_report(cosine_scores(a, b), labels, folds)
    # Reference on these images: 95.93% +- 1.23, EER 4.17%.
    assert report["kfold_accuracy"] >= 0.955, report
    assert report["eer"] < 0.05, report
