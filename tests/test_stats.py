"""Statistics on small arrays worked out by hand."""

import math

import numpy as np
import pytest

from analysis.stats import accuracy_ci, compare, format_p, mcnemar_exact, mean_ci, paired_bootstrap


def test_mean_ci_two_seeds():
    # t(0.975, df=1) = 12.7062; sd([0.7, 0.8]) = 0.070711; half = 12.7062 * 0.070711 / sqrt(2) = 0.63531
    mean, lo, hi = mean_ci([0.7, 0.8])
    assert mean == pytest.approx(0.75)
    assert (hi - lo) / 2 == pytest.approx(0.63531, abs=1e-4)


def test_mean_ci_four_seeds():
    # mean 0.8, sd = sqrt(((-.1)^2 + 0 + 0 + .1^2)/3) = 0.081650; t(0.975, 3) = 3.18245
    mean, lo, hi = mean_ci([0.7, 0.8, 0.8, 0.9])
    assert mean == pytest.approx(0.8)
    assert hi - mean == pytest.approx(3.18245 * 0.081650 / 2, abs=1e-4)


def test_mean_ci_single_value_has_no_interval():
    mean, lo, hi = mean_ci([0.5])
    assert mean == 0.5 and math.isnan(lo) and math.isnan(hi)


def test_wilson_interval():
    lo, hi = accuracy_ci(8, 10)  # textbook: 0.4902 .. 0.9433
    assert (lo, hi) == pytest.approx((0.4902, 0.9433), abs=1e-4)


def test_mcnemar_exact_by_hand():
    a = [1, 1, 1, 0, 1]
    b = [0, 0, 0, 0, 1]
    # 3 discordant pairs, all favouring A: p = 2 * 0.5^3 = 0.25
    assert mcnemar_exact(a, b) == (3, 0, pytest.approx(0.25))
    assert mcnemar_exact([1, 0], [1, 0]) == (0, 0, 1.0)
    # 4 vs 1: p = 2 * P(X <= 1 | n=5) = 2 * 6/32 = 0.375
    assert mcnemar_exact([1, 1, 1, 1, 0], [0, 0, 0, 0, 1])[2] == pytest.approx(0.375)


def test_paired_bootstrap_extremes():
    same = np.array([[1, 0, 1, 1]] * 2)
    assert paired_bootstrap(same, same) == (0.0, 0.0, 0.0, 1.0)
    diff, lo, hi, p = paired_bootstrap(np.ones(4), np.zeros(4))
    assert (diff, lo, hi, p) == (1.0, 1.0, 1.0, 0.0)
    assert format_p(p) == "p < 0.0002"


def test_seeds_are_averaged_per_image():
    a = np.array([[1, 1, 0, 0], [1, 0, 1, 0]])  # per image: 1, .5, .5, 0 -> mean .5
    b = np.array([[0, 0, 0, 0]])
    assert paired_bootstrap(a, b)[0] == pytest.approx(0.5)


def test_compare_and_its_sentence():
    rng = np.random.default_rng(0)
    a = (rng.random((3, 120)) < 0.9).astype(float)
    b = (rng.random((3, 120)) < 0.5).astype(float)
    test = compare(a, b)
    assert test.distinguishable and test.diff > 0.3
    assert "a real difference" in test.sentence("A", "B", 120)
    close = compare(a, a[::-1])
    assert not close.distinguishable
    assert "not distinguishable from noise with 120 test images" in close.sentence("A", "B", 120)


def test_full_interval_is_wilson_for_one_run_and_wider_than_seeds_alone_for_several():
    from analysis.stats import full_accuracy_ci

    one = np.array([1] * 96 + [0] * 24)
    assert full_accuracy_ci(one) == pytest.approx((0.8, *accuracy_ci(96, 120)))
    rng = np.random.default_rng(0)
    runs = (rng.random((3, 120)) < 0.8).astype(float)
    mean, lo, hi = full_accuracy_ci(runs)
    assert mean == pytest.approx(runs.mean())
    _, seed_lo, seed_hi = mean_ci(runs.mean(1))
    assert lo < mean < hi and hi - lo > seed_hi - seed_lo  # the images' noise is in it too
    assert 0.05 < hi - lo < 0.2  # about a 120-image Wilson width, not 0


def test_holm_adjustment():
    from analysis.stats import holm

    # Sorted p: 0.01, 0.02, 0.04 -> 3*0.01, max(0.03, 2*0.02), max(0.04, 1*0.04)
    assert holm([0.04, 0.01, 0.02]) == pytest.approx([0.04, 0.03, 0.04])
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])
    assert holm([]) == []


def test_mcnemar_compares_the_same_seed_number():
    a = np.array([[1, 1, 1, 0], [0, 0, 0, 0]])  # seeds 0 and 1
    b = np.array([[0, 0, 0, 0], [1, 1, 1, 1]])  # seeds 1 and 0
    test = compare(a, b, seeds_a=[0, 1], seeds_b=[1, 0])
    assert test.mcnemar_seeds == "seed 0 / seed 0" and (test.only_a, test.only_b) == (0, 1)
    assert compare(a, b[0], seeds_a=[0, 1]).mcnemar_seeds == "seed 0 / one run"


def test_full_interval_of_perfect_runs_is_not_a_point():
    from analysis.stats import full_accuracy_ci

    mean, lo, hi = full_accuracy_ci(np.ones((3, 12)))
    assert (mean, hi) == (1.0, 1.0) and lo == pytest.approx(accuracy_ci(12, 12)[0]) and lo < 0.8


def test_balanced_scores_match_sklearn_and_the_accuracy_paths_are_the_old_ones():
    from sklearn.metrics import balanced_accuracy_score, f1_score

    from analysis.stats import (
        balanced_accuracy,
        full_accuracy_ci,
        full_metric_ci,
        macro_f1,
        paired_metric_bootstrap,
        recall_per_class,
    )

    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 90)
    runs = np.stack([np.where(rng.random(90) < q, y, rng.integers(0, 3, 90)) for q in (0.5, 0.6, 0.7)])
    for p in runs:  # integer counts divided once: the same float as sklearn's
        assert balanced_accuracy(p, y, 3) == pytest.approx(balanced_accuracy_score(y, p), abs=1e-15)
        assert macro_f1(p, y, 3) == pytest.approx(f1_score(y, p, average="macro"), abs=1e-15)
    assert recall_per_class(runs, y, 3)[:, 1] == pytest.approx([(p[y == 1] == 1).mean() for p in runs])
    correct = (runs == y).astype(float)
    assert full_metric_ci(runs, y, "accuracy", 3) == full_accuracy_ci(correct)
    assert paired_metric_bootstrap(runs[:1], runs[1:], y, "accuracy", 3) == paired_bootstrap(correct[:1], correct[1:])
    mean, lo, hi = full_metric_ci(runs, y, "balanced accuracy", 3)
    assert lo < mean < hi and mean == pytest.approx(np.mean([balanced_accuracy_score(y, p) for p in runs]))
    one = full_metric_ci(runs[:1], y, "macro-F1", 3)
    assert one[1] < one[0] < one[2]
    diff, lo, hi, p = paired_metric_bootstrap(runs[2], runs[0], y, "balanced accuracy", 3)
    assert lo < diff < hi and 0 <= p <= 1
    assert paired_metric_bootstrap(runs[0], runs[0], y, "macro-F1", 3) == (0.0, 0.0, 0.0, 1.0)


def test_a_majority_class_predictor_scores_one_over_classes():
    from analysis.stats import balanced_accuracy, macro_f1

    y = np.array([0] * 80 + [1] * 10 + [2] * 10)
    always = np.zeros(100, int)
    assert (always == y).mean() == 0.8
    assert balanced_accuracy(always, y, 3) == pytest.approx(1 / 3)
    assert macro_f1(always, y, 3) == pytest.approx((2 * 80 / (2 * 80 + 20)) / 3)
