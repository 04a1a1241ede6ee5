"""A results directory -> tidy tables.

Convention: `epochs` has one row per trial x epoch (trial_id, epoch, train_loss,
val_loss, val_acc, epoch_seconds, and time: when Ray recorded it, Unix seconds);
`trials` has one row per trial: its config and final metrics (best epoch,
accuracies of the best model, confusion matrices, stopped_by; `precision_used`,
the resolved precision) and how it ended, `status`:

- 'finished': it ended on its own (stopped_by max_epochs, early_stopping or diverged);
- 'stopped': the scheduler (ASHA) stopped it, at its last epoch (stopped_by asha);
- 'error': it raised and was not retried to the end (stopped_by error);
- 'unfinished': still running, or the study was interrupted (stopped_by unfinished).

A study with no trial yet gives two empty tables.

    python -m analysis.results RESULTS_DIR [--csv epochs.csv]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Mapping
from typing import Any

import pandas as pd

from trainable.cli_options import prog
from trainable.config import TrialConfig, comparable_settings, expand_choices
from trainable.errors import parse_printable
from trainable.results.atomic_io import write_csv
from trainable.results.layout import (
    CONFIRM_DIR,
    PARAMS_FILE,
    RESULT_FILE,
    SEARCH_ID,
    STUDY_FILE,
    searched_identity,
    trial_outcome,
)
from trainable.results.records import is_final, reported
from trainable.results.study_record import read_study_record

EPOCH_COLUMNS = [reported.epoch, reported.train_loss, reported.val_loss, reported.val_acc, reported.epoch_seconds]
# What Tune and --select rank on (the best epoch's so far), and the epoch's balanced accuracy.
SELECTION_COLUMNS = [reported.val_bacc, reported.best_val_loss, reported.best_val_acc, reported.best_val_bacc]
EMPTY_EPOCHS = {c: pd.Series(dtype=float) for c in [*EPOCH_COLUMNS, *SELECTION_COLUMNS, "time"]}
TRIAL_COLUMNS = ["trial_id", "experiment", "name", "config_id", "seed", "epochs", "status", "stopped_by"]
# Final metrics every trials table has, empty (NaN/None) until some trial reports them.
FINAL_COLUMNS = [
    reported.best_epoch,
    reported.train_acc_best,
    reported.val_acc_best,
    reported.test_acc_best,
    reported.val_bacc_best,
    reported.test_bacc_best,
    reported.val_f1_best,
    reported.test_f1_best,
    reported.train_seconds,
    "precision_used",  # the record's precision (the config keeps its own)
    reported.precision_trained,
    reported.val_pred,
    reported.test_pred,
    reported.train_confusion,
    reported.val_confusion,
    reported.test_confusion,
]
RAY_BOOKKEEPING = {  # keys Ray Tune adds to every result; node_ip and time_total_s are kept
    "timestamp",
    reported.reported_at,
    "checkpoint_dir_name",
    "should_checkpoint",
    "done",
    "training_iteration",
    "trial_id",
    "date",
    "time_this_iter_s",
    "pid",
    "hostname",
    "time_since_restore",
    "iterations_since_restore",
    "experiment_tag",
    "config",
}


def read_trial(trial_dir: str) -> tuple[dict, list[dict]]:
    """(config, reported rows) of one Ray Tune trial directory."""
    with open(os.path.join(trial_dir, PARAMS_FILE)) as f:
        config = json.load(f)
    rows = []
    path = os.path.join(trial_dir, RESULT_FILE)
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                with contextlib.suppress(json.JSONDecodeError):  # a line cut short by a killed driver:
                    rows.append(json.loads(line))  # the resumed trial reports that epoch again
    return config, rows


def time_of(row: dict) -> float | None:
    """When the trial reported this epoch: its own clock, else Ray's (whole seconds)."""
    return row.get(reported.reported_at, row.get("timestamp"))


def load_study(directory: str, prefix: str = "") -> tuple[pd.DataFrame, pd.DataFrame]:
    """(trials, epochs) tables of one study's results directory; trial ids are the trial
    directories' names under `prefix` (e.g. 'confirm/'). A searched trial's choice labels
    become their settings (study.json's expansions) and it gets its own identity."""
    record = read_study_record(directory)
    expansions = record.expansions if record else {}
    trial_dirs = sorted(
        entry.path
        for entry in os.scandir(directory)
        if entry.is_dir() and os.path.exists(os.path.join(entry.path, PARAMS_FILE))
    )
    trials, epochs = [], []
    for trial_dir in trial_dirs:
        config, rows = read_trial(trial_dir)
        trial_id = prefix + os.path.basename(trial_dir)
        config = expand_choices(config, expansions)
        if config.get("config_id") == SEARCH_ID:
            config.update(searched_identity(trial_id, config))
        by_epoch = {row[reported.epoch]: row for row in rows}  # a resumed trial may repeat epochs
        for epoch in sorted(by_epoch):
            row = by_epoch[epoch]
            values = {k: row[k] for k in (*EPOCH_COLUMNS, *SELECTION_COLUMNS)}
            epochs.append({"trial_id": trial_id, **values, "time": time_of(row)})
        final = next((row for row in reversed(rows) if is_final(row)), None)
        skip = RAY_BOOKKEEPING.union(EPOCH_COLUMNS)
        metrics = {k: v for k, v in (final or {}).items() if k not in skip}
        if reported.precision in metrics:  # the resolved one (auto -> bf16/fp32); the config keeps its own
            metrics["precision_used"] = metrics.pop(reported.precision)
        status, stopped_by = trial_outcome(trial_dir, final)
        trials.append(
            {
                "trial_id": trial_id,
                **config,
                "epochs": max(by_epoch, default=0),
                **metrics,
                "status": status,
                "stopped_by": stopped_by,
            }
        )
    table = pd.DataFrame(trials, columns=None if trials else TRIAL_COLUMNS)
    for column in FINAL_COLUMNS:
        if column not in table:
            table[column] = None if column.endswith(("_pred", "_confusion", "_used", "_trained")) else float("nan")
    if not epochs:  # typed, so that numeric code on an empty table works (every trial errored)
        return table, pd.DataFrame({"trial_id": pd.Series(dtype=object), **EMPTY_EPOCHS})
    return table, pd.DataFrame(epochs)


def config_of(trial: Mapping[str, Any]) -> dict[str, Any]:
    """A trials-table row's config keys as recorded (no NaN from other trials' columns)."""
    return {
        k: trial[k]
        for k in TrialConfig().to_dict()
        if k in trial and not (isinstance(trial[k], float) and trial[k] != trial[k])
    }


def settings_columns(trials: pd.DataFrame, weights_labels: dict[str, str]) -> pd.DataFrame:
    """Per trial, the comparable settings (trainable.config.comparable_settings)."""
    rows = []
    for trial in trials.to_dict("records"):
        used, trained = (
            v if isinstance(v, str) else None for v in (trial.get("precision_used"), trial.get("precision_trained"))
        )
        rows.append(comparable_settings(config_of(trial), weights_labels, used, trained))
    return pd.DataFrame(rows, index=trials.index)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog=prog("analysis.results"), description=__doc__.split("\n")[0])
    p.add_argument("results_dir")
    p.add_argument("--csv", help="write the tidy per-epoch table (with each trial's config) here")
    args = parse_printable(p, argv)
    if not os.path.isdir(args.results_dir):
        print(f"error: {args.results_dir} is not a directory", file=sys.stderr)
        return 2
    if not os.path.isfile(os.path.join(args.results_dir, STUDY_FILE)):  # written before any trial starts
        print(f"error: {args.results_dir} holds no {STUDY_FILE}; is it a study's results directory?", file=sys.stderr)
        return 2
    trials, epochs = load_study(args.results_dir)
    if trials.empty:
        print(f"{args.results_dir} holds no trial yet (nothing has started or been recorded).")
        return 0
    record = read_study_record(args.results_dir)
    labels = record.weights_labels if record else {}
    columns = [
        "experiment",
        "name",
        "seed",
        "status",
        "epochs",
        reported.best_epoch,
        reported.val_acc_best,
        reported.test_acc_best,
        reported.test_bacc_best,
        reported.test_f1_best,
        reported.train_seconds,
        "stopped_by",
    ]
    shown = pd.concat([trials.reindex(columns=columns), settings_columns(trials, labels)], axis=1)
    print(shown.sort_values(["experiment", "seed"]).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if args.csv:
        write_csv(args.csv, epochs_table(args.results_dir))
        print(f"wrote {args.csv}")
    return 0


def epochs_with_settings(trials: pd.DataFrame, epochs: pd.DataFrame) -> pd.DataFrame:
    """One row per trial-epoch with its trial's settings and final scores beside it: one column
    per quantity (a trial column the epochs already have is not added twice, as merge's _x/_y
    would), no per-image predictions or confusion matrices."""
    columns = [c for c in trials.columns if c not in epochs.columns and not c.endswith(("_confusion", "_pred"))]
    return epochs.merge(trials[["trial_id", *columns]], on="trial_id")


def epochs_table(directory: str) -> pd.DataFrame:
    """Every trial-epoch of a study as data (epochs.csv, analysis.results --csv): its own trials and
    its confirmation's (`stage` study or confirm), each with its settings and final scores;
    `precision` and `train_precision` what the trunk and the trained part ran in (auto resolved),
    `reported_at` when the epoch was reported (Unix seconds)."""
    parts = [(directory, "", "study"), (os.path.join(directory, CONFIRM_DIR), CONFIRM_DIR + "/", "confirm")]
    tables = []
    for folder, prefix, stage in parts:
        if os.path.isdir(folder):
            trials, epochs = load_study(folder, prefix)
            tables.append(epochs_with_settings(trials, epochs).assign(stage=stage))
    table = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
    for ran, asked in (("precision_used", "precision"), (reported.precision_trained, "train_precision")):
        if ran in table:
            table[asked] = table[ran].fillna(table[asked]) if asked in table else table[ran]
    table = table.drop(columns=["precision_used", reported.precision_trained, "time_total_s"], errors="ignore")
    return table.rename(columns={"time": "reported_at"})


if __name__ == "__main__":
    sys.exit(main())
