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
from scipy import optimize, stats

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
    "al. 2021). Its false-positive rate and its intervals' coverage are checked by simulation "
    "(tests/test_calibration.py, python -m study.bench.calibration)."
)


@dataclass(frozen=True)
class Estimate:
    """A score (mean over runs), or a difference of two sides' scores, with its variance by
    source. Fields may be arrays of one shape (the simulations' many replicates at once)."""

    value: np.ndarray | float
    seed_var: np.ndarray | float  # sum of s^2/n over the sides with two or more runs
    image_var: np.ndarray | float  # test-image component, interaction removed, >= 0
    df: np.ndarray | float  # Welch-Satterthwaite
    runs: tuple[int, ...]  # runs per side

    @property
    def se(self):
        return np.sqrt(self.seed_var + self.image_var)

    @property
    def training_noise_counted(self) -> bool:
        return min(self.runs) >= 2

    def p_value(self):
        """Two-sided, for a true value of 0 (a difference)."""
        se = self.se
        with np.errstate(divide="ignore", invalid="ignore"):
            p = 2 * stats.t.sf(np.abs(self.value) / se, self.df)
        return np.where(se > 0, p, np.where(self.value == 0, 1.0, 0.0))

    def interval(self, confidence: float = CONFIDENCE) -> tuple:
        half = stats.t.ppf((1 + confidence) / 2, self.df) * self.se
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
    runs = [s.shape[-1] for s in per_run]
    if len(runs) == 2 and min(runs) == 1 and max(runs) >= 2:
        # One side a single (e.g. deterministic) run: the test rests on the other side's few seed
        # scores, skewed near a ceiling, and Satterthwaite's df lets a run of good seeds through
        # (false-positive rate 0.08-0.10 at 3 seeds, sigma 10 points); the seeds' own n - 1 df
        # hold it (study.bench.calibration's one-run cells).
        df = np.minimum(df, max(runs) - 1)
    seed_var = sum(v for v, _ in terms[:-1]) if len(terms) > 1 else np.zeros_like(image_var_)
    return Estimate(value, seed_var, image_var_, df, tuple(s.shape[-1] for s in per_run))


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
    """The seed-and-image interval of `e`, widened to the seeds-only t interval where that is
    wider (fewer degrees of freedom), clipped to [0, 1]; arrays in, arrays out. For a score on
    `wilson_images` independent units (images, or people) whose runs show no variation at all
    (every run right, or wrong, on every image alike: a point interval), Wilson's interval on one
    test set instead, whichever the score: accuracy and balanced accuracy are then one number,
    and get one interval."""
    lo, hi = e.interval(confidence)
    if e.training_noise_counted:
        n = e.runs[0]
        half = stats.t.ppf((1 + confidence) / 2, n - 1) * np.sqrt(e.seed_var)
        lo, hi = np.minimum(lo, e.value - half), np.maximum(hi, e.value + half)
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

    def interval(self, level: float = 1 - CONFIDENCE) -> tuple[float, float]:
        """The (1 - level) interval of the difference (the t of the test: it excludes 0 iff p < level),
        within [-1, 1]: a difference of two scores in [0, 1] can be no larger (clipping moves no end
        across 0, so the interval still excludes 0 exactly when the test rejects)."""
        half = stats.t.ppf(1 - level / 2, self.df) * self.se
        return max(-1.0, self.diff - half), min(1.0, self.diff + half)

    def detectable(self, level: float = 1 - CONFIDENCE, power: float = POWER) -> float:
        """The smallest true difference this two-sided t-test finds with `power` at `level`, were
        its variance what it estimated (se, df): delta with P(|T| > t(1 - level/2)) = power for T
        noncentral t with the test's df and noncentrality delta / se (Cohen 1988, ch. 2). NaN where
        the comparison measured no variance at all (nothing to size a difference against); inf where
        no difference a score can show (100 points) would be found with that power."""
        if not self.se > 0:
            return math.nan
        crit = stats.t.ppf(1 - level / 2, self.df)

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
        if min(self.runs) >= 2:
            return ""
        sides = " and ".join(s for s, n in zip(("A", "B"), self.runs, strict=True) if n < 2)
        return f"test-set noise only: training noise of {sides} unmeasured (one run)"

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
    metric: str, preds_a, preds_b, labels, n_classes: int, confidence: float = CONFIDENCE, groups=None
) -> Comparison:
    """A minus B (each averaged over its runs) on the same test images: the seed-and-image t-test
    (over groups of images when `groups` are given)."""
    e = metric_estimate(metric, labels, preds_a, preds_b, n_classes=n_classes, groups=groups)
    lo, hi = np.clip(e.interval(confidence), -1.0, 1.0)
    return Comparison(
        metric, float(e.value), float(lo), float(hi), float(e.p_value()), float(e.df), e.runs, float(e.se)
    )
