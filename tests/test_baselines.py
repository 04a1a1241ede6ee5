import os

import numpy as np
import pytest
import torch

from analysis.baseline_models import (
    HOG_CELLS,
    LBP_CHOICES,
    MLPClassifier,
    hog_features,
    hog_window,
    lbp_features,
    run_baselines,
)


def faces(n=3, size=(200, 160)):
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (*size, 3), dtype=np.uint8) for _ in range(n)]


def test_hog_window_keeps_the_crops_aspect_ratio():
    """el7008's 160 x 200 crops -> an 80 x 100 window (8 x 10 cells of 10 px: 7 x 9 blocks of 4
    cells x 9 bins = 2268 features), never squeezed; any image size gives the window's count."""
    window = hog_window(faces(3, (200, 160)))
    assert window == (80, 100) and hog_window(faces(2, (100, 100))) == (80, 80)
    assert hog_features(faces(), window, 10).shape == (3, 7 * 9 * 4 * 9)
    assert hog_features(faces(2, (250, 250)), window, 10).shape == (2, 2268)


def test_lbp_has_four_quadrant_histograms_per_setting():
    feats = lbp_features(faces())
    assert feats.shape == (3, 4 * 59 + 4 * 135)
    first = feats[0, : 4 * 59].reshape(4, 59)
    second = feats[0, 4 * 59 :].reshape(4, 135)
    assert np.allclose(first.sum(1), 1) and np.allclose(second.sum(1), 1)


def test_mlp_learns_and_keeps_its_best_epoch():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(90, 5)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0).astype(int)
    mlp = MLPClassifier(hidden=16, lr=1e-2, seed=0).fit(X[:60], y[:60], X[60:], y[60:])
    assert (mlp.predict(X[60:]) == y[60:]).mean() > 0.8
    assert mlp.epochs_ < mlp.max_epochs  # early stopping ended it
    assert mlp.epochs_ == mlp.best_epoch_ + mlp.patience  # patience epochs after the best one
    probe = MLPClassifier(hidden=16, lr=1e-2, seed=0, max_epochs=mlp.best_epoch_).fit(X[:60], y[:60], X[60:], y[60:])
    for kept, at_best in zip(mlp.net_.state_dict().values(), probe.net_.state_dict().values(), strict=True):
        assert torch.equal(kept, at_best)  # the weights of the best epoch, not the last


@pytest.mark.slow
def test_run_baselines_on_tiny_data(tiny_data):
    steps = []  # progress: each feature set and each search as it ends, with the time and steps done
    records = run_baselines(tiny_data, seeds=2, step=lambda line, done, total: steps.append((line, done, total)))
    said = "\n".join(line for line, _, _ in steps)
    assert said.count("  HOG features, cell ") == len(HOG_CELLS) and "[5/5 searches, " in said
    assert [done for _, done, _ in steps] == list(range(len(steps))) and {total for *_, total in steps} == {
        len(HOG_CELLS) + len(LBP_CHOICES) + 5
    }
    names = [r["name"] for r in records]
    assert names.count("HOG + SVM") == 1 and names.count("HOG + Random Forest") == 2
    assert names.count("LBP + MLP") == 2
    for r in records:
        assert len(r["test_pred"]) == 12 and np.array(r["test_confusion"]).shape == (3, 3)
    svm = next(r for r in records if r["name"] == "HOG + SVM")
    assert svm["val_acc"] >= 0.75  # the coloured stripes are easy for HOG too
    assert svm["searched"]["HOG cell"] == list(HOG_CELLS) and "gamma (x 1/features)" in svm["searched"]
    assert svm["params"]["HOG"] in {f"cell {c}" for c in HOG_CELLS} and svm["params"]["kernel"] in ("linear", "rbf")
    mlp = next(r for r in records if r["name"] == "LBP + MLP")
    assert {"LBP", "hidden", "lr"} <= set(mlp["params"]) and "LBP" in mlp["searched"]


@pytest.mark.long
@pytest.mark.slow
def test_hog_svm_reaches_the_2021_level_on_el7008():
    """Target of the baselines' search: HOG + SVM at least 0.80 on el7008's test split (the 2021
    report: 0.84), chosen on validation alone."""
    from tests.conftest import REAL_DATA
    from trainable.data.dataset import load_el7008

    if not os.path.isdir(REAL_DATA):
        pytest.skip(f"real dataset not found at {REAL_DATA}")
    data = load_el7008(REAL_DATA)
    svm = next(r for r in run_baselines(data, seeds=0) if r["name"] == "HOG + SVM")
    assert svm["test_acc"] >= 0.80, svm["params"]
