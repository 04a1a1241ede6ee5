"""Statistics over trials, as pure functions on arrays.

Convention: `correct` arrays are 0/1 per test image, shape (images,) for one
run or (seeds, images) for several seeds of one configuration, images in the
same order for every model compared.
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


def accuracy_ci(correct: int, total: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Wilson score interval of one run's accuracy (how wide a single test set's noise is)."""
    z = stats.norm.ppf((1 + confidence) / 2)
    p = correct / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return centre - half, centre + half


@dataclass(frozen=True)
class PairedTest:
    diff: float  # accuracy of A minus B, averaged over seeds
    lo: float  # bootstrap confidence interval of diff
    hi: float
    p_bootstrap: float  # two-sided, paired bootstrap over test images
    only_a: int  # McNemar's discordant counts on the first seeds' predictions
    only_b: int
    p_mcnemar: float  # exact (binomial) McNemar test

    @property
    def distinguishable(self) -> bool:
        return self.lo > 0 or self.hi < 0

    def sentence(self, a: str, b: str, n_images: int) -> str:
        direction = "better" if self.diff > 0 else "worse"
        where = f"{abs(self.diff) * 100:.1f} points {direction}"
        ci = f"95% CI {self.lo * 100:+.1f} to {self.hi * 100:+.1f}"
        p = format_p(self.p_bootstrap)
        if self.distinguishable:
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


def paired_bootstrap(correct_a, correct_b, *, n_boot: int = 10_000, seed: int = 0,
                     confidence: float = CONFIDENCE) -> tuple[float, float, float, float]:  # fmt: skip
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


def compare(correct_a, correct_b, **kwargs) -> PairedTest:
    diff, lo, hi, p = paired_bootstrap(correct_a, correct_b, **kwargs)
    first_a = np.atleast_2d(correct_a)[0]
    first_b = np.atleast_2d(correct_b)[0]
    return PairedTest(diff, lo, hi, p, *mcnemar_exact(first_a, first_b))
