"""The best epoch's model scored on every split: accuracy, balanced accuracy, macro-F1, the
confusion matrix and each image's prediction (for paired tests), with the same scores as
everywhere else (trainable.scoring)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from trainable.data.dataset import SPLITS, FaceData
from trainable.inputs import TrialInputs
from trainable.loop import TrainState, predict
from trainable.records import reported, split_key
from trainable.scoring import split_scores


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
