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
from scipy import stats

CONFIDENCE = 0.95


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
    p = correct / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return centre - half, centre + half


def full_accuracy_ci(
    correct, *, n_boot: int = 10_000, seed: int = 0, confidence: float = CONFIDENCE
) -> tuple[float, float, float]:
    """Mean accuracy and an interval that counts both sources of noise: which seeds were
    drawn and which test images. One run (1 x images): Wilson over the images. Several
    seeds: a two-level bootstrap, resampling seeds, then images (the same images for every
    drawn seed, since they are one test set), never narrower than Wilson at the mean."""
    x = np.atleast_2d(np.asarray(correct, float))
    mean = float(x.mean())
    if len(x) == 1:
        return (mean, *accuracy_ci(x.sum(), x.shape[1], confidence))
    rng = np.random.default_rng(seed)
    boot = np.empty(n_boot)
    for start in range(0, n_boot, 500):  # chunks keep memory at 500 x images
        n = min(500, n_boot - start)
        seeds = rng.integers(0, len(x), (n, len(x)))
        per_image = x[seeds].mean(1)  # n x images: each draw's seeds averaged per image
        images = rng.integers(0, x.shape[1], (n, x.shape[1]))
        boot[start : start + n] = np.take_along_axis(per_image, images, 1).mean(1)
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(boot, [alpha, 1 - alpha])
    # Never narrower than Wilson on one test set at the mean accuracy: seeds add no test
    # images, and the percentile bootstrap collapses near 0 or 1 (all right: [1, 1]).
    w_lo, w_hi = accuracy_ci(mean * x.shape[1], x.shape[1], confidence)
    return mean, float(min(lo, w_lo)), float(max(hi, w_hi))


def class_counts(preds: np.ndarray, labels: np.ndarray, n_classes: int) -> tuple[np.ndarray, ...]:
    """(true positives, false positives, false negatives) per class, shape (..., classes), of
    predictions (..., images) against labels broadcastable to them: one bincount of
    (row, label, prediction) gives every row's confusion matrix."""
    preds = np.asarray(preds)
    labels = np.broadcast_to(labels, preds.shape)
    rows = np.arange(int(np.prod(preds.shape[:-1]))).reshape(*preds.shape[:-1], 1)
    keys = (rows * n_classes + labels) * n_classes + preds
    confusion = np.bincount(keys.ravel(), minlength=rows.size * n_classes * n_classes)
    confusion = confusion.reshape(*preds.shape[:-1], n_classes, n_classes)  # [..., true, predicted]
    tp = np.diagonal(confusion, axis1=-2, axis2=-1)
    return tp, confusion.sum(-2) - tp, confusion.sum(-1) - tp


def recall_per_class(preds, labels, n_classes: int) -> np.ndarray:
    """Recall of each class (..., classes); NaN for a class with no image."""
    tp, _, fn = class_counts(np.asarray(preds), np.asarray(labels), n_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        return tp / (tp + fn)


def _mean_over_classes(values: np.ndarray, present: np.ndarray) -> np.ndarray:
    return np.where(present, values, 0).sum(-1) / np.maximum(present.sum(-1), 1)


def balanced_accuracy(preds, labels, n_classes: int) -> np.ndarray:
    """Mean per-class recall over the classes that have images (sklearn's balanced accuracy)."""
    tp, _, fn = class_counts(np.asarray(preds), np.asarray(labels), n_classes)
    support = tp + fn
    return _mean_over_classes(tp / np.maximum(support, 1), support > 0)


def macro_f1(preds, labels, n_classes: int) -> np.ndarray:
    """Unweighted mean of per-class F1 over the classes that have images or predictions
    (sklearn's macro-F1 with zero_division=0 when every class has images)."""
    tp, fp, fn = class_counts(np.asarray(preds), np.asarray(labels), n_classes)
    seen = 2 * tp + fp + fn
    return _mean_over_classes(2 * tp / np.maximum(seen, 1), seen > 0)


def accuracy(preds, labels, n_classes: int) -> np.ndarray:
    return (np.asarray(preds) == np.asarray(labels)).mean(-1)


# name in the report -> f(preds (..., images), labels, classes) -> (...)
METRICS = {"accuracy": accuracy, "balanced accuracy": balanced_accuracy, "macro-F1": macro_f1}


def _resampled(preds: np.ndarray, labels: np.ndarray, metric: str, images: np.ndarray, n_classes: int) -> np.ndarray:
    """The metric of every run (rows of preds) on each resample of images: (runs, resamples)."""
    return METRICS[metric](preds[:, images], labels[images][None], n_classes)


def full_metric_ci(
    preds, labels, metric: str, n_classes: int, *, n_boot: int = 10_000, seed: int = 0, confidence: float = CONFIDENCE
) -> tuple[float, float, float]:
    """Mean of `metric` over runs and its full interval, like full_accuracy_ci: resampling
    seeds, then test images (one run: images only; percentile bootstrap, as a balanced score
    has no Wilson interval). For 'accuracy' it is full_accuracy_ci itself."""
    x = np.atleast_2d(np.asarray(preds))
    labels = np.asarray(labels)
    if metric == "accuracy":
        return full_accuracy_ci((x == labels[None]).astype(float), n_boot=n_boot, seed=seed, confidence=confidence)
    mean = float(METRICS[metric](x, labels[None], n_classes).mean())
    rng = np.random.default_rng(seed)
    boot = np.empty(n_boot)
    for start in range(0, n_boot, 500):
        n = min(500, n_boot - start)
        images = rng.integers(0, x.shape[1], (n, x.shape[1]))
        values = _resampled(x, labels, metric, images, n_classes)  # runs x n
        seeds = rng.integers(0, len(x), (n, len(x)))
        boot[start : start + n] = values[seeds, np.arange(n)[:, None]].mean(1)
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(boot, [alpha, 1 - alpha])
    return mean, float(lo), float(hi)


def paired_metric_bootstrap(
    preds_a, preds_b, labels, metric: str, n_classes: int, *, n_boot: int = 10_000, seed: int = 0,
    confidence: float = CONFIDENCE,
) -> tuple[float, float, float, float]:  # fmt: skip
    """`metric` of A minus B (each averaged over its runs), resampling test images with both
    sides paired; (diff, lo, hi, two-sided p). For 'accuracy' it is paired_bootstrap."""
    a, b = np.atleast_2d(np.asarray(preds_a)), np.atleast_2d(np.asarray(preds_b))
    labels = np.asarray(labels)
    if metric == "accuracy":
        return paired_bootstrap(a == labels[None], b == labels[None], n_boot=n_boot, seed=seed, confidence=confidence)
    score = METRICS[metric]
    diff = float(score(a, labels[None], n_classes).mean() - score(b, labels[None], n_classes).mean())
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(labels), (n_boot, len(labels)))
    boot = np.concatenate(
        [
            _resampled(a, labels, metric, idx[i : i + 500], n_classes).mean(0)
            - _resampled(b, labels, metric, idx[i : i + 500], n_classes).mean(0)
            for i in range(0, n_boot, 500)
        ]
    )
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(boot, [alpha, 1 - alpha])
    p = min(1.0, 2 * min((boot <= 0).mean(), (boot >= 0).mean()))
    return diff, float(lo), float(hi), float(p)


def holm(pvalues) -> list[float]:
    """Holm-Bonferroni adjusted p-values (family-wise error over all the comparisons given)."""
    p = np.asarray(pvalues, float)
    adjusted = np.empty(len(p))
    running = 0.0
    for rank, i in enumerate(np.argsort(p)):
        running = max(running, min(1.0, (len(p) - rank) * p[i]))
        adjusted[i] = running
    return adjusted.tolist()


@dataclass(frozen=True)
class PairedTest:
    diff: float  # accuracy of A minus B, averaged over seeds
    lo: float  # bootstrap confidence interval of diff
    hi: float
    p_bootstrap: float  # two-sided, paired bootstrap over test images
    only_a: int  # McNemar's discordant counts, one run of each (see mcnemar_seeds)
    only_b: int
    p_mcnemar: float  # exact (binomial) McNemar test
    mcnemar_seeds: str = "first"  # which run of each side McNemar compared, e.g. "seed 0 / seed 0"

    @property
    def distinguishable(self) -> bool:
        return self.lo > 0 or self.hi < 0

    def sentence(self, a: str, b: str, n_images: int, p_adjusted: float | None = None, comparisons: int = 1) -> str:
        """One sentence for the report; with `p_adjusted` (Holm over `comparisons`) the verdict uses it."""
        direction = "better" if self.diff > 0 else "worse"
        where = f"{abs(self.diff) * 100:.1f} points {direction}"
        ci = f"95% CI {self.lo * 100:+.1f} to {self.hi * 100:+.1f}"
        p = format_p(self.p_bootstrap)
        if p_adjusted is not None:
            p += f", Holm-adjusted p = {p_adjusted:.3f} over {comparisons} comparison(s)"
            real = p_adjusted < 0.05
        else:
            real = self.distinguishable
        if real:
            return f"{a} is {where} than {b} ({ci}, {p}): a real difference on these {n_images} test images."
        return f"{a} is {where} than {b} ({ci}, {p}): not distinguishable from noise with {n_images} test images."


def format_p(p: float, n_boot: int = 10_000) -> str:
    """A bootstrap p of 0 only means 'below the resolution of n_boot resamples'."""
    return f"p < {2 / n_boot:g}" if p == 0 else f"p = {p:.3f}"


def mcnemar_exact(correct_a, correct_b) -> tuple[int, int, float]:
    """Exact McNemar test of two classifiers on the same images: (only A right, only B right, p)."""
    a, b = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    if only_a + only_b == 0:
        return only_a, only_b, 1.0
    return only_a, only_b, float(stats.binomtest(only_a, only_a + only_b, 0.5).pvalue)


def paired_bootstrap(
    correct_a, correct_b, *, n_boot: int = 10_000, seed: int = 0, confidence: float = CONFIDENCE
) -> tuple[float, float, float, float]:
    """Difference in accuracy (A - B), resampling test images with both models paired.

    Each image's correctness is first averaged over the seeds of each model, so
    seeds reduce training noise and images carry the test-set noise.
    Returns (diff, lo, hi, two-sided p).
    """
    a = np.atleast_2d(np.asarray(correct_a, float)).mean(0)
    b = np.atleast_2d(np.asarray(correct_b, float)).mean(0)
    per_image = a - b
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(per_image), (n_boot, len(per_image)))
    boot = per_image[idx].mean(1)
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(boot, [alpha, 1 - alpha])
    p = min(1.0, 2 * min((boot <= 0).mean(), (boot >= 0).mean()))
    return float(per_image.mean()), float(lo), float(hi), float(p)


def compare(correct_a, correct_b, seeds_a=None, seeds_b=None, **kwargs) -> PairedTest:
    """Paired bootstrap over images (seeds averaged per image), and McNemar on one run of
    each side with the same seed number: seed 0 where both have it, else the lowest
    common seed, else each side's first run. `seeds_*` name the rows of `correct_*`
    (None: a model without seeds, e.g. an SVM)."""
    diff, lo, hi, p = paired_bootstrap(correct_a, correct_b, **kwargs)
    a, b = np.atleast_2d(correct_a), np.atleast_2d(correct_b)
    seeds_a = list(seeds_a) if seeds_a is not None else [None] * len(a)
    seeds_b = list(seeds_b) if seeds_b is not None else [None] * len(b)
    common = sorted(set(seeds_a) & set(seeds_b) - {None})
    ia, ib = (seeds_a.index(common[0]), seeds_b.index(common[0])) if common else (0, 0)
    name = lambda s: "one run" if s is None else f"seed {s}"  # noqa: E731
    return PairedTest(diff, lo, hi, p, *mcnemar_exact(a[ia], b[ib]), f"{name(seeds_a[ia])} / {name(seeds_b[ib])}")
