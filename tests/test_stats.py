"""Statistics on small arrays worked out by hand."""

import math

import numpy as np
import pytest
from scipy import stats

from analysis.stats import NO_FACE, accuracy_ci, accuracy_estimate, compare, full_interval, mean_ci, metric_estimate


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


def test_seed_and_image_variance_by_hand():
    """Two runs on four images: per-run accuracies 0.5 and 0.25 (s^2 = 0.03125, s^2/n = 0.015625);
    run-averaged correctness 1, .5, 0, 0 (B = var / 4 = 0.22917 / 4); one run's image variance W
    averaged: (1/3 + 0.25) / 2 / 4; interaction (W - B) / (n - 1) = 0.072917 - 0.057292."""
    runs = np.array([[1, 1, 0, 0], [1, 0, 0, 0]])
    e = accuracy_estimate(runs)
    assert e.value == pytest.approx(0.375) and e.seed_var == pytest.approx(0.015625)
    assert e.image_var == pytest.approx(0.057292 - (0.072917 - 0.057292), abs=1e-5)
    v1, v2 = 0.015625, float(e.image_var)  # Satterthwaite: (v1 + v2)^2 / (v1^2 / 1 + v2^2 / 3)
    assert e.df == pytest.approx((v1 + v2) ** 2 / (v1**2 + v2**2 / 3))


def test_comparison_extremes_and_its_sentences():
    same = np.array([[0, 1, 1, 0] * 3] * 2)
    labels = np.ones(12, int)
    tie = compare("accuracy", same, same, labels, 3)
    assert (tie.diff, tie.p) == (0.0, 1.0)
    said = tie.sentence("A", "B", 12, p_adjusted=1.0, comparisons=3, level=0.05 / 3)
    assert "zero variance" in said and "would be missed" not in said  # identical answers: no noise measured
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 120)
    good = np.where(rng.random((3, 120)) < 0.9, y, (y + 1) % 3)
    bad = np.where(rng.random((3, 120)) < 0.5, y, (y + 1) % 3)
    test = compare("accuracy", good, bad, y, 3)
    assert test.diff > 0.3 and test.p < 0.01 and test.lo > 0 and not test.caveat
    assert "a real difference, counting seed and test-image noise" in test.sentence("A", "B", 120, 0.001, 3, 0.05 / 3)


def test_one_run_on_a_side_counts_test_set_noise_only_and_says_so():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 120)
    cnn = np.where(rng.random((3, 120)) < 0.9, y, (y + 1) % 3)
    svm = np.where(rng.random((1, 120)) < 0.5, y, (y + 1) % 3)
    test = compare("accuracy", cnn, svm, y, 3)
    assert test.runs == (3, 1) and test.caveat == "test-set noise only: training noise of B unmeasured (one run)"
    sentence = test.sentence("CNN", "SVM", 120, 0.001, 6, 0.05 / 6)
    assert "real difference" not in sentence and "test-set noise only" in sentence
    single = compare("accuracy", cnn[:1], svm, y, 3)
    assert "A and B unmeasured" in single.caveat
    assert single.df == 119  # test images only: a paired t over the 120 image differences


def test_full_interval_is_wilson_for_one_run_and_never_narrower_than_seeds_alone():
    y = np.zeros(120, int)
    one = np.array([[0] * 96 + [1] * 24])
    assert full_interval("accuracy", one, y, 3) == pytest.approx((0.8, *accuracy_ci(96, 120)))
    rng = np.random.default_rng(0)
    for metric in ("accuracy", "balanced accuracy", "macro-F1"):
        labels = rng.integers(0, 3, 120)
        runs = np.where(rng.random((3, 120)) < rng.uniform(0.6, 0.9, (3, 1)), labels, (labels + 1) % 3)
        mean, lo, hi = full_interval(metric, runs, labels, 3)
        from analysis.stats import METRICS

        _, seed_lo, seed_hi = mean_ci(METRICS[metric](runs, labels[None], 3))
        seed_lo, seed_hi = max(seed_lo, 0), min(seed_hi, 1)  # the seeds-only interval, clipped like the full one
        assert 0 <= lo <= seed_lo + 1e-12 and seed_hi <= hi + 1e-12 and hi <= 1, metric
        assert hi - lo > 0.05  # about a 120-image width at least, not 0


def test_holm_adjustment():
    from analysis.stats import holm

    # Sorted p: 0.01, 0.02, 0.04 -> 3*0.01, max(0.03, 2*0.02), max(0.04, 1*0.04)
    assert holm([0.04, 0.01, 0.02]) == pytest.approx([0.04, 0.03, 0.04])
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])
    assert holm([]) == []


def test_full_interval_of_perfect_runs_is_not_a_point():
    mean, lo, hi = full_interval("accuracy", np.ones((3, 12), int), np.ones(12, int), 3)
    assert (mean, hi) == (1.0, 1.0) and lo == pytest.approx(accuracy_ci(12, 12)[0]) and lo < 0.8


def test_balanced_scores_match_sklearn():
    from sklearn.metrics import balanced_accuracy_score, f1_score

    from analysis.stats import balanced_accuracy, macro_f1, recall_per_class

    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 90)
    runs = np.stack([np.where(rng.random(90) < q, y, rng.integers(0, 3, 90)) for q in (0.5, 0.6, 0.7)])
    for p in runs:  # integer counts divided once: the same float as sklearn's
        assert balanced_accuracy(p, y, 3) == pytest.approx(balanced_accuracy_score(y, p), abs=1e-15)
        assert macro_f1(p, y, 3) == pytest.approx(f1_score(y, p, average="macro"), abs=1e-15)
    assert recall_per_class(runs, y, 3)[:, 1] == pytest.approx([(p[y == 1] == 1).mean() for p in runs])
    e = metric_estimate("balanced accuracy", y, runs, n_classes=3)
    assert e.value == pytest.approx(np.mean([balanced_accuracy_score(y, p) for p in runs]))
    assert e.seed_var > 0 and e.image_var == 0  # runs drawn independently of the images: no image effect
    hard = rng.random(90) < 0.3  # the same images hard for every run: a shared image effect
    shared = np.where(hard, (y + 1) % 3, runs)
    assert metric_estimate("balanced accuracy", y, shared, n_classes=3).image_var > 0
    assert compare("macro-F1", runs, runs, y, 3).p == 1.0


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
@pytest.mark.parametrize("missed_class", [0, 1, 2])
def test_an_undetected_face_is_wrong_in_every_score(missed_class):
    """NO_FACE (-1) predictions: a miss of their true class in recall, balanced accuracy and
    macro-F1 (a false positive of no class), wrong in accuracy, and a 'no face' column."""
    from sklearn.metrics import balanced_accuracy_score, f1_score

    from analysis.stats import METRICS, confusion_counts, recall_per_class

    y = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2])
    pred = y.copy()
    pred[np.flatnonzero(y == missed_class)[0]] = NO_FACE
    # sklearn with the miss as a fourth label nobody has: the same scores over the three classes
    as_other = np.where(pred == NO_FACE, 3, pred)
    assert METRICS["accuracy"](pred, y, 3) == pytest.approx(8 / 9)
    assert METRICS["balanced accuracy"](pred, y, 3) == pytest.approx(balanced_accuracy_score(y, as_other))
    expected_f1 = f1_score(y, as_other, labels=[0, 1, 2], average="macro", zero_division=0)
    assert METRICS["macro-F1"](pred, y, 3) == pytest.approx(expected_f1)
    recall = recall_per_class(pred, y, 3)
    assert recall[missed_class] == pytest.approx(2 / 3) and recall.sum() == pytest.approx(2 + 2 / 3)
    confusion = confusion_counts(pred, y, 3)
    assert confusion.shape == (3, 4) and confusion[missed_class, 3] == 1 and confusion.sum() == 9
    full = full_interval("balanced accuracy", np.stack([pred, y]), y, 3)  # in the bootstrap too
    assert full[0] == pytest.approx((METRICS["balanced accuracy"](pred, y, 3) + 1) / 2)


def test_a_majority_class_predictor_scores_one_over_classes():
    from analysis.stats import balanced_accuracy, macro_f1

    y = np.array([0] * 80 + [1] * 10 + [2] * 10)
    always = np.zeros(100, int)
    assert (always == y).mean() == 0.8
    assert balanced_accuracy(always, y, 3) == pytest.approx(1 / 3)
    assert macro_f1(always, y, 3) == pytest.approx((2 * 80 / (2 * 80 + 20)) / 3)


@pytest.mark.parametrize("seed", range(20))
def test_an_interval_at_holms_level_excludes_zero_exactly_when_holm_rejects(seed):
    """Random families of 2-12 comparisons (t statistics with small df, some near the edges):
    every verdict of the Holm-adjusted p agrees with its interval at holm_levels' level."""
    from analysis.stats import Comparison, holm, holm_levels

    rng = np.random.default_rng(seed)
    m = int(rng.integers(2, 13))
    diffs, ses, dfs = rng.normal(0, 0.1, m), rng.uniform(0.01, 0.06, m), rng.uniform(2, 200, m)
    from scipy import stats as st

    tests = [
        Comparison("accuracy", d, 0, 0, float(2 * st.t.sf(abs(d) / se, df)), df, (3, 3), se)
        for d, se, df in zip(diffs, ses, dfs, strict=True)
    ]
    adjusted, levels = holm([t.p for t in tests]), holm_levels([t.p for t in tests])
    for test, p_holm, level in zip(tests, adjusted, levels, strict=True):
        lo, hi = test.interval(level)
        assert (p_holm < 0.05) == (lo > 0 or hi < 0), (test.p, p_holm, level)


def test_the_detectable_difference_is_found_80_percent_of_the_time():
    """Simulated studies (study.bench.calibration's model: 5 seeds a side, seed sd 5 points, 120
    shared test images): a comparison with the null's true standard error states a detectable
    difference; planted as the true difference, the t-test finds it in at most 0.8 of 4,000
    studies (Monte-Carlo sd 0.006; about 0.72: the test is conservative, its false-positive rate
    0.025-0.045), so 'a smaller difference would be missed more than 1 time in 5' holds, and it
    is no vacuous bound: 1.5 times as large is found at least 95% of the time."""
    from analysis.stats import Comparison, accuracy_estimate
    from study.bench.calibration import simulate

    rng = np.random.default_rng(7)
    null = accuracy_estimate(*simulate(rng, 4000, 5, 0.05, 120))
    typical = Comparison("accuracy", 0.0, 0, 0, 1.0, float(np.median(null.df)), (5, 5), float(null.value.std()))
    planted = typical.detectable()
    assert 0.05 < planted < 0.2 and typical.detectable(0.05 / 6) > planted  # Holm's stricter level: larger
    found = [
        float((accuracy_estimate(*simulate(rng, 4000, 5, 0.05, 120, -k * planted)).p_value() < 0.05).mean())
        for k in (1, 1.5)
    ]
    assert 0.6 < found[0] < 0.8 + 0.02 and found[1] > 0.95, (planted, found)


LABELS = np.array([0, 1, 2] * 10)  # 30 test images, 10 per class


@pytest.mark.parametrize("right", [True, False])
def test_every_run_alike_on_every_image_is_zero_variance_and_says_so(right):
    """All right (or all wrong) on both sides: no noise measured, so no 'detectable 0.0', no
    'CI +0.0 to +0.0' verdict; the sentence says what zero variance means."""
    preds = np.tile(LABELS if right else (LABELS + 1) % 3, (3, 1))
    c = compare("accuracy", preds, preds[:1], LABELS, 3)
    assert c.se == 0 and math.isnan(c.detectable()) and c.detectable_text() == "none measurable (zero variance)"
    sentence = c.sentence("A", "B", 30, p_adjusted=1.0, comparisons=1, level=0.05)
    assert "zero variance" in sentence and "0.0 points would be missed" not in sentence and "CI" not in sentence


def test_a_difference_with_its_interval_stays_within_100_points_and_detectable_within_what_can_exist():
    """Two seeds a side on 6 images, at a Holm level of 0.05 / 20: t with few df stretches the
    interval past -100 points and the detectable difference past 100; both are said as what can exist."""
    a = np.array([[0, 1, 2, 0, 1, 2], [1, 2, 0, 1, 1, 2]])
    b = np.array([[1, 2, 0, 0, 1, 2], [0, 1, 2, 1, 2, 0]])
    c = compare("accuracy", a, b, LABELS[:6], 3)
    half = c.se * stats.t.ppf(1 - 0.0025 / 2, c.df)
    assert c.diff - half < -1.0 and c.diff + half > 1.0 and c.interval(0.0025) == (-1.0, 1.0)
    assert -1.0 <= c.lo < c.hi <= 1.0  # the 95% one too
    assert math.isinf(c.detectable(0.0025)) and c.detectable_text(0.0025) == "over 100 (none a score can show)"
    assert "no difference a score can show" in c.sentence("A", "B", 6, p_adjusted=1.0, comparisons=20, level=0.0025)


def test_one_number_gets_one_interval_whichever_score_it_is():
    """Every run right on every image: accuracy and balanced accuracy are both 1.000, and both get
    Wilson's interval on the test set's units (images, or people), never a point."""
    preds = np.tile(LABELS, (3, 1))
    acc, bacc = (full_interval(m, preds, LABELS, 3) for m in ("accuracy", "balanced accuracy"))
    assert acc == pytest.approx(bacc) and acc[0] == 1.0 and acc[1] < 0.9
    assert full_interval("accuracy", preds[:1], LABELS, 3) == pytest.approx(acc)
    people = np.repeat(np.arange(10), 3)  # 10 people of 3 photos: Wilson on 10, wider than on 30
    assert full_interval("balanced accuracy", preds, LABELS, 3, groups=people)[1] < acc[1]


def test_one_image_per_group_is_the_same_as_no_groups():
    rng = np.random.default_rng(4)
    a, b = rng.integers(0, 2, (3, 40)), rng.integers(0, 2, (3, 40))
    grouped, plain = accuracy_estimate(a, b, groups=np.arange(40)), accuracy_estimate(a, b)
    assert [float(x) for x in (grouped.value, grouped.se, grouped.df)] == pytest.approx(
        [float(x) for x in (plain.value, plain.se, plain.df)]
    )
