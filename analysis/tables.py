"""Tidy tables of a study -> the report's tables: one row per configuration with its
settings, how its trials ended and its scores (accuracy, balanced accuracy, macro-F1)
with both kinds of interval; the baselines likewise; paired comparisons with
Holm-adjusted p-values."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from analysis.results import config_of
from analysis.stats import (
    METRICS,
    Comparison,
    compare,
    format_p,
    full_interval,
    holm,
    holm_levels,
    mean_ci,
    recall_per_class,
)
from trainable.config import comparable_settings, differs_from
from trainable.results.layout import DEFAULT_SELECT, SELECTIONS
from trainable.results.records import reported

# what grids vary
AXES = ("optimizer", "lr", "momentum", "batch_size", "freeze", "augmentation", "class_weights", "sampler")
BALANCED = ("balanced accuracy", "macro-F1")  # the class-balanced scores beside accuracy
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


def scores(preds: np.ndarray | None, labels: np.ndarray, n_classes: int, groups=None) -> dict[str, Any]:
    """The class-balanced scores of a (runs, images) prediction matrix: per metric in BALANCED
    its mean with the across-runs t interval and with the full interval (stats.full_interval,
    over the images' groups where they have them), and the recall of each class averaged over runs."""
    if preds is None:
        return {**{m: NAN3 for m in BALANCED}, **{f"{m} full": NAN3 for m in BALANCED}, "recall": None}
    out: dict[str, Any] = {"recall": np.nanmean(recall_per_class(preds, labels, n_classes), 0)}
    for metric in BALANCED:
        out[metric] = mean_ci(METRICS[metric](preds, labels[None], n_classes))
        out[f"{metric} full"] = full_interval(metric, preds, labels, n_classes, groups=groups)
    return out


def selected(epochs: pd.DataFrame, select: str) -> pd.Series:
    """Per trial, its --select value as Tune last saw it: the best epoch's so far (lowest val
    loss; trainable.results.layout.SELECTIONS), from its last reported epoch. Studies from before those
    values were reported: derived from the epochs (val_bacc then unknown)."""
    key, _ = SELECTIONS[select]
    if epochs[key].notna().any():
        return epochs.sort_values(reported.epoch).groupby("trial_id")[key].last().dropna()
    if select == "val_loss":
        return epochs[np.isfinite(epochs.val_loss)].groupby("trial_id").val_loss.min()
    return val_acc_at_lowest_loss(epochs) if select == "val_acc" else pd.Series(dtype=float)


def val_acc_at_best(epochs: pd.DataFrame) -> pd.Series:
    """Per trial, the val accuracy of the epoch its stopper kept so far (ASHA-stopped trials too):
    best_val_acc as the trial last reported it, which with --min-delta > 0 is not always the
    lowest val loss's epoch (an epoch must improve by min_delta to be kept)."""
    return selected(epochs, "val_acc")


def val_acc_at_lowest_loss(epochs: pd.DataFrame) -> pd.Series:
    """Per trial, the val accuracy of its lowest-val-loss epoch so far: for results that report no
    best_val_acc."""
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
    n_classes: int = 3,
    select: str = DEFAULT_SELECT,
    groups=None,
) -> pd.DataFrame:
    """One row per configuration. Val accuracy counts every trial with a finite epoch (ASHA-
    stopped ones at their best epoch so far); test accuracy only finished ones. `complete`:
    every seed finished, the condition for being ranked. `sel`: the mean and t interval of the
    --select metric over its trials (`selected`). Sorted: complete configurations by it (best
    first), then the rest. `groups`: each test image's person, where the split has them."""
    trials = trials.assign(
        val_at_best=trials.trial_id.map(val_acc_at_best(epochs)), sel=trials.trial_id.map(selected(epochs, select))
    )
    rows = [
        config_row(cid, group, labels, weights_labels, reference, n_classes, groups)
        for cid, group in trials.groupby("config_id", sort=False)
    ]
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    table["val_acc"] = [v[0] for v in table.val]
    table["test_acc"] = [t[0] for t in table.test]
    table["selected"] = [v[0] for v in table.sel]
    lowest_first = SELECTIONS[select][1] == "min"
    return table.sort_values(
        ["complete", "selected", "experiment"], ascending=[False, lowest_first, True], na_position="last"
    )


def config_row(
    cid: str,
    group: pd.DataFrame,
    labels: np.ndarray,
    weights_labels: dict,
    reference: dict | None,
    n_classes: int,
    groups=None,
) -> dict[str, Any]:
    """config_table's row of one configuration (its trials in `group`)."""
    first = group.iloc[0]
    done = scored(group)
    config = config_of(first)
    used = done.precision_used.iloc[0] if len(done) else None
    trained = done.precision_trained.iloc[0] if len(done) else None
    seen = group.val_at_best.dropna()
    preds = np.asarray(list(done.test_pred)) if len(done) else None
    return {
        "config_id": cid,
        "experiment": first.experiment,
        "name": first["name"],
        "differs": differs_from(config, reference) if reference else "—",
        **comparable_settings(config, weights_labels, used, trained),
        "seeds": len(group),
        "finished": int((group.status == "finished").sum()),
        "scored": len(done),
        "complete": bool((group.status == "finished").all()),
        "ended": endings(group),
        "best_epoch": done[reported.best_epoch].mean(),
        "train_s": done.train_seconds.mean() if len(done) else np.nan,
        "val": mean_ci(seen) if len(seen) else NAN3,
        "sel": mean_ci(group.sel.dropna()) if group.sel.notna().any() else NAN3,
        "test": mean_ci(done.test_acc_best) if len(done) else NAN3,
        "test_full": full_interval("accuracy", preds, labels, n_classes, groups=groups) if preds is not None else NAN3,
        **scores(preds, labels, n_classes, groups),
        "seed_list": done.seed.tolist(),
        "preds": preds,
        **{k: config.get(k) for k in AXES},
    }


def settings_table(configs: pd.DataFrame) -> pd.DataFrame:
    """Beside the Summary: each configuration's settings its numbers depend on, and how its
    trials ran (how they ended, best epoch, train seconds)."""
    return pd.DataFrame(
        {
            "#": configs.experiment,
            "weights": configs.weights,
            "max epochs": configs["max epochs"],
            "stop rule": configs["stop rule"],
            "precision": configs.precision,
            "normalization": configs.normalization,
            "how trials ended": configs.ended,
            "best epoch": configs.best_epoch.round(1),
            "train s": configs.train_s.round(1),
        }
    )


def summary_table(configs: pd.DataFrame, select: str = DEFAULT_SELECT) -> pd.DataFrame:
    """The report's Summary, at most 8 columns: every configuration, what differs from #1, how
    many seeds finished (and how the others ended), both intervals, and the --select metric
    it is ranked on where that is not val acc. Its other settings: settings_table, below it."""
    table = pd.DataFrame(
        {
            "#": configs.experiment,
            "name": configs["name"],
            "differs from #1": configs.differs,
            "finished": [
                f"{r.finished}/{r.seeds}" + ("" if r.finished == r.seeds else f": {r.ended}")
                for r in configs.itertuples()
            ],
            "val acc (± across seeds)": [with_ci(*v) for v in configs.val],
            "test acc [full 95% interval]": [with_range(*t) for t in configs.test_full],
            "test acc ± seeds, on these test images": [with_ci(*t) for t in configs.test],
        }
    )
    if select != "val_acc":
        table.insert(
            table.columns.get_loc("val acc (± across seeds)"),
            f"{select} (ranked on)",
            configs.sel.map(lambda v: with_ci(*v)),
        )
    return table


def baseline_table(records: list[dict], labels: np.ndarray, n_classes: int = 3, groups=None) -> pd.DataFrame:
    """One row per baseline method: val/test mean over its seeds, and the full test interval
    (Wilson for a method without seeds, the seed-and-image interval otherwise)."""
    frame = pd.DataFrame(records)
    rows = []
    for name, group in frame.groupby("name", sort=False):
        preds = np.asarray(list(group.test_pred))
        rows.append(
            {
                "name": name,
                "features": group.features.iloc[0],
                "seeds": len(group),
                "seed_list": group.seed.tolist(),
                "deterministic": bool(group.seed.isna().all()),  # no seed: the same model every run (HOG + SVM)
                "val_acc": mean_ci(group.val_acc),
                "test_acc": mean_ci(group.test_acc),
                "preds": preds,
                "test_full": full_interval("accuracy", preds, labels, n_classes, groups=groups),
                **scores(preds, labels, n_classes, groups),
            }
        )
    return pd.DataFrame(rows)


def balance_table(configs: pd.DataFrame, baselines: pd.DataFrame | None, classes: list[str]) -> pd.DataFrame:
    """Scored configurations, then baselines: test accuracy, balanced accuracy and macro-F1
    with both intervals, and the test recall of each class (mean over runs)."""
    rows = []
    for frame, kind in ((configs[configs.scored > 0], "config"), (baselines, "baseline")):
        if frame is None:
            continue
        for r in frame.to_dict("records"):
            row = {
                "": f"#{r['experiment']} {r['name']}" if kind == "config" else r["name"],
                "runs": len(r["seed_list"]),
                "test acc [full 95%]": with_range(*r["test_full"]),
            }
            for metric in BALANCED:
                row[f"{metric} (± across seeds)"] = with_ci(*r[metric])
                row[f"{metric} [full 95%]"] = with_range(*r[f"{metric} full"])
            row.update({f"recall {c}": f"{v:.3f}" for c, v in zip(classes, r["recall"], strict=True)})
            rows.append(row)
    return pd.DataFrame(rows)


HYPERPARAMETERS = (*AXES, "dropout", "weight_decay")  # what a search or a grid file may vary


def explored(trials: pd.DataFrame, epochs: pd.DataFrame) -> pd.DataFrame:
    """One row per trial with a finite epoch: each hyperparameter that varies between the
    trials, and 'val acc' at its best epoch so far (ASHA-stopped trials included)."""
    trials = trials.assign(**{"val acc": trials.trial_id.map(val_acc_at_best(epochs))}).dropna(subset=["val acc"])
    keys = [k for k in HYPERPARAMETERS if k in trials and trials[k].astype(str).nunique() > 1]
    return trials[[*keys, "val acc"]].reset_index(drop=True)


PERMUTATIONS = 20  # replacements of each hyperparameter per held-out fold


def importance(
    points: pd.DataFrame, target: str = "val acc", seed: int = 0, trees: int = 200
) -> tuple[pd.DataFrame, float, int]:
    """Out-of-sample permutation importance of each hyperparameter: K-fold cross-validation
    (K = min(5, trials)) of a random forest (`trees` trees) predicting `target` from them (categories one-hot,
    numbers as they are); on each held-out fold, a hyperparameter's columns are replaced 20
    times by values of randomly drawn trials, and its importance is the rise in held-out squared
    error over the target's variance (a drop in held-out R²). Returns the table, the forest's
    held-out R² and K. Never scored on the trials a forest was fitted to."""
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.model_selection import KFold

    keys = [k for k in points.columns if k != target]
    encoded = {k: pd.get_dummies(points[k].astype(str), prefix=k, dtype=float) for k in keys}
    for k in keys:
        if pd.api.types.is_numeric_dtype(points[k]) and not pd.api.types.is_bool_dtype(points[k]):
            encoded[k] = points[[k]].astype(float)
    frame = pd.concat(encoded.values(), axis=1)
    X = frame.to_numpy()
    columns = {k: [frame.columns.get_loc(c) for c in encoded[k].columns] for k in keys}
    y = points[target].to_numpy(float)
    variance = max(float(y.var()), 1e-12)
    rng = np.random.default_rng(seed)
    folds = min(5, len(y))
    drops: dict[str, list[float]] = {k: [] for k in keys}
    squared = 0.0
    for train, test in KFold(folds, shuffle=True, random_state=seed).split(X):
        forest = RandomForestRegressor(n_estimators=trees, random_state=seed).fit(X[train], y[train])
        base = ((forest.predict(X[test]) - y[test]) ** 2).mean()
        squared += base * len(test)
        for k in keys:  # the 20 replacements of one hyperparameter predicted in one call
            replaced = np.repeat(X[test][None], PERMUTATIONS, axis=0)
            drawn = X[rng.integers(0, len(X), (PERMUTATIONS, len(test)))]
            replaced[..., columns[k]] = drawn[..., columns[k]]
            predicted = forest.predict(replaced.reshape(-1, X.shape[1])).reshape(PERMUTATIONS, len(test))
            drops[k].extend(((((predicted - y[test]) ** 2).mean(1) - base) / variance).tolist())
    rows = [
        {"hyperparameter": k, "importance (drop in held-out R²)": np.mean(d), "± sd": np.std(d)}
        for k, d in drops.items()
    ]
    table = pd.DataFrame(rows).sort_values("importance (drop in held-out R²)", ascending=False).round(3)
    return table, 1 - squared / (variance * len(y)), folds


def fanova_importance(journal: str, seed: int = 0) -> tuple[pd.DataFrame, int] | None:
    """Optuna's fANOVA importance of each searched hyperparameter over the one Optuna study a
    search keeps in `journal` (its completed trials; the objective is what Tune told Optuna, the
    --select value of a trial's last report): (the table, the number of trials), or None when
    optuna is not installed, fewer than 2 trials completed, or all gave the same value (no
    variance to explain: fANOVA raises). In-sample: it explains the
    variance of those trials, it does not predict new ones."""
    try:
        import optuna
        from optuna.importance import FanovaImportanceEvaluator
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend
    except ImportError:
        return None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = JournalStorage(JournalFileBackend(journal))
    (name,) = optuna.get_all_study_names(storage)
    study = optuna.load_study(study_name=name, storage=storage)
    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len({t.value for t in done}) < 2:
        return None
    found = optuna.importance.get_param_importances(study, evaluator=FanovaImportanceEvaluator(seed=seed))
    table = pd.DataFrame({"hyperparameter": list(found), "fANOVA importance (share of variance)": list(found.values())})
    return table.round(3), len(done)


PRIMARY_METRIC = {"val_acc": "accuracy", "val_loss": "accuracy", "val_bacc": "balanced accuracy"}  # --select's


def comparisons(
    pairs: list[tuple[str, str, Any, Any]], labels: np.ndarray, n_classes: int, metric: str = "accuracy", groups=None
) -> list[tuple[str, str, Comparison]]:
    """Every pair of config_table / baseline_table rows on the one tested `metric` (one question,
    one test: the metric --select names, PRIMARY_METRIC)."""
    fixed = lambda row: bool(getattr(row, "deterministic", False))  # noqa: E731 (a baseline without seeds)
    return [
        (
            a,
            b,
            compare(metric, ra.preds, rb.preds, labels, n_classes, groups=groups, deterministic=(fixed(ra), fixed(rb))),
        )
        for a, b, ra, rb in pairs
    ]


def comparison_table(tests: list[tuple[str, str, Comparison]]) -> tuple[pd.DataFrame, list[float], list[float]]:
    """The comparisons with their p-values Holm-adjusted over all of them; each interval and
    detectable difference at the level Holm tested it (stats.holm_levels), so that an interval
    excludes 0 exactly when the verdict is 'yes'. Returns the table, the adjusted p-values and
    the levels."""
    adjusted = holm([c.p for _, _, c in tests])
    levels = holm_levels([c.p for _, _, c in tests])
    rows = []
    for (a, b, c), p_holm, level in zip(tests, adjusted, levels, strict=True):
        lo, hi = c.interval(level)
        rows.append(
            {
                "metric": c.metric,
                "A": a,
                "B": b,
                "seeds A / B": f"{c.runs[0]} / {c.runs[1]}",
                "A - B (points)": round(100 * c.diff, 1),
                "CI at Holm's level": f"{100 * lo:+.1f} to {100 * hi:+.1f} ({100 * (1 - level):.4g}%)",
                "detectable (80% power)": c.detectable_text(level),
                "p": format_p(c.p),
                f"p (Holm, {len(tests)})": format_p(p_holm).removeprefix("p = "),
                "different? (Holm p < 0.05)": (
                    "no test (zero variance)" if c.no_variance else "yes" if p_holm < 0.05 else "no"
                )
                + (f"; {c.caveat}" if c.caveat else ""),
            }
        )
    return pd.DataFrame(rows), adjusted, levels


def budget_curve(epochs: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """(trial-epochs spent, best validation accuracy so far): every trial's epochs in the
    order Ray recorded them (reported_at; ties by trial, then epoch)."""
    ordered = epochs.dropna(subset=[reported.val_acc]).sort_values(
        ["time", "trial_id", reported.epoch], na_position="last"
    )
    spent = pd.Series(np.arange(1, len(ordered) + 1))
    return spent, pd.Series(ordered.val_acc.cummax().to_numpy())
