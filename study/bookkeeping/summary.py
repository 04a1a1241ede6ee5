"""How a study ended: the summary table (summary.csv), best/ chosen, and the lines printed."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

import pandas as pd

from study.bookkeeping.plan import Plan, fetch
from trainable.config import RANDOM_INIT_NOTICE, TrialConfig, comparable_settings, differs_from, is_pretrained
from trainable.errors import UserError
from trainable.results import storage as store
from trainable.results.atomic_io import read_json, write_csv, write_json
from trainable.results.layout import (
    BEST_DIR,
    BEST_FILE,
    BUDGET_FILE,
    SEARCH_ID,
    STOPPED_FILE,
    SUMMARY_FILE,
    searched_identity,
    trial_outcome,
)
from trainable.results.records import is_final, reported

if TYPE_CHECKING:
    from trainable.data.face_detection import Runner

SUMMARY_COLUMNS = {  # result key -> column title
    "experiment": "exp",
    "name": "name",
    "seed": "seed",
    "status": "status",
    "stopped_by": "stopped_by",
    reported.epoch: "epochs",
    reported.best_epoch: "best_epoch",
    reported.val_acc_best: "val_acc",
    reported.test_acc_best: "test_acc",
    reported.test_bacc_best: "test_bacc",
    reported.test_f1_best: "test_f1",
    reported.train_seconds: "train_s",
}
SETTINGS_COLUMNS = ["weights", "max epochs", "stop rule", "precision", "normalization", "differs from #1"]


def class_count_lines(counts: dict[str, dict[str, int]]) -> str:
    """'Images per class: train 1-4 120 (33%), ...', one line per split: imbalance in plain sight."""
    lines = ["Images per class (share of the split):"]
    for split, per_class in counts.items():
        total = sum(per_class.values()) or 1
        lines.append(f"  {split:5} " + ", ".join(f"{c} {n} ({100 * n / total:.0f}%)" for c, n in per_class.items()))
    return "\n".join(lines)


def summary_row(result: Any, directory: str, weights_labels: dict[str, str], reference: TrialConfig) -> dict[str, Any]:
    """One trial: how it ended, its best epoch's scores, and the settings that make them comparable."""
    metrics = result.metrics or {}
    status, stopped_by = trial_outcome(directory, final_metrics(result))
    if result.error is not None:
        status, stopped_by = "error", f"error: {type(result.error).__name__}"
    values = {**result.config, **metrics, "status": status, "stopped_by": stopped_by}
    if result.config.get("config_id") == SEARCH_ID:  # each searched trial is its own configuration
        values.update(searched_identity(directory, result.config))
    return {
        **{title: values.get(key) for key, title in SUMMARY_COLUMNS.items()},
        # the resolved precisions once finished
        **comparable_settings(
            result.config, weights_labels, values.get(reported.precision), values.get(reported.precision_trained)
        ),
        "differs from #1": differs_from(result.config, reference.to_dict()),
    }


def summarize(
    results: Any, experiment_dir: str, weights_labels: dict[str, str], reference: TrialConfig
) -> tuple[str, int]:
    """The trials (sorted by experiment and seed) and, per configuration, their settings;
    summary.csv holds both, one row per trial. Returns the text and how many trials failed."""
    rows = [summary_row(r, trial_dir(r, experiment_dir), weights_labels, reference) for r in results]
    if not rows:
        return "No trial started.", 0
    table = pd.DataFrame(rows).sort_values(["exp", "seed"])
    write_csv(os.path.join(experiment_dir, SUMMARY_FILE), table)
    settings = table[["exp", "name", *SETTINGS_COLUMNS]].drop_duplicates()
    text = "\n\n".join(
        [
            table[list(SUMMARY_COLUMNS.values())].to_string(index=False, float_format=lambda v: f"{v:.3f}"),
            "Settings per configuration:\n" + settings.to_string(index=False),
        ]
    )
    return text, int((table.status == "error").sum())


def finish(plan: Plan, results: Any, summary_dir: str | None = None) -> int:
    """Print the summary (and the random-weights note), written to SUMMARY_DIR/summary.csv
    (default the study's); exit 1 if any trial failed. A stored study is summarized in its
    local mirror, and what that adds (summary.csv, best/, ...) is copied up."""
    fetch(plan)
    summary_dir = summary_dir or plan.directory
    started = [r for r in results if r.config is not None and os.path.isdir(trial_dir(r, summary_dir))]
    if os.path.exists(spent_file := os.path.join(plan.directory, BUDGET_FILE)):
        mark_budget_stops(started, summary_dir)
        spent = read_json(spent_file)
        print(
            f"\nThe budget of {spent['budget_epochs']} trial-epochs was spent ({spent['spent']} trained): "
            f"{len(results) - len(started)} trial(s) never started; trials running then stopped (stopped_by budget)."
        )
    table, failed = summarize(started, summary_dir, plan.weights_labels, plan.reference)
    best_line, best_failed = choose_best(plan.directory)
    if plan.stored:
        store.upload(plan.directory, plan.location)
    where = f"{store.redact(plan.location)} (local copy: {plan.directory})" if plan.stored else plan.location
    print(f"\n{table}\n\nResults: {where}")
    once(best_line)  # a confirmation's summary does not repeat what the study's said
    if not all(is_pretrained(w) for w in plan.weights_labels):
        once(f"\nNote: {RANDOM_INIT_NOTICE}")
    if failed:
        print(f"{failed} trial(s) failed; their errors are in the trial directories.", file=sys.stderr)
    return 1 if failed or best_failed else 0


SAID: set[str] = set()  # the lines once() printed in this process


def once(line: str) -> None:
    if line not in SAID:
        SAID.add(line)
        print(line)


def choose_best(directory: str) -> tuple[str, bool]:
    """Write best/ (analysis.best, the one part of analysis the study runs: in this process,
    so its failure is seen); (the line to print, whether it failed). The results stay
    whatever happens there: a failure is a line and exit code 1, never a traceback."""
    from analysis.best import NO_BEST, write_best

    try:
        return write_best(directory) or NO_BEST, False
    except Exception as err:  # any bug there must not hide the summary printed before it
        where = f"python -m analysis.best {directory}"
        return f"Choosing the best model failed ({type(err).__name__}: {err}); `{where}` retries it.", True


def print_answer(directory: str) -> None:
    """The study's last word: the answer on its confirmation runs, and how to set it against the
    baselines (analysis.best.answer); nothing where no configuration was confirmed."""
    from analysis.best import answer

    try:
        said = answer(directory)
    except Exception as err:  # the results are written; a failure here is one line
        said = f"The answer could not be read back ({type(err).__name__}: {err}); python -m analysis.report says it."
    if said:
        once(f"\n{said}")


def print_next(location: str) -> None:
    """The study's last line: the command for its report, unless its answer named it already."""
    if not any("python -m analysis.report" in line for line in SAID):
        once(f"\nNext, the report: python -m analysis.report {store.redact(location)}")


def recorded_outcomes(location: str) -> dict[tuple[str, int], str]:
    """(config id, seed) -> how the study's trial of it stands ("finished (12 epochs)", "unfinished
    (3 epochs)", "error ..."), from its results folder (a stored study's local copy); {} if none."""
    from analysis.results import load_study

    directory = store.mirror(location) if store.is_uri(location) else location
    if not os.path.isdir(directory):
        return {}
    trials, _ = load_study(directory)
    return {
        (t.config_id, int(t.seed)): f"{t.status} ({int(t.epochs) if t.epochs == t.epochs else 0} epochs)"
        for t in trials.itertuples()
    }


def ranked_configurations(directory: str, top: int) -> list[str]:
    """The `top` best configurations' ids by the ranking best.json takes its first from
    (analysis.best, in this process like choose_best): what a grid's confirmation reruns."""
    from analysis.best import ranked

    return ranked(directory, top)


def evaluate_elsewhere(
    plan: Plan, targets: tuple[str, ...], age_bins: str, store_dir: str, detect_runner: Runner
) -> int:
    """--evaluate-on: every seed of the best configuration on each other dataset (analysis.evaluate,
    in this process like choose_best); a line per dataset; 1 if one failed (the study's results stay)."""
    from analysis.evaluate import evaluate_best, summary_line

    if not os.path.isfile(os.path.join(plan.directory, BEST_DIR, BEST_FILE)):
        print("No best configuration: --evaluate-on has nothing to score.")
        return 1
    code = 0
    for target in targets:
        try:
            out, result = evaluate_best(plan.directory, target, age_bins, store_dir, detect_runner)
        except Exception as err:  # a bug there, too, must not hide the study's results, kept whatever happens
            why = str(err) if isinstance(err, UserError) else f"failed ({type(err).__name__}: {err})"
            print(f"--evaluate-on {target}: {why}", file=sys.stderr)
            code = 1
            continue
        print(f"Beyond the training data: {summary_line(result)}; {out}")
    if plan.stored:
        store.upload(plan.directory, plan.location)
    return code


def trial_dir(result: Any, experiment_dir: str) -> str:
    """A trial's folder on this machine (Ray's result.path may be a path in object storage)."""
    return os.path.join(experiment_dir, os.path.basename(result.path))


def final_metrics(result: Any) -> dict[str, Any] | None:
    """A trial's final report (its test scores), or None if it ended before making one."""
    return result.metrics if is_final(result.metrics or {}) else None


def mark_budget_stops(results: Any, experiment_dir: str) -> None:
    """Trials that --budget-epochs stopped before they ended say so (STOPPED_FILE)."""
    for result in results:
        directory = trial_dir(result, experiment_dir)
        if trial_outcome(directory, final_metrics(result))[0] == "unfinished":
            write_json(os.path.join(directory, STOPPED_FILE), {"stopped_by": "budget"})
