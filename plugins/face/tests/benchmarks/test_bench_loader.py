"""Throughput of the face batch loader: images/s is reported in extra_info, never asserted."""

from __future__ import annotations

import time

from prunekit_face.data import Augment, BatchLoader, Preprocess, SyntheticFaces


def test_bench_face_loader(benchmark) -> None:
    faces = SyntheticFaces(128, 8, size=113, seed=0)  # 1,024 images held in memory
    loader = BatchLoader(
        faces.images,
        faces.labels,
        batch_size=128,
        augment=Augment(flip=True, crop_padding=4),
        normalize=Preprocess().normalize,
    )
    rates: list[float] = []

    def epoch() -> None:
        start = time.perf_counter()
        count = sum(len(labels) for _, labels in loader)
        rates.append(count / (time.perf_counter() - start))

    benchmark(epoch)
    benchmark.extra_info["images_per_s"] = round(max(rates))
    benchmark.extra_info["batch"] = (
        "128 x 3 x 113 x 113 float32, flip + 4 px shift, mean subtracted"
    )
