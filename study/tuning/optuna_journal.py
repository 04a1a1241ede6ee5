"""--search optuna with its Optuna study kept in the study folder (STUDY/optuna.journal),
named as the study: optuna-dashboard and optuna.load_study read it, and a resumed search
adds its trials to the same study (Tune restores the searcher, journal path included).

Imports Ray and Optuna: only a search that uses Optuna imports it (study.tuning.search)."""

from __future__ import annotations

from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from ray.tune.search.optuna import OptunaSearch

from study.tuning import ray_internals


class JournaledOptunaSearch(OptunaSearch):
    """Tune's OptunaSearch, for a journal that can be ahead of the searcher state Tune
    restores: a trial the killed run had already told Optuna is finished in the journal, and
    a result Tune replays for it (its final report, once more) is skipped, not an error."""

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        try:
            super().on_trial_result(trial_id, result)
        except UpdateFinishedTrialError:
            ray_internals.mark_completed(self, trial_id)


def optuna_searcher(points: list[dict[str, Any]], seed: int, journal: tuple[str, str] | None) -> OptunaSearch:
    """TPE seeded with `seed`, trying `points` first; kept in `journal` = (file, study name)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no line per study or trial
    sampler = optuna.samplers.TPESampler(seed=seed)
    if journal is None:
        return OptunaSearch(points_to_evaluate=points, sampler=sampler)
    path, name = journal
    storage = JournalStorage(JournalFileBackend(path))
    return JournaledOptunaSearch(points_to_evaluate=points, sampler=sampler, storage=storage, study_name=name)
