import numpy as np
import pytest
import torch

from analysis.baselines import MLPClassifier, hog_features, lbp_features, run_baselines


def faces(n=3, size=(200, 160)):
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (*size, 3), dtype=np.uint8) for _ in range(n)]


def test_hog_has_3780_features_for_any_input_size():
    assert hog_features(faces()).shape == (3, 3780)
    assert hog_features(faces(2, (250, 250))).shape == (2, 3780)


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
    records = run_baselines(tiny_data, seeds=2)
    names = [r["name"] for r in records]
    assert names.count("HOG + SVM") == 1 and names.count("HOG + Random Forest") == 2
    assert names.count("LBP + MLP") == 2
    for r in records:
        assert len(r["test_pred"]) == 12 and np.array(r["test_confusion"]).shape == (3, 3)
    svm = next(r for r in records if r["name"] == "HOG + SVM")
    assert svm["val_acc"] >= 0.75  # the coloured stripes are easy for HOG too
