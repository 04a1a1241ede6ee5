"""One trial, start to finish, without Ray: inputs (trainable.inputs) -> fit (trainable.loop)
-> the best model's scores on every split (score_best).

The Ray Tune entry point (`trainable.tune_trial`) only adapts `report` and
`resume` to `tune.report` and `tune.get_checkpoint`.
"""

from __future__ import annotations

import importlib.metadata
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from trainable.cache import TrunkCache
from trainable.config import TrialConfig
from trainable.data.dataset import SPLITS, FaceData
from trainable.device import pick_device, release_memory, resolve_precision
from trainable.inputs import TrialInputs
from trainable.loop import EarlyStopping, Examples, Recipe, TrainState, fit, predict
from trainable.model import (
    FaceAgeNet,
    build_model,
    load_trainable_state,
    trainable_state,
    trained_model_record,
    weights_id,
    weights_label,
)
from trainable.results.records import EpochRecord, FinalRecord, reported, split_key
from trainable.scoring import split_scores
from trainable.transforms import CROP, SIZE

Report = Callable[[dict[str, Any], dict[str, Any] | None], None]  # (metrics, checkpoint or None)


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
    recipe's optimizer and fp16 loss scale, and the TrainState (epochs, stopper, best weights)."""

    model: FaceAgeNet
    recipe: Recipe
    state: TrainState

    @classmethod
    def start(
        cls, cfg: TrialConfig, model: FaceAgeNet, data: FaceData, device: torch.device, precision: str
    ) -> Training:
        """A fresh start for `cfg`: its optimizer, loss and sampling weights, and stop rule."""
        labels = data.labels_of("train")
        class_weights, sample_weights = imbalance_weights(cfg, labels, len(data.classes))
        recipe = Recipe(
            make_optimizer(cfg, model),
            device,
            precision,
            cfg.batch_size,
            cfg.max_epochs,
            cfg.seed,
            class_weights=class_weights,
            sample_weights=sample_weights,
        )
        stopper = EarlyStopping(cfg.patience, cfg.min_delta, rule=cfg.stop_rule, es_rounds=cfg.es_rounds)
        return cls(model, recipe, TrainState(stopper))

    def restore(self, resume: dict[str, Any]) -> None:
        self.state = TrainState.from_dict(resume["state"])
        if "model" in resume:  # the final checkpoint: training is over, scores are redone
            self.state.best_weights = resume["model"]["trained"]
            return
        load_trainable_state(self.model, resume["weights"])
        self.recipe.optimizer.load_state_dict(resume["optimizer"])
        if "scaler" in resume:  # checkpoints from before the scaler was kept lack it
            self.recipe.scaler.load_state_dict(resume["scaler"])

    def checkpoint(self) -> dict[str, Any]:
        """The resumable state, every cfg.checkpoint_every epochs."""
        return {
            "state": self.state.to_dict(),
            "weights": trainable_state(self.model),
            "optimizer": self.recipe.optimizer.state_dict(),
            "scaler": self.recipe.scaler.state_dict(),
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
    training = Training.start(cfg, model, data, device, run_precision)
    if resume is not None:
        training.restore(resume)

    def on_epoch(state: TrainState, done: bool) -> None:
        if not done:  # the last epoch is reported below, with the final scores
            due = state.epoch % cfg.checkpoint_every == 0
            report(asdict(epoch_record(state)), training.checkpoint() if due else None)

    examples = Examples(inputs.train, data.labels_of("train"), inputs.eval["val"], data.labels_of("val"))
    fit(model, net, examples, training.recipe, training.state, on_epoch)
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
