"""Fast in-memory batches: gather, augment and normalise whole batches as tensor operations.

Decoded uint8 pixels fit in memory (LFW at 113x113 is 0.5 GB), so an epoch is a permutation of
indices and every batch a handful of vectorised tensor operations; no worker processes. With
``device=`` the whole uint8 dataset lives on that device, where the batches are then made.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from torch import Tensor

from prunekit.errors import PrunekitError
from prunekit_face.data.preprocess import Augment


class BatchLoader:
    """Batches ``(images float32 [B, C, H, W], labels int64 [B])`` over uint8 [N, H, W, C] pixels.

    Epoch ``e`` shuffles and augments from a generator seeded by ``(seed, e)``, so a run is
    reproducible and resumes exactly at an epoch boundary with :meth:`set_epoch`. Each
    iteration is one epoch and advances the epoch counter. ``normalize`` maps a 0-255 batch to
    the network's input (e.g. :meth:`Preprocess.normalize`; default: plain float 0-255).
    ``images`` may be a numpy array (a read-only memmap too), read batch by batch, or a tensor;
    ``device`` copies the whole dataset there once; ``pin_memory`` pins CPU batches for fast
    asynchronous copies to a GPU.
    """

    def __init__(
        self,
        images: np.ndarray | Tensor,
        labels: Sequence[int] | np.ndarray | Tensor,
        *,
        batch_size: int = 128,
        shuffle: bool = True,
        drop_last: bool = False,
        augment: Augment | None = None,
        normalize: Callable[[Tensor], Tensor] | None = None,
        seed: int = 0,
        device: str | torch.device | None = None,
        pin_memory: bool = False,
    ) -> None:
        if images.ndim != 4 or images.dtype not in (np.uint8, torch.uint8):
            raise PrunekitError(
                f"BatchLoader needs uint8 images shaped [N, H, W, C], got {images.dtype} "
                f"{tuple(images.shape)}; pass CachedImages.images or SyntheticFaces.images"
            )
        labels = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
        if labels.shape != (len(images),):
            raise PrunekitError(
                f"BatchLoader got {len(images)} images but labels shaped {tuple(labels.shape)}; "
                "pass one label per image"
            )
        if batch_size <= 0:
            raise PrunekitError(f"BatchLoader batch_size={batch_size} must be positive")
        if pin_memory and (device is not None or not torch.cuda.is_available()):
            raise PrunekitError(
                "BatchLoader pin_memory=True needs CUDA and CPU-resident data (device=None); "
                "set pin_memory=False"
            )
        if device is not None:
            try:
                images, labels = _as_tensor(images).to(device), labels.to(device)
            except (RuntimeError, AssertionError) as err:
                raise PrunekitError(
                    f"cannot put the dataset on device {device!r} ({err}); pass an available "
                    "device or device=None"
                ) from None
        self.images = images
        self.labels = labels
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.augment = augment
        self.normalize = normalize
        self.seed = seed
        self.pin_memory = pin_memory
        self.epoch = 0

    def __len__(self) -> int:
        """Batches per epoch."""
        full, rest = divmod(len(self.labels), self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration epoch ``epoch`` (to resume a run)."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        seed = np.random.SeedSequence([self.seed, self.epoch]).generate_state(1, np.uint64)[0]
        self.epoch += 1
        generator = torch.Generator().manual_seed(int(seed))
        n = len(self.labels)
        order = torch.randperm(n, generator=generator) if self.shuffle else torch.arange(n)
        order = order.to(self.labels.device)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            index = order[start : start + self.batch_size]
            if isinstance(self.images, np.ndarray):
                batch = torch.from_numpy(self.images[index.numpy()])
            else:
                batch = self.images.index_select(0, index)
            batch = batch.permute(0, 3, 1, 2).contiguous()
            if self.augment is not None:
                batch = self.augment(batch, generator)
            batch = batch.float() if self.normalize is None else self.normalize(batch)
            labels = self.labels[index]
            if self.pin_memory:
                batch, labels = batch.pin_memory(), labels.pin_memory()
            yield batch, labels


def _as_tensor(images: np.ndarray | Tensor) -> Tensor:
    """A tensor of ``images``, copying a read-only array (torch cannot share one)."""
    if isinstance(images, Tensor):
        return images
    return torch.from_numpy(images if images.flags.writeable else np.array(images))
