"""Every use the project makes of Ray internals: names Ray does not offer as its public or
developer API (`ray._private`, underscored attributes, undocumented file names and formats).
Nothing else touches them (tests/test_layers.py checks), and each has a test in
tests/test_ray_internals.py that fails, naming the use, when a Ray release changes it.
The Ray versions these were checked against are pyproject.toml's range for `ray`."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from ray.tune.logger import TBXLoggerCallback
from ray.tune.search.basic_variant import BasicVariantGenerator

# Ray logs lines about token authentication on every ray.init (INFO, and a WARNING that it
# is on by default), whatever ray.init's logging_level.
AUTH_LOGGER = "ray._private.authentication"

# The file a grid's trial generator (BasicVariantGenerator) saves beside Tune's experiment
# state, with the run's session string in place of {}.
GRID_STATE = BasicVariantGenerator.CKPT_FILE_TMPL


def quiet_authentication_log(verbose: bool) -> None:
    """Ray's token lines only with -v: the study prints how to get the token itself."""
    logging.getLogger(AUTH_LOGGER).setLevel(logging.INFO if verbose else logging.ERROR)


def redact_driver_command() -> None:
    """Ray records the driver's command line (its process's, read by psutil) as the job's entrypoint
    (the dashboard's Jobs page, `ray list jobs`): recorded with each argument redacted
    (trainable.results.storage.redact_argument), so a secret given in a URI does not reach Ray's state."""
    import subprocess

    import psutil
    from ray._private import utils

    from trainable.results.storage import redact_argument

    def entrypoint() -> str:
        return subprocess.list2cmdline([redact_argument(a) for a in psutil.Process().cmdline()])

    utils.get_entrypoint_name = entrypoint


@contextlib.contextmanager
def keep_sigterm_handler() -> Iterator[None]:
    """ray.init puts its own Python handler on SIGTERM (ray._private.utils.set_sigterm_handler: a
    sys.exit that, raised inside a fork callback, is lost and the study runs on): inside, it keeps
    the driver's own."""
    from ray._private import utils

    original = utils.set_sigterm_handler
    utils.set_sigterm_handler = lambda handler: None
    try:
        yield
    finally:
        utils.set_sigterm_handler = original


def staged_experiment_state(experiment: str, file_name: str) -> bytes | None:
    """Ray's local copy of a study's experiment state: the driver writes it in its session's
    folder (Ray's temporary folder, RAY_TMPDIR or /tmp/ray, session_*/artifacts/STAMP/NAME/
    driver_artifacts/) before copying it to the storage, where a full disk can tear the copy.
    The newest copy of `file_name` on this machine that is whole JSON, or None."""
    import glob
    import os

    root = os.environ.get("RAY_TMPDIR") or os.path.join(os.environ.get("TMPDIR", "/tmp"), "ray")
    pattern = os.path.join(root, "session_*", "artifacts", "*", experiment, "driver_artifacts", file_name)
    for path in sorted(glob.glob(pattern), key=os.path.getmtime, reverse=True):
        with open(path, "rb") as f:
            data = f.read()
        if whole_json(data):
            return data
    return None


def whole_json(data: bytes) -> bool:
    import json

    try:
        json.loads(data)
    except ValueError:
        return False
    return True


def autoscaler_node_groups() -> dict[str, dict[str, float]]:
    """The node groups (name -> resources) the cluster's autoscaler may add, as Ray's state
    holds them (KubeRay reports its worker groups there); {} without an autoscaler."""
    from ray._private.state import state

    config = state.get_cluster_config()  # None on a Ray started without an autoscaler
    groups = config.node_group_configs if config is not None else []
    return {group.name: dict(group.resources) for group in groups if group.max_count != 0}


def write_exhausted_grid_state(directory: str, session: str) -> str:
    """Save, in `directory`, the state of a grid generator with no trial left to make, as
    Tune would have for the run `session`; return the file's name (a GRID_STATE)."""
    exhausted = BasicVariantGenerator()
    exhausted.set_finished()
    exhausted.save_to_dir(directory, session_str=session)
    return GRID_STATE.format(session)


def search_counter(trial: Any) -> int:
    """The counter Tune heads a trial's experiment tag with ('7_lr=...')."""
    return int(trial.experiment_tag.split("_")[0])


def mark_completed(searcher: Any, trial_id: str) -> None:
    """Tell Tune's OptunaSearch a trial is complete without telling Optuna again."""
    searcher._completed_trials.add(trial_id)


class HParamsLogger(TBXLoggerCallback):
    """Tune's TensorBoard logger, with every searched or varying setting in the HParams tab:
    Tune's own lists a trial's `evaluated_params`, which leave out sample_from values (a
    grid's settings per experiment), so they are added from the trial's config."""

    def __init__(self, keys: list[str]) -> None:
        super().__init__()
        self.keys = keys

    def _try_log_hparams(self, trial: Any, result: dict) -> None:
        recorded = trial.evaluated_params
        trial.evaluated_params = {**recorded, **{k: trial.config[k] for k in self.keys if k in trial.config}}
        try:
            super()._try_log_hparams(trial, result)
        finally:
            trial.evaluated_params = recorded
