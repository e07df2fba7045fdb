"""BatchLoader: shapes, epochs as permutations, reproducibility and resumption, inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from prunekit.errors import PrunekitError
from prunekit_face.data import Augment, BatchLoader, Preprocess


@pytest.fixture
def images() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (10, 8, 6, 3), dtype=np.uint8)


def _epoch(loader: BatchLoader) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return list(loader)


def test_batches_shapes_and_types(images) -> None:
    loader = BatchLoader(images, np.arange(10), batch_size=4)
    batches = _epoch(loader)
    assert len(loader) == 3 and [len(y) for _, y in batches] == [4, 4, 2]
    x, y = batches[0]
    assert x.shape == (4, 3, 8, 6) and x.dtype == torch.float32 and x.is_contiguous()
    assert y.dtype == torch.int64
    dropped = BatchLoader(images, np.arange(10), batch_size=4, drop_last=True)
    assert len(dropped) == 2 and [len(y) for _, y in dropped] == [4, 4]


def test_each_epoch_is_a_permutation_of_the_pixels(images) -> None:
    loader = BatchLoader(images, np.arange(10), batch_size=4, seed=5)
    for _ in range(2):
        labels = torch.cat([y for _, y in loader])
        assert sorted(labels.tolist()) == list(range(10))
        for x, y in loader:
            expected = torch.from_numpy(images[y.numpy()]).permute(0, 3, 1, 2).float()
            assert torch.equal(x, expected)


def test_unshuffled_order_and_normalisation(images) -> None:
    pre = Preprocess(size=(8, 6))
    loader = BatchLoader(
        images, np.arange(10), batch_size=10, shuffle=False, normalize=pre.normalize
    )
    x, y = next(iter(loader))
    assert y.tolist() == list(range(10))
    assert torch.equal(x, pre.normalize(torch.from_numpy(images).permute(0, 3, 1, 2)))


def test_reproducible_and_resumable(images) -> None:
    def make() -> BatchLoader:
        return BatchLoader(
            images, np.arange(10), batch_size=4, augment=Augment(crop_padding=2), seed=1
        )

    run = make()
    epochs = [_epoch(run) for _ in range(3)]
    assert run.epoch == 3
    orders = [torch.cat([y for _, y in epoch]).tolist() for epoch in epochs]
    assert orders[0] != orders[1] != orders[2]
    resumed = make()
    resumed.set_epoch(2)
    for (x, y), (x2, y2) in zip(epochs[2], _epoch(resumed)):
        assert torch.equal(x, x2) and torch.equal(y, y2)
    other_seed = BatchLoader(images, np.arange(10), batch_size=4, seed=2)
    assert torch.cat([y for _, y in other_seed]).tolist() != orders[0]


def test_memmap_tensor_and_device_inputs_agree(images, tmp_path) -> None:
    np.save(tmp_path / "x.npy", images)
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")
    sources = [images, mapped, torch.from_numpy(images)]
    loaders = [BatchLoader(s, np.arange(10), batch_size=3, augment=Augment()) for s in sources]
    loaders.append(
        BatchLoader(mapped, torch.arange(10), batch_size=3, augment=Augment(), device="cpu")
    )
    reference = _epoch(loaders[0])
    for loader in loaders[1:]:
        for (x, y), (x2, y2) in zip(reference, _epoch(loader)):
            assert torch.equal(x, x2) and torch.equal(y, y2)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"images": np.zeros((2, 4, 4, 3), np.float32)}, "needs uint8 images shaped"),
        ({"images": np.zeros((2, 4, 4), np.uint8)}, r"got uint8 \(2, 4, 4\)"),
        ({"labels": [0, 1, 2]}, r"got 2 images but labels shaped \(3,\)"),
        ({"batch_size": 0}, "batch_size=0 must be positive"),
        ({"device": "nowhere"}, "cannot put the dataset on device 'nowhere'"),
    ],
)
def test_invalid_arguments(kwargs, message) -> None:
    arguments = {"images": np.zeros((2, 4, 4, 3), np.uint8), "labels": [0, 1], **kwargs}
    with pytest.raises(PrunekitError, match=message):
        BatchLoader(arguments.pop("images"), arguments.pop("labels"), **arguments)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA present: pinning is allowed")
def test_pin_memory_needs_cuda(images) -> None:
    with pytest.raises(PrunekitError, match="pin_memory=True needs CUDA"):
        BatchLoader(images, np.arange(10), pin_memory=True)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_batches_made_on_the_gpu(images) -> None:
    cpu = _epoch(BatchLoader(images, np.arange(10), batch_size=4, augment=Augment()))
    gpu = _epoch(BatchLoader(images, np.arange(10), batch_size=4, augment=Augment(), device="cuda"))
    for (x, y), (x2, y2) in zip(cpu, gpu):
        assert x2.is_cuda and y2.is_cuda
        assert torch.equal(x, x2.cpu()) and torch.equal(y, y2.cpu())
    pinned = BatchLoader(images, np.arange(10), pin_memory=True)
    assert next(iter(pinned))[0].is_pinned()
