"""Classical baselines on exactly the study's split: HOG + SVM / Random Forest and
LBP + a one-hidden-layer network, as in the EL7008 course tasks.

    python -m analysis.baselines --data PATH [--layout ...] [--seeds 3] --out DIR

HOG: grayscale float32 resized to 64x128, 8x8-pixel cells (8x16 cells), 9
orientation bins, overlapping 2x2-cell blocks normalised -> 3780 features.
LBP: uniform LBP(8,1) and LBP(12,2) (Ahonen et al. 2004), a histogram per image
quadrant, concatenated -> 4x59 + 4x135 = 776 features.
Hyperparameters are chosen on the validation set (PredefinedSplit, not
cross-validation); the chosen model is refit on train alone and scored on test.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from typing import Any

import cv2
import numpy as np
import torch
from skimage.feature import hog, local_binary_pattern
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import GridSearchCV, PredefinedSplit
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from torch import nn

from trainable.data import SPLITS, FaceData
from trainable.data_options import add_data_arguments, dataset_from_args
from trainable.errors import UserError
from trainable.layout import BASELINES_FILE
from trainable.scoring import split_scores

HOG_SIZE = (64, 128)  # width x height: 8 x 16 cells of 8 x 8 px
LBP_SETTINGS = ((8, 1), (12, 2))  # (points, radius)


def grayscale(image: np.ndarray) -> np.ndarray:
    """HxWx3 uint8 RGB -> HxW float32 in [0, 1]."""
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0


def hog_features(images: list[np.ndarray]) -> np.ndarray:
    """N images -> N x 3780 HOG descriptors."""
    return np.stack(
        [
            hog(
                cv2.resize(grayscale(img), HOG_SIZE, interpolation=cv2.INTER_AREA),
                orientations=9,
                pixels_per_cell=(8, 8),
                cells_per_block=(2, 2),
                block_norm="L2-Hys",
                feature_vector=True,
            )
            for img in images
        ]
    ).astype(np.float32)


def lbp_histograms(gray: np.ndarray, points: int, radius: int) -> np.ndarray:
    """Uniform LBP codes -> one normalised histogram per quadrant, concatenated (4 x bins)."""
    # 'nri_uniform': the P(P-1)+2 uniform patterns by rotation, plus one bin for the rest.
    bins = points * (points - 1) + 3
    codes = local_binary_pattern((gray * 255).astype(np.uint8), points, radius, "nri_uniform")
    h, w = codes.shape
    quadrants = [
        codes[: h // 2, : w // 2],
        codes[: h // 2, w // 2 :],
        codes[h // 2 :, : w // 2],
        codes[h // 2 :, w // 2 :],
    ]
    return np.concatenate([np.bincount(q.astype(int).ravel(), minlength=bins) / q.size for q in quadrants])


def lbp_features(images: list[np.ndarray]) -> np.ndarray:
    """N images -> N x (4*59 + 4*135) LBP histograms."""
    return np.stack(
        [np.concatenate([lbp_histograms(grayscale(img), p, r) for p, r in LBP_SETTINGS]) for img in images]
    ).astype(np.float32)


class MLPClassifier(BaseEstimator, ClassifierMixin):
    """One hidden ReLU layer, CrossEntropyLoss, Adam, full-batch; early stopping on
    the validation loss passed to `fit` (the best epoch's weights are kept)."""

    def __init__(
        self, hidden: int = 64, lr: float = 1e-3, max_epochs: int = 2000, patience: int = 50, seed: int = 0
    ) -> None:
        self.hidden, self.lr, self.max_epochs, self.patience, self.seed = hidden, lr, max_epochs, patience, seed

    def fit(self, X, y, X_val=None, y_val=None) -> MLPClassifier:
        torch.manual_seed(self.seed)
        self.classes_ = np.unique(y)
        x, t = torch.as_tensor(X, dtype=torch.float32), torch.as_tensor(y)
        xv, tv = (x, t) if X_val is None else (torch.as_tensor(X_val, dtype=torch.float32), torch.as_tensor(y_val))
        self.net_ = nn.Sequential(
            nn.Linear(x.shape[1], self.hidden), nn.ReLU(), nn.Linear(self.hidden, len(self.classes_))
        )
        optimizer = torch.optim.Adam(self.net_.parameters(), lr=self.lr)
        loss_fn = nn.CrossEntropyLoss()
        best, best_state, bad = np.inf, None, 0
        for epoch in range(1, self.max_epochs + 1):
            self.epochs_ = epoch
            optimizer.zero_grad()
            loss_fn(self.net_(x), t).backward()
            optimizer.step()
            with torch.no_grad():
                val_loss = loss_fn(self.net_(xv), tv).item()
            if val_loss < best:
                best, bad, self.best_epoch_ = val_loss, 0, epoch
                best_state = {k: v.clone() for k, v in self.net_.state_dict().items()}
            else:
                bad += 1
                if bad >= self.patience:
                    break
        self.net_.load_state_dict(best_state)
        return self

    def predict(self, X) -> np.ndarray:
        with torch.no_grad():
            return self.classes_[self.net_(torch.as_tensor(X, dtype=torch.float32)).argmax(1).numpy()]


def scores(model: Any, X: dict[str, np.ndarray], y: dict[str, np.ndarray], n_classes: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for split in SPLITS:
        pred = model.predict(X[split])
        out.update({f"{split}_{m}": v for m, v in split_scores(y[split], pred, n_classes).items()})
        if split != "train":
            out[f"{split}_pred"] = pred.tolist()
    return out


def tune_sklearn(pipeline: Pipeline, grid: dict[str, list], X, y) -> tuple[Pipeline, dict]:
    """Choose on validation (PredefinedSplit), then refit on train alone."""
    fold = np.r_[np.full(len(y["train"]), -1), np.zeros(len(y["val"]))]
    search = GridSearchCV(pipeline, grid, cv=PredefinedSplit(fold), refit=False, n_jobs=1)
    search.fit(np.r_[X["train"], X["val"]], np.r_[y["train"], y["val"]])
    best = search.best_params_
    return pipeline.set_params(**best).fit(X["train"], y["train"]), best


def tune_mlp(X, y, seed: int) -> tuple[Pipeline, dict]:
    """Two hidden sizes x two learning rates, early stopping on val loss, best by val accuracy."""
    scaler = StandardScaler().fit(X["train"])
    Xs = {k: scaler.transform(v) for k, v in X.items()}
    best = None
    for hidden, lr in itertools.product((32, 128), (1e-3, 1e-2)):
        mlp = MLPClassifier(hidden=hidden, lr=lr, seed=seed).fit(Xs["train"], y["train"], Xs["val"], y["val"])
        acc = (mlp.predict(Xs["val"]) == y["val"]).mean()
        if best is None or acc > best[0]:
            best = (acc, mlp, {"hidden": hidden, "lr": lr, "epochs": mlp.epochs_})
    return Pipeline([("scale", scaler), ("mlp", best[1])]), best[2]


def run_baselines(data: FaceData, *, seeds: int = 3) -> list[dict[str, Any]]:
    """Every baseline (x seeds where it is random) -> one record each."""
    y = {s: data.labels[data.split[s]] for s in SPLITS}
    features = {
        "HOG": {s: hog_features(data.images_of(s)) for s in SPLITS},
        "LBP": {s: lbp_features(data.images_of(s)) for s in SPLITS},
    }
    n_classes = len(data.classes)
    records = []

    def record(method: str, feats: str, seed: int | None, fit) -> None:
        start = time.perf_counter()
        model, params = fit()
        records.append(
            {
                "method": method,
                "features": feats,
                "name": f"{feats} + {method}",
                "seed": seed,
                "params": params,
                "seconds": time.perf_counter() - start,
                **scores(model, features[feats], y, n_classes),
            }
        )
        print(f"{feats} + {method} (seed {seed}): test acc {records[-1]['test_acc']:.3f} {params}")

    svm = Pipeline([("scale", StandardScaler()), ("svm", SVC())])
    svm_grid = {"svm__kernel": ["linear", "rbf"], "svm__C": [0.001, 0.01, 0.1, 1, 10, 100]}
    record("SVM", "HOG", None, lambda: tune_sklearn(svm, svm_grid, features["HOG"], y))
    for seed in range(seeds):
        forest = Pipeline([("scale", StandardScaler()), ("rf", RandomForestClassifier(random_state=seed))])
        rf_grid = {"rf__n_estimators": [100, 300], "rf__max_depth": [None, 10]}
        # record() calls these at once, inside this iteration: the late binding is safe.
        record("Random Forest", "HOG", seed, lambda: tune_sklearn(forest, rf_grid, features["HOG"], y))  # noqa: B023
        record("MLP", "LBP", seed, lambda: tune_mlp(features["LBP"], y, seed))  # noqa: B023
    return records


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m analysis.baselines", description="HOG and LBP baselines.")
    add_data_arguments(p)
    p.add_argument("--seeds", type=int, default=3, help="seeds of the random methods (RF, MLP)")
    p.add_argument("--out", required=True, help="directory for baselines.json")
    args = p.parse_args(argv)
    torch.set_num_threads(os.cpu_count() or 1)
    if args.data is None:
        p.error("--data is required")
    try:
        data = dataset_from_args(args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    records = run_baselines(data, seeds=args.seeds)
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, BASELINES_FILE)
    with open(path, "w") as f:
        json.dump(
            {
                "data_root": data.root,
                "data_fingerprint": data.fingerprint,
                "classes": data.classes,
                **data.split_record(),
                "baselines": records,
            },
            f,
            indent=1,
        )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
