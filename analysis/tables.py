"""Tidy tables of a study -> the report's tables: one row per configuration with its
settings, how its trials ended and its accuracies with both kinds of interval; the
baselines likewise; paired comparisons with Holm-adjusted p-values."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from analysis.results import config_of
from analysis.stats import PairedTest, compare, format_p, full_accuracy_ci, holm, mean_ci
from trainable.config import comparable_settings, differs_from

AXES = ("optimizer", "lr", "momentum", "batch_size", "freeze", "augmentation")  # what grids vary
NAN3 = (np.nan, np.nan, np.nan)


def with_ci(mean: float, lo: float, hi: float) -> str:
    """'0.800 ± 0.100' (a symmetric interval's half-width); '0.800' when there is none."""
    if np.isnan(mean):
        return "—"
    if np.isnan(lo):
        return f"{mean:.3f}"
    return f"{mean:.3f} ± {(hi - lo) / 2:.3f}"


def with_range(mean: float, lo: float, hi: float) -> str:
    """'0.800 [0.721, 0.864]': for intervals that need not be symmetric (Wilson, bootstrap)."""
    if np.isnan(mean):
        return "—"
    return f"{mean:.3f} [{lo:.3f}, {hi:.3f}]"


def correct_matrix(preds: list[list[int]], labels: np.ndarray) -> np.ndarray:
    """(runs, images) 0/1 array of which test images each run got right."""
    return (np.asarray(list(preds)) == labels[None, :]).astype(float)


def val_acc_at_best(epochs: pd.DataFrame) -> pd.Series:
    """Per trial, the val accuracy of its lowest-val-loss epoch so far (ASHA-stopped trials too)."""
    finite = epochs[np.isfinite(epochs.val_loss)]
    if finite.empty:
        return pd.Series(dtype=float)
    best_rows = finite.loc[finite.groupby("trial_id").val_loss.idxmin()]
    return best_rows.set_index("trial_id").val_acc


def endings(group: pd.DataFrame) -> str:
    """How the trials of one configuration ended, e.g. 'max_epochs x2, asha x1 (epoch 9)'."""
    parts = []
    for ended, trials in group.groupby(group.stopped_by.fillna("unfinished"), sort=False):
        text = f"{ended} x{len(trials)}"
        if ended == "asha":
            text += f" (epoch {', '.join(str(int(e)) for e in sorted(trials.epochs))})"
        parts.append(text)
    return ", ".join(parts)


def scored(group: pd.DataFrame) -> pd.DataFrame:
    """The finished trials that have a best epoch to score (a trial that diverged in its
    first epoch has none), sorted by seed."""
    return group[(group.status == "finished") & group.test_acc_best.notna()].sort_values("seed")


def config_table(
    trials: pd.DataFrame,
    epochs: pd.DataFrame,
    labels: np.ndarray,
    weights_labels: dict[str, str],
    reference: dict | None,
) -> pd.DataFrame:
    """One row per configuration. Val accuracy counts every trial with a finite epoch (ASHA-
    stopped ones at their best epoch so far); test accuracy only finished ones. `complete`:
    every seed finished, the condition for being ranked. Sorted: complete configurations
    by mean val accuracy, then the rest."""
    trials = trials.assign(val_at_best=trials.trial_id.map(val_acc_at_best(epochs)))
    rows = []
    for cid, group in trials.groupby("config_id", sort=False):
        first = group.iloc[0]
        done = scored(group)
        config = config_of(first)
        used = done.precision_used.iloc[0] if len(done) else None
        seen = group.val_at_best.dropna()
        correct = correct_matrix(done.test_pred, labels) if len(done) else None
        rows.append(
            {
                "config_id": cid,
                "experiment": first.experiment,
                "name": first["name"],
                "differs": differs_from(config, reference) if reference else "—",
                **comparable_settings(config, weights_labels, used),
                "seeds": len(group),
                "finished": int((group.status == "finished").sum()),
                "scored": len(done),
                "complete": bool((group.status == "finished").all()),
                "ended": endings(group),
                "best_epoch": done.best_epoch.mean(),
                "train_s": done.train_seconds.mean() if len(done) else np.nan,
                "val": mean_ci(seen) if len(seen) else NAN3,
                "test": mean_ci(done.test_acc_best) if len(done) else NAN3,
                "test_full": full_accuracy_ci(correct) if correct is not None else NAN3,
                "seed_list": done.seed.tolist(),
                "correct": correct,
                **{k: config.get(k) for k in AXES},
            }
        )
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    table["val_acc"] = [v[0] for v in table.val]
    table["test_acc"] = [t[0] for t in table.test]
    return table.sort_values(["complete", "val_acc", "experiment"], ascending=[False, False, True], na_position="last")


def summary_table(configs: pd.DataFrame) -> pd.DataFrame:
    """The report's Summary: every configuration with its settings, endings and both intervals."""
    return pd.DataFrame(
        {
            "#": configs.experiment,
            "name": configs["name"],
            "differs from #1": configs.differs,
            "weights": configs.weights,
            "max epochs": configs["max epochs"],
            "stop rule": configs["stop rule"],
            "precision": configs.precision,
            "normalization": configs.normalization,
            "finished": [f"{r.finished}/{r.seeds}" for r in configs.itertuples()],
            "how trials ended": configs.ended,
            "best epoch": configs.best_epoch.round(1),
            "train s": configs.train_s.round(1),
            "val acc (± across seeds)": [with_ci(*v) for v in configs.val],
            "test acc (± across seeds)": [with_ci(*t) for t in configs.test],
            "test acc [full 95% interval]": [with_range(*t) for t in configs.test_full],
        }
    )


def baseline_table(records: list[dict], labels: np.ndarray) -> pd.DataFrame:
    """One row per baseline method: val/test mean over its seeds, and the full test interval
    (Wilson for a method without seeds, the two-level bootstrap over seeds and images otherwise)."""
    frame = pd.DataFrame(records)
    rows = []
    for name, group in frame.groupby("name", sort=False):
        rows.append(
            {
                "name": name,
                "features": group.features.iloc[0],
                "seeds": len(group),
                "seed_list": group.seed.tolist(),
                "val_acc": mean_ci(group.val_acc),
                "test_acc": mean_ci(group.test_acc),
                "correct": correct_matrix(group.test_pred, labels),
                "test_full": full_accuracy_ci(correct_matrix(group.test_pred, labels)),
            }
        )
    return pd.DataFrame(rows)


def comparison_table(pairs: list[tuple[str, str, PairedTest]]) -> tuple[pd.DataFrame, list[float]]:
    """The paired tests with Holm-adjusted bootstrap p-values over all of them."""
    adjusted = holm([test.p_bootstrap for _, _, test in pairs])
    rows = [
        {
            "A": a,
            "B": b,
            "A - B (points)": round(100 * test.diff, 1),
            "95% CI": f"{100 * test.lo:+.1f} to {100 * test.hi:+.1f}",
            "p (bootstrap)": format_p(test.p_bootstrap),
            "p (Holm)": round(p_holm, 3),
            "McNemar runs (A / B)": test.mcnemar_seeds,
            "only A / only B right": f"{test.only_a} / {test.only_b}",
            "p (McNemar)": round(test.p_mcnemar, 3),
            "real? (Holm p < 0.05)": "yes" if p_holm < 0.05 else "no",
        }
        for (a, b, test), p_holm in zip(pairs, adjusted, strict=True)
    ]
    return pd.DataFrame(rows), adjusted


def paired(a: Any, b: Any) -> PairedTest:
    """Compare two rows of config_table / baseline_table on the same test images."""
    seeds = lambda row: [None if s is None or s != s else int(s) for s in row.seed_list]  # noqa: E731
    return compare(a.correct, b.correct, seeds(a), seeds(b))
