"""The results directory's layout: every file a study writes and reads, named once.

study/ writes, trainable/ checkpoints, analysis/ reads; all three import these
names from here, so no layer needs another's module to find a file. Standard
library only: the report imports it without torch or Ray.

    STUDY/study.json                 provenance, trials, split (study.bookkeeping.provenance)
    STUDY/summary.csv                the summary the CLI printed
    STUDY/skipped_files.txt          files left out by --on-bad-image skip
    STUDY/<trial>/params.json        Ray Tune: the trial's flat config
    STUDY/<trial>/result.json        Ray Tune: one JSON row per report
    STUDY/<trial>/error.txt          Ray Tune: the trial raised
    STUDY/<trial>/stopped.json       the scheduler (ASHA) stopped it, and at which epoch
    STUDY/<trial>/checkpoint_*/trial.pt, model.pt, metrics.json
    STUDY/best/best.json, model.pt   the chosen configuration and its model (analysis.best)
    STUDY/confirm/<trial>/...        a search's confirmation runs (--confirm-top), trials as above
    STUDY/evaluations/NAME.json      --evaluate-on: the best configuration's seeds on another dataset
    STUDY/optuna.journal             --search optuna: the Optuna study (optuna-dashboard, optuna.load_study)
    BASELINES/baselines.json, peer.json
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence

from trainable.errors import UserError
from trainable.results.records import reported

STUDY_FILE = "study.json"
SUMMARY_FILE = "summary.csv"
SKIPPED_FILE = "skipped_files.txt"
PARAMS_FILE = "params.json"
RESULT_FILE = "result.json"
ERROR_FILE = "error.txt"
STOPPED_FILE = "stopped.json"
BUDGET_FILE = "budget.json"  # in a study's directory: its --budget-epochs was spent
STATE_FILE = "trial.pt"  # TrainState; mid-run also the trainable weights and optimizer
MODEL_FILE = "model.pt"  # final checkpoint: the best model (trainable.model.load_trained)
METRICS_FILE = "metrics.json"  # final checkpoint: the trial's final metrics
BEST_DIR = "best"  # the chosen configuration's best.json and model.pt (analysis.best)
BEST_FILE = "best.json"
EVALUATIONS_DIR = "evaluations"  # --evaluate-on: the best configuration's seeds on each other dataset, as JSON
BASELINES_FILE = "baselines.json"
OPTUNA_FILE = "optuna.journal"  # --search optuna: the Optuna study, named as the study, in a journal file

# --select: the one metric Tune, ASHA, the searcher, --confirm-top, best.json and the report rank
# trials on. Each is reported every epoch as the best epoch's (lowest val loss so far) value:
# name -> (reported key, Tune mode).
SELECTIONS = {
    "val_loss": (reported.best_val_loss, "min"),
    "val_acc": (reported.best_val_acc, "max"),
    "val_bacc": (reported.best_val_bacc, "max"),
}
DEFAULT_SELECT = "val_acc"
PEER_FILE = "peer.json"
CONFIRM_DIR = "confirm"  # a search study's confirmation runs: a Tune experiment inside the study's
SEARCH_ID = "search"  # config_id of every searched trial: each is its own configuration


def search_trial_number(trial_dir: str) -> int:
    """A searched trial's number from its directory's name: 't007-lr0.00032-...' -> 7."""
    return int(os.path.basename(trial_dir).split("-")[0][1:])


def searched_identity(trial_id: str, config: dict) -> dict:
    """A searched trial (config_id SEARCH_ID, named 't007-lr0.0003-...') is its own configuration:
    experiment 7, config_id 'search-7', named by its number and values ('t007-lr0.0003-...')."""
    number = search_trial_number(trial_id)
    return {"experiment": number, "config_id": f"search-{number}", "name": os.path.basename(trial_id)}


def split_identity(paths: Mapping[str, Sequence[str]], labels: Mapping[str, Sequence[int]]) -> dict[str, str]:
    """Per split, the sha256 of its ordered (file, label) list: two results are on the
    same split only when all three match (baselines train on train and tune on val)."""
    return {
        split: hashlib.sha256(json.dumps([list(paths[split]), list(map(int, labels[split]))]).encode()).hexdigest()
        for split in ("train", "val", "test")
    }


def trial_outcome(trial_dir: str, final: Mapping | None) -> tuple[str, str]:
    """How a trial ended, from its final metrics (None if it reported none) and the
    files in its directory: (status, stopped_by), status one of 'finished' (stopped_by
    max_epochs, early_stopping or diverged), 'stopped' (asha, budget), 'error', 'unfinished'
    (running, or the study was interrupted). Never 'asha' without STOPPED_FILE."""
    if final is not None and reported.stopped_by in final:
        return "finished", final[reported.stopped_by]
    stopped = os.path.join(trial_dir, STOPPED_FILE)
    if os.path.exists(stopped):
        with open(stopped) as f:
            return "stopped", json.load(f)["stopped_by"]
    if os.path.exists(os.path.join(trial_dir, ERROR_FILE)):
        return "error", "error"
    return "unfinished", "unfinished"


def model_file(spec: str, given_as: str = "--model") -> str:
    """A results directory's best model, or a model file; `given_as`: the argument as the user wrote
    it (an option, or a positional's name) for the error."""
    path = os.path.join(spec, BEST_DIR, MODEL_FILE) if os.path.isdir(spec) else spec
    if not os.path.isfile(path):
        hint = f"; write it with: python -m analysis.best {spec}" if os.path.isdir(spec) else ""
        said = f"{given_as} {spec}: {path}" if path != spec else f"{given_as} {spec}"
        raise UserError(f"{said} does not exist{hint}.")
    return path
