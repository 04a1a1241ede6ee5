"""The scores of predictions against labels: one definition for every model the study
scores (a trial, a saved model re-scored by Predictor or analysis.evaluate, the baselines,
the zero-shot peer) and for the statistics on them (analysis.stats).

Predictions are class indices, shape (..., images); NO_FACE (-1) is the answer of a model
that found no face in the image, and is wrong in every score: a miss of its true class,
a false positive of none, and a "no face" column in the confusion matrix.
"""

from __future__ import annotations

from typing import Any

import numpy as np

NO_FACE = -1  # the prediction of a model that found no face in the image: always wrong


def confusion_counts(preds, labels, n_classes: int) -> np.ndarray:
    """Confusion counts (..., classes, classes + 1) [true, predicted] of predictions (..., images)
    against labels broadcastable to them; the last column counts NO_FACE predictions. One
    bincount of (row, label, prediction) gives every row's matrix."""
    preds = np.asarray(preds)
    preds = np.where(preds == NO_FACE, n_classes, preds)
    labels = np.broadcast_to(labels, preds.shape)
    rows = np.arange(int(np.prod(preds.shape[:-1]))).reshape(*preds.shape[:-1], 1)
    width = n_classes + 1
    keys = (rows * n_classes + labels) * width + preds
    confusion = np.bincount(keys.ravel(), minlength=rows.size * n_classes * width)
    return confusion.reshape(*preds.shape[:-1], n_classes, width)


def class_counts(preds: np.ndarray, labels: np.ndarray, n_classes: int) -> tuple[np.ndarray, ...]:
    """(true positives, false positives, false negatives) per class, shape (..., classes). A
    NO_FACE prediction is a false negative of its true class and a false positive of none."""
    return counts_of(confusion_counts(preds, labels, n_classes))


def counts_of(confusion: np.ndarray) -> tuple[np.ndarray, ...]:
    """(true positives, false positives, false negatives) per class of confusion counts
    (..., classes, classes + 1), which may be weighted (a bootstrap's)."""
    n_classes = confusion.shape[-2]
    tp = np.diagonal(confusion[..., :n_classes], axis1=-2, axis2=-1)
    return tp, confusion[..., :n_classes].sum(-2) - tp, confusion.sum(-1) - tp


def recall_per_class(preds, labels, n_classes: int) -> np.ndarray:
    """Recall of each class (..., classes); NaN for a class with no image."""
    tp, _, fn = class_counts(np.asarray(preds), np.asarray(labels), n_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        return tp / (tp + fn)


def _mean_over_classes(values: np.ndarray, present: np.ndarray) -> np.ndarray:
    return np.where(present, values, 0).sum(-1) / np.maximum(present.sum(-1), 1)


def accuracy_of(confusion: np.ndarray) -> np.ndarray:
    tp, _, fn = counts_of(confusion)
    return tp.sum(-1) / np.maximum((tp + fn).sum(-1), 1e-300)


def balanced_accuracy_of(confusion: np.ndarray) -> np.ndarray:
    """Mean per-class recall over the classes that have images (sklearn's balanced accuracy)."""
    tp, _, fn = counts_of(confusion)
    support = tp + fn
    return _mean_over_classes(tp / np.where(support > 0, support, 1), support > 0)


def macro_f1_of(confusion: np.ndarray) -> np.ndarray:
    """Unweighted mean of per-class F1 over the classes that have images or predictions
    (sklearn's macro-F1 with zero_division=0 when every class has images)."""
    tp, fp, fn = counts_of(confusion)
    seen = 2 * tp + fp + fn
    return _mean_over_classes(2 * tp / np.where(seen > 0, seen, 1), seen > 0)


def balanced_accuracy(preds, labels, n_classes: int) -> np.ndarray:
    return balanced_accuracy_of(confusion_counts(preds, labels, n_classes))


def macro_f1(preds, labels, n_classes: int) -> np.ndarray:
    return macro_f1_of(confusion_counts(preds, labels, n_classes))


def accuracy(preds, labels, n_classes: int) -> np.ndarray:
    return (np.asarray(preds) == np.asarray(labels)).mean(-1)


# name in the report -> f(confusion counts (..., classes, classes + 1)) -> (...)
OF_CONFUSION = {"accuracy": accuracy_of, "balanced accuracy": balanced_accuracy_of, "macro-F1": macro_f1_of}
# name in the report -> f(preds (..., images), labels, classes) -> (...)
METRICS = {"accuracy": accuracy, "balanced accuracy": balanced_accuracy, "macro-F1": macro_f1}


def split_scores(y, pred, n_classes: int) -> dict[str, Any]:
    """One split's scores: acc, bacc (balanced accuracy), f1 (macro), and confusion, the
    matrix `[true][predicted]` normalised by each true class's count (sklearn's
    normalize='true'), with a last 'no face' column when some prediction is NO_FACE."""
    y, pred = np.asarray(y), np.asarray(pred)
    counts = confusion_counts(pred, y, n_classes)
    if not (pred == NO_FACE).any():
        counts = counts[:, :n_classes]
    return {
        "acc": float(accuracy(pred, y, n_classes)),
        "bacc": float(balanced_accuracy(pred, y, n_classes)),
        "f1": float(macro_f1(pred, y, n_classes)),
        "confusion": (counts / np.maximum(counts.sum(1, keepdims=True), 1)).round(4).tolist(),
    }
