"""A trained model on another labelled dataset: every image is test data.

    python -m analysis.evaluate --model RESULTS_DIR|model.pt --data DIR [--layout ...]
                                [--age-bins 5,28] [--no-detect] --out EVAL.json

Accuracy with its Wilson interval, per-class recall and the confusion matrix, as
JSON; `python -m analysis.report RESULTS_DIR --external EVAL.json` shows it. Faces
the detector does not find count as wrong answers, and their number is reported.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import numpy as np

from analysis.stats import accuracy_ci
from trainable.data.dataset import FaceData
from trainable.data.options import add_data_arguments, dataset_from_args
from trainable.errors import UserError
from trainable.files import write_json
from trainable.scoring import NO_FACE, confusion_counts, recall_per_class, split_scores
from trainable.serving.faces import Faces
from trainable.serving.inference import Predictor, model_file


def evaluate(data: FaceData, predictor: Any, faces: Faces) -> dict[str, Any]:
    """The model's answer for every image of `data` (NO_FACE where no face was found)."""
    if sorted(data.classes) != sorted(predictor.classes):
        raise UserError(
            f"The model's classes {predictor.classes} differ from {data.root}'s {list(data.classes)}; "
            "pass the --age-bins (or name the class folders) the model was trained with."
        )
    labels = np.array([predictor.classes.index(data.classes[label]) for label in data.labels])
    pred = np.full(len(data.images), NO_FACE)
    found = []
    for i, image in enumerate(data.images):
        crops, _ = faces.crops(image)
        if crops:
            found.append((i, crops[0].crop))
    if found:
        probs = predictor.probabilities([crop for _, crop in found])
        pred[[i for i, _ in found]] = probs.argmax(1)
    return scores(data, labels, pred, predictor.classes)


def scores(data: FaceData, y: np.ndarray, pred: np.ndarray, classes: list[str]) -> dict[str, Any]:
    """Accuracy with its Wilson interval, balanced accuracy, macro-F1, recall and confusion
    counts of `pred` against `y` (model class order); NO_FACE is wrong in every one."""
    k = len(classes)
    correct = int((pred == y).sum())
    lo, hi = accuracy_ci(correct, len(y))
    per_class = np.bincount(y, minlength=k)
    split = split_scores(y, pred, k)
    return {
        "data_root": data.root,
        "layout": data.layout,
        "classes": list(classes),
        "images": len(y),
        "class_counts": per_class.tolist(),
        "faces_not_found": int((pred == NO_FACE).sum()),
        "accuracy": correct / len(y),
        "accuracy_wilson_95": [float(lo), float(hi)],
        "balanced_accuracy": split["bacc"],
        "macro_f1": split["f1"],
        "recall": np.nan_to_num(recall_per_class(pred, y, k)).tolist(),
        "confusion_counts": confusion_counts(pred, y, k).tolist(),  # rows: true class; last column: no face found
        "predictions": pred.tolist(),
        "skipped_files": data.skipped,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m analysis.evaluate", description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, help="a study's results directory (its best model) or a model.pt")
    add_data_arguments(p)
    p.add_argument("--no-detect", action="store_true", help="the images are face crops already")
    p.add_argument("--out", required=True, help="write the evaluation here as JSON")
    args = p.parse_args(argv)
    if args.data is None:
        p.error("--data is required")
    try:
        path = model_file(args.model)
        data = dataset_from_args(args)
        result = evaluate(data, Predictor(path), Faces(detect=not args.no_detect, all_faces=False))
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    result["model"] = os.path.abspath(path)
    write_json(args.out, result, indent=1)
    lo, hi = result["accuracy_wilson_95"]
    print(
        f"accuracy {result['accuracy']:.3f} [{lo:.3f}, {hi:.3f}] on {result['images']} images "
        f"({result['faces_not_found']} without a face found, counted wrong); wrote {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
