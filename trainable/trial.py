"""One trial, start to finish, without Ray: inputs -> fit -> the best model's scores.

The Ray Tune entry point (`trainable.tune_trial`) only adapts `report` and
`resume` to `tune.report` and `tune.get_checkpoint`.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from trainable.cache import MANIFEST, TrunkCache, encode_images
from trainable.config import TrialConfig
from trainable.data import SPLITS, FaceData
from trainable.device import grad_scaler, pick_device, release_memory, resolve_precision
from trainable.image_store import StoredImages
from trainable.loop import EarlyStopping, TrainState, fit, predict
from trainable.model import (
    FaceAgeNet,
    build_model,
    load_trainable_state,
    trainable_state,
    trained_model_record,
    weights_id,
    weights_label,
)
from trainable.records import EpochRecord, FinalRecord, reported, split_key
from trainable.scoring import split_scores
from trainable.seeds import derive_seed
from trainable.transforms import CROP, SIZE, apply_transform, eval_transform, normalization, train_transform

Report = Callable[[dict[str, Any], dict[str, Any] | None], None]  # (metrics, checkpoint or None)


@dataclass(frozen=True)
class Encoding:
    """One set of trunk outputs a cached trial reads: `name` ('eval', or 'static:SEED' for one
    augmented copy per image drawn from SEED) over `subset` ('all' images or 'train')."""

    name: str
    subset: str
    seed: int = 0

    @classmethod
    def augmented(cls, seed: int) -> Encoding:
        return cls(f"static:{seed}", "train", seed)


def encodings(cfg: TrialConfig) -> list[Encoding]:
    """What a trial of `cfg` transforms once: the eval transform of every image, then its
    static copy or its K views of the training images (from the cache if cfg.uses_cache)."""
    wanted = [Encoding("eval", "all")]
    if cfg.augmentation == "static":
        wanted.append(Encoding.augmented(derive_seed(cfg.seed, "static")))
    elif cfg.augmentation == "online":
        wanted += [Encoding.augmented(derive_seed(cfg.seed, "view", k)) for k in range(cfg.augment_views)]
    return wanted


class TrialInputs:
    """What the network sees: trunk features when they can be cached, else images.

    `train(epoch)` is the training tensor for that epoch; `eval[split]` the
    eval-transform tensor of each split (train included, for its accuracy).
    """

    def __init__(
        self,
        cfg: TrialConfig,
        data: FaceData,
        model: FaceAgeNet,
        cache: TrunkCache,
        device: torch.device,
        precision: str,
    ) -> None:
        self.cfg, self.data, self.model, self.cache = cfg, data, model, cache
        self.device, self.precision = device, precision
        self.mean, self.std = normalization(cfg.normalization, data.mean, data.std)
        self.train_tf = train_transform(mean=self.mean, std=self.std)
        evaluation, *training = encodings(cfg)
        # Each split's rows alone (never the whole set at once), placed once: batches then
        # need no host-to-GPU copies.
        self.eval = {s: self._place(self._encoded(evaluation, data.split[s])) for s in SPLITS}
        self._train = self._views = None
        if cfg.augmentation == "none":
            self._train = self.eval["train"]
        elif cfg.augmentation == "static":  # one augmented copy per image, drawn once
            self._train = self._place(self._encoded(training[0]))
        elif cfg.uses_cache:  # online from K augmented views per image, each encoded once
            self._views = torch.stack([self._place(self._encoded(view)) for view in training])

    def train(self, epoch: int) -> torch.Tensor:
        if self._train is not None:
            return self._train
        if self._views is not None:  # every image draws one of its K views, anew each epoch
            generator = torch.Generator().manual_seed(derive_seed(self.cfg.seed, "pick", epoch))
            k, n = self._views.shape[:2]
            pick = torch.randint(k, (n,), generator=generator).to(self._views.device)
            return self._views[pick, torch.arange(n, device=self._views.device)]
        seed = derive_seed(self.cfg.seed, "online", epoch)  # a fresh draw every epoch
        return self._place(apply_transform(self.train_tf, self.data.images_of("train"), seed=seed))

    def _place(self, tensor: torch.Tensor) -> torch.Tensor:
        """Channels-last (oneDNN and cuDNN convolutions run faster so; see BENCHMARKS.md),
        on the trial's device, through pinned memory on CUDA."""
        tensor = tensor.contiguous(memory_format=torch.channels_last)
        if self.device.type != "cuda":
            return tensor
        return tensor.pin_memory().to(self.device, non_blocking=True)

    def _encoded(self, encoding: Encoding, rows: np.ndarray | None = None) -> torch.Tensor:
        """Trunk outputs of this encoding (its `rows` only, for the eval encoding) via the
        cache; the transformed images themselves if the trial cannot use the cache."""
        images, transform = encoding_inputs(encoding, self.data, self.mean, self.std)
        if not self.cfg.uses_cache:  # the eval transform draws nothing: a subset is its rows
            return apply_transform(transform, images if rows is None else images.subset(rows), seed=encoding.seed)
        compute = lambda: encode_images(  # noqa: E731
            self.model.trunk, images, transform, seed=encoding.seed, device=self.device, precision=self.precision
        )
        key = cache_key(self.cfg, self.data, encoding, self.precision, self.device)
        return self.cache.get(key, compute, rows)


def encoding_inputs(
    encoding: Encoding, data: FaceData, mean: tuple[float, ...], std: tuple[float, ...]
) -> tuple[StoredImages, Any]:
    """(the images, the transform) an encoding applies."""
    if encoding.name == "eval":
        return data.images, eval_transform(mean=mean, std=std)
    return data.images_of(encoding.subset), train_transform(mean=mean, std=std)


def cache_key(
    cfg: TrialConfig, data: FaceData, encoding: Encoding, precision: str, device: torch.device
) -> dict[str, Any]:
    """Everything an encoding's trunk outputs depend on."""
    split = hashlib.sha256(b"".join(data.split[s].tobytes() for s in SPLITS)).hexdigest()
    return {
        "data": data.fingerprint,
        "split": split,  # mean/std and the training images depend on the split
        "transform": encoding.name,
        "normalization": cfg.normalization,
        "weights": weights_id(cfg.weights),
        "freeze": cfg.freeze,
        "precision": precision,
        "device": device.type,
        "torch": str(torch.__version__),
        "draws": "per-image",  # apply_transform seeds each image (older entries drew in one stream)
    }


def encode_shard(
    cfg: TrialConfig, data: FaceData, encoding: Encoding, start: int, stop: int, cache: TrunkCache
) -> dict[str, Any] | None:
    """Rows start..stop of an encoding, written as one part of its cache entry on this
    worker's device; returns the entry's key (None if it was already complete)."""
    device = pick_device()
    precision = resolve_precision(cfg.precision, device)
    key = cache_key(cfg, data, encoding, precision, device)
    if os.path.exists(os.path.join(cache.folder(key), MANIFEST)):
        return None
    part = os.path.join(cache.folder(key), f"part-{start:09d}-{stop:09d}.npy")
    if not os.path.exists(part):  # a shard an interrupted encoding finished is kept
        model = build_model(cfg.weights, cfg.freeze, cfg.seed, len(data.classes)).to(device)
        mean, std = normalization(cfg.normalization, data.mean, data.std)
        images, transform = encoding_inputs(encoding, data, mean, std)
        features = encode_images(
            model.trunk,
            images[start:stop],
            transform,
            seed=encoding.seed,
            offset=start,
            device=device,
            precision=precision,
        )
        cache.write_part(key, start, features)
    return key


def make_optimizer(cfg: TrialConfig, model: FaceAgeNet) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    # fused: one kernel for all parameters; Adam's step on the 2.5M head weights is ~5x faster.
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, fused=True)


def epoch_record(state: TrainState) -> EpochRecord:
    """The last epoch's values, and the best epoch's so far (lowest val loss: the weights kept)."""
    last = state.history[-1]
    best = next((h for h in state.history if h.epoch == state.stopper.best_epoch), None)
    return EpochRecord(
        epoch=last.epoch,
        train_loss=last.train_loss,
        val_loss=last.val_loss,
        val_acc=last.val_acc,
        val_bacc=last.val_bacc,
        epoch_seconds=last.seconds,
        best_val_loss=best.val_loss if best else math.nan,
        best_val_acc=best.val_acc if best else math.nan,
        best_val_bacc=best.val_bacc if best else math.nan,
    )


@dataclass
class Training:
    """What training changes and a checkpoint keeps: the model's trainable part, the
    optimizer, the fp16 loss scale and the TrainState (epochs, stopper, best weights)."""

    model: FaceAgeNet
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    state: TrainState

    @classmethod
    def start(cls, cfg: TrialConfig, model: FaceAgeNet, scaler: torch.amp.GradScaler, resume: dict | None) -> Training:
        stopper = EarlyStopping(cfg.patience, cfg.min_delta, rule=cfg.stop_rule, es_rounds=cfg.es_rounds)
        training = cls(model, make_optimizer(cfg, model), scaler, TrainState(stopper))
        if resume is not None:
            training.restore(resume)
        return training

    def restore(self, resume: dict[str, Any]) -> None:
        self.state = TrainState.from_dict(resume["state"])
        if "model" in resume:  # the final checkpoint: training is over, scores are redone
            self.state.best_weights = resume["model"]["trained"]
            return
        load_trainable_state(self.model, resume["weights"])
        self.optimizer.load_state_dict(resume["optimizer"])
        if "scaler" in resume:  # checkpoints from before the scaler was kept lack it
            self.scaler.load_state_dict(resume["scaler"])

    def checkpoint(self) -> dict[str, Any]:
        """The resumable state, every cfg.checkpoint_every epochs."""
        return {
            "state": self.state.to_dict(),
            "weights": trainable_state(self.model),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
        }

    def final_checkpoint(self, cfg: TrialConfig, metrics: dict[str, Any], description: dict) -> dict[str, Any]:
        """The best weights once, described (in the model record), the history, the final
        metrics; no optimizer."""
        record = trained_model_record(self.model, weights=cfg.weights, freeze=cfg.freeze, **description)
        return {"state": {**self.state.to_dict(), "best_weights": {}}, "model": record, "metrics": metrics}


def run_trial(
    cfg: TrialConfig,
    data: FaceData,
    *,
    cache: TrunkCache,
    resume: dict[str, Any] | None = None,
    report: Report = lambda metrics, checkpoint: None,
) -> dict[str, Any]:
    """Train one configuration; return the final metrics (also sent with the last report).

    `report(metrics, checkpoint)` is called once per epoch; `checkpoint` is a dict to
    save or None: every `cfg.checkpoint_every` epochs `Training.checkpoint()`, at the
    end `Training.final_checkpoint()`. `resume` is such a dict from an earlier run.
    """
    device = pick_device()
    precision = resolve_precision(cfg.precision, device)  # the frozen trunk's
    run_precision = resolve_precision(cfg.train_precision, device)  # the trained part's, cached or not
    model = build_model(cfg.weights, cfg.freeze, cfg.seed, len(data.classes), cfg.dropout)
    model.trunk_precision = precision
    model = model.to(device, memory_format=torch.channels_last)
    start = time.perf_counter()
    inputs = TrialInputs(cfg, data, model, cache, device, precision)
    inputs_seconds = time.perf_counter() - start
    release_memory()  # the transforms' and trunk encoding's buffers, before the long part
    net = model.head if cfg.uses_cache else model
    training = Training.start(cfg, model, grad_scaler(device, run_precision), resume)
    train_labels = data.labels_of("train")
    class_weights, sample_weights = imbalance_weights(cfg, train_labels, len(data.classes))

    def on_epoch(state: TrainState, done: bool) -> None:
        if not done:  # the last epoch is reported below, with the final scores
            due = state.epoch % cfg.checkpoint_every == 0
            report(asdict(epoch_record(state)), training.checkpoint() if due else None)

    fit(
        model,
        net,
        training.optimizer,
        training.state,
        train_inputs=inputs.train,
        train_labels=train_labels,
        val_inputs=inputs.eval["val"],
        val_labels=data.labels_of("val"),
        batch_size=cfg.batch_size,
        max_epochs=cfg.max_epochs,
        seed=cfg.seed,
        device=device,
        precision=run_precision,
        on_epoch=on_epoch,
        scaler=training.scaler,
        class_weights=class_weights,
        sample_weights=sample_weights,
    )
    state = training.state
    record = FinalRecord(
        **asdict(epoch_record(state)),
        **score_best(net, inputs, data, state, device, run_precision),
        precision=precision,
        precision_trained=run_precision,
        inputs_seconds=inputs_seconds,
        stopped_by=state.stopper.stopped_by or "max_epochs",  # or early_stopping, diverged
    )
    final = asdict(record)
    description = model_description(cfg, data, inputs, precision, run_precision)
    report(final, training.final_checkpoint(cfg, final, description))
    return final


def imbalance_weights(
    cfg: TrialConfig, labels: torch.Tensor, n_classes: int
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(per-class loss weights, per-image sampling weights), each None unless the config asks
    for it: 'balanced' weights are n / (classes x count), so every class weighs the same in
    total (a class absent from training gets weight 0)."""
    counts = torch.bincount(labels, minlength=n_classes).double()
    balanced = torch.where(counts > 0, len(labels) / (n_classes * counts.clamp(min=1)), 0.0)
    class_weights = balanced.float() if cfg.class_weights == "balanced" else None
    sample_weights = balanced[labels] if cfg.sampler == "balanced" else None
    return class_weights, sample_weights


def model_description(
    cfg: TrialConfig, data: FaceData, inputs: TrialInputs, precision: str, train_precision: str
) -> dict[str, Any]:
    """What a model file says of itself, so it can be used alone: the trial's config, the
    class names, the preprocessing, the precisions its trunk and its trained part ran at, the
    starting weights' identity and the package versions."""
    return {
        "config": cfg.to_dict(),
        "classes": list(data.classes),
        "preprocessing": {
            "normalization": cfg.normalization,
            "mean": list(inputs.mean),
            "std": list(inputs.std),
            "crop": CROP,
            "size": SIZE,
            "input": "an RGB face crop like the training images (uint8, any size of at least the crop)",
        },
        "precision": precision,
        "train_precision": train_precision,
        "weights_id": weights_id(cfg.weights),
        "weights_label": weights_label(cfg.weights),
        "packages": {name: importlib.metadata.version(name) for name in ("torch", "torchvision", "facenet-pytorch")},
    }


def score_best(
    net: torch.nn.Module, inputs: TrialInputs, data: FaceData, state: TrainState, device: torch.device, precision: str
) -> dict[str, Any]:
    """Accuracy, balanced accuracy (mean per-class recall), macro-F1 and the normalized
    confusion matrix of the restored best model on each split; None for the scores when no
    epoch had a finite loss (the trial diverged at once)."""
    seconds = np.cumsum([h.seconds for h in state.history])
    best = state.stopper.best_epoch
    scores: dict[str, Any] = {
        reported.best_epoch: best,
        reported.seconds_to_best: float(seconds[best - 1]) if best else None,
        reported.train_seconds: float(seconds[-1]),
    }
    for split in SPLITS:
        if not best:
            scores.update({split_key(split, f"{m}_best"): None for m in ("acc", "bacc", "f1")})
            continue
        y = data.labels_of(split).numpy()
        logits = predict(net, inputs.eval[split], device=device, precision=precision)
        pred = logits.argmax(1).numpy()
        split_score = split_scores(y, pred, len(data.classes))
        scores.update({split_key(split, f"{m}_best"): split_score[m] for m in ("acc", "bacc", "f1")})
        if split != "train":  # per image, in split order: paired tests against other models
            scores[split_key(split, "pred")] = pred.tolist()
        scores[split_key(split, "confusion")] = split_score["confusion"]
    return scores
