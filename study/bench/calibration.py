"""The report's verdicts checked on simulated studies whose answer is known.

    python -m study.bench.calibration [--reps 4000] [--seed 0]

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

Then the claims a user quotes from a study, each beside the method the report used before:

- the best of 7 or 216 identical configurations (picked on validation images) against a
  configuration chosen in advance: tested on the seeds that picked it, and on a confirmation
  stage's fresh seeds (--confirm-top);
- grouped test sets (subjects x photos, a share of each image's difficulty common to its
  subject, and configurations that disagree on 30% of it): photos counted as independent,
  and people as the unit (the cluster-robust variance); false-positive rate and coverage;
- one run as B (a deterministic baseline such as HOG+SVM) at mean accuracy 0.7 and 0.9:
  Satterthwaite's df, and the seeds' own n - 1.
"""

from __future__ import annotations

import argparse
import math
import sys

import numpy as np
from scipy import special, stats

from analysis.stats import Estimate, accuracy_estimate, widest

ALPHA = 0.05
SEEDS = (2, 3, 5, 10)
SIGMAS = (0, 2, 5, 10)  # seed-to-seed sd of a run's accuracy shift, in points
IMAGES = (120, 1000)
POWER_DIFFS = (3, 5, 10)  # true differences, in points
DIFFICULTY = (1.4, 0.6)  # Beta parameters of the per-image probability of being right
CHUNK = 250  # replicates simulated at once (memory: CHUNK x seeds x images per side)
SELECTION = {"configs": (7, 216), "sigma": (0, 5, 10), "seeds": 3, "images": 120}
GROUPED = {"sizes": ((8, 8), (17, 12), (82, 12)), "shared": (0.0, 0.3, 0.6), "seeds": 3, "sigma": 5}
DISAGREE = 0.3  # grouped cells: the share of an image's difficulty that differs between configurations
ONE_RUN = {"accuracy": (0.7, 0.9), "seeds": (3, 5), "sigma": (0, 5, 10), "images": 120}
_GRID = np.linspace(0, 1, 4097)
_BETA_QUANTILE = special.betaincinv(*DIFFICULTY, _GRID)  # Beta(1.4, 0.6) by interpolation: exact calls are slow


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


def runs(rng, q, seeds: int, sigma: float, shift=None):
    """0/1 answers (..., seeds, images) of `seeds` runs whose chance on image j is
    clip(q_j + the seed's N(0, sigma) shift, 0, 1); `shift` given: those seed shifts."""
    if shift is None:
        shift = rng.normal(0, sigma, (*q.shape[:-2], seeds, 1))
    return (rng.random((*q.shape[:-2], seeds, q.shape[-1])) < np.clip(q + shift, 0, 1)).astype(float)


def rejects(e: Estimate) -> np.ndarray:
    return e.p_value() < ALPHA


def satterthwaite_rejects(e: Estimate, n_images: int) -> np.ndarray:
    """The test before one-run sides kept their seeds' df: Satterthwaite's df throughout."""
    n = max(e.runs)
    with np.errstate(divide="ignore", invalid="ignore"):
        df = (e.seed_var + e.image_var) ** 2 / (e.seed_var**2 / (n - 1) + e.image_var**2 / (n_images - 1))
        return 2 * stats.t.sf(np.abs(e.value) / e.se, np.where(np.isfinite(df), df, n_images - 1)) < ALPHA


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


def grouped_difficulty(rng, reps: int, subjects: int, photos: int, shared: float) -> tuple[np.ndarray, ...]:
    """Per-image chances (reps, 1, images) of configurations A and B, each marginally
    Beta(1.4, 0.6): a Gaussian copula whose latent is `shared` subject and 1 - `shared` photo,
    and of which DISAGREE is each configuration's own draw (of the same make-up)."""

    def latent(size):
        subject = rng.normal(size=(*size, subjects, 1))
        photo = rng.normal(size=(*size, subjects, photos))
        return (math.sqrt(shared) * subject + math.sqrt(1 - shared) * photo).reshape(*size, 1, subjects * photos)

    common = latent((reps,))
    own = latent((2, reps))
    z = math.sqrt(1 - DISAGREE) * common + math.sqrt(DISAGREE) * own
    return tuple(np.interp(special.ndtr(z[i]), _GRID, _BETA_QUANTILE) for i in range(2))


def grouped_cell(rng, reps: int, subjects: int, photos: int, shared: float, seeds: int = 3, sigma: float = 5) -> dict:
    """Two configurations of equal expected accuracy on a test set of `subjects` x `photos`:
    false-positive rate and A's full-interval coverage with photos, and with people, as units."""
    groups = np.repeat(np.arange(subjects), photos)
    target = expected_accuracy(sigma / 100)
    out = dict.fromkeys(("photos fpr", "people fpr", "photos coverage", "people coverage"), 0.0)
    for start in range(0, reps, CHUNK):
        r = min(CHUNK, reps - start)
        q_a, q_b = grouped_difficulty(rng, r, subjects, photos, shared)
        a, b = runs(rng, q_a, seeds, sigma / 100), runs(rng, q_b, seeds, sigma / 100)
        for unit, g in (("photos", None), ("people", groups)):
            out[f"{unit} fpr"] += rejects(accuracy_estimate(a, b, groups=g)).sum() / reps
            lo, hi = widest(accuracy_estimate(a, groups=g))
            out[f"{unit} coverage"] += ((lo <= target) & (target <= hi)).sum() / reps
    return {k: float(v) for k, v in out.items()}


def one_run_cell(rng, reps: int, accuracy: float, seeds: int, sigma: float, n_images: int = 120) -> dict:
    """A (`seeds` runs) against one run B whose chance on each image is A's averaged over seeds
    (equal expected accuracy): false-positive rate with Satterthwaite's df, and the seeds' own."""
    difficulty = (2 * accuracy, 2 * (1 - accuracy))
    old = new = 0
    for start in range(0, reps, CHUNK):
        r = min(CHUNK, reps - start)
        q = rng.beta(*difficulty, (r, 1, n_images))
        e = accuracy_estimate(runs(rng, q, seeds, sigma / 100), runs(rng, clipped_mean(q, sigma / 100), 1, 0))
        old += int(satterthwaite_rejects(e, n_images).sum())
        new += int(rejects(e).sum())
    return {"satterthwaite": old / reps, "seeds df": new / reps}


def claims(reps: int, seed: int = 0) -> dict[str, dict[tuple, dict]]:
    """The three families of cells: selection, grouped test sets, one run as B."""
    rng = np.random.default_rng(seed)
    return {
        "selection": {
            (k, s): selection_cell(rng, reps, k, s, SELECTION["seeds"], SELECTION["images"])
            for k in SELECTION["configs"]
            for s in SELECTION["sigma"]
        },
        "grouped": {
            (g, p, sh): grouped_cell(rng, reps, g, p, sh, GROUPED["seeds"], GROUPED["sigma"])
            for g, p in GROUPED["sizes"]
            for sh in GROUPED["shared"]
        },
        "one run": {
            (acc, n, s): one_run_cell(rng, reps, acc, n, s, ONE_RUN["images"])
            for acc in ONE_RUN["accuracy"]
            for n in ONE_RUN["seeds"]
            for s in ONE_RUN["sigma"]
        },
    }


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
    p = argparse.ArgumentParser(prog="python -m study.bench.calibration", description=__doc__.split("\n")[0])
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
    found = claims(args.reps, args.seed)
    heads = {
        "selection": (
            f"\nThe best of k identical configurations (picked on {SELECTION['images']} validation images, "
            f"{SELECTION['seeds']} seeds each) against one chosen in advance, on {SELECTION['images']} test images; "
            "false-positive rate on the seeds that chose it, and on a confirmation stage's fresh seeds.",
            ["configs", "sigma"],
        ),
        "grouped": (
            f"\nGrouped test sets, {GROUPED['seeds']} seeds a side, sigma {GROUPED['sigma']}: false-positive rate "
            "and A's 95% coverage with photos, and with people, as the unit.",
            ["subjects", "photos", "shared"],
        ),
        "one run": (
            f"\nOne run as B, A with n seeds, {ONE_RUN['images']} test images: false-positive rate.",
            ["accuracy", "seeds", "sigma"],
        ),
    }
    for family, cells in found.items():
        text, keys = heads[family]
        columns = [*keys, *next(iter(cells.values()))]
        print(text + "\n\n| " + " | ".join(columns) + " |\n|" + "---|" * len(columns))
        for key, rates in cells.items():
            print("| " + " | ".join([*map(str, key), *(f"{v:.3f}" for v in rates.values())]) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
