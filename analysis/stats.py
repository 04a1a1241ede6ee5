"""Statistics over trials, as pure functions on arrays.

Convention: `correct` arrays are 0/1 per test image, shape (images,) for one
run or (seeds, images) for several seeds of one configuration, images in the
same order for every model compared. `preds` arrays hold predicted class
indices in the same shapes, for the class-balanced scores (METRICS), which
are not means over images and so need the labels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import optimize, special, stats

from trainable.scoring import (  # noqa: F401 (the scores, re-exported beside the statistics on them)
    METRICS,
    NO_FACE,
    OF_CONFUSION,
    accuracy,
    balanced_accuracy,
    class_counts,
    confusion_counts,
    macro_f1,
    recall_per_class,
)

CONFIDENCE = 0.95
POWER = 0.8  # the power at which a comparison's detectable difference is stated


def mean_ci(values, confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """Mean and Student-t confidence interval across seeds; (mean, nan, nan) for one value."""
    x = np.asarray(values, dtype=float)
    mean = float(x.mean())
    if len(x) < 2:
        return mean, math.nan, math.nan
    half = stats.t.ppf((1 + confidence) / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
    return mean, mean - half, mean + half


def accuracy_ci(correct: float, total: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Wilson score interval of one run's accuracy (how wide a single test set's noise is)."""
    z = stats.norm.ppf((1 + confidence) / 2)
    p = np.asarray(correct) / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * np.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return centre - half, centre + half


def holm(pvalues) -> list[float]:
    """Holm-Bonferroni adjusted p-values (family-wise error over all the comparisons given)."""
    p = np.asarray(pvalues, float)
    adjusted = np.empty(len(p))
    running = 0.0
    for rank, i in enumerate(np.argsort(p)):
        running = max(running, min(1.0, (len(p) - rank) * p[i]))
        adjusted[i] = running
    return adjusted.tolist()


def holm_levels(pvalues, alpha: float = 0.05) -> list[float]:
    """The level at which Holm's step-down procedure tests each hypothesis: alpha / (m - k + 1)
    at step k (p-values in ascending order) while it rejects; from the first hypothesis it
    retains on, that step's level for it and every later one. An interval at confidence
    1 - level excludes 0 exactly when Holm rejects (a later p is never smaller than the retained
    one), so a verdict and its interval never disagree."""
    p = np.asarray(pvalues, float)
    levels = np.empty(len(p))
    level = None
    for rank, i in enumerate(np.argsort(p, kind="stable")):
        if level is None:
            step = alpha / (len(p) - rank)
            if p[i] >= step:
                level = step  # the first retained: it and every later one at this level
            levels[i] = step
        else:
            levels[i] = level
    return levels.tolist()


def format_p(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


# -- Seeds x test images ------------------------------------------------------------------
#
# A configuration's score on a test set is noisy twice over: which training seeds ran, and
# which test images were drawn. Both configurations of a comparison, and every seed, share
# one test set. Model the 0/1 correctness of run i on image j as crossed random effects,
# c_ij = mu + a_i + b_j + (ab)_ij (Searle, Casella & McCulloch 1992, Variance Components,
# ch. 4; the two sources of benchmark variance of Bouthillier et al. 2021, "Accounting for
# variance in machine learning benchmarks", MLSys). The mean over n runs and N images has
#     Var = var(a)/n + var(b)/N + var(ab)/(nN).
# s^2/n, the spread of the n per-run scores, estimates var(a)/n + var(ab)/(nN); the spread
# over images of the run-averaged correctness, B/N, estimates var(b)/N + var(ab)/(nN), and
# the mean spread of one run's correctness, W/N, estimates (var(b) + var(ab))/N, so
#     V = s^2/n + max(0, B - (W - B)/(n - 1)) / N
# counts each source once. For a difference A - B, s_A^2/n_A + s_B^2/n_B plus the image
# term of the paired per-image differences (less each side's interaction) is its variance;
# t = D / sqrt(V) with Welch-Satterthwaite degrees of freedom (Satterthwaite 1946,
# Biometrics Bulletin 2:110-114) from n_A - 1, n_B - 1 and N - 1. For balanced accuracy and
# macro-F1, not means over images, B and W are bootstrap variances over the images. A side
# with one run has no s^2: its training noise is unmeasured and the result says so.
#
# People, not photos: when the test images come in groups (several photos of one person:
# --group-by, --group-regex, FG-NET's subjects), photos of one person are not independent
# draws. Every image variance above is then cluster-robust over the G groups (Liang & Zeger
# 1986, Biometrika 73:13-22; the CR1 small-sample factor G/(G - 1) and G - 1 degrees of
# freedom of Cameron & Miller 2015, J. Human Resources 50:317-372), and the bootstraps
# resample whole groups (Field & Welsh 2007, JRSS B 69:369-390). With one image per group
# both are the formulas above.

METHOD_NOTE = (
    "The seed-and-image t-test counts both sources of noise: which training seeds ran and which test "
    "images were drawn (one test set shared by every seed and both sides). For A minus B, "
    "V = s²_A/n_A + s²_B/n_B + max(0, v_img − ι_A − ι_B), where s² is the variance of a side's per-seed "
    "scores, v_img the test-image sampling variance of the paired difference of the seed-averaged "
    "scores, and ι = (W − B)/(n − 1) the seed × image interaction already inside s²/n (W: one seed's "
    "image variance, averaged over seeds; B: the seed-averaged score's); t = (mean_A − mean_B)/√V "
    "with Welch–Satterthwaite degrees of freedom (Satterthwaite 1946; crossed random effects as in "
    "Searle, Casella & McCulloch 1992, and the two sources of benchmark variance of Bouthillier et "
    "al. 2021). Against a side of one run (a baseline) the critical value moves from the test images' t "
    "to the seeds' t as the seeds' estimated share c of V grows, t_img + (t_seeds − t_img)·c^k, with k "
    "the largest that holds the level at every true share (Welch 1947; Aspin 1949). Its false-positive "
    "rate, power and its intervals' coverage are checked by simulation (tests/test_calibration.py, "
    "python -m study.bench.calibration)."
)


# -- One run as a side -----------------------------------------------------------------------
#
# Against one run (HOG+SVM: deterministic, no seeds), A - B has two variance components: A's
# seeds, s^2/n with f = n - 1 degrees of freedom (2 for 3 seeds), and the test images', with
# N - 1 (or G - 1 over people). This is Student's problem generalized by Welch (1947,
# Biometrika 34:28-35): t = D / sqrt(V) has no distribution free of the unknown share of the seeds
# in V, so the critical value is made a function of the estimated share c = (s^2/n) / V, as in
# Welch's and Aspin's (1949, Biometrika 36:290-296) tabulated solutions. Here it moves from the
# images' t (c = 0) to the seeds' t (c = 1) as c^k: h(c) = t_img + (t_seed - t_img) c^k, with k the
# largest for which the size, integrated by normal theory over the seeds' and the images' chi-squares,
# is at most the level for every true share and every images' df from 7 to infinity
# (study.bench.calibration --rule computes ONE_RUN_EXPONENTS and checks them). Welch-Satterthwaite's
# df (2 / c^2 at f = 2) let through up to 7.8% at a level of 5% and 6 to 9 times the level at
# 0.0025 (a Holm level); the seeds' own n - 1 df whatever c held it but found a 10-point gap 3
# times in 100 (3 seeds, 120 images). Simulated studies and the power: docs/statistics.md.

ONE_RUN_LEVELS = (1e-6, 1e-5, 1e-4, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05)
ONE_RUN_EXPONENTS = {  # seeds' df -> k at each of ONE_RUN_LEVELS (python -m study.bench.calibration --rule)
    2: (0.582, 0.597, 0.622, 0.672, 0.7, 0.746, 0.794, 0.863, 1.009),
    3: (0.615, 0.64, 0.684, 0.776, 0.82, 0.889, 0.957, 1.046, 1.211),
    4: (0.652, 0.69, 0.758, 0.887, 0.94, 1.023, 1.099, 1.195, 1.359),
    5: (0.693, 0.747, 0.838, 0.992, 1.05, 1.138, 1.218, 1.313, 1.47),
    6: (0.74, 0.808, 0.92, 1.087, 1.147, 1.236, 1.314, 1.406, 1.556),
    7: (0.789, 0.871, 0.998, 1.171, 1.23, 1.318, 1.394, 1.482, 1.625),
    8: (0.84, 0.934, 1.072, 1.244, 1.302, 1.387, 1.461, 1.545, 1.673),
    9: (0.891, 0.994, 1.139, 1.308, 1.364, 1.446, 1.517, 1.594, 1.712),
    11: (0.99, 1.107, 1.254, 1.408, 1.459, 1.534, 1.597, 1.667, 1.775),
    14: (1.125, 1.25, 1.376, 1.515, 1.561, 1.628, 1.683, 1.745, 1.837),
    19: (1.304, 1.407, 1.516, 1.633, 1.673, 1.729, 1.775, 1.825, 1.9),
}


def one_run_exponent(level, seed_df: int):
    """k of the one-run rule at `level` (arrays too), for `seed_df`: the table's row for the largest
    tabulated df at most seed_df (k grows with df: a smaller df's k is the safe side), interpolated in
    log level; at a level above 0.05 its k at 0.05 (the safe side again), below 1e-6 its k at 1e-6."""
    row = ONE_RUN_EXPONENTS[max(f for f in ONE_RUN_EXPONENTS if f <= seed_df)]
    return np.interp(np.log(level), np.log(ONE_RUN_LEVELS), row)


def one_run_critical(level, seed_df, image_df, share, exponent=None):
    """The critical value of |t| at two-sided `level` for A (seed_df = runs - 1 >= 2) against one
    run, where `share` is the seeds' estimated share of the variance (arrays broadcast); `exponent`:
    k, else the table's (one_run_exponent)."""
    k = one_run_exponent(level, seed_df) if exponent is None else exponent
    t_seed, t_image = stats.t.ppf(1 - level / 2, seed_df), stats.t.ppf(1 - level / 2, image_df)
    return t_image + (t_seed - t_image) * np.clip(share, 0.0, 1.0) ** k


def one_run_p_value(t, seed_df, image_df, share):
    """The level at which |t| meets one_run_critical: its two-sided p-value (bisection on the log
    of the level, arrays at once; the critical value falls as the level grows)."""
    t = np.abs(np.asarray(t, float))
    lo, hi = np.full(t.shape, math.log(1e-16)), np.zeros(t.shape)
    for _ in range(56):  # 37 units of log-level halved to below 1e-15
        mid = (lo + hi) / 2
        rejects = t > one_run_critical(np.exp(mid), seed_df, image_df, share)
        hi, lo = np.where(rejects, mid, hi), np.where(rejects, lo, mid)
    return np.exp(hi)


@dataclass(frozen=True)
class Estimate:
    """A score (mean over runs), or a difference of two sides' scores, with its variance by
    source. Fields may be arrays of one shape (the simulations' many replicates at once)."""

    value: np.ndarray | float
    seed_var: np.ndarray | float  # sum of s^2/n over the sides with two or more runs
    image_var: np.ndarray | float  # test-image component, interaction removed, >= 0
    df: np.ndarray | float  # Welch-Satterthwaite
    runs: tuple[int, ...]  # runs per side
    image_df: int = 0  # the test images' (or people's) units - 1

    @property
    def se(self):
        return np.sqrt(self.seed_var + self.image_var)

    @property
    def training_noise_counted(self) -> bool:
        return min(self.runs) >= 2

    @property
    def one_run(self) -> bool:
        """A difference against a side of one run: the one-run rule above, not Satterthwaite's t."""
        return len(self.runs) == 2 and min(self.runs) == 1 and max(self.runs) >= 2

    @property
    def seed_share(self):
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.se > 0, self.seed_var / self.se**2, 0.0)

    def critical(self, level: float):
        """The critical value of |t| at two-sided `level` (the interval's half-width over se)."""
        if not self.one_run:
            return stats.t.ppf(1 - level / 2, self.df)
        if max(self.runs) == 2:  # one seed df: the rule's size is not held (see above); the seeds' t
            return stats.t.ppf(1 - level / 2, 1)
        return one_run_critical(level, max(self.runs) - 1, self.image_df, self.seed_share)

    def p_value(self):
        """Two-sided, for a true value of 0 (a difference)."""
        se = self.se
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.abs(self.value) / se
            if self.one_run and max(self.runs) > 2:
                p = one_run_p_value(np.where(se > 0, t, 0.0), max(self.runs) - 1, self.image_df, self.seed_share)
            else:
                p = 2 * stats.t.sf(t, 1 if self.one_run else self.df)
        return np.where(se > 0, p, np.where(self.value == 0, 1.0, 0.0))

    def interval(self, confidence: float = CONFIDENCE) -> tuple:
        half = self.critical(1 - confidence) * self.se
        return self.value - half, self.value + half


def units_of(groups, n_images: int) -> np.ndarray:
    """Each test image's sampling unit as 0..G-1: its group (a person), or itself without groups."""
    if groups is None:
        return np.arange(n_images)
    if len(groups) != n_images:
        raise ValueError(f"{len(groups)} groups for {n_images} test images")
    units = np.unique(np.asarray(groups).astype(str), return_inverse=True)[1].ravel()
    if units.max() < 1:
        raise ValueError("every test image is in one group: no variance between groups to estimate")
    return units


def image_var(x: np.ndarray, units: np.ndarray) -> np.ndarray:
    """The variance of x.mean(-1) over draws of the test images' units (last axis: images):
    G/(G - 1) * sum over units of (the unit's summed deviations)^2 / N^2, which is
    x.var(ddof=1) / N when every image is its own unit (CR1, Cameron & Miller 2015)."""
    n, g = x.shape[-1], int(units.max()) + 1
    if g == n:
        return x.var(-1, ddof=1) / n
    sums = (x - x.mean(-1, keepdims=True)) @ np.eye(g)[units]  # (..., units)
    return g / (g - 1) * (sums**2).sum(-1) / n**2


def _estimate(value, per_run, within, between, image_total, n_units: int) -> Estimate:
    """Combine per-side pieces: per_run (..., n) scores of each side, within (W/N) and between
    (B/N) image variances of each side, image_total the image variance of the signed sum;
    n_units the test images' independent units (images, or groups of them)."""
    terms, image_var_ = [], image_total
    for scores, w, b in zip(per_run, within, between, strict=True):
        n = scores.shape[-1]
        if n >= 2:
            terms.append((scores.var(-1, ddof=1) / n, n - 1))
            image_var_ = image_var_ - (w - b) / (n - 1)
    image_var_ = np.maximum(image_var_, 0.0)
    terms.append((image_var_, n_units - 1))
    total = sum(v for v, _ in terms)
    with np.errstate(divide="ignore", invalid="ignore"):
        df = total**2 / sum(v**2 / d for v, d in terms)
    df = np.where(total > 0, df, n_units - 1)
    seed_var = sum(v for v, _ in terms[:-1]) if len(terms) > 1 else np.zeros_like(image_var_)
    return Estimate(value, seed_var, image_var_, df, tuple(s.shape[-1] for s in per_run), n_units - 1)


def accuracy_estimate(*correct, groups=None) -> Estimate:
    """Accuracy of one side, or A minus B for two: `correct` (..., runs, images) 0/1 arrays on
    the same images; leading axes are independent replicates (simulations). `groups`: each
    image's group (person), when photos come in groups."""
    sides = [np.asarray(c, float) for c in correct]
    sides = [c[..., None, :] if c.ndim == 1 else c for c in sides]
    signs = (1.0, -1.0)[: len(sides)]
    units = units_of(groups, sides[0].shape[-1])
    per_image = sum(sign * c.mean(-2) for sign, c in zip(signs, sides, strict=True))
    return _estimate(
        sum(sign * c.mean((-2, -1)) for sign, c in zip(signs, sides, strict=True)),
        [c.mean(-1) for c in sides],
        [image_var(c, units).mean(-1) for c in sides],
        [image_var(c.mean(-2), units) for c in sides],
        image_var(per_image, units),
        int(units.max()) + 1,
    )


def unpaired(a: Estimate, b: Estimate) -> tuple:
    """A minus B scored on different test images (two studies on two datasets): (the difference,
    its standard error, degrees of freedom), each side's seed and image variances added, as no image
    is shared; Satterthwaite's df over the four components (each side's seeds, n - 1; its images,
    units - 1). Arrays broadcast."""
    parts = [(e.seed_var, max(e.runs) - 1) for e in (a, b) if max(e.runs) >= 2]
    parts += [(e.image_var, e.image_df) for e in (a, b)]
    total = sum(v for v, _ in parts)
    with np.errstate(divide="ignore", invalid="ignore"):
        df = total**2 / sum(v**2 / max(f, 1) for v, f in parts)
    return a.value - b.value, np.sqrt(total), np.where(total > 0, df, 1.0)


def metric_estimate(
    metric: str, labels, *preds, n_classes: int, groups=None, n_boot: int = 2000, seed: int = 0
) -> Estimate:
    """`metric` of one side, or A minus B for two: `preds` (runs, images) on the same images.
    Accuracy exactly (accuracy_estimate); the others with bootstrap image variances, whole
    groups resampled when `groups` are given (multinomial unit counts weigh each image's
    confusion counts: one matrix product per side)."""
    labels = np.asarray(labels)
    sides = [np.atleast_2d(np.asarray(p)) for p in preds]
    if metric == "accuracy":
        return accuracy_estimate(*[(p == labels[None]).astype(float) for p in sides], groups=groups)
    score, signs = OF_CONFUSION[metric], (1.0, -1.0)[: len(sides)]
    units = units_of(groups, len(labels))
    g = int(units.max()) + 1
    weights = np.random.default_rng(seed).multinomial(g, np.full(g, 1 / g), n_boot)[:, units].astype(float)
    boot = []  # (runs, n_boot) per side
    for p in sides:
        each = confusion_counts(p[..., None], labels[:, None], n_classes)  # (runs, images, classes, classes + 1)
        boot.append(score((weights @ each.reshape(*each.shape[:2], -1)).reshape(len(p), n_boot, *each.shape[2:])))
    per_run = [METRICS[metric](p, labels[None], n_classes) for p in sides]
    return _estimate(
        sum(sign * r.mean() for sign, r in zip(signs, per_run, strict=True)),
        per_run,
        [b.var(-1, ddof=1).mean() for b in boot],
        [b.mean(0).var(ddof=1) for b in boot],
        sum(sign * b.mean(0) for sign, b in zip(signs, boot, strict=True)).var(ddof=1),
        g,
    )


def full_interval(
    metric: str, preds, labels, n_classes: int, confidence: float = CONFIDENCE, groups=None
) -> tuple[float, ...]:
    """(mean, lo, hi) of a configuration's `metric` over its runs: an interval for its expected
    score over training seeds on the population of test images (seed-and-image variance, t with
    Satterthwaite df; over groups of images when `groups` are given), never narrower than the
    seeds-only t interval, clipped to [0, 1]. One run: the test images' noise only (Wilson for
    accuracy on ungrouped images)."""
    preds = np.atleast_2d(np.asarray(preds))
    e = metric_estimate(metric, labels, preds, n_classes=n_classes, groups=groups)
    mean = float(e.value)
    if len(preds) == 1 and metric == "accuracy" and groups is None:
        return (mean, *accuracy_ci(mean * preds.shape[1], preds.shape[1], confidence))
    units = int(units_of(groups, preds.shape[1]).max()) + 1
    lo, hi = widest(e, confidence, wilson_images=units)
    return mean, float(lo), float(hi)


def widest(e: Estimate, confidence: float = CONFIDENCE, wilson_images: int | None = None) -> tuple:
    """The seed-and-image interval of `e`, its half-widths widened to the seeds-only t interval's
    where that is wider (fewer degrees of freedom), and each end moved out to where the same
    half-widths laid on the logit scale put it (divided by p(1 - p), the delta method's slope, and
    mapped back): a score near 1 has seeds that fall further below it than they rise above it, and an
    interval that leans away from the bound covers its expected value (study.bench.calibration's
    cells at accuracy 0.9); arrays in, arrays out. For a score on `wilson_images` independent units
    (images, or people) whose runs show no variation at all (every run right, or wrong, on every
    image alike: a point interval), Wilson's interval on one test set instead, whichever the score:
    accuracy and balanced accuracy are then one number, and get one interval."""
    half = e.critical(1 - confidence) * e.se
    if e.training_noise_counted:
        n = e.runs[0]
        half = np.maximum(half, stats.t.ppf((1 + confidence) / 2, n - 1) * np.sqrt(e.seed_var))
    units = e.image_df + 1
    p = np.clip(e.value, 0.5 / units, 1 - 0.5 / units)
    centre, slope = np.log(p / (1 - p)), p * (1 - p)
    lo = np.minimum(e.value - half, special.expit(centre - half / slope))
    hi = np.maximum(e.value + half, special.expit(centre + half / slope))
    if wilson_images:
        w_lo, w_hi = accuracy_ci(e.value * wilson_images, wilson_images, confidence)
        lo, hi = np.where(e.se > 0, lo, w_lo), np.where(e.se > 0, hi, w_hi)
    return np.clip(lo, 0.0, 1.0), np.clip(hi, 0.0, 1.0)


@dataclass(frozen=True)
class Comparison:
    """A minus B on one metric by the seed-and-image t-test."""

    metric: str
    diff: float
    lo: float
    hi: float
    p: float
    df: float
    runs: tuple[int, int]
    se: float
    seed_share: float = 0.0  # of the variance: the one-run rule's c
    image_df: int = 0
    deterministic: tuple[bool, bool] = (False, False)  # a side of one run that has no training noise at all

    def critical(self, level: float = 1 - CONFIDENCE) -> float:
        """The test's critical value of |t| at two-sided `level` (Estimate.critical)."""
        seed_var = self.seed_share * self.se**2
        e = Estimate(self.diff, seed_var, self.se**2 - seed_var, self.df, self.runs, self.image_df)
        return float(e.critical(level))

    def interval(self, level: float = 1 - CONFIDENCE) -> tuple[float, float]:
        """The (1 - level) interval of the difference (the critical value of the test: it excludes 0
        iff p < level), within [-1, 1]: a difference of two scores in [0, 1] can be no larger
        (clipping moves no end across 0, so the interval still excludes 0 exactly when the test rejects)."""
        half = self.critical(level) * self.se
        return max(-1.0, self.diff - half), min(1.0, self.diff + half)

    def detectable(self, level: float = 1 - CONFIDENCE, power: float = POWER) -> float:
        """The smallest true difference this two-sided t-test finds with `power` at `level`, were
        its variance what it estimated (se, df): delta with P(|T| > t(1 - level/2)) = power for T
        noncentral t with the test's df and noncentrality delta / se (Cohen 1988, ch. 2). NaN where
        the comparison measured no variance at all (nothing to size a difference against); inf where
        no difference a score can show (100 points) would be found with that power."""
        if not self.se > 0:
            return math.nan
        crit = self.critical(level)

        def shortfall(delta: float) -> float:
            nc = delta / self.se
            wrong_side = np.nan_to_num(stats.nct.cdf(-crit, self.df, nc))  # scipy: NaN far in the tail, ~0
            return stats.nct.sf(crit, self.df, nc) + wrong_side - power

        if shortfall(1.0) < 0:
            return math.inf
        return float(optimize.brentq(shortfall, 0.0, 1.0))

    def detectable_text(self, level: float = 1 - CONFIDENCE) -> str:
        """The detectable difference in points, or why there is none: a number that can exist."""
        found = self.detectable(level)
        if math.isnan(found):
            return "none measurable (zero variance)"
        return "over 100 (none a score can show)" if math.isinf(found) else f"{100 * found:.1f}"

    @property
    def no_variance(self) -> str:
        """'' unless the comparison measured no variance: then what that means, for the report."""
        if self.se > 0:
            return ""
        return (
            "zero variance: every run of each side gave the same answer on every test image, so these images "
            "measure no noise to test against; the difference is exact on them, not a claim about other images"
        )

    @property
    def caveat(self) -> str:
        """'' when both sides' training noise is counted; else what the p-value leaves out."""
        unmeasured = [s for s, n, fixed in zip("AB", self.runs, self.deterministic, strict=True) if n < 2 and not fixed]
        if not unmeasured:
            return ""
        return f"test-set noise only: training noise of {' and '.join(unmeasured)} unmeasured (one run)"

    def plan(self, diff: float, n_images: int, level: float = 1 - CONFIDENCE, power: float = POWER):
        """(seeds, test images) A would need for this comparison to find a true difference of `diff`
        with `power` at `level`, from its own measured variances (A's per-seed variance, the images'):
        the fewest seeds (up to 100) on these images, else None and the test images that would do with
        as many seeds as one likes; the test's own critical value, the power by the normal
        approximation. (None, None) where nothing was measured (zero variance)."""
        if not self.se > 0 or self.runs[0] < 2:
            return None, None
        per_seed, images = self.seed_share * self.se**2 * self.runs[0], (1 - self.seed_share) * self.se**2
        shortfall = stats.norm.ppf(power)
        for n in range(2, 101):
            se = math.sqrt(per_seed / n + images)
            runs = (n, self.runs[1])
            trial = Comparison(self.metric, diff, 0, 0, 1, self.df, runs, se, per_seed / n / se**2, self.image_df)
            if diff / se >= trial.critical(level) + shortfall:
                return n, None
        floor = diff / (stats.t.ppf(1 - level / 2, self.image_df) + shortfall)  # the images' se that would do
        return None, math.ceil(n_images * images / floor**2)

    def sentence(self, a: str, b: str, n_images: int, p_adjusted: float, comparisons: int, level: float) -> str:
        """One sentence for the report; the verdict uses the Holm-adjusted p, the interval and the
        detectable difference Holm's level for this comparison (holm_levels)."""
        direction = "better" if self.diff > 0 else "worse"
        where = f"{abs(self.diff) * 100:.1f} points {direction} on {self.metric}"
        lo, hi = self.interval(level)
        detail = (
            f"{100 * (1 - level):.4g}% CI {lo * 100:+.1f} to {hi * 100:+.1f} (Holm's level), {format_p(self.p)}, "
            f"Holm-adjusted {format_p(p_adjusted)} over {comparisons} comparisons"
        )
        if self.no_variance:
            return f"{a} is {where} than {b} on these {n_images} test images ({self.no_variance})."
        if p_adjusted >= 0.05:
            found = self.detectable(level)
            missed = (
                f"a true difference under {100 * found:.1f} points would be missed more than 1 time in 5"
                if math.isfinite(found)
                else "no difference a score can show (100 points) would be found 4 times in 5"
            )
            return f"{a} is {where} than {b} ({detail}): not distinguishable from noise; {missed} (80% power)."
        if self.caveat:
            return (
                f"{a} is {where} than {b} ({detail}): beyond the noise of these {n_images} test images ({self.caveat})."
            )
        return f"{a} is {where} than {b} ({detail}): a real difference, counting seed and test-image noise."


def compare(
    metric: str,
    preds_a,
    preds_b,
    labels,
    n_classes: int,
    confidence: float = CONFIDENCE,
    groups=None,
    deterministic: tuple[bool, bool] = (False, False),
) -> Comparison:
    """A minus B (each averaged over its runs) on the same test images: the seed-and-image t-test
    (over groups of images when `groups` are given). `deterministic`: a side of one run that has no
    training noise (HOG+SVM), said so instead of 'unmeasured'."""
    e = metric_estimate(metric, labels, preds_a, preds_b, n_classes=n_classes, groups=groups)
    lo, hi = np.clip(e.interval(confidence), -1.0, 1.0)
    return Comparison(
        metric,
        float(e.value),
        float(lo),
        float(hi),
        float(e.p_value()),
        float(e.df),
        e.runs,
        float(e.se),
        float(e.seed_share),
        e.image_df,
        deterministic,
    )
