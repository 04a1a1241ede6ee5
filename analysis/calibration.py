"""The report's verdicts checked on simulated studies whose answer is known.

    python -m analysis.calibration [--reps 4000] [--seed 0]

Each simulated study has two configurations A and B evaluated on one shared test set: image
j has a probability q_j of being classified right (Beta(1.4, 0.6): mean 0.70, many easy
images and some hard ones), the same for both configurations; each training seed shifts
that probability by a draw of N(0, sigma) (clipped to [0, 1]); B adds a true difference
(0 for the false-positive rate). Each run's 0/1 answers are Bernoulli draws. It prints, for
every cell of the grid (seeds per side x seed sigma x test images):

- the false-positive rate at alpha = 0.05 of the seed-and-image t-test (analysis.stats), and
  of the method the report used before it (a paired bootstrap over test images of the
  seed-averaged correctness, in its normal approximation), at a true difference of 0;
- the coverage of A's full 95% interval (stats.widest, as stats.full_interval builds it) of
  its expected accuracy over seeds on the population of images;
- the t-test's power at true differences of 3, 5 and 10 points.
"""

from __future__ import annotations

import argparse
import math
import sys

import numpy as np
from scipy import special, stats

from analysis.stats import accuracy_estimate, widest

ALPHA = 0.05
SEEDS = (2, 3, 5, 10)
SIGMAS = (0, 2, 5, 10)  # seed-to-seed sd of a run's accuracy shift, in points
IMAGES = (120, 1000)
POWER_DIFFS = (3, 5, 10)  # true differences, in points
DIFFICULTY = (1.4, 0.6)  # Beta parameters of the per-image probability of being right
CHUNK = 250  # replicates simulated at once (memory: CHUNK x seeds x images per side)


def margin(reps: int, rate: float = ALPHA) -> float:
    """Three Monte-Carlo standard errors of a rate near `rate` estimated from `reps` replicates."""
    return 3 * math.sqrt(rate * (1 - rate) / reps)


def simulate(rng, reps: int, seeds: int, sigma: float, n_images: int, diff: float = 0.0):
    """(correct A, correct B), each (reps, seeds, images) 0/1: B's true accuracy is A's + diff."""
    q = rng.beta(*DIFFICULTY, size=(reps, 1, n_images))
    runs = []
    for shift in (0.0, diff):
        p = np.clip(q + shift + rng.normal(0, sigma, (reps, seeds, 1)), 0, 1)
        runs.append((rng.random((reps, seeds, n_images)) < p).astype(float))
    return runs[0], runs[1]


def expected_accuracy(sigma: float, draws: int = 1_000_000) -> float:
    """E over images and seeds of clip(q + N(0, sigma), 0, 1): the target of A's interval.
    For normal X ~ N(q, s^2), E clip(X, 0, 1) = q (Phi(b) - Phi(a)) + s (phi(a) - phi(b)) + 1 - Phi(b)
    with a = -q/s, b = (1 - q)/s; averaged over a large fixed sample of q."""
    q = np.random.default_rng(12345).beta(*DIFFICULTY, draws)
    if sigma == 0:
        return float(q.mean())
    a, b = -q / sigma, (1 - q) / sigma
    phi = lambda x: np.exp(-x * x / 2) / math.sqrt(2 * math.pi)  # noqa: E731
    value = q * (special.ndtr(b) - special.ndtr(a)) + sigma * (phi(a) - phi(b)) + 1 - special.ndtr(b)
    return float(value.mean())


def image_bootstrap_p(correct_a: np.ndarray, correct_b: np.ndarray) -> np.ndarray:
    """The pre-calibration method: each image's correctness averaged over the seeds, A minus B,
    and the paired bootstrap over images of its mean, here in its normal approximation
    (bootstrap sd = the per-image differences' sd (ddof 0) / sqrt(images))."""
    d = correct_a.mean(-2) - correct_b.mean(-2)
    se = d.std(-1) / math.sqrt(d.shape[-1])
    with np.errstate(divide="ignore", invalid="ignore"):
        p = 2 * stats.norm.sf(np.abs(d.mean(-1)) / se)
    return np.where(se > 0, p, np.where(d.mean(-1) == 0, 1.0, 0.0))


def cell(rng, reps: int, seeds: int, sigma: float, n_images: int, diff: float = 0.0) -> dict[str, float]:
    """Rejections at ALPHA (the t-test and the old method) and A's interval coverage."""
    target = expected_accuracy(sigma / 100)
    rejected = old = covered = 0
    for start in range(0, reps, CHUNK):
        a, b = simulate(rng, min(CHUNK, reps - start), seeds, sigma / 100, n_images, diff / 100)
        rejected += int((accuracy_estimate(a, b).p_value() < ALPHA).sum())
        old += int((image_bootstrap_p(a, b) < ALPHA).sum())
        lo, hi = widest(accuracy_estimate(a), wilson_images=n_images)
        covered += int(((lo <= target) & (target <= hi)).sum())
    return {"rejected": rejected / reps, "old rejected": old / reps, "coverage": covered / reps}


def table(reps: int, seed: int = 0, power_reps: int | None = None) -> list[dict[str, float]]:
    """One row per grid cell: false-positive rates (new, old), coverage, power at POWER_DIFFS."""
    rng = np.random.default_rng(seed)
    rows = []
    for n_images in IMAGES:
        for seeds in SEEDS:
            for sigma in SIGMAS:
                null = cell(rng, reps, seeds, sigma, n_images)
                row = {
                    "images": n_images,
                    "seeds": seeds,
                    "sigma": sigma,
                    "fpr": null["rejected"],
                    "old fpr": null["old rejected"],
                    "coverage": null["coverage"],
                }
                for diff in POWER_DIFFS:
                    row[f"power {diff}"] = cell(rng, power_reps or reps, seeds, sigma, n_images, diff)["rejected"]
                rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m analysis.calibration", description=__doc__.split("\n")[0])
    p.add_argument("--reps", type=int, default=4000, help="simulated studies per cell (default 4000)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.reps < 100:
        print(f"error: --reps {args.reps}; expected at least 100", file=sys.stderr)
        return 2
    print(
        f"Seed-and-image t-test vs the old image-only bootstrap, {args.reps} simulated studies per cell; "
        f"alpha {ALPHA}; Monte-Carlo margin (3 se) {margin(args.reps):.3f} on a rate of {ALPHA}.\n"
        "Two configurations, one shared test set, per-image difficulty shared; sigma: seed-to-seed sd of a "
        "run's accuracy shift (points). fpr: share called different at a true difference of 0. coverage: "
        "A's full 95% interval holding its expected accuracy. power d: share called different at d points.\n"
    )
    columns = ["images", "seeds", "sigma", "fpr", "old fpr", "coverage", *(f"power {d}" for d in POWER_DIFFS)]
    print("| " + " | ".join(columns) + " |\n|" + "---|" * len(columns))
    for row in table(args.reps, args.seed):
        print("| " + " | ".join(f"{row[c]:.3f}" if isinstance(row[c], float) else str(row[c]) for c in columns) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
