"""A results directory -> tidy tables.

Convention: `epochs` has one row per trial x epoch (trial_id, epoch, train_loss,
val_loss, val_acc, epoch_seconds); `trials` has one row per trial: its config
and final metrics (best epoch, accuracies of the best model, confusion matrices,
stopped_by), `status` 'finished', 'stopped' (by ASHA, at its last epoch) or
'unfinished'.

    python -m analysis.results RESULTS_DIR [--csv epochs.csv]
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import pandas as pd

STOPPED_FILE = "stopped.json"  # in a trial dir: ASHA stopped it (study.tune_setup writes it)
EPOCH_COLUMNS = ["epoch", "train_loss", "val_loss", "val_acc", "epoch_seconds"]
RAY_BOOKKEEPING = {  # keys Ray Tune adds to every result; node_ip and time_total_s are kept
    "timestamp", "checkpoint_dir_name", "should_checkpoint", "done", "training_iteration",
    "trial_id", "date", "time_this_iter_s", "pid", "hostname", "time_since_restore",
    "iterations_since_restore", "experiment_tag", "config",
}  # fmt: skip


def read_trial(trial_dir: str) -> tuple[dict, list[dict]]:
    """(config, reported rows) of one Ray Tune trial directory."""
    with open(os.path.join(trial_dir, "params.json")) as f:
        config = json.load(f)
    rows = []
    path = os.path.join(trial_dir, "result.json")
    if os.path.exists(path):
        with open(path) as f:
            rows = [json.loads(line) for line in f if line.strip()]
    return config, rows


def load_study(directory: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(trials, epochs) tables of one study's results directory."""
    trial_dirs = sorted(
        entry.path
        for entry in os.scandir(directory)
        if entry.is_dir() and os.path.exists(os.path.join(entry.path, "params.json"))
    )
    if not trial_dirs:
        raise FileNotFoundError(f"{directory} holds no Ray Tune trial directories")
    trials, epochs = [], []
    for trial_dir in trial_dirs:
        config, rows = read_trial(trial_dir)
        trial_id = os.path.basename(trial_dir)
        by_epoch = {row["epoch"]: row for row in rows}  # a resumed trial may repeat epochs
        for epoch in sorted(by_epoch):
            epochs.append({"trial_id": trial_id, **{k: by_epoch[epoch][k] for k in EPOCH_COLUMNS}})
        final = next((row for row in reversed(rows) if "best_epoch" in row), None)
        skip = RAY_BOOKKEEPING.union(EPOCH_COLUMNS)
        metrics = {k: v for k, v in (final or {}).items() if k not in skip}
        status = "finished" if final else "unfinished"
        stopped = os.path.join(trial_dir, STOPPED_FILE)
        if final is None and os.path.exists(stopped):
            with open(stopped) as f:
                metrics["stopped_by"] = json.load(f)["stopped_by"]
            status = "stopped"
        trials.append(
            {
                "trial_id": trial_id,
                **config,
                "epochs": max(by_epoch, default=0),
                "status": status,
                **metrics,
            }
        )
    return pd.DataFrame(trials), pd.DataFrame(epochs)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m analysis.results", description=__doc__.split("\n")[0])
    p.add_argument("results_dir")
    p.add_argument("--csv", help="write the tidy per-epoch table (with each trial's config) here")
    args = p.parse_args(argv)
    try:
        trials, epochs = load_study(args.results_dir)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    columns = ["experiment", "name", "seed", "status", "epochs", "best_epoch",
               "val_acc_best", "test_acc_best", "train_seconds", "stopped_by"]  # fmt: skip
    shown = trials.reindex(columns=columns).sort_values(["experiment", "seed"])
    print(shown.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if args.csv:
        config_columns = [c for c in trials.columns if not c.endswith("_confusion")]
        epochs.merge(trials[config_columns], on="trial_id").to_csv(args.csv, index=False)
        print(f"wrote {args.csv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
