"""The report's figures, each a function from tables to a matplotlib Figure."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from analysis.tables import AXES, budget_curve  # noqa: E402
from trainable.results.layout import SELECTIONS  # noqa: E402
from trainable.results.records import reported, split_key  # noqa: E402


def loss_curves(epochs: pd.DataFrame, trials: pd.DataFrame, configs: pd.DataFrame) -> Figure:
    """Train and validation loss per configuration: mean over seeds, min-max band, best
    epochs marked. Non-finite losses (a diverged epoch) are left out of the lines."""
    epochs = epochs.replace([np.inf, -np.inf], np.nan)
    n = len(configs)
    cols = min(3, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
    for ax, config in zip(axes.flat, configs.itertuples(), strict=False):
        ids = trials[trials.config_id == config.config_id]
        curves = epochs[epochs.trial_id.isin(ids.trial_id)]
        for column, colour in ((reported.train_loss, "tab:blue"), (reported.val_loss, "tab:orange")):
            wide = curves.pivot(index=reported.epoch, columns="trial_id", values=column)
            ax.plot(wide.index, wide.mean(axis=1), color=colour, label=column.replace("_", " "))
            ax.fill_between(wide.index, wide.min(axis=1), wide.max(axis=1), color=colour, alpha=0.2, lw=0)
        for best in ids.get(reported.best_epoch, pd.Series(dtype=float)).dropna():
            if best > 0:
                ax.axvline(best, color="tab:red", ls=":", lw=1)
        ax.set_title(f"#{config.experiment} {config.name}", fontsize=9)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole: no tick at 1.5
        ax.set_ylabel("loss")
    for ax in axes.flat[n:]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle("Loss per epoch (mean over seeds, band = min-max, dotted = best epochs)", fontsize=10)
    fig.tight_layout()
    return fig


def confusion_matrices(
    trials: pd.DataFrame, configs: pd.DataFrame, classes: list[str], test_counts: list[int]
) -> Figure:
    """One test confusion matrix per configuration over all its scored seeds (not its best
    seed's): each cell the share of the true class's test images (rows sum to 1) and, in
    brackets, the images summed over seeds. Every seed scores the same test images, so the
    mean of the seeds' row-normalized matrices is the summed counts' row shares."""
    n = len(configs)
    cols = min(n, 4)
    fig, axes = plt.subplots(-(-n // cols), cols, figsize=(3.3 * cols, 3.1 * -(-n // cols)), squeeze=False)
    for ax, config in zip(axes.flat, configs.itertuples(), strict=False):
        group = trials[(trials.config_id == config.config_id) & trials.test_acc_best.notna()]
        shares = np.mean([np.asarray(m, dtype=float) for m in group[split_key("test", "confusion")]], axis=0)
        counts = np.rint(shares * np.asarray(test_counts, dtype=float)[:, None] * len(group)).astype(int)
        ax.imshow(shares, vmin=0, vmax=1, cmap="Blues")
        for (i, j), v in np.ndenumerate(shares):
            colour = "white" if v > 0.5 else "black"
            ax.text(j, i, f"{v:.2f}\n({counts[i, j]})", ha="center", va="center", color=colour, fontsize=8)
        ax.set_xticks(range(len(classes)), classes, fontsize=8)
        ax.set_yticks(range(len(classes)), classes, fontsize=8)
        name = config.name if len(config.name) <= 24 else config.name[:23] + "…"
        ax.set_title(f"#{config.experiment} {name}\n{len(group)} seed(s), test", fontsize=8)
        ax.set_xlabel("predicted", fontsize=8)
        ax.set_ylabel("true", fontsize=8)
    for ax in axes.flat[n:]:
        ax.axis("off")
    fig.tight_layout()
    return fig


def accuracy_bars(configs: pd.DataFrame, baselines: pd.DataFrame | None) -> Figure:
    """Test accuracy with the full 95% interval (seeds and test images) on every bar."""
    rows = [
        (
            f"#{c.experiment} {c.name}" + ("" if c.complete else f" ({c.scored}/{c.seeds} seeds)"),
            c.test_full,
            "tab:blue",
        )
        for c in configs.itertuples()
    ]
    if baselines is not None:
        rows += [(b.name, b.test_full, "tab:gray") for b in baselines.itertuples()]
    rows = [r for r in rows if not np.isnan(r[1][0])]
    means = np.array([mean for _, (mean, _, _), _ in rows])
    errors = np.array([[mean - lo, hi - mean] for _, (mean, lo, hi), _ in rows]).T.reshape(2, -1)
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(rows) + 1.4))
    y = np.arange(len(rows))[::-1]
    ax.barh(y, means, xerr=errors, color=[colour for *_, colour in rows], capsize=3)
    ax.set_yticks(y, [label for label, *_ in rows], fontsize=8)
    ax.set_xlim(0, 1)
    ax.axvline(1 / 3, color="black", ls=":", lw=1)
    ax.set_xlabel(
        "test accuracy: mean over seeds; 95% interval over seeds and test images\n"
        "(Wilson for a single run); dotted = chance",
        fontsize=8,
    )
    fig.tight_layout()
    return fig


def axis_effects(configs: pd.DataFrame, select: str = "val_acc") -> tuple[Figure, pd.DataFrame]:
    """Per grid axis: every configuration's mean --select value by the axis's value (config_table's
    `selected`), and the best per value by it: the study's own ranking, whatever --select says."""
    lowest_first = SELECTIONS[select][1] == "min"
    axes_used = [k for k in AXES if configs[k].nunique() > 1]
    fig, axes = plt.subplots(1, len(axes_used), figsize=(3.2 * len(axes_used), 3.2), squeeze=False)
    best_rows = []
    for ax, key in zip(axes[0], axes_used, strict=False):
        values = sorted(configs[key].unique(), key=str)
        data = [configs.loc[configs[key] == v, "selected"].dropna() for v in values]
        ax.boxplot(data, tick_labels=[str(v) for v in values])
        for i, d in enumerate(data, start=1):
            ax.scatter(np.full(len(d), i), d, s=6, alpha=0.5, color="tab:blue")
        ax.set_title(key, fontsize=9)
        ax.set_ylabel(f"{select} (mean over seeds)", fontsize=8)
        ax.tick_params(labelsize=7)
        complete = configs[configs.complete & (configs.scored > 0)]
        for v in values:
            candidates = complete[complete[key] == v]
            if candidates.empty:
                continue
            best = candidates.sort_values("selected", ascending=lowest_first).iloc[0]
            best_rows.append(
                {
                    "axis": key,
                    "value": v,
                    "best configuration": f"#{best.experiment} {best['name']}",
                    f"{select} (its ranking)": round(best.selected, 3),
                    "val acc": round(best.val_acc, 3),
                    "test acc": round(best.test_acc, 3),
                }
            )
    fig.tight_layout()
    return fig, pd.DataFrame(best_rows)


def axis_marks(values: pd.Series, lo: float, hi: float, logged: bool) -> tuple[list[float], list[str]]:
    """A numeric axis's labels: each value where it takes at most 6, else 5 evenly spaced (in
    log10 where the axis is logged); (positions in 0..1, labels to 3 significant digits)."""
    distinct = np.unique(values.dropna().to_numpy())
    if len(distinct) <= 6:
        marks = np.log10(distinct) if logged else distinct
    else:
        marks = np.linspace(lo, hi, 5)
    positions = [(m - lo) / (hi - lo) if hi > lo else 0.5 for m in marks]
    return positions, [f"{10**m if logged else m:.3g}" for m in marks]


def parallel_coordinates(points: pd.DataFrame, target: str = "val acc") -> Figure:
    """One line per trial through one vertical axis per hyperparameter (numbers scaled to
    their range, log-scaled where they span more than 20x; categories evenly spaced), to
    `target` on the last axis; colour = `target`."""
    keys = [k for k in points.columns if k != target]
    columns, ticks = {}, {}
    for key in [*keys, target]:
        values = points[key]
        if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            v = values.astype(float)
            logged = key != target and (v > 0).all() and v.max() / max(v.min(), 1e-300) > 20
            v = np.log10(v) if logged else v
            lo, hi = float(v.min()), float(v.max())
            columns[key] = (v - lo) / (hi - lo) if hi > lo else v * 0 + 0.5
            ticks[key] = axis_marks(values.astype(float), lo, hi, logged)
        else:
            levels = sorted(values.astype(str).unique())
            position = {level: i / max(1, len(levels) - 1) for i, level in enumerate(levels)}
            columns[key] = values.astype(str).map(position)
            ticks[key] = (list(position.values()), levels)
    frame = pd.DataFrame(columns)
    fig, ax = plt.subplots(figsize=(1.6 * len(frame.columns) + 1.5, 4))
    colours = plt.cm.viridis(columns[target].fillna(0).to_numpy())
    x = np.arange(len(frame.columns))
    for row, colour in zip(frame.to_numpy(), colours, strict=True):
        ax.plot(x, row, color=colour, alpha=0.7, lw=1)
    for i, key in enumerate(frame.columns):
        ax.axvline(i, color="black", lw=0.5)
        for position, label in zip(*ticks[key], strict=True):
            box = {"boxstyle": "round,pad=0.1", "facecolor": "white", "edgecolor": "none", "alpha": 0.8}
            ax.text(i + 0.03, position, label, fontsize=7, va="center", bbox=box)
    ax.set_xticks(x, list(frame.columns), fontsize=8, rotation=20)
    ax.set_yticks([])
    ax.set_title(f"{len(frame)} trials: hyperparameters -> {target} (colour = {target})", fontsize=9)
    fig.tight_layout()
    return fig


def best_so_far(epochs: pd.DataFrame) -> Figure:
    """The best validation accuracy seen so far against the trial-epochs spent, every trial's
    epochs in the order Ray recorded them."""
    spent, best = budget_curve(epochs)
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.step(spent, best, where="post")
    ax.set_xlabel("trial-epochs spent (all trials, in the order they ran)", fontsize=8)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("best val acc so far", fontsize=8)
    ax.set_title("Best validation accuracy against the budget spent", fontsize=9)
    fig.tight_layout()
    return fig
