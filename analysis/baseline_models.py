"""Classical baselines on exactly the study's split: HOG + SVM / Random Forest and
LBP + a one-hidden-layer network, as in the EL7008 course tasks, each as strong as its
family allows on this data.
(python -m analysis.baselines runs them and writes baselines.json.)

HOG: grayscale float32 resized to a window HOG_WIDTH pixels wide with the crops' own aspect
ratio (80 x 100 for el7008's 160 x 200 crops; the 2021 code squeezed them into 64 x 128),
9 orientation bins, overlapping 2x2-cell blocks (L2-Hys); the cell size is searched.
LBP: uniform LBP codes (Ahonen et al. 2004) at the searched (points, radius) settings, a
histogram per image quadrant, concatenated.
Training images are also used mirrored (a mirrored face is a face of the same age group).
Everything searched is chosen on the validation set (PredefinedSplit, not cross-validation):
SVM kernel, C and RBF gamma and the HOG cell size; forest size and depth and the cell size;
the network's hidden size and learning rate and the LBP settings. The chosen model is refit
on the training images alone and scored on test; each record lists what was searched
(`searched`) and what was chosen (`params`).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
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

from trainable.data.dataset import SPLITS, FaceData
from trainable.scoring import split_scores

HOG_WIDTH = 80  # pixels; the height follows the crops' aspect ratio (hog_window)
HOG_CELLS = (8, 10, 16)  # searched cell sizes, pixels
LBP_CHOICES = {  # searched LBP settings: label -> (points, radius) per histogram
    "(8,1)": ((8, 1),),
    "(8,1)+(12,2)": ((8, 1), (12, 2)),
    "(8,1)+(16,2)": ((8, 1), (16, 2)),
}
MLP_SIZES, MLP_RATES = (32, 128), (1e-3, 1e-2)  # the 2021 protocol: two sizes x two rates
SVM_C_LINEAR, SVM_C_RBF = (0.001, 0.01, 0.1, 1), (1, 3, 10, 30, 100)
SVM_GAMMA = (0.1, 0.3, 1, 3)  # RBF gamma in units of 1 / features (sklearn's 'scale' on standardised features)
FOREST_GRID = {"rf__n_estimators": [100, 300], "rf__max_depth": [None, 10]}


def grayscale(image: np.ndarray) -> np.ndarray:
    """HxWx3 uint8 RGB -> HxW float32 in [0, 1]."""
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0


def hog_window(images: list[np.ndarray]) -> tuple[int, int]:
    """(width, height): HOG_WIDTH wide, as tall as the images' median aspect ratio makes it."""
    aspect = float(np.median([img.shape[0] / img.shape[1] for img in images]))
    return HOG_WIDTH, max(16, round(HOG_WIDTH * aspect))


def hog_features(images: list[np.ndarray], window: tuple[int, int], cell: int) -> np.ndarray:
    """N images -> N HOG descriptors on `window` (width, height) with `cell`-pixel cells."""
    return np.stack(
        [
            hog(
                cv2.resize(grayscale(img), window, interpolation=cv2.INTER_AREA),
                orientations=9,
                pixels_per_cell=(cell, cell),
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


def lbp_features(images: list[np.ndarray], settings=LBP_CHOICES["(8,1)+(12,2)"]) -> np.ndarray:
    """N images -> N x (4 x bins per setting) LBP histograms."""
    return np.stack(
        [np.concatenate([lbp_histograms(grayscale(img), p, r) for p, r in settings]) for img in images]
    ).astype(np.float32)


class MLPClassifier(BaseEstimator, ClassifierMixin):
    """One hidden ReLU layer, CrossEntropyLoss, Adam, full-batch; early stopping on
    the validation loss passed to `fit` (the best epoch's weights are kept)."""

    def __init__(
        self, hidden: int = 64, lr: float = 1e-3, max_epochs: int = 2000, patience: int = 50, seed: int = 0
    ) -> None:
        self.hidden, self.lr, self.max_epochs, self.patience, self.seed = hidden, lr, max_epochs, patience, seed

    def fit(self, X, y, X_val=None, y_val=None) -> MLPClassifier:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # matrices this small: one thread is 3-5x faster than two (BENCHMARKS.md)
        try:
            return self._fit(X, y, X_val, y_val)
        finally:
            torch.set_num_threads(threads)

    def _fit(self, X, y, X_val, y_val) -> MLPClassifier:
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


Features = dict[str, np.ndarray]  # split -> N x features; "train" holds the mirrored images too


def with_mirrors(data: FaceData, extract) -> Features:
    """extract(images) per split; the training split's images followed by their mirrors."""
    train = data.images_of("train")
    out = {s: extract(data.images_of(s)) for s in SPLITS}
    out["train"] = np.r_[out["train"], extract([img[:, ::-1] for img in train])]
    return out


def tune_sklearn(pipeline: Pipeline, grid, features: dict[str, Features], y) -> tuple[Pipeline, dict, str]:
    """Choose the features (a key of `features`) and `grid`'s parameters on validation
    (PredefinedSplit), then refit on train alone; returns (model, chosen parameters, key)."""
    best = None
    for key, X in features.items():
        fold = np.r_[np.full(len(y["train"]), -1), np.zeros(len(y["val"]))]
        search = GridSearchCV(pipeline, grid(X["train"].shape[1]), cv=PredefinedSplit(fold), refit=False, n_jobs=1)
        search.fit(np.r_[X["train"], X["val"]], np.r_[y["train"], y["val"]])
        if best is None or search.best_score_ > best[0]:
            best = (search.best_score_, search.best_params_, key)
    _, params, key = best
    model = pipeline.set_params(**params).fit(features[key]["train"], y["train"])
    return model, {k.split("__", 1)[1]: v for k, v in params.items()}, key


def svm_grid(n_features: int) -> list[dict[str, list]]:
    gammas = [g / n_features for g in SVM_GAMMA]
    return [
        {"svm__kernel": ["linear"], "svm__C": list(SVM_C_LINEAR)},
        {"svm__kernel": ["rbf"], "svm__C": list(SVM_C_RBF), "svm__gamma": gammas},
    ]


def tune_mlp(features: dict[str, Features], y, seed: int) -> tuple[Pipeline, dict, str]:
    """Hidden size x learning rate x LBP settings (the keys of `features`), early stopping on
    val loss, the best by val accuracy."""
    best = None
    for key, X in features.items():
        scaler = StandardScaler().fit(X["train"])
        Xs = {k: scaler.transform(v) for k, v in X.items()}
        for hidden, lr in itertools.product(MLP_SIZES, MLP_RATES):
            mlp = MLPClassifier(hidden=hidden, lr=lr, seed=seed).fit(Xs["train"], y["train"], Xs["val"], y["val"])
            acc = (mlp.predict(Xs["val"]) == y["val"]).mean()
            if best is None or acc > best[0]:
                best = (acc, Pipeline([("scale", scaler), ("mlp", mlp)]), {"hidden": hidden, "lr": lr}, key)
    _, model, params, key = best
    return model, {**params, "epochs": model["mlp"].epochs_}, key


def printed(line: str, done: int, steps: int) -> None:
    print(line, flush=True)


def searched_grids(window: tuple[int, int]) -> dict[str, dict]:
    """What each baseline's search tries, by method, as its record says (HOG's cell sizes and window)."""
    cells = {"HOG cell": list(HOG_CELLS), "HOG window": f"{window[0]}x{window[1]}"}
    return {
        "SVM": {
            **cells,
            "kernel": ["linear", "rbf"],
            "C (linear)": list(SVM_C_LINEAR),
            "C (rbf)": list(SVM_C_RBF),
            "gamma (x 1/features)": list(SVM_GAMMA),
        },
        "Random Forest": {**cells, **{k.split("__", 1)[1]: v for k, v in FOREST_GRID.items()}},
        "MLP": {"LBP": list(LBP_CHOICES), "hidden": list(MLP_SIZES), "lr": list(MLP_RATES)},
    }


def fitted(
    method: str, feats: str, seed: int | None, sets: dict[str, Features], fit, labels: dict, n_classes: int, searched
) -> dict:
    """One baseline's record: `fit()` (its search) run and timed, what it chose, its scores on each
    split's own images (the training split's without the mirrors)."""
    start = time.perf_counter()
    model, params, key = fit()
    params = {("HOG" if feats == "HOG" else "LBP"): key, **params}
    if feats == "HOG":
        params["HOG window"] = searched["HOG window"]
    return {
        "method": method,
        "features": feats,
        "name": f"{feats} + {method}",
        "seed": seed,
        "searched": searched,
        "params": params,
        "seconds": time.perf_counter() - start,
        **scores(model, {s: sets[key][s][: len(labels[s])] for s in SPLITS}, labels, n_classes),
    }


def run_baselines(data: FaceData, *, seeds: int = 3, step: Callable[[str, int, int], None] = printed) -> list[dict]:
    """Every baseline (x seeds where it is random) -> one record each, with what was searched
    and what was chosen. `step(line, steps done, steps)` is told of each feature set and search
    as it ends."""
    labels = {s: data.labels[data.split[s]] for s in SPLITS}
    y = {**labels, "train": np.r_[labels["train"], labels["train"]]}  # fitted on the mirrors too
    window = hog_window(data.images_of("train"))
    began = time.perf_counter()
    fits = 1 + 2 * seeds
    steps, done = len(HOG_CELLS) + len(LBP_CHOICES) + fits, itertools.count(1)
    step(
        f"Baselines: {len(HOG_CELLS)} HOG and {len(LBP_CHOICES)} LBP feature sets of {len(data.images)} images "
        f"(training images mirrored too), then {fits} searches (HOG + SVM; HOG + RF and LBP + MLP x {seeds} seeds)",
        0,
        steps,
    )

    def features(kind: str, label: str, extract) -> Features:
        made = with_mirrors(data, extract)
        step(f"  {kind} features, {label}: {time.perf_counter() - began:.0f} s", next(done), steps)
        return made

    hog_sets = {
        f"cell {c}": features("HOG", f"cell {c}", lambda ims, c=c: hog_features(ims, window, c)) for c in HOG_CELLS
    }
    lbp_sets = {
        label: features("LBP", label, lambda ims, s=s: lbp_features(ims, s)) for label, s in LBP_CHOICES.items()
    }
    searched, records = searched_grids(window), []

    def record(method: str, feats: str, seed: int | None, sets: dict[str, Features], fit) -> None:
        records.append(fitted(method, feats, seed, sets, fit, labels, len(data.classes), searched[method]))
        step(
            f"{feats} + {method} (seed {seed}): test acc {records[-1]['test_acc']:.3f} {records[-1]['params']} "
            f"[{len(records)}/{fits} searches, {time.perf_counter() - began:.0f} s]",
            next(done),
            steps,
        )

    svm = Pipeline([("scale", StandardScaler()), ("svm", SVC())])
    record("SVM", "HOG", None, hog_sets, lambda: tune_sklearn(svm, svm_grid, hog_sets, y))
    for seed in range(seeds):
        forest = Pipeline([("scale", StandardScaler()), ("rf", RandomForestClassifier(random_state=seed))])
        # record() calls these at once, inside this iteration: the late binding is safe.
        fit_forest = lambda: tune_sklearn(forest, lambda n: FOREST_GRID, hog_sets, y)  # noqa: B023, E731
        record("Random Forest", "HOG", seed, hog_sets, fit_forest)
        record("MLP", "LBP", seed, lbp_sets, lambda: tune_mlp(lbp_sets, y, seed))  # noqa: B023
    return records
