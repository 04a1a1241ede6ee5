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
