"""The report's verdicts checked on simulated studies whose answer is known.

    python -m study.bench.calibration [--reps 4000] [--seed 0] [--rule]

Each simulated study has two configurations A and B evaluated on one shared test set: image
j has a probability q_j of being classified right (Beta(2a, 2(1 - a)) for a mean accuracy a:
Beta(1.4, 0.6) at 0.7, many easy images and some hard ones), the same for both configurations;
each training seed shifts that probability by a draw of N(0, sigma) (clipped to [0, 1]); B adds
a true difference (0 for the false-positive rate). Each run's 0/1 answers are Bernoulli draws.
Beside every power it prints a reference: a test that knows the true variance of the difference
(its Monte-Carlo sd over the cell's studies) and rejects where |A - B| > 1.96 of it; a method far
below it is blind, as one above alpha at a difference of 0 is lax. It prints, for every cell of the
grid (accuracy x test images x seeds per side x seed sigma):

- the false-positive rate at alpha = 0.05 of the seed-and-image t-test (analysis.stats), and
  of the method the report used before it (a paired bootstrap over test images of the
  seed-averaged correctness, in its normal approximation), at a true difference of 0;
- the coverage of A's full 95% interval (stats.widest, as stats.full_interval builds it) of
  its expected accuracy over seeds on the population of images;
- the t-test's power at true differences of 3, 5 and 10 points, and the reference's at 10.

Then the claims a user quotes from a study, each beside the method the report used before:

- the best of 7 or 216 identical configurations (picked on validation images) against a
  configuration chosen in advance: tested on the seeds that picked it, and on a confirmation
  stage's fresh seeds (--confirm-top);
- grouped test sets (subjects x photos, a share of each image's difficulty common to its
  subject, and configurations that disagree on 30% of it): photos counted as independent,
  and people as the unit (the cluster-robust variance); false-positive rate, coverage, and power
  at 10 points beside the reference's;
- one run as B (a deterministic baseline such as HOG+SVM) at mean accuracy 0.7 and 0.9, on
  photos and on people: the one-run rule (analysis.stats.one_run_critical), Satterthwaite's df,
  and the seeds' own n - 1; then its power at a 10-point gap (A at 0.75) beside the reference's
  and the bound: the most any test holding its level at every seed variance could find there.

--rule prints the one-run rule's size by normal theory instead: the largest false-positive rate
over every true share of the seeds in the variance, integrating over the seeds' and the images'
chi-squares, for each pair of degrees of freedom, beside Satterthwaite's.
"""

from __future__ import annotations

import argparse
import math
import sys

import numpy as np
from scipy import optimize, special, stats

from analysis.stats import (
    ONE_RUN_EXPONENTS,
    ONE_RUN_LEVELS,
    Estimate,
    accuracy_estimate,
    image_var,
    one_run_critical,
    one_run_exponent,
    widest,
)
from trainable.cli_options import prog

ALPHA = 0.05
ACCURACIES = (0.7, 0.9)  # mean accuracy of the grid's configurations
SEEDS = (2, 3, 5, 10)
SIGMAS = (0, 2, 5, 10)  # seed-to-seed sd of a run's accuracy shift, in points
IMAGES = (120, 1000)
POWER_DIFFS = (3, 5, 10)  # true differences, in points
DIFFICULTY = (1.4, 0.6)  # Beta parameters of the per-image probability of being right (accuracy 0.7)
CHUNK = 250  # replicates simulated at once (memory: CHUNK x seeds x images per side)
SELECTION = {"configs": (7, 216), "sigma": (0, 5, 10), "seeds": 3, "images": 120}
GROUPED = {"sizes": ((8, 8), (17, 12), (82, 12)), "shared": (0.0, 0.3, 0.6), "seeds": 3, "sigma": 5, "power": 10}
DISAGREE = 0.3  # grouped cells: the share of an image's difficulty that differs between configurations
ONE_RUN = {"accuracy": (0.7, 0.9), "seeds": (3, 5), "sigma": (0, 2, 5, 10), "images": 120, "people": (17, 12)}
ONE_RUN_POWER = {"accuracy": 0.75, "seeds": (3, 5), "sigma": (2, 5), "diff": 10}
RULE_DF = {"images": (7, 16, 119, math.inf)}  # the images' df the one-run rule is checked at
RULE_SHARES = np.linspace(0, 1, 41)  # the seeds' true shares of the variance it is checked at
_GRID = np.linspace(0, 1, 4097)
_BETA_QUANTILE = special.betaincinv(*DIFFICULTY, _GRID)  # Beta(1.4, 0.6) by interpolation: exact calls are slow


def margin(reps: int, rate: float = ALPHA) -> float:
    """Three Monte-Carlo standard errors of a rate near `rate` estimated from `reps` replicates."""
    return 3 * math.sqrt(rate * (1 - rate) / reps)


def difficulty(accuracy: float) -> tuple[float, float]:
    """Beta parameters of the per-image chance of being right, for a mean accuracy."""
    return 2 * accuracy, 2 * (1 - accuracy)


def simulate(rng, reps: int, seeds: int, sigma: float, n_images: int, diff: float = 0.0, accuracy: float = 0.7):
    """(correct A, correct B), each (reps, seeds, images) 0/1: B's true accuracy is A's + diff."""
    q = rng.beta(*difficulty(accuracy), size=(reps, 1, n_images))
    runs = []
    for shift in (0.0, diff):
        p = np.clip(q + shift + rng.normal(0, sigma, (reps, seeds, 1)), 0, 1)
        runs.append((rng.random((reps, seeds, n_images)) < p).astype(float))
    return runs[0], runs[1]


def clipped_mean(q, sigma: float):
    """E clip(q + N(0, sigma), 0, 1) per q: a run's chance on an image, averaged over seeds.
    For normal X ~ N(q, s^2), E clip(X, 0, 1) = q (Phi(b) - Phi(a)) + s (phi(a) - phi(b)) + 1 - Phi(b)
    with a = -q/s, b = (1 - q)/s."""
    if sigma == 0:
        return q
    a, b = -q / sigma, (1 - q) / sigma
    phi = lambda x: np.exp(-x * x / 2) / math.sqrt(2 * math.pi)  # noqa: E731
    return q * (special.ndtr(b) - special.ndtr(a)) + sigma * (phi(a) - phi(b)) + 1 - special.ndtr(b)


def expected_accuracy(sigma: float, draws: int = 1_000_000, difficulty=DIFFICULTY) -> float:
    """E over images and seeds of clip(q + N(0, sigma), 0, 1): the target of A's interval,
    averaged over a large fixed sample of q."""
    return float(clipped_mean(np.random.default_rng(12345).beta(*difficulty, draws), sigma).mean())


def image_bootstrap_p(correct_a: np.ndarray, correct_b: np.ndarray) -> np.ndarray:
    """The pre-calibration method: each image's correctness averaged over the seeds, A minus B,
    and the paired bootstrap over images of its mean, here in its normal approximation
    (bootstrap sd = the per-image differences' sd (ddof 0) / sqrt(images))."""
    d = correct_a.mean(-2) - correct_b.mean(-2)
    se = d.std(-1) / math.sqrt(d.shape[-1])
    with np.errstate(divide="ignore", invalid="ignore"):
        p = 2 * stats.norm.sf(np.abs(d.mean(-1)) / se)
    return np.where(se > 0, p, np.where(d.mean(-1) == 0, 1.0, 0.0))


def reference_rejects(values: np.ndarray) -> float:
    """The share of a cell's studies in which the test that knows the true variance of the
    difference (its sd over the cell, Monte-Carlo) calls it different at ALPHA."""
    return float((np.abs(values) > stats.norm.ppf(1 - ALPHA / 2) * values.std()).mean())


def cell(
    rng, reps: int, seeds: int, sigma: float, n_images: int, diff: float = 0.0, accuracy: float = 0.7
) -> dict[str, float]:
    """Rejections at ALPHA (the t-test, the old method, the reference) and A's interval coverage."""
    target = expected_accuracy(sigma / 100, difficulty=difficulty(accuracy))
    rejected = old = covered = 0
    values = []
    for start in range(0, reps, CHUNK):
        a, b = simulate(rng, min(CHUNK, reps - start), seeds, sigma / 100, n_images, diff / 100, accuracy)
        e = accuracy_estimate(a, b)
        rejected += int((e.p_value() < ALPHA).sum())
        values.append(e.value)
        old += int((image_bootstrap_p(a, b) < ALPHA).sum())
        lo, hi = widest(accuracy_estimate(a), wilson_images=n_images)
        covered += int(((lo <= target) & (target <= hi)).sum())
    return {
        "rejected": rejected / reps,
        "old rejected": old / reps,
        "coverage": covered / reps,
        "reference": reference_rejects(np.concatenate(values)),
    }


def runs(rng, q, seeds: int, sigma: float, shift=None):
    """0/1 answers (..., seeds, images) of `seeds` runs whose chance on image j is
    clip(q_j + the seed's N(0, sigma) shift, 0, 1); `shift` given: those seed shifts."""
    if shift is None:
        shift = rng.normal(0, sigma, (*q.shape[:-2], seeds, 1))
    return (rng.random((*q.shape[:-2], seeds, q.shape[-1])) < np.clip(q + shift, 0, 1)).astype(float)


def rejects(e: Estimate) -> np.ndarray:
    return e.p_value() < ALPHA


def satterthwaite_rejects(e: Estimate) -> np.ndarray:
    """The one-run test before the cap: Satterthwaite's df throughout."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return 2 * stats.t.sf(np.abs(e.value) / e.se, e.df) < ALPHA


def seeds_df_rejects(e: Estimate) -> np.ndarray:
    """The one-run test before the one-run rule: the seeds' own n - 1 df (the cap), whatever the share."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return 2 * stats.t.sf(np.abs(e.value) / e.se, max(e.runs) - 1) < ALPHA


def selection_cell(rng, reps: int, configs: int, sigma: float, seeds: int = 3, n_images: int = 120) -> dict:
    """`configs` identical configurations, `seeds` runs each, scored on `n_images` validation
    images; the best by validation accuracy against one more configuration chosen in advance,
    on the test images: with the seeds that chose it, and with fresh seeds (a confirmation stage).
    True difference 0. A run's validation accuracy is Binomial(images, its mean chance)."""
    same = fresh = 0
    for start in range(0, reps, CHUNK):
        r = min(CHUNK, reps - start)
        q_val, q = (rng.beta(*DIFFICULTY, (r, 1, 1, n_images)) for _ in range(2))
        shift = rng.normal(0, sigma / 100, (r, configs, seeds, 1))
        val = rng.binomial(n_images, np.clip(q_val + shift, 0, 1).mean(-1))  # (r, configs, seeds)
        chosen = np.take_along_axis(shift, val.mean(-1).argmax(-1)[:, None, None, None], 1)[:, 0]
        q = q[:, 0]
        b = runs(rng, q, seeds, sigma / 100)
        same += int(rejects(accuracy_estimate(runs(rng, q, seeds, 0, chosen), b)).sum())
        fresh += int(rejects(accuracy_estimate(runs(rng, q, seeds, sigma / 100), b)).sum())
    return {"same seeds": same / reps, "confirmed": fresh / reps}


def grouped_difficulty(
    rng, reps: int, subjects: int, photos: int, shared: float, accuracy: float = 0.7
) -> tuple[np.ndarray, ...]:
    """Per-image chances (reps, 1, images) of configurations A and B, each marginally
    Beta(2a, 2(1 - a)) for mean accuracy a: a Gaussian copula whose latent is `shared` subject and
    1 - `shared` photo, and of which DISAGREE is each configuration's own draw (of the same make-up)."""
    quantile = _BETA_QUANTILE if accuracy == 0.7 else special.betaincinv(*difficulty(accuracy), _GRID)

    def latent(size):
        subject = rng.normal(size=(*size, subjects, 1))
        photo = rng.normal(size=(*size, subjects, photos))
        return (math.sqrt(shared) * subject + math.sqrt(1 - shared) * photo).reshape(*size, 1, subjects * photos)

    common = latent((reps,))
    own = latent((2, reps))
    z = math.sqrt(1 - DISAGREE) * common + math.sqrt(DISAGREE) * own
    return tuple(np.interp(special.ndtr(z[i]), _GRID, quantile) for i in range(2))


def grouped_cell(
    rng, reps: int, subjects: int, photos: int, shared: float, seeds: int = 3, sigma: float = 5, diff: float = 10
) -> dict:
    """Two configurations of equal expected accuracy on a test set of `subjects` x `photos`:
    false-positive rate and A's full-interval coverage with photos, and with people, as units;
    then B `diff` points worse: the power with people as the unit, and the reference's."""
    groups = np.repeat(np.arange(subjects), photos)
    target = expected_accuracy(sigma / 100)
    out = dict.fromkeys(("photos fpr", "people fpr", "photos coverage", "people coverage", "people power"), 0.0)
    values = []
    for start in range(0, reps, CHUNK):
        r = min(CHUNK, reps - start)
        q_a, q_b = grouped_difficulty(rng, r, subjects, photos, shared)
        a, b = runs(rng, q_a, seeds, sigma / 100), runs(rng, q_b, seeds, sigma / 100)
        for unit, g in (("photos", None), ("people", groups)):
            out[f"{unit} fpr"] += rejects(accuracy_estimate(a, b, groups=g)).sum() / reps
            lo, hi = widest(accuracy_estimate(a, groups=g))
            out[f"{unit} coverage"] += ((lo <= target) & (target <= hi)).sum() / reps
        worse = runs(rng, np.clip(q_b - diff / 100, 0, 1), seeds, sigma / 100)
        e = accuracy_estimate(a, worse, groups=groups)
        out["people power"] += rejects(e).sum() / reps
        values.append(e.value)
    out["reference power"] = reference_rejects(np.concatenate(values))
    return {k: float(v) for k, v in out.items()}


def one_run_cell(
    rng, reps: int, accuracy: float, seeds: int, sigma: float, n_images: int = 120, diff: float = 0.0, people=None
) -> dict:
    """A (`seeds` runs) against one run B whose chance on each image is A's averaged over seeds,
    less `diff` points: the share called different by the one-run rule (the report's), by
    Satterthwaite's df and by the seeds' own n - 1, and by the reference; at a `diff`, the most any
    test that holds its level could find (power_bound, from the cell's mean variances). `people`:
    (subjects, photos) of a grouped test set (grouped_difficulty, 30% shared), people as the unit."""
    out = dict.fromkeys(("one-run rule", "satterthwaite", "seeds df"), 0.0)
    groups = None if people is None else np.repeat(np.arange(people[0]), people[1])
    values, pieces = [], np.zeros(3)  # sums of s^2/n, the interaction inside it, the images' term
    for start in range(0, reps, CHUNK):
        r = min(CHUNK, reps - start)
        if people is None:
            q = rng.beta(*difficulty(accuracy), (r, 1, n_images))
        else:
            q = grouped_difficulty(rng, r, *people, 0.3, accuracy)[0]
        b = runs(rng, np.clip(clipped_mean(q, sigma / 100) - diff / 100, 0, 1), 1, 0)
        a = runs(rng, q, seeds, sigma / 100)
        e = accuracy_estimate(a, b, groups=groups)
        out["one-run rule"] += rejects(e).sum() / reps
        out["satterthwaite"] += satterthwaite_rejects(e).sum() / reps
        out["seeds df"] += seeds_df_rejects(e).sum() / reps
        values.append(e.value)
        units = np.arange(n_images) if groups is None else groups
        interaction = (image_var(a, units).mean(-1) - image_var(a.mean(-2), units)) / (seeds - 1)
        pieces += [e.seed_var.sum(), interaction.sum(), e.image_var.sum()]
    out["reference"] = reference_rejects(np.concatenate(values))
    if diff:
        seed_and_interaction, interaction, images = pieces / reps
        out["bound"] = power_bound(seeds, max(seed_and_interaction - interaction, 0.0), interaction, images, diff / 100)
    return {k: float(v) for k, v in out.items()}


def power_bound(seeds: int, seed_var: float, interaction: float, images: float, diff: float, level=ALPHA) -> float:
    """The most power any test of A (`seeds` runs) against one run can have at a true difference
    `diff`, if its false-positive rate is at most `level` whatever the seeds' variance: by normal
    theory, D ~ N(diff, m + interaction + images) and s^2/n ~ (m + interaction) chi2_f / f
    independent of D (f = seeds - 1), m = `seed_var` (sigma^2 / n) at the alternative and any m >= 0
    under the null, with the interaction and the images' variance known exactly (which no real test
    knows: the bound is above what one can reach). The most powerful test against that one
    alternative, over the null's least favourable mixture of seed variances (Lehmann & Romano 2005,
    Testing Statistical Hypotheses, 3.8; computed numerically as Elliott, Mueller & Watson 2015,
    Econometrica 83:771-811 do): a linear programme over a grid of (|D|, s^2/n) cells, its size
    held at 0 and 60 seed variances from 1e-3 to 1e3 times interaction + images."""
    f, scale = seeds - 1, interaction + images
    sd_alt = math.sqrt(seed_var + scale)
    d_edges = np.append(np.linspace(0, abs(diff) + 8 * sd_alt, 241), np.inf)
    s_edges = np.concatenate([[0.0], np.logspace(-4, 4, 200) * scale, [np.inf]])

    def cells(m: float, delta: float) -> np.ndarray:
        sd = math.sqrt(m + scale)
        upper, lower = stats.norm.cdf((d_edges - delta) / sd), stats.norm.cdf((-d_edges - delta) / sd)
        p_d = np.diff(upper) - np.diff(lower)  # P(|D| in each cell)
        p_s = np.diff(stats.chi2.cdf(s_edges * f / (m + interaction), f)) if m + interaction > 0 else None
        if p_s is None:
            p_s = np.r_[1.0, np.zeros(len(s_edges) - 2)]
        return np.outer(p_d, p_s).ravel()

    nulls = np.array([cells(m, 0.0) for m in np.r_[0.0, np.logspace(-3, 3, 60) * scale]])
    found = optimize.linprog(
        -cells(seed_var, diff), A_ub=nulls, b_ub=np.full(len(nulls), level), bounds=(0, 1), method="highs"
    )
    if not found.success:
        raise RuntimeError(f"power_bound: the linear programme failed: {found.message}")
    return -found.fun


def _chi2_points(df: float) -> tuple[np.ndarray, np.ndarray]:
    """Points and weights for integrating over chi-square(df) / df: cells of probability fine in
    both tails (down to 1e-12; a small value is the rare tight cluster of seeds, or an image variance
    that came out small, that a small level turns on) and even in between."""
    if not math.isfinite(df):
        return np.ones(1), np.ones(1)
    edges = np.concatenate([np.logspace(-12, -2, 40), np.linspace(0.01, 0.99, 99)[1:-1], 1 - np.logspace(-2, -12, 40)])
    edges = np.concatenate([[0.0], edges, [1.0]])
    u, weights = (edges[1:] + edges[:-1]) / 2, np.diff(edges)
    return stats.chi2.ppf(u, df) / df, weights


def rule_size(seed_df: int, image_df: float, critical, level: float) -> float:
    """The largest size, over the seeds' true share c of the variance, of the test rejecting where
    |t| > critical(estimated share), for normal data: t = Z / sqrt(c X + (1 - c) Y) with X, Y
    independent chi-square / df (Y = 1 for infinite df), integrated over both; as a multiple of `level`."""
    x, wx = _chi2_points(seed_df)
    y, wy = _chi2_points(image_df)
    x, y, w = x[:, None], y[None, :], wx[:, None] * wy[None, :]
    sizes = []
    for c in RULE_SHARES:
        v = c * x + (1 - c) * y
        sizes.append(float((w * 2 * stats.norm.sf(critical(c * x / v) * np.sqrt(v))).sum()))
    return max(sizes) / level


def rule_exponent(level: float, seed_df: int, steps: int = 14) -> float:
    """The largest k for which the one-run critical value t_img + (t_seed - t_img) c^k has size at most
    `level` (rule_size) for every images' df in RULE_DF: bisection."""
    lo, hi = 0.05, 4.0
    for _ in range(steps):
        k = (lo + hi) / 2
        worst = max(
            rule_size(seed_df, g, lambda c, g=g, k=k: one_run_critical(level, seed_df, g, c, exponent=k), level)
            for g in RULE_DF["images"]
        )
        lo, hi = (k, hi) if worst <= 1.001 else (lo, k)  # at a share of 0 or 1 the size is the level itself
    return lo


def rule_table(seed_dfs=(2, 4, 9), levels=(0.05, 0.005, 0.001)) -> list[dict]:
    """--rule: the one-run rule's largest size as a multiple of the level (by normal theory, over every
    true share and RULE_DF's images' df), with the shipped exponents, beside Satterthwaite's df."""
    rows = []
    for f in seed_dfs:
        for level in levels:

            def satterthwaite(c, g, f=f, level=level):
                with np.errstate(divide="ignore"):
                    return stats.t.ppf(1 - level / 2, 1 / (c**2 / f + (1 - c) ** 2 / g))

            def ours(c, g, f=f, level=level):
                return one_run_critical(level, f, g, c)

            sizes = {
                name: max(rule_size(f, g, lambda c, g=g, rule=rule: rule(c, g), level) for g in RULE_DF["images"])
                for name, rule in (("one-run rule", ours), ("satterthwaite", satterthwaite))
            }
            k = float(one_run_exponent(level, f))
            rows.append({"seed df": f, "level": level, "k": k, **sizes})
    return rows


def exponents() -> str:
    """analysis.stats.ONE_RUN_EXPONENTS, computed anew (rule_exponent at each tabulated df and level)."""
    rows = [
        f"    {f}: {tuple(round(rule_exponent(level, f), 3) for level in ONE_RUN_LEVELS)}," for f in ONE_RUN_EXPONENTS
    ]
    return "ONE_RUN_EXPONENTS = {\n" + "\n".join(rows) + "\n}"


def claims(reps: int, seed: int = 0) -> dict[str, dict[tuple, dict]]:
    """The families of cells: selection, grouped test sets, one run as B (its false-positive rate,
    on photos and on people, then its power)."""
    rng = np.random.default_rng(seed)
    return {
        "selection": {
            (k, s): selection_cell(rng, reps, k, s, SELECTION["seeds"], SELECTION["images"])
            for k in SELECTION["configs"]
            for s in SELECTION["sigma"]
        },
        "grouped": {
            (g, p, sh): grouped_cell(rng, reps, g, p, sh, GROUPED["seeds"], GROUPED["sigma"], GROUPED["power"])
            for g, p in GROUPED["sizes"]
            for sh in GROUPED["shared"]
        },
        "one run": {
            (acc, n, s, unit): one_run_cell(
                rng, reps, acc, n, s, ONE_RUN["images"], people=ONE_RUN["people"] if unit == "people" else None
            )
            for unit in ("photos", "people")
            for acc in ONE_RUN["accuracy"]
            for n in ONE_RUN["seeds"]
            for s in ONE_RUN["sigma"]
        },
        "one run power": {
            (n, s): one_run_cell(rng, reps, ONE_RUN_POWER["accuracy"], n, s, ONE_RUN["images"], ONE_RUN_POWER["diff"])
            for n in ONE_RUN_POWER["seeds"]
            for s in ONE_RUN_POWER["sigma"]
        },
    }


def table(reps: int, seed: int = 0, power_reps: int | None = None) -> list[dict[str, float]]:
    """One row per grid cell: false-positive rates (new, old), coverage, power at POWER_DIFFS and
    the reference's at the largest."""
    rng = np.random.default_rng(seed)
    rows = []
    for accuracy in ACCURACIES:
        for n_images in IMAGES:
            for seeds in SEEDS:
                for sigma in SIGMAS:
                    null = cell(rng, reps, seeds, sigma, n_images, accuracy=accuracy)
                    row = {
                        "accuracy": accuracy,
                        "images": n_images,
                        "seeds": seeds,
                        "sigma": sigma,
                        "fpr": null["rejected"],
                        "old fpr": null["old rejected"],
                        "coverage": null["coverage"],
                    }
                    for diff in POWER_DIFFS:
                        found = cell(rng, power_reps or reps, seeds, sigma, n_images, -diff, accuracy)
                        row[f"power {diff}"] = found["rejected"]
                    row[f"reference {POWER_DIFFS[-1]}"] = found["reference"]
                    rows.append(row)
    return rows


def markdown(rows: list[dict]) -> str:
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in row.values()) + " |")
    return "\n".join(lines)


HEADS = {
    "selection": (
        f"The best of k identical configurations (picked on {SELECTION['images']} validation images, "
        f"{SELECTION['seeds']} seeds each) against one chosen in advance, on {SELECTION['images']} test images; "
        "false-positive rate on the seeds that chose it, and on a confirmation stage's fresh seeds.",
        ["configs", "sigma"],
    ),
    "grouped": (
        f"Grouped test sets, {GROUPED['seeds']} seeds a side, sigma {GROUPED['sigma']}: false-positive rate and A's "
        f"95% coverage with photos, and with people, as the unit; power at {GROUPED['power']} points with people "
        "as the unit, beside the reference's.",
        ["subjects", "photos", "shared"],
    ),
    "one run": (
        f"One run as B, A with n seeds, {ONE_RUN['images']} test images (people: {ONE_RUN['people'][0]} x "
        f"{ONE_RUN['people'][1]} photos, 30% shared, people as the unit): false-positive rate.",
        ["accuracy", "seeds", "sigma", "unit"],
    ),
    "one run power": (
        f"One run as B, {ONE_RUN_POWER['diff']} points worse than A (accuracy {ONE_RUN_POWER['accuracy']}), "
        f"{ONE_RUN['images']} test images: power, beside the reference's and the bound (power_bound: the most "
        "any test that holds its level whatever the seeds' variance could find).",
        ["seeds", "sigma"],
    ),
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog=prog("study.bench.calibration"), description=__doc__.split("\n")[0])
    p.add_argument("--reps", type=int, default=4000, help="simulated studies per cell (default 4000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rule", action="store_true", help="only the one-run rule's size by normal theory")
    args = p.parse_args(argv)
    if args.reps < 100:
        print(f"error: --reps {args.reps}; expected at least 100", file=sys.stderr)
        return 2
    if args.rule:
        print(
            "The one-run rule (analysis.stats.one_run_critical): its largest size over every true share of the "
            f"seeds and images' df {', '.join(map(str, RULE_DF['images']))}, by normal theory, as a multiple of "
            "the level, beside Satterthwaite's df:\n"
        )
        print(markdown(rule_table()))
        print("\nThe exponents, computed anew (analysis.stats.ONE_RUN_EXPONENTS holds them):\n")
        print(exponents())
        return 0
    print(
        f"Seed-and-image t-test vs the old image-only bootstrap, {args.reps} simulated studies per cell; "
        f"alpha {ALPHA}; Monte-Carlo margin (3 se) {margin(args.reps):.3f} on a rate of {ALPHA}.\n"
        "Two configurations, one shared test set, per-image difficulty shared; sigma: seed-to-seed sd of a "
        "run's accuracy shift (points). fpr: share called different at a true difference of 0. coverage: "
        "A's full 95% interval holding its expected accuracy. power d: share called different at d points; "
        "reference d: the test that knows the true variance, at d points.\n"
    )
    print(markdown(table(args.reps, args.seed)))
    for family, cells in claims(args.reps, args.seed).items():
        text, keys = HEADS[family]
        rows = [dict(zip(keys, key, strict=True)) | rates for key, rates in cells.items()]
        print(f"\n{text}\n\n{markdown(rows)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
