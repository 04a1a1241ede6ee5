"""Optional MLflow tracking (`--mlflow URI`, the `mlflow` extra): the URI checked before
Ray starts, then one parent run per study (study.json as its artifact) and one child
run per trial with its hyperparameters as params, experiment/name/seed as tags, and
per-epoch and final best-epoch metrics, stepped by epoch. When the study ends, its run
gets the summary, best.json, the best figures and the best model as an MLflow model
(`log_outcome`; registered with --mlflow-register NAME)."""

from __future__ import annotations

import contextlib
import io
import math
import os
import sys
from collections.abc import Iterator
from typing import Any

from ray.tune.logger import LoggerCallback

from trainable.errors import UserError
from trainable.results.layout import STUDY_FILE
from trainable.results.records import reported

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


def best_metrics(best: dict[str, Any]) -> dict[str, float]:
    """best.json's figures as MLflow metrics: each mean and interval bound, the kept model's scores."""
    out = {}
    for key in ("selected", "val_acc", "test_acc_across_seeds", "test_acc_full_interval"):
        for part, value in (best.get(key) or {}).items():
            out[f"best_{key}_{part}"] = value
    out.update({f"best_{k}": best[k] for k in ("model_selected", "model_val_acc", "model_test_acc") if k in best})
    return {k: float(v) for k, v in out.items() if isinstance(v, (int, float)) and math.isfinite(v)}


def log_outcome(uri: str, plan: Any, data: Any, register: str | None = None) -> int:
    """After the summary: the study's run gets summary.csv (and confirm/'s), best/best.json,
    the best figures as metrics and the best model as an MLflow model (registered as
    `register`), with one of the study's test crops as its input example. A failure is one
    line and exit code 1; the results on disk stay as they are."""
    import mlflow
    from mlflow.tracking import MlflowClient
    from PIL import Image

    from trainable.results.atomic_io import read_json
    from trainable.results.layout import BEST_DIR, BEST_FILE, CONFIRM_DIR, MODEL_FILE, SUMMARY_FILE
    from trainable.serving.mlflow_model import log_model, study_run

    try:
        client = MlflowClient(tracking_uri=uri)
        parent = study_run(client, plan.name)
        if parent is None:
            print(f"MLflow: no run of study {plan.name} at {uri}; nothing more logged.", file=sys.stderr)
            return 1
        for folder, under in ((plan.directory, None), (os.path.join(plan.directory, CONFIRM_DIR), CONFIRM_DIR)):
            if os.path.exists(summary := os.path.join(folder, SUMMARY_FILE)):
                client.log_artifact(parent, summary, under)
        best_dir = os.path.join(plan.directory, BEST_DIR)
        if not os.path.exists(best_file := os.path.join(best_dir, BEST_FILE)):
            print("MLflow: logged the summary; no best model to log.")
            return 0
        client.log_artifact(parent, best_file, BEST_DIR)
        client.log_batch(parent, metrics=metric_list(best_metrics(read_json(best_file))))
        crop = io.BytesIO()
        Image.fromarray(data.images[int(data.split["test"][0])]).save(crop, format="PNG")
        mlflow.set_tracking_uri(uri)
        with mlflow.start_run(run_id=parent):
            info = log_model(os.path.join(best_dir, MODEL_FILE), crop.getvalue(), register)
        registered = f", registered as {register}" if register else ""
        print(f"MLflow: the best model is {info.model_uri}{registered} (load it with mlflow.pyfunc.load_model).")
        return 0
    except Exception as err:  # MLflow raises its own, requests' and SQLAlchemy's errors
        print(f"MLflow: logging the study's outcome failed ({type(err).__name__}: {err}).", file=sys.stderr)
        return 1


def metric_list(metrics: dict[str, float]) -> list[Any]:
    import time

    from mlflow.entities import Metric

    stamp = int(time.time() * 1000)
    return [Metric(key, value, stamp, 0) for key, value in metrics.items()]


# Not logged to W&B: each image's prediction (a list per split; the report's paired tests read
# them from result.json) and Ray's own bookkeeping.
WANDB_EXCLUDES = ["val_pred", "test_pred", "done", "should_checkpoint"]


def check_wandb() -> None:
    """W&B can log: offline or disabled mode, an API key in the environment, or `wandb login` done."""
    if os.environ.get("WANDB_MODE") in ("offline", "disabled") or os.environ.get("WANDB_API_KEY"):
        return
    import wandb

    try:
        logged_in = bool(wandb.api.api_key)
    except Exception:  # no settings file, or a broken one
        logged_in = False
    if not logged_in:
        raise UserError(
            "--wandb: not logged in to Weights & Biases. Run `wandb login`, set WANDB_API_KEY, or set "
            "WANDB_MODE=offline to write the runs under the study's folder (`wandb sync` uploads them later)."
        )


def wandb_callback(project: str, name: str, study_dir: str) -> Any:
    """Ray's WandbLoggerCallback: one W&B run per trial (named as the trial), grouped by the
    study; the config, every epoch's record and the final one; run files under STUDY/wandb."""
    from ray.air.integrations.wandb import WandbLoggerCallback

    os.makedirs(study_dir, exist_ok=True)
    return WandbLoggerCallback(project=project, group=name, excludes=WANDB_EXCLUDES, dir=study_dir)
