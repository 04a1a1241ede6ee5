"""Trained models on another labelled dataset: every image is test data.

    python -m analysis.evaluate --model RESULTS_DIR|model.pt --data DIR [--layout ...]
                                [--age-bins 5,28] [--detect-faces auto|on|off] --out EVAL.json

Accuracy, balanced accuracy and per-class recall with their 95% intervals, the confusion
counts and the dataset's class shares, as JSON; `python -m analysis.report RESULTS_DIR
--external EVAL.json` shows it. `study.run --evaluate-on DIR[:LAYOUT]` does the same after
a study for every seed of its best configuration (`evaluate_best`), the intervals then over
seeds and images. Faces the detector does not find count as wrong answers, and their
number is reported. --detect-faces works as in training (trainable.data.face_detection: on by
default for FG-NET and UTKFace's in-the-wild photos, off for face crops; the crops stored).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, Any

import numpy as np

from analysis.stats import full_interval
from trainable.cli_options import prog
from trainable.data.dataset_options import (
    DataOptions,
    add_data_arguments,
    check_data_args,
    data_target,
    dataset_from_args,
    evaluation_name,
)
from trainable.errors import UserError, parse_printable
from trainable.results.atomic_io import read_json, write_json
from trainable.results.layout import BEST_DIR, BEST_FILE, EVALUATIONS_DIR, model_file
from trainable.scoring import NO_FACE, confusion_counts, macro_f1

if TYPE_CHECKING:  # torch loads with a model, after the arguments are parsed
    from trainable.data.dataset import FaceData
    from trainable.data.face_detection import Runner


def evaluate(data: FaceData, predictors: list[Any]) -> dict[str, Any]:
    """Every model's answer for every image of `data`, and NO_FACE for each photo that
    detection left out (data.faceless_labels), scored."""
    classes = predictors[0].classes
    for predictor in predictors:
        if sorted(data.classes) != sorted(predictor.classes) or predictor.classes != classes:
            raise UserError(
                f"The model's classes {predictor.classes} differ from {data.root}'s {list(data.classes)}; "
                "pass the --age-bins (or name the class folders) the model was trained with."
            )
    order = np.array([classes.index(name) for name in data.classes])  # the data's class -> the model's
    labels = order[np.concatenate([data.labels, data.faceless_labels]).astype(np.int64)]
    preds = np.full((len(predictors), len(labels)), NO_FACE)
    crops = list(data.images)
    for row, predictor in zip(preds, predictors, strict=True):
        if crops:
            row[: len(crops)] = predictor.probabilities(crops).argmax(1)
    return scores(data, labels, preds, classes)


def scores(data: FaceData, y: np.ndarray, preds: np.ndarray, classes: list[str]) -> dict[str, Any]:
    """Accuracy, balanced accuracy and per-class recall of `preds` (models, images) against `y`
    (model class order), each (mean over models, 95% interval over models and images:
    analysis.stats.full_interval; one model: Wilson's for accuracy); macro-F1, the confusion
    counts summed over the models, the class shares. NO_FACE is wrong in every one."""
    k = len(classes)
    per_class = np.bincount(y, minlength=k)
    groups = people_of(data)
    people = None if groups is None else len(set(groups))
    unit = "the images" if people is None else f"the {people} people (photos of one person counted together)"
    acc = full_interval("accuracy", preds, y, k, groups=groups)
    bacc = full_interval("balanced accuracy", preds, y, k, groups=groups)
    recall = [class_recall(preds, y, c, k, groups) if per_class[c] else None for c in range(k)]
    return {
        "data_root": data.root,
        "layout": data.layout,
        "classes": list(classes),
        "images": len(y),
        "people": people,
        "models": len(preds),
        "interval": f"95%, over the models (seeds) and {unit}" if len(preds) > 1 else f"95%, over {unit}",
        "class_counts": per_class.tolist(),
        "class_shares": (per_class / max(1, len(y))).tolist(),
        "detect_faces": data.detection is not None,
        "faces_not_found": int((preds[0] == NO_FACE).sum()),
        "accuracy": acc[0],
        "accuracy_interval_95": list(acc[1:]),
        "balanced_accuracy": bacc[0],
        "balanced_accuracy_interval_95": list(bacc[1:]),
        "macro_f1": float(np.mean(macro_f1(preds, y[None], k))),
        "recall": [r[0] if r else None for r in recall],
        "recall_interval_95": [list(r[1:]) if r and r[1] is not None else None for r in recall],
        "confusion_counts": confusion_counts(preds, y, k).sum(0).tolist(),  # rows: true; last column: no face
        "predictions": preds.tolist(),  # one row per model
        "skipped_files": data.skipped,
    }


def people_of(data: FaceData) -> np.ndarray | None:
    """Who each evaluated photo shows (the layout's subjects, FG-NET's names), the unit of every
    interval; None for a layout that names no one (each photo its own unit)."""
    if data.subjects is None:
        return None
    if len(set(data.subjects)) < 2:
        raise UserError(
            f"{data.root} holds photos of {len(set(data.subjects))} person; an interval over people needs at least 2."
        )
    return np.asarray(data.subjects, str)


def class_recall(preds: np.ndarray, y: np.ndarray, c: int, k: int, groups: np.ndarray | None) -> tuple:
    """(recall of class c, lo, hi); the interval None where the class's photos show one person
    (nothing to estimate a variance over people from)."""
    mask = y == c
    if groups is not None and len(set(groups[mask])) < 2:
        return float((preds[:, mask] == c).mean()), None, None
    return full_interval("accuracy", preds[:, mask], y[mask], k, groups=None if groups is None else groups[mask])


def evaluate_best(
    results_dir: str, target: str, age_bins: str, store: str | None = None, detect_runner: Runner | None = None
) -> tuple[str, dict[str, Any]]:
    """Every seed's model of the study's best configuration on `target` ('DIR[:LAYOUT]'):
    (RESULTS_DIR/evaluations/NAME.json, where it is written; the evaluation)."""
    from trainable.serving.inference import Predictor

    folder, layout = data_target(target)
    best = read_json(os.path.join(results_dir, BEST_DIR, BEST_FILE))
    models = [(m["seed"], os.path.join(results_dir, m["model"])) for m in best.get("seed_models", [])]
    if not models:
        raise UserError(f"{results_dir}: the best configuration kept no model of any seed; nothing to evaluate.")
    options = DataOptions(data=folder, layout=layout, age_bins=age_bins, on_bad_image="skip")
    data = dataset_from_args(options, store, detect_runner)
    result = evaluate(data, [Predictor(path) for _, path in models])
    result.update(
        configuration=f"#{best['experiment']} {best['name']}",
        seeds=[seed for seed, _ in models],
        model=[os.path.relpath(path, results_dir) for _, path in models],
    )
    out = os.path.join(results_dir, EVALUATIONS_DIR, f"{evaluation_name(folder)}.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    write_json(out, result, indent=1)
    return out, result


def summary_line(result: dict[str, Any]) -> str:
    lo, hi = result["accuracy_interval_95"]
    return (
        f"accuracy {result['accuracy']:.3f} [{lo:.3f}, {hi:.3f}] ({result['interval']}) on {result['images']} images "
        f"of {result['data_root']} ({result['faces_not_found']} without a face found, counted wrong)"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog=prog("analysis.evaluate"), description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, help="a study's results directory (its best model) or a model.pt")
    add_data_arguments(p)
    p.add_argument("--out", required=True, help="write the evaluation here as JSON")
    args = parse_printable(p, argv)
    if args.data is None:
        p.error("--data is required")
    try:  # before torch loads
        path = model_file(args.model)
        check_data_args(args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from trainable.serving.inference import Predictor

    try:
        data = dataset_from_args(args)
        result = evaluate(data, [Predictor(path)])
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    result["model"] = [os.path.abspath(path)]
    write_json(args.out, result, indent=1)
    print(f"{summary_line(result)}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
