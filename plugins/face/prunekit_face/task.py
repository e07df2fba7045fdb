"""The ``face`` task: prune a SqueezeNet face-verification network and judge it by verification.

Data, by ``data.source``:

* ``lfw`` — LFW in its official layout (``<root>/lfw/<Name>/<Name>_NNNN.jpg`` + ``pairs.txt``):
  evaluation on the official pairs of ``data.eval_folds`` (threshold chosen on the other
  evaluation folds, LFW-style), training on the people who appear in none of them.
* ``folders`` — any ``<root>/<identity>/<image>`` dataset (ORL, VGGFace2, CASIA-WebFace):
  ``data.eval_identities`` identities held out, balanced pairs among them drawn by the seed.
* ``synthetic`` — procedural identities generated from the seed (the offline default): the
  numbers then say nothing about real faces, and the run says so.
* ``auto`` — ``lfw`` if ``data.root`` (or ``$PRUNEKIT_DATA``) holds ``lfw/pairs.txt``,
  ``folders`` if it is an identity-folder dataset, else ``synthetic``.
"""

from __future__ import annotations

import copy
import os
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

import prunekit as pk
from prunekit.errors import PrunekitError
from prunekit_face import metrics
from prunekit_face.data import (
    LFW,
    Augment,
    BatchLoader,
    IdentityFolders,
    Pairs,
    Preprocess,
    SyntheticFaces,
    balanced_pairs,
    load_images,
)
from prunekit_face.losses import make_head
from prunekit_face.models import squeezefacenet, squeezefacenet_dwc
from prunekit_face.pretrained import LFW_CROP_BOX, MEAN_RGB, load_squeezefaceposenet_dwc

ARCHS = {"squeezefacenet": squeezefacenet, "squeezefacenet_dwc": squeezefacenet_dwc}
SOURCES = ("auto", "lfw", "folders", "synthetic")
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

#: the default ("quick") preset: small inputs and few epochs, minutes on a 2-core CPU
QUICK: dict[str, Any] = {
    "model": {
        "arch": "squeezefacenet",
        "bn": True,
        "width": 1.0,
        "embedding_size": 1000,
        "pretrained": None,  # path to SqueezeFacePoseNet_with_separable_DWC.mat
    },
    "data": {
        "source": "auto",
        "root": None,  # default: $PRUNEKIT_DATA
        "size": 48,
        "eval_folds": [0, 1, 2, 3, 4],  # LFW folds evaluated; training uses people outside
        "min_images": 2,
        "eval_identities": 10,  # folders: identities held out for evaluation
        "eval_pairs": 600,  # folders / synthetic: balanced evaluation pairs
        "synthetic_identities": 200,
        "synthetic_images": 12,
        "on_bad_image": "fail",  # or "skip" (counted and reported)
        "batch_size": 64,
        "flip_fusion": False,  # the paper preset fuses flips
    },
    "train": {"head": "softmax", "momentum": 0.9, "weight_decay": 5e-4},
    "baseline": {"epochs": 6, "lr": 0.1, "checkpoint": None},
    "prune": {
        "criterion": "taylor",
        "schedule": "linear",
        "target": {"params": 0.4},
        "steps": 4,
        "scope": "local",
        "score_batches": 20,
    },
    "finetune": {"epochs": 1, "lr": 0.01},
}

#: the SqueezerFaceNet paper's setting: 113x113, its optimiser, Taylor scores averaged over a
#: whole epoch, a constant number of filters removed per iteration
PAPER: dict[str, Any] = {
    "data": {"size": 113, "batch_size": 128, "flip_fusion": True},
    "baseline": {"epochs": 30, "lr": 0.01},
    "prune": {
        "criterion": "taylor",
        "criterion_options": {"variant": "param"},
        "schedule": "constant",
        "target": {"params": 0.48},
        "steps": 10,
        "scope": "global",
        "score_batches": None,
    },
    "finetune": {"epochs": 2, "lr": 0.001},
}


@pk.register_task("face")
class FaceTask(pk.Task):
    """Face verification with SqueezeNet (SqueezerFaceNet): LFW, identity folders or synthetic."""

    primary_metric: ClassVar[str] = "accuracy"
    higher_is_better: ClassVar[bool] = True
    config_ranges: ClassVar[dict[str, tuple[float | None, float | None]]] = {
        "data.size": (16, None),
        "data.batch_size": (1, None),
        "data.min_images": (2, None),
        "data.eval_identities": (2, None),
        "data.eval_pairs": (2, None),
        "data.synthetic_identities": (2, None),
        "data.synthetic_images": (2, None),
        "model.width": (0.0, None),
        "model.embedding_size": (1, None),
        "train.momentum": (0, 1),
        "train.weight_decay": (0, None),
    }
    presets: ClassVar[dict[str, dict[str, Any]]] = {"quick": {}, "paper": PAPER}

    @classmethod
    def default_config(cls) -> dict[str, Any]:
        return copy.deepcopy(QUICK)

    def __init__(self, config: dict[str, Any], device: torch.device | str = "cpu") -> None:
        super().__init__(config, device)
        self.data_cfg = config["data"]
        self.source = self._resolve_source()
        self._train: BatchLoader | None = None
        self._eval: tuple[np.ndarray, Pairs] | None = None
        self.head: nn.Module | None = None

    # ------------------------------------------------------------------ data
    def _root(self) -> Path | None:
        root = self.data_cfg.get("root") or os.environ.get("PRUNEKIT_DATA")
        if not root:
            return None
        path = Path(root).expanduser()
        if not path.is_dir():
            raise PrunekitError(
                f"data root {path} does not exist: pass --data DIR / data.root or set "
                "PRUNEKIT_DATA to a folder holding lfw/ or <identity>/<image> folders"
            )
        return path

    def _resolve_source(self) -> str:
        source = self.data_cfg["source"]
        if source not in SOURCES:
            raise PrunekitError(f"data.source={source!r} is unknown: choose one of {SOURCES}")
        root = self._root()
        if source != "auto":
            if source != "synthetic" and root is None:
                raise PrunekitError(
                    f"data.source={source} needs a data folder: pass --data DIR or set "
                    "PRUNEKIT_DATA"
                )
            return source
        if root is None:
            return "synthetic"
        return (
            "lfw"
            if (root / "lfw" / "pairs.txt").is_file() or (root / "pairs.txt").is_file()
            else "folders"
        )

    def _lfw_root(self) -> Path:
        root = self._root()
        assert root is not None
        return root / "lfw" if (root / "lfw" / "pairs.txt").is_file() else root

    def _preprocess(self) -> Preprocess:
        crop = LFW_CROP_BOX if self.source == "lfw" else None
        return Preprocess(size=int(self.data_cfg["size"]), crop_box=crop, mean=MEAN_RGB)

    def _load(self) -> None:
        """Decode (once, cached on disk) or generate the training and evaluation data."""
        if self._train is not None:
            return
        cfg, seed = self.data_cfg, int(self.config.get("seed", 0))
        prep = self._preprocess()
        if self.source == "synthetic":
            n_id = int(cfg["synthetic_identities"])
            faces = SyntheticFaces(n_id, int(cfg["synthetic_images"]), int(cfg["size"]), seed=seed)
            held_out = max(2, n_id // 5)  # the last fifth of identities is evaluated
            is_eval = faces.labels >= n_id - held_out
            train_x, train_y = faces.images[~is_eval], faces.labels[~is_eval]
            eval_x, eval_y = faces.images[is_eval], faces.labels[is_eval]
            pairs = _balanced(eval_y, int(cfg["eval_pairs"]), seed)
        elif self.source == "lfw":
            lfw = LFW(
                self._lfw_root(), eval_folds=cfg["eval_folds"], min_images=int(cfg["min_images"])
            )
            train = load_images(
                lfw.train_paths, prep, on_bad_image=cfg["on_bad_image"], progress=self.show_progress
            )
            train_x, train_y = train.images, lfw.train_labels[train.indices]
            evaluation = load_images(
                lfw.pair_paths(), prep, on_bad_image="fail", progress=self.show_progress
            )
            eval_x, pairs = evaluation.images, lfw.pairs
        else:
            every = IdentityFolders.scan(self._root())  # type: ignore[arg-type]
            train_ids, eval_ids = every.split(int(cfg["eval_identities"]), seed)
            train = load_images(
                train_ids.paths, prep, on_bad_image=cfg["on_bad_image"], progress=self.show_progress
            )
            train_x, train_y = train.images, train_ids.labels[train.indices]
            evaluation = load_images(
                eval_ids.paths, prep, on_bad_image="fail", progress=self.show_progress
            )
            eval_x = evaluation.images
            pairs = _balanced(eval_ids.labels, int(cfg["eval_pairs"]), seed)
        if self.source != "synthetic" and train.skipped:
            warnings.warn(
                f"skipped {len(train.skipped)} unreadable training images "
                f"(data.on_bad_image=skip), e.g. {train.skipped[0]}",
                stacklevel=2,
            )
        # labels must be 0..K-1 for the classifier head
        _, train_y = np.unique(np.asarray(train_y), return_inverse=True)
        self.num_classes = int(train_y.max()) + 1
        self._train = BatchLoader(
            train_x,
            train_y,
            batch_size=int(cfg["batch_size"]),
            shuffle=True,
            drop_last=True,
            augment=Augment(flip=True, crop_padding=max(1, int(cfg["size"]) // 16)),
            normalize=prep.normalize,
            seed=seed,
            device=self.device if self.device.type == "cuda" else None,
        )
        self._eval = (eval_x, pairs)
        self._normalize = prep.normalize

    def describe_data(self) -> str:
        if self.source == "synthetic":
            return (
                "SYNTHETIC faces (procedural identities): these numbers say nothing about real "
                "faces; point the run at LFW with --data DIR or PRUNEKIT_DATA=DIR (DIR/lfw/)"
            )
        return f"{self.source} data from {self._root()}"

    def train_batches(self) -> Iterable[Any]:
        """One shuffled, augmented epoch; its order is drawn from torch's global RNG, which the
        runner seeds per step, so a resumed run sees exactly the batches it would have seen."""
        self._load()
        assert self._train is not None
        self._train.set_epoch(int(torch.randint(0, 2**31 - 1, (1,))))
        return self._train

    # ------------------------------------------------------------------ model and loss
    def build_model(self) -> nn.Module:
        cfg = self.config["model"]
        if cfg.get("pretrained"):
            return load_squeezefaceposenet_dwc(cfg["pretrained"])
        if cfg["arch"] not in ARCHS:
            raise PrunekitError(
                f"model.arch={cfg['arch']!r} is unknown: choose one of {', '.join(ARCHS)}"
            )
        return ARCHS[cfg["arch"]](
            bn=bool(cfg["bn"]),
            width=float(cfg["width"]),
            embedding_size=int(cfg["embedding_size"]),
        )

    def example_inputs(self) -> torch.Tensor:
        size = int(self.data_cfg["size"])
        return torch.zeros(1, 3, size, size, device=self.device)

    def _head(self) -> nn.Module:
        """The training-only classifier head (never pruned, never exported)."""
        if self.head is None:
            self._load()
            model = self.config["model"]
            dim = 1000 if model.get("pretrained") else int(model["embedding_size"])
            self.head = make_head(self.config["train"]["head"], dim, self.num_classes)
            self.head.to(self.device)
        return self.head

    def loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        images, labels = batch
        images, labels = images.to(self.device), labels.to(self.device)
        return self._head()(model(images), labels)

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
        model = getattr(model, "module", model)  # under DDP, the wrapped network
        if cfg.get("checkpoint"):
            # a run's checkpoint: the network plus the classifier head saved beside it
            pk.load(cfg["checkpoint"], model)
            extra = pk.read_checkpoint(cfg["checkpoint"])["extra"]
            self.load_state_dict({k[5:]: v for k, v in extra.items() if k.startswith("task.")})
            return f"loaded {cfg['checkpoint']}"
        epochs, lr = int(cfg["epochs"]), float(cfg["lr"])
        if self.config["model"].get("pretrained"):
            # the released network is the baseline: train only the classifier head
            head = self._head()
            optimizer = torch.optim.SGD(head.parameters(), lr=lr, momentum=0.9)
            for _ in range(epochs):
                _fit_head(self, model, head, optimizer)
            return f"authors' pretrained weights ({self.config['model']['pretrained']})"
        optimizer = self.make_optimizer(model, lr)
        # cosine decay over the baseline epochs, step per batch
        self._load()
        assert self._train is not None
        total = max(1, epochs * len(self._train))
        sched = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=lr, total_steps=total, pct_start=0.15
        )
        for epoch in range(epochs):
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
        return f"trained from scratch for {epochs} epochs"

    # ------------------------------------------------------------------ evaluation
    @torch.inference_mode()
    def embed(self, model: nn.Module, images: np.ndarray) -> np.ndarray:
        """Embeddings of uint8 [N, H, W, 3] images (flip-fused if configured)."""
        model.eval()
        out = []
        bs = 256
        for start in range(0, len(images), bs):
            x = torch.from_numpy(np.array(images[start : start + bs]))  # a writable copy
            x = self._normalize(x.permute(0, 3, 1, 2).to(self.device).float())
            # channels-last input: oneDNN and cuDNN pick their faster NHWC kernels (the 113x113
            # released network embeds 1.8x faster on CPU); the embeddings agree to 1e-5
            x = x.contiguous(memory_format=torch.channels_last)
            e = model(x)
            if self.data_cfg["flip_fusion"]:
                e = e + model(torch.flip(x, dims=[3]))
            out.append(e.float().cpu().numpy())
        return np.concatenate(out)

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        self._load()
        assert self._eval is not None
        images, pairs = self._eval
        emb = self.embed(model, images)
        scores = metrics.cosine_scores(emb[pairs.left], emb[pairs.right])
        report = metrics.verification_report(scores, pairs.same, pairs.fold)
        return {
            name: float(report[key]) for name, key in REPORTED.items() if report[key] is not None
        }


def _fit_head(task: FaceTask, model: nn.Module, head: nn.Module, optimizer: Any) -> None:
    model.eval()
    head.train()
    for images, labels in task.train_batches():
        with torch.no_grad():
            emb = model(images.to(task.device))
        optimizer.zero_grad(set_to_none=True)
        head(emb, labels.to(task.device)).backward()
        optimizer.step()


def _balanced(labels: np.ndarray, n_pairs: int, seed: int) -> Pairs:
    """Balanced pairs over images ``0..N-1`` spread over 10 folds (for threshold selection)."""
    i, j, same = balanced_pairs(np.asarray(labels), n_pairs, seed)
    fold = np.random.default_rng(seed).integers(0, 10, len(same))
    return Pairs(tuple(str(k) for k in range(len(labels))), i, j, same, fold)
