"""Optional MLflow tracking (`--mlflow URI`, the `mlflow` extra): the URI checked before
Ray starts, then one parent run per study (study.json as its artifact) and one child
run per trial with its hyperparameters as params, experiment/name/seed as tags, and
per-epoch and final best-epoch metrics, stepped by epoch."""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from typing import Any

from ray.tune.logger import LoggerCallback

from trainable.errors import UserError
from trainable.records import reported
from trainable.results_files import STUDY_FILE

# Metrics are the numbers a trial reports, minus Ray's bookkeeping and the config it echoes.
RAY_KEYS = {
    "timestamp",
    "training_iteration",
    "time_this_iter_s",
    "time_total_s",
    "pid",
    "time_since_restore",
    "iterations_since_restore",
    "done",
    "should_checkpoint",
}
SUGGESTION = "Use a database, e.g. --mlflow sqlite:///mlflow.db, or a tracking server, e.g. --mlflow http://HOST:5000."


@contextlib.contextmanager
def fail_fast() -> Iterator[None]:
    """MLflow retries an unreachable server for minutes; for the check, once and briefly."""
    saved = {k: os.environ.get(k) for k in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT")}
    os.environ.update(MLFLOW_HTTP_REQUEST_MAX_RETRIES="0", MLFLOW_HTTP_REQUEST_TIMEOUT="10")
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def check_tracking_uri(uri: str, experiment: str) -> None:
    """Open `uri` with MLflow's client and create the experiment if needed, before any
    work starts; a URI MLflow refuses becomes one UserError paragraph."""
    from mlflow.tracking import MlflowClient  # study.run checked the extra is installed

    try:
        with fail_fast():
            client = MlflowClient(tracking_uri=uri)
            if client.get_experiment_by_name(experiment) is None:
                client.create_experiment(experiment)
    except Exception as err:  # MLflow raises MlflowException, requests' and SQLAlchemy's errors
        reason = str(err).split(". ")[0].strip()
        raise UserError(f"--mlflow {uri}: MLflow refused this tracking URI ({reason}). {SUGGESTION}") from None


def run_name(config: dict[str, Any]) -> str:
    name = str(config.get("name", "trial")).replace(" ", "-")
    return f"e{int(config.get('experiment', 0)):02d}-{name}-s{config.get('seed', 0)}"


class MLflowStudyLogger(LoggerCallback):
    """Logs a study to MLflow: a parent run named after the study, holding study.json,
    and a child run per trial (found again by its trial id when a study resumes)."""

    def __init__(self, uri: str, experiment: str, study_dir: str) -> None:
        self.uri, self.experiment, self.study_dir = uri, experiment, study_dir
        self.runs: dict[str, str] = {}  # trial id -> MLflow run id

    def setup(self, *args: Any, **kwargs: Any) -> None:
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=self.uri)
        found = self.client.get_experiment_by_name(self.experiment)
        self.experiment_id = found.experiment_id if found else self.client.create_experiment(self.experiment)
        self.parent = self._run({"study": self.experiment, "role": "study"}, self.experiment)
        study_file = os.path.join(self.study_dir, STUDY_FILE)
        if os.path.exists(study_file):
            self.client.log_artifact(self.parent, study_file)

    def _run(self, tags: dict[str, str], name: str) -> str:
        """The run with these tags, made if it does not exist yet (a resumed study reuses it)."""
        query = " and ".join(f"tags.{k} = '{v}'" for k, v in tags.items())
        existing = self.client.search_runs([self.experiment_id], query, max_results=1)
        if existing:
            return existing[0].info.run_id
        return self.client.create_run(self.experiment_id, tags=tags, run_name=name).info.run_id

    def log_trial_start(self, trial: Any) -> None:
        if trial.trial_id in self.runs:
            return
        config = trial.config
        tags = {
            "study": self.experiment,
            "trial_id": trial.trial_id,
            "mlflow.parentRunId": self.parent,
            "experiment": str(config.get("experiment")),
            "name": str(config.get("name")),
            "seed": str(config.get("seed")),
            "config_id": str(config.get("config_id")),
        }
        run = self._run(tags, run_name(config))
        self.runs[trial.trial_id] = run
        if not self.client.get_run(run).data.params:
            from mlflow.entities import Param

            self.client.log_batch(run, params=[Param(k, str(v)) for k, v in config.items()])

    def log_trial_result(self, iteration: int, trial: Any, result: dict) -> None:
        from mlflow.entities import Metric

        step = int(result.get(reported.epoch, iteration))
        stamp = int(result.get("timestamp", 0) * 1000)
        metrics = [
            Metric(key, float(value), stamp, step)
            for key, value in result.items()
            if key not in RAY_KEYS
            and isinstance(value, (int, float))
            and not isinstance(value, bool)
            and math.isfinite(value)
        ]
        self.client.log_batch(self.runs[trial.trial_id], metrics=metrics)

    def log_trial_end(self, trial: Any, failed: bool = False) -> None:
        self.client.set_terminated(self.runs[trial.trial_id], "FAILED" if failed else "FINISHED")

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self.client.set_terminated(self.parent, "FINISHED")
