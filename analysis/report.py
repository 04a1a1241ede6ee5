"""A results directory -> report.md, a self-contained report.html, PNG figures
and a tidy CSV (one row per trial x epoch).

    python -m analysis.report RESULTS_DIR [--baselines DIR] [--out DIR]

Accuracies are the best epoch's (lowest validation loss); means and 95%
Student-t intervals are taken across seeds; paired comparisons resample the
test images (paired bootstrap) and also give an exact McNemar test.
"""

from __future__ import annotations

import argparse
import base64
import html
import json
import os
import sys
from dataclasses import dataclass, field
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from analysis.baselines import BASELINES_FILE  # noqa: E402
from analysis.peer import PEER_FILE  # noqa: E402
from analysis.results import load_study  # noqa: E402
from analysis.stats import accuracy_ci, compare, format_p, mean_ci  # noqa: E402
from study.grids import BASELINE  # noqa: E402

SETTINGS = ("optimizer", "lr", "momentum", "batch_size", "freeze", "augmentation")
# The 2021 report's figures (shared/DESIGN.md): experiment -> (val acc, test acc).
REPORTED = {1: (0.73, 0.82), 2: (0.80, 0.84), 3: (0.82, 0.85)}
REPORTED_BASELINES = {"HOG": (0.84, 0.80), "LBP": (0.60, 0.70)}  # (course, course fallback)
MAX_SHOWN = 12  # configurations drawn in the per-configuration figures


# --------------------------------------------------------------------------- tables


def val_acc_at_best(epochs: pd.DataFrame) -> pd.Series:
    """Per trial, the val accuracy of its lowest-val-loss epoch so far (ASHA-stopped trials too)."""
    best_rows = epochs.loc[epochs.groupby("trial_id").val_loss.idxmin()]
    return best_rows.set_index("trial_id").val_acc


def config_table(trials: pd.DataFrame, epochs: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration: settings, seeds, best epoch, time, val/test mean and CI.

    Val accuracy counts every trial with at least one epoch (ASHA-stopped ones
    at their best epoch so far); test accuracy and times only finished trials.
    """
    trials = trials.assign(val_at_best=trials.trial_id.map(val_acc_at_best(epochs)))
    rows = []
    for cid, group in trials.groupby("config_id", sort=False):
        first = group.iloc[0]
        done = group[group.status == "finished"]
        seen = group.val_at_best.dropna()
        val = mean_ci(seen) if len(seen) else (np.nan,) * 3
        test = mean_ci(done.test_acc_best) if len(done) else (np.nan,) * 3
        rows.append({
            "config_id": cid, "experiment": first.experiment, "name": first["name"],
            "differs": differs_from_baseline(first), "seeds": len(group), "finished": len(done),
            "best_epoch": done.best_epoch.mean(), "train_s": done.train_seconds.mean(),
            "val_acc": val[0], "val_lo": val[1], "val_hi": val[2],
            "test_acc": test[0], "test_lo": test[1], "test_hi": test[2],
            "stopped_by": ", ".join(f"{k} x{v}" for k, v in group.stopped_by.fillna("unfinished").value_counts().items()),
            **{k: first[k] for k in SETTINGS},
        })  # fmt: skip
    table = pd.DataFrame(rows)
    return table.sort_values(["val_acc", "experiment"], ascending=[False, True], na_position="last")


def differs_from_baseline(config: pd.Series) -> str:
    changes = [f"{k}={config[k]}" for k in BASELINE if config[k] != BASELINE[k]]
    return ", ".join(changes) or "(experiment 1 settings)"


def with_ci(mean: float, lo: float, hi: float) -> str:
    if np.isnan(mean):
        return "—"
    if np.isnan(lo):
        return f"{mean:.3f}"
    return f"{mean:.3f} ± {(hi - lo) / 2:.3f}"


def summary_table(configs: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "#": configs.experiment, "name": configs["name"], "differs from #1": configs.differs,
        "seeds": configs.seeds, "best epoch": configs.best_epoch.round(1),
        "train s": configs.train_s.round(1),
        "val acc (95% CI)": [with_ci(*r) for r in configs[["val_acc", "val_lo", "val_hi"]].to_numpy()],
        "test acc (95% CI)": [with_ci(*r) for r in configs[["test_acc", "test_lo", "test_hi"]].to_numpy()],
        "stopped by": configs.stopped_by,
    })  # fmt: skip


def baseline_table(baselines: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(baselines)
    rows = []
    for name, group in frame.groupby("name", sort=False):
        rows.append({"name": name, "features": group.features.iloc[0], "seeds": len(group),
                     "val_acc": mean_ci(group.val_acc), "test_acc": mean_ci(group.test_acc)})  # fmt: skip
    return pd.DataFrame(rows)


def correct_matrix(preds: list[list[int]], labels: np.ndarray) -> np.ndarray:
    """(seeds, images) 0/1 array of which test images each run got right."""
    return (np.asarray(preds) == labels[None, :]).astype(float)


# --------------------------------------------------------------------------- figures


def loss_curves(epochs: pd.DataFrame, trials: pd.DataFrame, configs: pd.DataFrame) -> Figure:
    """Train and validation loss per configuration: mean over seeds, min-max band, best epochs marked."""
    n = len(configs)
    cols = min(3, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False, sharey=False)
    for ax, config in zip(axes.flat, configs.itertuples()):
        ids = trials[trials.config_id == config.config_id]
        curves = epochs[epochs.trial_id.isin(ids.trial_id)]
        for column, colour in (("train_loss", "tab:blue"), ("val_loss", "tab:orange")):
            wide = curves.pivot(index="epoch", columns="trial_id", values=column)
            ax.plot(wide.index, wide.mean(axis=1), color=colour, label=column.replace("_", " "))
            ax.fill_between(wide.index, wide.min(axis=1), wide.max(axis=1), color=colour, alpha=0.2, lw=0)
        for trial in ids.dropna(subset=["best_epoch"]).itertuples():
            ax.axvline(trial.best_epoch, color="tab:red", ls=":", lw=1)
        ax.set_title(f"#{config.experiment} {config.name}", fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
    for ax in axes.flat[n:]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle("Loss per epoch (mean over seeds, band = min-max, dotted = best epochs)", fontsize=10)
    fig.tight_layout()
    return fig


def confusion_matrices(trials: pd.DataFrame, configs: pd.DataFrame, classes: list[str]) -> Figure:
    """Normalized confusion matrices (train/val/test) of each configuration's best trial by val acc."""
    shown = [c for c in configs.itertuples() if c.finished]
    fig, axes = plt.subplots(len(shown), 3, figsize=(9, 2.8 * len(shown)), squeeze=False)
    for row, config in zip(axes, shown):
        group = trials[(trials.config_id == config.config_id) & (trials.status == "finished")]
        best = group.sort_values("val_acc_best", ascending=False).iloc[0]
        for ax, split in zip(row, ("train", "val", "test")):
            matrix = np.asarray(best[f"{split}_confusion"], dtype=float)
            ax.imshow(matrix, vmin=0, vmax=1, cmap="Blues")
            for (i, j), v in np.ndenumerate(matrix):
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", color="white" if v > 0.5 else "black", fontsize=8)
            ax.set_xticks(range(len(classes)), classes, fontsize=8)
            ax.set_yticks(range(len(classes)), classes, fontsize=8)
            ax.set_title(f"#{config.experiment} seed {best.seed} · {split} ({best[f'{split}_acc_best']:.2f})", fontsize=8)
            ax.set_xlabel("predicted", fontsize=8)
            ax.set_ylabel("true", fontsize=8)
    fig.tight_layout()
    return fig


def accuracy_bars(configs: pd.DataFrame, baselines: pd.DataFrame | None) -> Figure:
    """Test accuracy with 95% CIs: configurations and baselines."""
    labels, means, errs, colours = [], [], [], []
    for c in configs.itertuples():
        labels.append(f"#{c.experiment} {c.name}")
        means.append(c.test_acc)
        errs.append(0 if np.isnan(c.test_lo) else (c.test_hi - c.test_lo) / 2)
        colours.append("tab:blue")
    if baselines is not None:
        for b in baselines.itertuples():
            mean, lo, hi = b.test_acc
            labels.append(b.name)
            means.append(mean)
            errs.append(0 if np.isnan(lo) else (hi - lo) / 2)
            colours.append("tab:gray")
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(labels) + 1.2))
    y = np.arange(len(labels))[::-1]
    ax.barh(y, means, xerr=errs, color=colours, capsize=3)
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_xlim(0, 1)
    ax.axvline(1 / 3, color="black", ls=":", lw=1)
    ax.set_xlabel("test accuracy (mean over seeds, 95% CI; dotted = chance)")
    fig.tight_layout()
    return fig


def axis_effects(configs: pd.DataFrame) -> tuple[Figure, pd.DataFrame]:
    """Per grid axis: every configuration's mean val acc by the axis's value, and the best per value."""
    axes_used = [k for k in SETTINGS if configs[k].nunique() > 1]
    fig, axes = plt.subplots(1, len(axes_used), figsize=(3.2 * len(axes_used), 3.2), squeeze=False)
    best_rows = []
    for ax, key in zip(axes[0], axes_used):
        values = sorted(configs[key].unique(), key=str)
        data = [configs.loc[configs[key] == v, "val_acc"].dropna() for v in values]
        ax.boxplot(data, tick_labels=[str(v) for v in values])
        for i, d in enumerate(data, start=1):
            ax.scatter(np.full(len(d), i), d, s=6, alpha=0.5, color="tab:blue")
        ax.set_title(key, fontsize=9)
        ax.set_ylabel("val acc (mean over seeds)", fontsize=8)
        ax.tick_params(labelsize=7)
        for v in values:
            best = configs[configs[key] == v].sort_values("val_acc", ascending=False).iloc[0]
            best_rows.append({"axis": key, "value": v, "best configuration": f"#{best.experiment} {best['name']}",
                              "val acc": round(best.val_acc, 3), "test acc": round(best.test_acc, 3)})  # fmt: skip
    fig.tight_layout()
    return fig, pd.DataFrame(best_rows)


# --------------------------------------------------------------------------- document


@dataclass
class Document:
    blocks: list[tuple] = field(default_factory=list)

    def h(self, text: str, level: int = 2) -> None:
        self.blocks.append(("h", level, text))

    def p(self, text: str) -> None:
        self.blocks.append(("p", text))

    def table(self, frame: pd.DataFrame) -> None:
        self.blocks.append(("table", frame))

    def figure(self, name: str, caption: str) -> None:
        self.blocks.append(("img", name, caption))

    def markdown(self) -> str:
        out = []
        for block in self.blocks:
            if block[0] == "h":
                out.append("#" * block[1] + " " + block[2])
            elif block[0] == "p":
                out.append(block[1])
            elif block[0] == "table":
                out.append(markdown_table(block[1]))
            else:
                out.append(f"![{block[2]}]({block[1]})")
        return "\n\n".join(out) + "\n"

    def html(self, figures_dir: str) -> str:
        body = []
        for block in self.blocks:
            if block[0] == "h":
                body.append(f"<h{block[1]}>{html.escape(block[2])}</h{block[1]}>")
            elif block[0] == "p":
                body.append(f"<p>{html.escape(block[1])}</p>")
            elif block[0] == "table":
                body.append(block[1].to_html(index=False, escape=True, na_rep="—", border=0))
            else:
                with open(os.path.join(figures_dir, block[1]), "rb") as f:
                    data = base64.b64encode(f.read()).decode()
                body.append(f'<figure><img alt="{html.escape(block[2])}" src="data:image/png;base64,{data}">'
                            f"<figcaption>{html.escape(block[2])}</figcaption></figure>")  # fmt: skip
        style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
                 "table{border-collapse:collapse;font-size:13px;margin:1em 0}"
                 "td,th{border-bottom:1px solid #ddd;padding:3px 8px;text-align:left}"
                 "img{max-width:100%}figcaption{font-size:12px;color:#555}")  # fmt: skip
        return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Face-age study report</title>"
                f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n")  # fmt: skip


def markdown_table(frame: pd.DataFrame) -> str:
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return "—" if np.isnan(v) else f"{v:.4g}"
        return str(v).replace("|", "\\|")

    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


# --------------------------------------------------------------------------- the report


def load_baselines(directory: str | None) -> dict | None:
    """baselines.json, with the zero-shot peer's record added when peer.json sits beside it."""
    if directory is None:
        return None
    with open(os.path.join(directory, BASELINES_FILE)) as f:
        base = json.load(f)
    peer_path = os.path.join(directory, PEER_FILE)
    if os.path.exists(peer_path):
        with open(peer_path) as f:
            peer = json.load(f)
        if peer["split_paths"] == base["split_paths"]:
            base["baselines"].append(peer["peer"])
    return base


def reference_config(configs: pd.DataFrame) -> pd.Series:
    """The configuration with experiment 1's settings, else the grid's experiment 1."""
    same = configs[np.logical_and.reduce([configs[k] == v for k, v in BASELINE.items()])]
    return same.iloc[0] if len(same) else configs.sort_values("experiment").iloc[0]


def build_report(results_dir: str, out_dir: str, baselines_dir: str | None = None) -> Document:
    trials, epochs = load_study(results_dir)
    with open(os.path.join(results_dir, "study.json")) as f:
        study = json.load(f)
    base = load_baselines(baselines_dir)
    figures = os.path.join(out_dir, "figures")
    os.makedirs(figures, exist_ok=True)
    configs = config_table(trials, epochs)
    shown = configs.head(MAX_SHOWN)
    reference = reference_config(configs)
    if reference.config_id not in set(shown.config_id):
        shown = pd.concat([shown, configs[configs.config_id == reference.config_id]])
    labels = np.asarray(study["split_labels"]["test"])
    classes = study.get("classes", ["1-4", "5-27", "28+"])
    doc = Document()

    def save(fig: Figure, name: str, caption: str) -> None:
        fig.savefig(os.path.join(figures, name), dpi=110)
        plt.close(fig)
        doc.figure(f"figures/{name}", caption)

    doc.h(f"Face-age study: {os.path.basename(os.path.abspath(results_dir))}", 1)
    doc.p(f"Grid {study['grid']!r}: {len(configs)} configuration(s), {len(trials)} trial(s), "
          f"{(trials.status == 'finished').sum()} finished, {(trials.status == 'stopped').sum()} stopped by ASHA. "
          f"Data: {study['data_root']} ({', '.join(f'{k} {v}' for k, v in study['split_sizes'].items())}). "
          "Accuracies are those of each trial's best epoch (lowest validation loss); ± is the half-width "
          "of a 95% Student-t interval across seeds.")  # fmt: skip
    doc.h("Summary")
    doc.table(summary_table(configs))

    doc.h("Against the 2021 report")
    rows = []
    for number, (val, test) in REPORTED.items():
        match = configs[(configs.experiment == number) & (study["grid"] == "paper")]
        ours = match.iloc[0] if len(match) else None
        rows.append({"": f"#{number}", "reported val": val, "reported test": test,
                     "ours val": with_ci(*ours[["val_acc", "val_lo", "val_hi"]]) if ours is not None else "—",
                     "ours test": with_ci(*ours[["test_acc", "test_lo", "test_hi"]]) if ours is not None else "—"})  # fmt: skip
    btable = baseline_table(base["baselines"]) if base else None
    for feats, (course, fallback) in REPORTED_BASELINES.items():
        ours = btable[btable.features == feats].sort_values("val_acc", key=lambda s: s.str[0], ascending=False) if btable is not None else None
        best = ours.iloc[0] if ours is not None and len(ours) else None
        rows.append({"": f"{feats} baseline" + (f" ({best['name']})" if best is not None else ""),
                     "reported val": "—", "reported test": f"{course} (fallback {fallback})",
                     "ours val": with_ci(*best.val_acc) if best is not None else "—",
                     "ours test": with_ci(*best.test_acc) if best is not None else "—"})  # fmt: skip
    doc.table(pd.DataFrame(rows))

    doc.h("Is the difference real?")
    n_images = len(labels)
    lo, hi = accuracy_ci(int(0.8 * n_images), n_images)  # one run at 80% accuracy
    doc.p(f"Paired on the same {n_images} test images: the bootstrap resamples images (seeds averaged "
          "per image); McNemar's exact test uses the first seed of each. With this many images one run's "
          f"accuracy is uncertain by about ±{100 * (hi - lo) / 2:.0f} points.")  # fmt: skip
    correct = {
        c.config_id: correct_matrix(list(trials[(trials.config_id == c.config_id) & (trials.status == "finished")].test_pred), labels)
        for c in configs.itertuples() if c.finished
    }  # fmt: skip
    comparisons, sentences = [], []
    if reference.config_id in correct:
        for c in shown.itertuples():
            if c.config_id == reference.config_id or c.config_id not in correct:
                continue
            test = compare(correct[c.config_id], correct[reference.config_id])
            comparisons.append(comparison_row(f"#{c.experiment} {c.name}", f"#{reference.experiment} {reference['name']}", test))
            sentences.append(test.sentence(f"#{c.experiment} {c.name}", f"#{reference.experiment}", n_images))
    best_cnn = configs[configs.finished > 0].iloc[0] if (configs.finished > 0).any() else None
    if base is not None and best_cnn is not None:
        if base["split_paths"]["test"] != study["split_paths"]["test"]:
            doc.p("The baselines were computed on a different test split; no paired comparison is possible.")
        else:
            frame = pd.DataFrame(base["baselines"])
            for feats in frame.features.unique():
                group = frame[frame.features == feats]
                name = group.groupby("name").val_acc.mean().idxmax()
                b = correct_matrix(list(group[group.name == name].test_pred), labels)
                test = compare(correct[best_cnn.config_id], b)
                comparisons.append(comparison_row(f"best CNN #{best_cnn.experiment}", name, test))
                sentences.append(test.sentence(f"The best CNN (#{best_cnn.experiment})", name, n_images))
    if comparisons:
        doc.table(pd.DataFrame(comparisons))
        for sentence in sentences:
            doc.p(sentence)
    peer = next((b for b in base["baselines"] if b["method"] == "zero-shot"), None) if base else None
    if peer is not None:
        missed = peer["undetected"]
        doc.p(f"The zero-shot peer ({peer['name']}) found no face in {missed['val']} validation and "
              f"{missed['test']} test images; those count as wrong answers in its accuracy.")  # fmt: skip

    save(accuracy_bars(shown, btable), "test_accuracy.png", "Test accuracy, mean over seeds with 95% CI")
    save(loss_curves(epochs, trials, shown), "loss_curves.png", "Loss curves per configuration")
    if (shown.finished > 0).any():
        save(confusion_matrices(trials, shown, classes), "confusion.png",
             "Normalized confusion matrices (rows: true class) of each configuration's best trial")
    if len(configs) >= 12:
        doc.h("Effect of each axis")
        fig, best_per_value = axis_effects(configs)
        save(fig, "axes.png", "Mean validation accuracy of every configuration, by axis value")
        doc.table(best_per_value)

    doc.h("Provenance")
    doc.table(pd.DataFrame([
        {"item": "command", "value": " ".join(study.get("command", []))},
        {"item": "git revision", "value": study.get("git_revision")},
        {"item": "data fingerprint", "value": study.get("data_fingerprint")},
        {"item": "baselines data fingerprint", "value": base["data_fingerprint"] if base else "—"},
        {"item": "packages", "value": ", ".join(f"{k} {v}" for k, v in study.get("packages", {}).items())},
        {"item": "python / platform", "value": f"{study.get('python')} / {study.get('platform')}"},
    ]))  # fmt: skip
    if base and base["data_fingerprint"] != study.get("data_fingerprint"):
        doc.p("Warning: the baselines were computed on different data than the study.")
    for key, title in (("skipped_files", "Files left out"), ("converted_files", "Images converted on load"),
                       ("duplicate_files", "Duplicates within a split (kept)")):  # fmt: skip
        if study.get(key):
            doc.h(title, 3)
            doc.table(pd.DataFrame({"file: reason": study[key]}))

    config_columns = [c for c in trials.columns if not c.endswith(("_confusion", "_pred"))]
    epochs.merge(trials[config_columns], on="trial_id").to_csv(os.path.join(out_dir, "epochs.csv"), index=False)
    with open(os.path.join(out_dir, "report.md"), "w") as f:
        f.write(doc.markdown())
    with open(os.path.join(out_dir, "report.html"), "w") as f:
        f.write(doc.html(out_dir))
    return doc


def comparison_row(a: str, b: str, test) -> dict[str, Any]:
    return {"A": a, "B": b, "A - B (points)": round(100 * test.diff, 1),
            "95% CI": f"{100 * test.lo:+.1f} to {100 * test.hi:+.1f}", "p (bootstrap)": format_p(test.p_bootstrap),
            "only A / only B right": f"{test.only_a} / {test.only_b}", "p (McNemar)": round(test.p_mcnemar, 3),
            "real?": "yes" if test.distinguishable else "no"}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m analysis.report", description="Build a study's report.")
    p.add_argument("results_dir")
    p.add_argument("--baselines", help="directory holding baselines.json (python -m analysis.baselines)")
    p.add_argument("--out", help="output directory (default RESULTS_DIR/report)")
    args = p.parse_args(argv)
    out = args.out or os.path.join(args.results_dir, "report")
    for path, what in ((os.path.join(args.results_dir, "study.json"), "a study results directory"),
                       (args.baselines and os.path.join(args.baselines, BASELINES_FILE), "a baselines directory")):  # fmt: skip
        if path and not os.path.isfile(path):
            print(f"error: {path} not found; is {os.path.dirname(path)} {what}?", file=sys.stderr)
            return 2
    build_report(args.results_dir, out, args.baselines)
    print(f"wrote {os.path.join(out, 'report.md')}, report.html, figures/ and epochs.csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
