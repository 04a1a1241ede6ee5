"""What a report reads from one results directory: the study's record (study.json), its
trials and epochs, each configuration's scores and intervals, its confirmation or search
runs, the chosen best, and baselines where they were computed on the same split."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.results import load_study
from analysis.tables import config_table, fanova_importance, selected
from trainable.config import is_pretrained
from trainable.errors import UserError
from trainable.results.layout import (
    BASELINES_FILE,
    BEST_DIR,
    BEST_FILE,
    CONFIRM_DIR,
    OPTUNA_FILE,
    PEER_FILE,
    SELECTIONS,
)
from trainable.results.study_record import StudyRecord, read_study_record


@dataclass
class Study:
    """Everything the report reads from one results directory (and a baselines directory)."""

    name: str
    record: StudyRecord  # study.json
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
    search_choice: int | None = None  # a confirmed search's chosen trial (search_choice), fixed before confirmation

    @property
    def classes(self) -> list[str]:
        return self.record.classes

    @property
    def class_counts(self) -> dict[str, list[int]]:
        """Images per class in each split, in the order of `classes` (from the split's labels)."""
        n = len(self.classes)
        return {split: np.bincount(y, minlength=n).tolist() for split, y in self.record.split_labels.items()}

    @property
    def select(self) -> str:
        return self.record.select

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
        if self.searched is not None:  # the one chosen on the search runs, never re-picked on the runs that test it
            chosen = self.ranked[self.ranked.experiment == self.search_choice]
            return chosen.iloc[0] if len(chosen) else None
        if self.confirmed is None or not len(self.confirmed):
            return None
        again = self.confirmed[self.confirmed.complete & (self.confirmed.scored > 0)]
        again = again[again.config_id == f"confirm-{self.ranked.iloc[0].config_id}"]
        return again.iloc[0] if len(again) else None

    @property
    def pretrained(self) -> bool:
        return len(self.trials) > 0 and all(is_pretrained(w) for w in self.trials.weights.dropna())


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
        theirs = record.get("split_id")  # analysis.baselines and analysis.peer write it
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


def search_choice(trials: pd.DataFrame, epochs: pd.DataFrame, select: str) -> int | None:
    """The searched trial (its number) a search's confirmation stage put first: the best --select
    value as Tune last saw it (study.sources.SearchSource.chosen), chosen before any confirmation run."""
    scores = pd.Series(trials.trial_id.map(selected(epochs, select)).to_numpy(), index=trials.experiment).dropna()
    if scores.empty:
        return None
    return int(scores.idxmin() if SELECTIONS[select][1] == "min" else scores.idxmax())


def load_inputs(results_dir: str, baselines_dir: str | None) -> Study:
    record = read_study_record(results_dir)
    if record is None:
        raise UserError(f"{results_dir} holds no study.json; is it a study's results directory?")
    trials, epochs = load_study(results_dir)
    searched, confirmation = None, None
    if os.path.isdir(os.path.join(results_dir, CONFIRM_DIR)):
        confirmation = load_study(os.path.join(results_dir, CONFIRM_DIR), CONFIRM_DIR + "/")
        if record.search:  # the ranking uses the confirmation runs alone; the search's are shown apart
            searched = trials, epochs
            trials, epochs = confirmation
            confirmation = None
    labels = np.asarray(record.split_labels["test"])
    groups = np.asarray(record.split_groups["test"], str) if record.split_groups else None
    reference, weights_labels, n_classes = record.reference_config, record.weights_labels, len(record.classes)
    configs = (
        config_table(trials, epochs, labels, weights_labels, reference, n_classes, record.select, groups)
        if len(trials)
        else pd.DataFrame()
    )
    confirmed = None
    if confirmation is not None and len(confirmation[0]):
        confirmed = config_table(*confirmation, labels, weights_labels, reference, n_classes, record.select, groups)
    baselines, notes = load_baselines(baselines_dir, record.split_id)
    name = os.path.basename(os.path.abspath(results_dir))
    best_file = os.path.join(results_dir, BEST_DIR, BEST_FILE)
    best = None
    if os.path.exists(best_file):
        with open(best_file) as f:
            best = json.load(f)
    journal = os.path.join(results_dir, OPTUNA_FILE)
    fanova = fanova_importance(journal) if os.path.exists(journal) else None
    choice = search_choice(*searched, record.select) if searched is not None else None
    return Study(
        name,
        record,
        trials,
        epochs,
        configs,
        labels,
        baselines,
        notes,
        best,
        searched,
        fanova,
        groups,
        confirmed,
        choice,
    )
