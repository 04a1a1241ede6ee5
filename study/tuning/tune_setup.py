"""The Ray Tune pieces of a study: trainable with resources, scheduler, Tuner, callbacks."""

from __future__ import annotations

import fnmatch
import json
import os
import pickletools
import tempfile
from typing import Any

from ray import tune
from ray.tune.logger import JsonLoggerCallback
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler
from ray.tune.search.sample import Domain

from study.tuning import ray_internals
from study.tuning.space import TrialNames
from trainable.config import TrialConfig, expand_choices
from trainable.data.dataset import FaceData
from trainable.errors import UserError
from trainable.results import storage as store
from trainable.results.atomic_io import dumps, strict, write_json
from trainable.results.layout import BUDGET_FILE, SELECTIONS, STOPPED_FILE
from trainable.results.records import reported
from trainable.tune_trial import train_face_age


class RecordedASHA(ASHAScheduler):
    """ASHA that writes STOPPED_FILE into a trial's directory at the moment it stops the
    trial, so the results tell an ASHA stop from an interruption or an error."""

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        decision = super().on_trial_result(tune_controller, trial, result)
        if decision == TrialScheduler.STOP and reported.stopped_by not in result and trial.path:
            fs = trial.storage.storage_filesystem  # the study's storage: a local folder, S3, GCS
            fs.create_dir(trial.path)
            with fs.open_output_stream(f"{trial.path}/{STOPPED_FILE}") as f:  # object stores: whole or absent
                f.write(dumps({"stopped_by": "asha", "epoch": result.get(reported.epoch)}).encode())
        return decision


def make_scheduler(name: str, *, max_epochs: int, grace_period: int) -> Any:
    """ASHA on the Tuner's metric (--select), in epochs; 'none' lets trials stop by their own early stopping."""
    if name == "none":
        return FIFOScheduler()
    return RecordedASHA(
        time_attr=reported.epoch, max_t=max_epochs, grace_period=min(grace_period, max_epochs), reduction_factor=3
    )


FULL_NETWORK_MAX_CPUS = 4  # threads beyond this barely speed up one InceptionResnetV1 trial


def trial_cpus(config: dict[str, Any], cpus: float | None, node_cpus: float) -> float:
    """CPUs for one trial. By default a cached trial (frozen trunk, fixed inputs) takes
    one core, so trials pack one per core; a trial that runs the whole network every
    epoch takes up to FULL_NETWORK_MAX_CPUS cores of a node."""
    if cpus is not None:
        return cpus
    return 1.0 if is_cached(config) else float(min(FULL_NETWORK_MAX_CPUS, max(1, int(node_cpus))))


def is_cached(config: dict[str, Any]) -> bool:
    return TrialConfig.from_dict(config).uses_cache


def make_trainable(
    data: FaceData, *, cache_dir: str, cpus: float | None, gpus: float, node_cpus: float, expansions: dict
) -> Any:
    """The trainable with its data in the object store and resources per trial config.
    Torch threads follow the CPUs each trial is given. `expansions`: a searched config's
    choice labels -> settings (trainable.config.expand_choices)."""

    def resources(config: dict[str, Any]) -> Any:
        need = trial_cpus(expand_choices(config, expansions), cpus, node_cpus)
        return tune.PlacementGroupFactory([{"CPU": need, "GPU": gpus}])

    return tune.with_resources(
        tune.with_parameters(train_face_age, data=data, cache_dir=cache_dir, expansions=expansions), resources
    )


class EpochBudget(tune.Stopper):
    """--budget-epochs: ends the study once its trials have reported `epochs` epochs in all.
    Every report is one trained epoch: a trial's last epoch comes in its final report, with its
    test scores (trainable.trial.run_trial). Trials running then stop after the epoch they are
    in, so the study may overshoot by one epoch per running trial; trials not started never
    run. Counts the epochs of this run: a resumed study starts at 0. Once spent, it writes
    BUDGET_FILE into the study's `directory`."""

    def __init__(self, epochs: int, directory: str):
        self.epochs, self.directory, self.spent = epochs, directory, 0

    def __call__(self, trial_id: str, result: dict) -> bool:
        self.spent += 1
        return False

    def stop_all(self) -> bool:
        if self.spent < self.epochs:
            return False
        write_json(os.path.join(self.directory, BUDGET_FILE), {"budget_epochs": self.epochs, "spent": self.spent})
        return True


class StrictJsonLogger(JsonLoggerCallback):
    """Tune's result.json with non-finite numbers as null (jq and JavaScript reject NaN);
    Tune itself, the scheduler and the searcher still see the values as reported. In the
    callbacks, it stands in for the JsonLoggerCallback Tune would add."""

    def log_trial_result(self, iteration: int, trial: Any, result: dict) -> None:
        super().log_trial_result(iteration, trial, strict(result))


def make_tuner(
    trainable: Any,
    space: dict[str, Any],
    *,
    name: str,
    storage: str,
    scheduler: Any,
    max_failures: int,
    names: TrialNames,
    select: str,
    search_alg: Any = None,
    num_samples: int = 1,
    verbose: int = 0,
    callbacks: list[Any] = (),
    budget: EpochBudget | None = None,
) -> tune.Tuner:
    """A Tuner over `space`: a grid (study.tuning.space.param_space, one trial per point) or, with
    `search_alg`, `num_samples` trials of a search (study.tuning.search). Tune, the scheduler and the
    searcher rank on `select` (trainable.results.layout.SELECTIONS), the metric the report ranks on."""
    metric, mode = SELECTIONS[select]
    searched = [k for k, v in space.items() if isinstance(v, Domain)]
    return tune.Tuner(
        trainable,
        param_space=space,
        tune_config=tune.TuneConfig(
            metric=metric,
            mode=mode,
            scheduler=scheduler,
            search_alg=search_alg,
            num_samples=num_samples,
            reuse_actors=True,  # a new trial skips the ~3 s worker start-up (imports, data)
            trial_name_creator=names,
            trial_dirname_creator=names,
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=storage,
            # One per trial: ~40 MB mid-run (head, Adam state, best head), ~10 MB at the end.
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            failure_config=tune.FailureConfig(max_failures=max_failures),
            stop=budget,
            callbacks=[*callbacks, StrictJsonLogger(), ray_internals.HParamsLogger(searched)],
            verbose=verbose,
        ),
    )


def tracking_callbacks(mlflow: str | None, wandb: str | None, name: str, study_dir: str) -> list[Any]:
    """Log the study and its trials to MLflow and/or W&B (optional extras; see study.tuning.tracking)."""
    from study.tuning import tracking

    return ([tracking.MLflowStudyLogger(mlflow, name, study_dir)] if mlflow else []) + (
        [tracking.wandb_callback(wandb, name, study_dir)] if wandb else []
    )


def can_restore(location: str) -> bool:
    """Whether Ray recorded enough of the study at `location` (a path or URI) to restore it:
    a driver killed in its first seconds may leave the Tuner's file but no experiment state."""
    return tune.Tuner.can_restore(location) and any(n.startswith("experiment_state") for n in store.listdir(location))


def repair_torn_state(location: str) -> list[str]:
    """Ray's files at `location` that a full disk tore (Ray copies them to the storage
    without a temporary name): an experiment state that is not whole JSON is replaced by
    Ray's intact local copy where this machine has one (study.tuning.ray_internals), else
    set aside as NAME.torn, and so is a grid generator's state that does not unpickle (a
    missing one is handled by restore_tuner). What was done, a line each."""
    said = []
    experiment = store.split(location)[1]
    for name in store.listdir(location):
        path = store.join(location, name)
        if fnmatch.fnmatch(name, "experiment_state-*.json"):
            if ray_internals.whole_json(store.read_bytes(path)):
                continue
            staged = ray_internals.staged_experiment_state(experiment, name)
            if staged is not None:
                with tempfile.TemporaryDirectory() as staging:
                    with open(os.path.join(staging, name), "wb") as f:
                        f.write(staged)
                    store.upload(os.path.join(staging, name), path)
                said.append(f"{name} was torn (a full disk?): replaced by Ray's intact copy on this machine.")
                continue
        elif fnmatch.fnmatch(name, ray_internals.GRID_STATE.format("*")):
            try:  # read through, never loaded: a torn pickle ends before its STOP
                for _ in pickletools.genops(store.read_bytes(path)):
                    pass
                continue
            except ValueError:
                pass
        else:
            continue
        store.move(path, path + ".torn")
        said.append(f"{name} was torn (a full disk?) and is set aside as {name}.torn.")
    return said


def restore_tuner(location: str, trainable: Any, grid_trials: int | None = None) -> tune.Tuner:
    """Continue an interrupted study: finished trials stay, the rest resume from checkpoints.

    A grid of `grid_trials` trials: Ray saves its experiment state and its trial generator's
    state as two files, copied to the study's storage together; a driver killed at the
    wrong moment can leave the first without the second (seen once in CI), and restored
    so, Ray makes a trial with an empty config. Ray creates a grid's trials up front (up to
    200 pending), so when the experiment state holds all of them an exhausted generator
    stands in for the missing one; otherwise the study cannot resume, and says so."""
    names = store.listdir(location)
    if grid_trials is not None and not fnmatch.filter(names, ray_internals.GRID_STATE.format("*")):
        recorded = max(fnmatch.filter(names, "experiment_state-*.json"))
        count = len(json.loads(store.read_bytes(store.join(location, recorded)))["trial_data"])
        if count < grid_trials:
            raise UserError(
                f"--resume {location}: Ray recorded {count} of the study's {grid_trials} trials and not which "
                "remain, so it cannot resume; the finished trials' results stay there (analysis.report reads them)."
            )
        session = recorded[len("experiment_state-") : -len(".json")]
        with tempfile.TemporaryDirectory() as staging:
            state = ray_internals.write_exhausted_grid_state(staging, session)
            store.upload(os.path.join(staging, state), store.join(location, state))
    return tune.Tuner.restore(location, trainable=trainable, resume_unfinished=True, resume_errored=True)
