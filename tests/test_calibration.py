"""The comparison's false-positive rate, power and the full interval's coverage, by simulation on
studies whose answer is known (study.bench.calibration): numpy and scipy only, no model."""

import math

import numpy as np
import pytest
from scipy import stats

from analysis.stats import accuracy_estimate
from study.bench.calibration import ACCURACIES, ALPHA, IMAGES, RULE_DF, SEEDS, SIGMAS, cell, margin, simulate

REPS = 2000  # per cell: a rate of 0.05 has a Monte-Carlo sd of 0.0049, so margin(REPS) = 0.0146
# The t interval assumes normal per-seed scores; clipped to [0, 1] they are skewed, and with 5-10
# seeds at sigma 5-10 points it covers 0.941-0.946 in 8,000-replicate runs (so does a seeds-only t
# interval, 0.939-0.941, where the images add little). The allowance below is that shortfall.
SKEW_ALLOWANCE = 0.01
# Power beside the reference (the test that knows the true variance): every method that estimates
# the seeds' variance from a few seeds pays for it, at most half the reference's power in every cell
# measured (3 seeds: 0.55-0.73 of it; 5: 0.83-0.97); a method below half is blind where the data is
# not (the seeds' own n - 1 df against one run: 0.07 of it).
POWER_SHARE = 0.5


@pytest.fixture(scope="module")
def grid():
    rng = np.random.default_rng(20261202)
    return {
        (a, n, k, s): cell(rng, REPS, k, s, n, accuracy=a)
        for a in ACCURACIES
        for n in IMAGES
        for k in SEEDS
        for s in SIGMAS
    }


@pytest.mark.slow  # the grid: 128,000 simulated studies, 30-40 s
def test_false_positive_rate_is_at_most_alpha(grid):
    too_high = {c: r["rejected"] for c, r in grid.items() if r["rejected"] > ALPHA + margin(REPS)}
    assert not too_high, f"(accuracy, images, seeds, sigma) -> false-positive rate above {ALPHA} + {margin(REPS):.3f}"


@pytest.mark.slow
def test_full_interval_covers_the_expected_accuracy_at_07_and_09(grid):
    """At accuracy 0.9 a seed shift of 10 points is skewed hard against the ceiling: the interval
    leans away from it (stats.widest's logit ends) and covers 0.94 on 120 images where the symmetric
    one covered 0.91. On 1,000 images, where the seeds are nearly all the variance, 2-5 seeds cover
    0.915-0.92 there: the seeds' long lower tail, which a few seeds seldom show (docs/statistics.md)."""
    floor = 0.95 - margin(REPS) - SKEW_ALLOWANCE
    heavy_tail = {c for c in grid if c[0] == 0.9 and c[1] == 1000 and c[3] == 10 and c[2] <= 5}
    too_low = {c: r["coverage"] for c, r in grid.items() if r["coverage"] < floor and c not in heavy_tail}
    assert not too_low, f"(accuracy, images, seeds, sigma) -> coverage below {floor:.3f}"
    assert min(grid[c]["coverage"] for c in heavy_tail) >= 0.9


@pytest.mark.slow
def test_the_old_image_only_bootstrap_fails_the_same_check(grid):
    """The method the report used before: seeds averaged per image, images resampled. It calls
    one run in four 'different' at sigma 5 on 120 images, as the review found."""
    old = {c: r["old rejected"] for c, r in grid.items()}
    assert old[(0.7, 120, 3, 5)] > 0.2 and max(old.values()) > ALPHA + margin(REPS)
    assert old[(0.7, 120, 3, 0)] < ALPHA + margin(REPS)  # with no seed noise it was right


@pytest.mark.parametrize("sigma", [0, 5, 10])
def test_two_studies_on_different_images_keep_their_level_and_have_power(sigma):
    """analysis.studies' unpaired comparison (stats.unpaired): A and B each on its own 120 test
    images, 3 seeds. Equal expected accuracy: called different at most alpha (+ margin) of the time
    (measured 0.048, 0.056, 0.048: Satterthwaite's df a little lax where the seeds' 2 df weigh
    most); B 15 points worse: found at least half as often as by the test that knows the variance."""
    from analysis.stats import unpaired

    rng, reps = np.random.default_rng(sigma), 8000
    rejected, values, found = 0, [], 0
    for _ in range(0, reps, 250):
        a, _ = simulate(rng, 250, 3, sigma / 100, 120)  # its own images
        b, worse = simulate(rng, 250, 3, sigma / 100, 120, diff=-0.15)  # others, and the same 15 points worse
        diff, se, df = unpaired(accuracy_estimate(a), accuracy_estimate(b))
        rejected += int((2 * stats.t.sf(np.abs(diff) / se, df) < ALPHA).sum())
        diff, se, df = unpaired(accuracy_estimate(a), accuracy_estimate(worse))
        found += int((2 * stats.t.sf(np.abs(diff) / se, df) < ALPHA).sum())
        values.append(diff)
    assert rejected / reps <= ALPHA + margin(reps)
    spread = np.concatenate(values).std()
    reference = float((np.abs(np.concatenate(values)) > stats.norm.ppf(1 - ALPHA / 2) * spread).mean())
    assert found / reps >= POWER_SHARE * reference, (found / reps, reference)


def test_power_grows_with_the_true_difference():
    rng = np.random.default_rng(1)
    power = [cell(rng, 400, 5, 2, 1000, diff)["rejected"] for diff in (3, 10)]
    assert power[0] < power[1] and power[1] > 0.9


@pytest.mark.slow
@pytest.mark.parametrize(
    "accuracy, images, seeds, sigma, diff",
    [(0.7, 120, 3, 2, 10), (0.7, 120, 5, 5, 10), (0.7, 1000, 3, 2, 5), (0.9, 120, 5, 2, 10), (0.7, 120, 3, 10, 10)],
)
def test_two_configurations_have_power_beside_the_reference(accuracy, images, seeds, sigma, diff):
    found = cell(np.random.default_rng(seeds * 100 + sigma), REPS, seeds, sigma, images, -diff, accuracy)
    assert found["rejected"] >= POWER_SHARE * found["reference"], found


# The claims a user quotes, each beside the method used before (which must fail it somewhere).
CLAIM_REPS = 2000


@pytest.fixture(scope="module")
def claims():
    from study.bench.calibration import claims

    return claims(CLAIM_REPS, seed=20261206)


@pytest.mark.slow  # about 60 s
def test_the_chosen_configuration_is_claimed_on_fresh_seeds(claims):
    cells = claims["selection"]
    assert max(c["confirmed"] for c in cells.values()) <= ALPHA + margin(CLAIM_REPS), cells
    assert cells[(216, 10)]["same seeds"] > 0.1 and cells[(7, 10)]["same seeds"] > ALPHA + margin(CLAIM_REPS)


@pytest.mark.slow
def test_people_not_photos_are_the_unit_of_a_grouped_test_set(claims):
    cells = claims["grouped"]
    floor = 0.95 - margin(CLAIM_REPS) - SKEW_ALLOWANCE
    assert max(c["people fpr"] for c in cells.values()) <= ALPHA + margin(CLAIM_REPS), cells
    assert min(c["people coverage"] for c in cells.values()) >= floor, cells
    assert max(c["photos fpr"] for c in cells.values()) > ALPHA + margin(CLAIM_REPS)
    assert min(c["photos coverage"] for c in cells.values()) < floor
    # with nothing shared within a subject the photos are independent, and both ways agree
    assert all(abs(c["people fpr"] - c["photos fpr"]) < 0.03 for k, c in cells.items() if k[2] == 0 and k[0] > 8)
    assert all(c["people power"] >= POWER_SHARE * c["reference power"] for c in cells.values()), cells


# Against one run, 3 seeds whose shifts are skewed hard against the ceiling (accuracy 0.9, seed sd 10
# points: a bad seed now and then, 3 good ones often) let through 0.058 on photos and 0.066 on 17
# people in 4,000-study runs: the mean is dragged down by a tail 3 seeds seldom show. The one-run rule
# holds its level by normal theory (below); this is the skew beyond it, and why --confirm-seeds is 5.
HEAVY_TAIL = {(0.9, 3, 10, "photos"), (0.9, 3, 10, "people")}


@pytest.mark.slow
def test_one_run_as_b_keeps_its_false_positive_rate(claims):
    cells = claims["one run"]
    held = {k: c["one-run rule"] for k, c in cells.items() if k not in HEAVY_TAIL}
    assert max(held.values()) <= ALPHA + margin(CLAIM_REPS), held
    assert max(cells[k]["one-run rule"] for k in HEAVY_TAIL) <= 0.08
    assert max(c["satterthwaite"] for c in cells.values()) > ALPHA + margin(CLAIM_REPS)  # before the cap


@pytest.mark.slow
def test_one_run_as_b_has_power_the_cap_had_not(claims):
    """A 10-point gap, A at 0.75: 5 seeds find it at least 40% of the time (the issue's floor), and
    3 seeds at seed sd 2 points. At 5 points no test of 3 seeds that holds its level at every seed
    variance can: the most any can find (power_bound, with the variances the seeds do not reveal
    given to it) is 0.37-0.39. That bound is each cell's own most powerful test, which no one test is
    in every cell at once; the rule is 0.03-0.11 below it (2,000-study runs), and within 0.15 here.
    The seeds' own n - 1 df found it 4 times in 100, 0.5 below the bound."""
    cells = claims["one run power"]
    found = {k: (round(c["one-run rule"], 3), round(c["bound"], 3)) for k, c in cells.items()}
    assert all(c["one-run rule"] >= POWER_SHARE * c["reference"] for c in cells.values()), cells
    assert min(cells[(5, 2)]["one-run rule"], cells[(5, 5)]["one-run rule"], cells[(3, 2)]["one-run rule"]) >= 0.4
    assert cells[(3, 5)]["bound"] < 0.4, found  # the 0.40 at 3 seeds, sd 5: beyond any level-holding test
    near = margin(CLAIM_REPS, 0.5)  # the bound is normal theory; the simulation's rates have this Monte-Carlo error
    assert all(c["bound"] - 0.15 <= c["one-run rule"] <= c["bound"] + near for c in cells.values()), found
    assert all(c["seeds df"] < c["bound"] - 0.15 for k, c in cells.items() if k[0] == 3)


def test_the_power_bound_is_the_known_variance_test_when_the_seeds_reveal_it():
    """With 200 seeds s^2 is all but known, and the most powerful level-holding test is the z-test
    (within the grid's 0.01); with 3 it is far below: the price of the seeds' 2 df, not of a method."""
    from study.bench.calibration import power_bound

    seed_var, interaction, images, diff = 8.3e-4, 3.5e-4, 10.4e-4, 0.10
    z = diff / math.sqrt(seed_var + interaction + images)
    known = stats.norm.sf(1.96 - z) + stats.norm.cdf(-1.96 - z)
    assert abs(power_bound(200, seed_var, interaction, images, diff) - known) < 0.015
    assert power_bound(3, seed_var, interaction, images, diff) < known - 0.15


@pytest.mark.parametrize("seed_df", [2, 4])
def test_the_one_run_rule_holds_its_level_at_every_share_by_normal_theory(seed_df):
    """Integrated over the seeds' and the images' chi-squares, at 5% and at a Holm level of 0.005:
    never above the level (Satterthwaite's df: 1.17-5.4 times it)."""
    from analysis.stats import one_run_critical
    from study.bench.calibration import rule_size

    for level in (0.05, 0.005):
        sizes = [
            rule_size(seed_df, g, lambda c, g=g, level=level: one_run_critical(level, seed_df, g, c), level)
            for g in RULE_DF["images"]
        ]
        assert max(sizes) <= 1.01, (level, sizes)  # the quadrature's own error: 0.994 at a share of 0, exactly 1


@pytest.mark.slow
def test_the_shipped_exponents_are_the_ones_the_bench_computes():
    from analysis.stats import one_run_exponent
    from study.bench.calibration import rule_exponent

    for level in (0.05, 0.005):
        assert math.isclose(rule_exponent(level, 2), float(one_run_exponent(level, 2)), abs_tol=0.005)
