"""What a report reads from one results directory: the study's record (study.json), its
trials and epochs, each configuration's scores and intervals, its confirmation or search
runs, the chosen best, and baselines where they were computed on the same split."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.results import load_study, read_study_record, selection_of
from analysis.tables import config_table, fanova_importance
from trainable.config import is_pretrained
from trainable.results_layout import (
    BASELINES_FILE,
    BEST_DIR,
    BEST_FILE,
    CONFIRM_DIR,
    OPTUNA_FILE,
    PEER_FILE,
    split_identity,
)


@dataclass
class Study:
    """Everything the report reads from one results directory (and a baselines directory)."""

    name: str
    record: dict  # study.json
    trials: pd.DataFrame
    epochs: pd.DataFrame
    configs: pd.DataFrame  # analysis.tables.config_table
    labels: np.ndarray  # test labels, in split order
    baselines: list[dict] | None  # only when computed on the same split
    notes: list[str]  # why something was left out; printed by the CLI too
    best: dict | None = None  # best/best.json (analysis.best), where written
    searched: tuple[pd.DataFrame, pd.DataFrame] | None = None  # a confirmed search's own (trials, epochs)
    fanova: tuple[pd.DataFrame, int] | None = None  # an Optuna search's fANOVA importances (tables.fanova_importance)
    groups: np.ndarray | None = None  # each test image's person, when the split was grouped (--group-by)
    confirmed: pd.DataFrame | None = None  # a grid's confirmation runs (confirm/), as config_table rows

    @property
    def classes(self) -> list[str]:
        return list(self.record.get("classes", ["1-4", "5-27", "28+"]))

    @property
    def class_counts(self) -> dict[str, list[int]]:
        """Images per class in each split (from the recorded split labels, so older studies too)."""
        n = len(self.classes)
        return {split: np.bincount(y, minlength=n).tolist() for split, y in self.record["split_labels"].items()}

    @property
    def select(self) -> str:
        return selection_of(self.record)

    @property
    def ranked(self) -> pd.DataFrame:
        """Configurations whose seeds all finished and were scored, best mean --select value first."""
        c = self.configs
        return c[c.complete & (c.scored > 0)] if len(c) else c

    @property
    def claimed(self) -> pd.Series | None:
        """The best configuration's row on runs that did not choose it: a confirmed search's
        ranking (its confirmation runs), or a grid's confirmation of its best; else None."""
        if not len(self.ranked):
            return None
        if self.searched is not None:
            return self.ranked.iloc[0]
        if self.confirmed is None or not len(self.confirmed):
            return None
        again = self.confirmed[self.confirmed.complete & (self.confirmed.scored > 0)]
        again = again[again.config_id == f"confirm-{self.ranked.iloc[0].config_id}"]
        return again.iloc[0] if len(again) else None

    @property
    def pretrained(self) -> bool:
        return len(self.trials) > 0 and all(is_pretrained(w) for w in self.trials.weights.dropna())


def split_id_of(record: dict) -> dict | None:
    """A results file's split identity: recorded, or computed from its paths and labels."""
    if "split_id" in record:
        return record["split_id"]
    if "split_paths" in record and "split_labels" in record:
        return split_identity(record["split_paths"], record["split_labels"])
    return None


def load_baselines(directory: str | None, study_split: dict | None) -> tuple[list[dict] | None, list[str]]:
    """baselines.json's records (and the zero-shot peer's from peer.json beside it), each
    only if computed on the study's split; the notes say what was left out and why."""
    if directory is None:
        return None, []
    records, notes = None, []
    for file, what in ((BASELINES_FILE, "HOG/LBP baselines"), (PEER_FILE, "zero-shot peer")):
        path = os.path.join(directory, file)
        if not os.path.exists(path):
            continue
        with open(path) as f:
            record = json.load(f)
        theirs = split_id_of(record)
        if theirs is None or theirs != study_split:
            which = (
                "records no split"
                if theirs is None
                else "differs in "
                + ", ".join(s for s in ("train", "val", "test") if theirs.get(s) != (study_split or {}).get(s))
            )
            notes.append(
                f"The {what} in {path} were left out of every table and figure: "
                f"they were computed on another split than this study's ({which})."
            )
            continue
        records = (records or []) + (record["baselines"] if file == BASELINES_FILE else [record["peer"]])
    return records, notes


def load_inputs(results_dir: str, baselines_dir: str | None) -> Study:
    record = read_study_record(results_dir)
    trials, epochs = load_study(results_dir)
    searched, confirmation = None, None
    if os.path.isdir(os.path.join(results_dir, CONFIRM_DIR)):
        confirmation = load_study(os.path.join(results_dir, CONFIRM_DIR), CONFIRM_DIR + "/")
        if record.get("search"):  # the ranking uses the confirmation runs alone; the search's are shown apart
            searched = trials, epochs
            trials, epochs = confirmation
            confirmation = None
    labels = np.asarray(record["split_labels"]["test"])
    groups = record.get("split_groups", {}).get("test")
    groups = np.asarray(groups, str) if groups is not None else None
    reference = record.get("reference_config")
    if reference is None and len(trials) and (trials.experiment == 1).any():
        reference = trials[trials.experiment == 1].iloc[0].to_dict()  # an older study.json
    weights_labels = record.get("weights_labels", {})
    n_classes = len(record.get("classes", [])) or 3
    configs = (
        config_table(trials, epochs, labels, weights_labels, reference, n_classes, selection_of(record), groups)
        if len(trials)
        else pd.DataFrame()
    )
    confirmed = None
    if confirmation is not None and len(confirmation[0]):
        confirmed = config_table(
            *confirmation, labels, weights_labels, reference, n_classes, selection_of(record), groups
        )
    baselines, notes = load_baselines(baselines_dir, split_id_of(record))
    name = os.path.basename(os.path.abspath(results_dir))
    best_file = os.path.join(results_dir, BEST_DIR, BEST_FILE)
    best = None
    if os.path.exists(best_file):
        with open(best_file) as f:
            best = json.load(f)
    journal = os.path.join(results_dir, OPTUNA_FILE)
    fanova = fanova_importance(journal) if os.path.exists(journal) else None
    return Study(
        name, record, trials, epochs, configs, labels, baselines, notes, best, searched, fanova, groups, confirmed
    )
