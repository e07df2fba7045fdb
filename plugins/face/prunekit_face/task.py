"""The ``face`` task: prune a SqueezeNet face-verification network and judge it by verification.

Data come from :func:`prunekit_face.sources.load_face_data` (``data.source``: ``lfw``,
``folders``, ``synthetic`` or ``auto``; see :mod:`prunekit_face.sources`). The presets are the
YAML files of ``prunekit_face/presets/``. This module holds the model, the loss and optimiser,
the baseline recipe and the verification evaluation.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

import prunekit as pk
from prunekit import yamlfile
from prunekit.errors import PrunekitError
from prunekit.reporting import counted
from prunekit_face import metrics
from prunekit_face.data import Augment, BatchLoader
from prunekit_face.losses import make_head
from prunekit_face.models import squeezefacenet, squeezefacenet_dwc
from prunekit_face.pretrained import (
    RELEASED_SHA256,
    load_safetensors,
    load_squeezefaceposenet_dwc,
    released_model,
    sha256_of,
)
from prunekit_face.settings import SECTIONS
from prunekit_face.sources import FaceData, check_kfold, load_face_data, resolve_source

ARCHS = {"squeezefacenet": squeezefacenet, "squeezefacenet_dwc": squeezefacenet_dwc}
PRESETS = ("quick", "scratch", "taught", "paper")  # prunekit_face/presets/<name>.yaml
#: logged metric -> key of :func:`metrics.verification_report` (accuracy: thresholds chosen on
#: the other folds, LFW protocol)
REPORTED = {
    "accuracy": "kfold_accuracy",
    "accuracy_std": "kfold_accuracy_std",
    "eer": "eer",
    "auc": "auc",
    "tar@far=1e-2": "tar@far=1e-2",
    "tar@far=1e-3": "tar@far=1e-3",
}
EMBED_BATCH = 16  # images per forward pass in evaluation: on CPU, larger batches are slower

#: overrides of the generic defaults: prune the released network with cheap, label-free
#: recovery (least-squares reconstruction of every pruned layer, then distillation from the
#: unpruned parent on images of people outside the evaluated pairs)
DEFAULTS: dict[str, Any] = {
    "baseline": {"epochs": 30, "lr": 0.1},  # the classifier head, on cached embeddings
    "prune": {
        "criterion": "taylor",
        "schedule": "linear",
        "target": {"params": 0.4},
        "steps": 4,
        # one ranking over all layers, per parameter removed, the embedding's features
        # included: 94.2% at -40% on LFW folds 0-4 against 86.6% in local scope
        # (docs/results.md#the-main-job-on-lfw)
        "scope": "global",
        "rank": "per_cost",
        "prune_outputs": True,
        "score_batches": 6,
    },
    "recovery": {
        "methods": ["reconstruct", "distill"],
        "options": {
            "reconstruct": {"images": 128},
            "distill": {"images": 768, "flip": True, "batch": 16, "lr": 1e-3},
        },
        # an LFW evaluation is ~1 min on a 2-core CPU: evaluating each step twice would cost
        # a third of the run; the reconstruction error and distillation loss show the recovery
        "evaluate_before": False,
    },
}


def load_presets() -> dict[str, dict[str, Any]]:
    """Preset name -> overrides of the defaults, from the YAML files shipped in ``presets/``."""
    folder = resources.files("prunekit_face") / "presets"
    presets = {}
    for name in PRESETS:
        text = (folder / f"{name}.yaml").read_text(encoding="utf-8")
        presets[name] = yamlfile.load_mapping(f"face preset {name}.yaml", text)
    return presets


class FaceTask(pk.Task):
    """Face verification with SqueezeNet (SqueezerFaceNet): LFW, identity folders or synthetic."""

    primary_metric: ClassVar[str] = "accuracy"
    higher_is_better: ClassVar[bool] = True
    #: the model outputs a face embedding (no class scores): recovery methods match embeddings
    outputs: ClassVar[str] = "embedding"
    sections: ClassVar[dict[str, type[pk.Settings]]] = SECTIONS
    data_key: ClassVar[str] = "data.root"
    presets: ClassVar[dict[str, dict[str, Any]]] = load_presets()

    @classmethod
    def default_config(cls) -> dict[str, Any]:
        return copy.deepcopy(DEFAULTS)

    def __init__(self, config: dict[str, Any], device: torch.device | str = "cpu") -> None:
        super().__init__(config, device)
        self.data_cfg = config["data"]
        # resolved now, so that a wrong data folder fails before anything is decoded
        self.source, self.root = resolve_source(self.data_cfg)
        self._data: FaceData | None = None
        self._train: BatchLoader | None = None
        self._recovery_order: np.ndarray | None = None
        self.head: nn.Module | None = None
        #: the parent's embedding features the pruned model still returns (None: all)
        self.output_kept: torch.Tensor | None = None

    # ------------------------------------------------------------------ data
    @property
    def data(self) -> FaceData:
        """The decoded (once, cached on disk) or generated data, loaded on first use."""
        if self._data is None:
            seed = int(self.config.get("seed", 0))
            data = load_face_data(self.data_cfg, seed, progress=self.show_progress)
            self._data = check_kfold(data, self.data_cfg)  # before anything trains on it
        return self._data

    @property
    def num_classes(self) -> int:
        """Training identities: the classifier head's classes."""
        return self.data.num_classes

    def _loader(self) -> BatchLoader:
        if self._train is None:
            data, cfg = self.data, self.data_cfg
            if data.train_count < int(cfg["batch_size"]):  # the partial batch is dropped
                raise PrunekitError(
                    f"data.batch_size={cfg['batch_size']} is larger than the "
                    f"{data.train_count} training images, so an epoch would have no batch: "
                    f"lower it (e.g. --set data.batch_size={data.train_count})"
                )
            self._train = BatchLoader(
                data.train_images,
                data.train_labels,
                batch_size=int(cfg["batch_size"]),
                shuffle=True,
                drop_last=True,
                augment=Augment(flip=True, crop_padding=max(1, int(cfg["size"]) // 16)),
                normalize=data.normalize,
                seed=int(self.config.get("seed", 0)),
                device=self.device if self.device.type == "cuda" else None,
            )
        return self._train

    def describe_data(self) -> str:
        d = self.data
        counts = (
            f"{d.train_count:,} training images of {d.num_classes:,} identities, "
            f"{d.pair_count:,} evaluation pairs over {d.eval_count:,} images "
            f"(pairs sha256 {d.pairs_sha256}), {len(d.recovery_images):,} recovery images"
        )
        if d.skipped:
            counts += f", {counted(len(d.skipped), 'unreadable image')} skipped"
        if d.source == "synthetic":
            return (
                "SYNTHETIC faces (procedural identities): these numbers say nothing about real "
                "faces; point the run at LFW with --data DIR or PRUNEKIT_DATA=DIR (DIR/lfw/); "
                + counts
            )
        if d.source == "lfw":
            folds = ",".join(str(f) for f in sorted(self.data_cfg["eval_folds"]))
            return f"lfw data from {d.root} (official pairs of folds {folds}): {counts}"
        return f"folders data from {d.root}: {counts}"

    def provenance(self) -> dict[str, str | int]:
        """The data (source, absolute root, counts, a short sha256 of the evaluated pairs) and
        the origin of the model (released or given weights with a short sha256, or trained
        here)."""
        d = self.data
        found: dict[str, str | int] = {"data.source": d.source}
        if d.root is not None:
            found["data.root"] = str(d.root)
        found.update(
            {
                "data.train_images": d.train_count,
                "data.identities": d.num_classes,
                "data.eval_pairs": d.pair_count,
                "data.eval_images": d.eval_count,
                "data.recovery_images": len(d.recovery_images),
                "data.pairs_sha256": d.pairs_sha256,
            }
        )
        if d.skipped:
            found["data.skipped_images"] = len(d.skipped)
        model = self.config["model"]
        if model["pretrained"]:
            found["model"] = _weights_origin(model["pretrained"])
        elif model["teacher"]:
            found["model"] = (
                f"{model['arch']} distilled here from {_weights_origin(model['teacher'])}"
            )
        else:
            found["model"] = f"{model['arch']} trained here"
        return found

    def train_batches(self) -> Iterable[Any]:
        """One shuffled, augmented epoch; its order is drawn from torch's global RNG, which the
        runner seeds per step, so a resumed run sees exactly the batches it would have seen."""
        loader = self._loader()
        loader.set_epoch(int(torch.randint(0, 2**31 - 1, (1,))))
        return loader

    def recovery_batches(self) -> Iterator[torch.Tensor]:
        """The recovery images (identity-disjoint from the evaluated pairs) in an order drawn
        once from the run's seed: un-augmented, normalised float batches of
        ``data.batch_size`` on :attr:`device`, channels-last.

        The data lists people one after another, so a budget of the first N images would see
        few of them; a shuffled order spreads any budget over many people, and seeds differ in
        the images they calibrate on. Every step sees the same order, so the parent's outputs
        are computed once per run."""
        if self._recovery_order is None:
            rng = np.random.default_rng(int(self.config.get("seed", 0)))
            self._recovery_order = rng.permutation(len(self.data.recovery_images))
        images, order = self.data.recovery_images, self._recovery_order
        yield from _batches(images, int(self.data_cfg["batch_size"]), self, order)

    def model_inputs(self, batch: Any) -> torch.Tensor:
        """The network input of a batch: ``(images, labels)`` from :meth:`train_batches`, or a
        tensor from :meth:`recovery_batches`."""
        images = batch[0] if isinstance(batch, (tuple, list)) else batch
        return images.to(self.device)

    # ------------------------------------------------------------------ model and loss
    def build_model(self) -> nn.Module:
        cfg = self.config["model"]
        if cfg["pretrained"]:
            return _pretrained(cfg["pretrained"])
        return ARCHS[cfg["arch"]](
            bn=bool(cfg["bn"]),
            width=float(cfg["width"]),
            embedding_size=int(cfg["embedding_size"]),
        )

    def example_inputs(self) -> torch.Tensor:
        size = int(self.data_cfg["size"])
        return torch.zeros(1, 3, size, size, device=self.device)

    def _head_width(self) -> int:
        """The unpruned embedding's size: the classifier head's input."""
        model = self.config["model"]
        return 1000 if model.get("pretrained") else int(model["embedding_size"])

    def _head(self) -> nn.Module:
        """The training-only classifier head (never pruned, never exported)."""
        if self.head is None:
            head = self.config["train"]["head"]
            self.head = make_head(head, self._head_width(), self.num_classes)
            self.head.to(self.device)
        return self.head

    def outputs_pruned(self, kept: list[int]) -> None:
        self.output_kept = torch.tensor(kept, dtype=torch.long, device=self.device)

    def loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        images, labels = batch
        images, labels = images.to(self.device), labels.to(self.device)
        embedding = model(images)
        if self.output_kept is not None:
            # the head was fitted on the parent's embedding: the removed features read as 0
            full = embedding.new_zeros(embedding.shape[0], self._head_width())
            embedding = full.index_copy(1, self.output_kept, embedding)
        return self._head()(embedding, labels)

    def parameters(self, model: nn.Module) -> Iterator[nn.Parameter]:
        yield from model.parameters()
        yield from self._head().parameters()

    def make_optimizer(self, model: nn.Module, lr: float) -> torch.optim.Optimizer:
        train = self.config["train"]
        return torch.optim.SGD(
            self.parameters(model),
            lr=lr,
            momentum=float(train["momentum"]),
            weight_decay=float(train["weight_decay"]),
        )

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {} if self.head is None else dict(self.head.state_dict())

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if state:
            self._head().load_state_dict(state)

    # ------------------------------------------------------------------ baseline
    def prepare_baseline(self, model: nn.Module) -> str:
        cfg = self.config["baseline"]
        epochs, lr = int(cfg["epochs"]), float(cfg["lr"])
        pretrained, teacher = self.config["model"]["pretrained"], self.config["model"]["teacher"]
        if pretrained:
            # the pretrained network is the baseline: fit only the classifier head (needed by
            # the task loss of taylor scoring and fine-tuning), on embeddings computed once
            self._fit_head(model, epochs, lr)
            fitted = counted(epochs, "epoch")
            return f"pretrained weights ({pretrained}), classifier head fitted for {fitted}"
        if teacher:
            images = epochs * len(self.data.recovery_images)
            pk.recover(
                model,
                _pretrained(teacher).to(self.device),
                ["distill"],
                self.recovery_batches,
                budget=pk.Budget(images=2 * images),  # each image and its mirror image
                options={"distill": {"images": 2 * images, "lr": lr, "flip": True}},
                outputs="embedding",
                inputs=self.model_inputs,
                device=self.device,
            )
            self._fit_head(model, epochs, lr)
            return f"distilled from {teacher} for {counted(epochs, 'epoch')} of the recovery images"
        optimizer = self.make_optimizer(model, lr)
        # cosine decay over the baseline epochs, step per batch
        total = max(1, epochs * len(self._loader()))
        sched = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=lr, total_steps=total, pct_start=0.15
        )
        for epoch in self.baseline_epochs(epochs, model, optimizer, sched):  # resumable
            model.train()
            for batch in self.progress(self.train_batches(), f"baseline {epoch + 1}/{epochs}"):
                optimizer.zero_grad(set_to_none=True)
                loss = self.loss(model, batch)
                if not torch.isfinite(loss):
                    raise PrunekitError(
                        f"baseline training diverged (loss {float(loss)}): lower baseline.lr"
                    )
                loss.backward()
                optimizer.step()
                sched.step()
        return f"trained from scratch for {counted(epochs, 'epoch')}"

    def _fit_head(self, model: nn.Module, epochs: int, lr: float) -> None:
        """Train the classifier head on the frozen ``model``'s embeddings of the training
        images, computed once (epochs then cost milliseconds). They are plain embeddings, one
        pass per image, as the task loss sees them (mirror images as extra rows doubled the
        cost of the default run's baseline)."""
        data = self.data
        emb = torch.from_numpy(self.embed(model, data.train_images, fuse=False)).to(self.device)
        labels = torch.from_numpy(np.asarray(data.train_labels)).long().to(self.device)
        head = self._head()
        head.train()
        optimizer = torch.optim.SGD(head.parameters(), lr=lr, momentum=0.9)
        batch = int(self.data_cfg["batch_size"])
        for _ in range(epochs):
            order = torch.randperm(len(labels), device=self.device)
            for start in range(0, len(order), batch):
                index = order[start : start + batch]
                optimizer.zero_grad(set_to_none=True)
                head(emb[index], labels[index]).backward()
                optimizer.step()
        head.eval()

    # ------------------------------------------------------------------ evaluation
    @torch.inference_mode()
    def embed(self, model: nn.Module, images: np.ndarray, fuse: bool | None = None) -> np.ndarray:
        """Embeddings of uint8 [N, H, W, 3] images, each summed with its mirror image's if
        ``fuse`` (default: ``data.flip_fusion``)."""
        model.eval()
        fuse = self.data_cfg["flip_fusion"] if fuse is None else fuse
        out = []
        for x in _batches(images, EMBED_BATCH, self):
            e = model(x)
            if fuse:
                e = e + model(torch.flip(x, dims=[3]))
            out.append(e.float().cpu().numpy())
        return np.concatenate(out)

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        data = self.data
        emb = self.embed(model, data.eval_images)
        pairs = data.pairs
        scores = metrics.cosine_scores(emb[pairs.left], emb[pairs.right])
        report = metrics.verification_report(scores, pairs.same, pairs.fold)
        return {
            name: float(report[key]) for name, key in REPORTED.items() if report[key] is not None
        }


def _batches(
    images: np.ndarray, batch_size: int, task: FaceTask, order: np.ndarray | None = None
) -> Iterator[torch.Tensor]:
    """Normalised float NCHW batches of uint8 [N, H, W, 3] ``images`` in order (or in the
    index order ``order``), on the task's device, channels-last: oneDNN and cuDNN pick their
    faster NHWC kernels (the 113x113 released network embeds 1.8x faster on CPU; the
    embeddings agree to 1e-5)."""
    normalize = task.data.normalize
    for start in range(0, len(images), batch_size):
        rows = (
            slice(start, start + batch_size) if order is None else order[start : start + batch_size]
        )
        x = torch.from_numpy(np.array(images[rows]))  # a writable copy
        x = normalize(x.to(task.device).permute(0, 3, 1, 2))
        yield x.contiguous(memory_format=torch.channels_last)


def _weights_origin(name: str) -> str:
    """Which weights ``model.pretrained`` (or ``model.teacher``) names, with a short sha256."""
    if name == "released":
        return f"released SqueezeFacePoseNet-DWC weights (sha256 {RELEASED_SHA256[:16]})"
    path = Path(name).expanduser().resolve()
    return f"weights {path} (sha256 {sha256_of(path)[:16]})"


def _pretrained(name: str) -> nn.Module:
    """``released`` (the shipped network) or a ``.safetensors`` / ``.mat`` file of it."""
    if name == "released":
        return released_model()
    if str(name).endswith(".safetensors"):
        return load_safetensors(name)
    return load_squeezefaceposenet_dwc(name)
