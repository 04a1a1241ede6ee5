"""Each Ray internal the project uses (study.tuning.ray_internals) still works as it assumes: on a
Ray release that changes one, its test fails and says which use and where it comes from."""

import importlib.util
import os

import pytest
from ray import tune
from ray.tune.experiment import Experiment
from ray.tune.search.basic_variant import BasicVariantGenerator

from study.tuning import ray_internals


def trainable(config):  # never run: trials are only generated
    pass


def test_the_authentication_logger_is_a_ray_module_and_its_token_warning_under_it():
    assert importlib.util.find_spec(ray_internals.AUTH_LOGGER) is not None, (
        f"Ray has no module {ray_internals.AUTH_LOGGER} any more: study.tuning.cluster quiets its logger at ray.init; "
        "find where Ray now logs its token lines"
    )
    from ray._private.authentication import authentication_token_setup

    assert authentication_token_setup.logger.name.startswith(ray_internals.AUTH_LOGGER + "."), (
        "Ray's 'Token authentication is enabled' warning moved out of the logger study.tuning.cluster quiets"
    )


def test_the_drivers_command_line_reaches_rays_job_table_redacted(monkeypatch):
    """ray.init (ray._private.worker.init) records ray._private.utils.get_entrypoint_name(), the
    process's command line, as the job's entrypoint: patched, it holds no secret of a URI."""
    import inspect

    import psutil
    from ray._private import utils, worker

    assert "ray._private.utils.get_entrypoint_name()" in inspect.getsource(inspect.unwrap(worker.init)), (
        "ray.init no longer records ray._private.utils.get_entrypoint_name(): find where Ray now takes the "
        "driver's command line from (study.tuning.ray_internals.redact_driver_command)"
    )
    monkeypatch.setattr(utils, "get_entrypoint_name", utils.get_entrypoint_name)  # undone after the test
    argv = ["python", "-m", "study.run", "--storage", "s3://AKIA:se cret@bucket/dir@2024/p"]
    monkeypatch.setattr(psutil.Process, "cmdline", lambda self: argv)
    ray_internals.redact_driver_command()
    entrypoint = utils.get_entrypoint_name()
    assert "cret" not in entrypoint and "AKIA" not in entrypoint, entrypoint
    assert entrypoint.endswith(" --storage s3://REDACTED@bucket/dir@2024/p"), entrypoint


def test_ray_init_sets_its_sigterm_handler_through_the_function_the_study_stills_inside_its_start():
    """ray.init calls ray._private.utils.set_sigterm_handler (a sys.exit on SIGTERM); inside
    keep_sigterm_handler it sets nothing, and the driver's own handler stays."""
    import inspect
    import signal

    from ray._private import utils, worker

    assert "ray._private.utils.set_sigterm_handler(" in inspect.getsource(inspect.unwrap(worker.init)), (
        "ray.init no longer sets SIGTERM through ray._private.utils.set_sigterm_handler: find how it does now "
        "(study.tuning.ray_internals.keep_sigterm_handler, study.terminal.stopping)"
    )
    before = signal.getsignal(signal.SIGTERM)
    with ray_internals.keep_sigterm_handler():
        utils.set_sigterm_handler(lambda *_: None)
    assert signal.getsignal(signal.SIGTERM) is before and utils.set_sigterm_handler.__module__ == utils.__name__


def test_the_autoscaler_node_groups_are_read_from_rays_state(monkeypatch):
    from ray._private import state as ray_state
    from ray.core.generated.autoscaler_pb2 import ClusterConfig

    assert hasattr(ray_state.state, "get_cluster_config"), "ray._private.state.state.get_cluster_config is gone"
    config = ClusterConfig()
    group = config.node_group_configs.add(name="gpu-workers", max_count=4)
    group.resources["GPU"] = 1
    config.node_group_configs.add(name="fixed", max_count=0).resources["CPU"] = 8
    monkeypatch.setattr(ray_state.state, "get_cluster_config", lambda: config)
    assert ray_internals.autoscaler_node_groups() == {"gpu-workers": {"GPU": 1.0}}
    monkeypatch.setattr(ray_state.state, "get_cluster_config", lambda: None)  # a Ray without an autoscaler
    assert ray_internals.autoscaler_node_groups() == {}


def test_an_exhausted_grid_state_restores_as_finished(tmp_path):
    name = ray_internals.write_exhausted_grid_state(str(tmp_path), "2026-12-06_21-00-00")
    assert name == ray_internals.GRID_STATE.format("2026-12-06_21-00-00"), "Ray renamed the grid generator's file"
    generator = BasicVariantGenerator()
    generator.restore_from_dir(str(tmp_path))
    assert generator.is_finished(), "Ray's grid generator no longer restores as finished from the state we write"
    saved = BasicVariantGenerator()  # Tune's own: a live generator saves to the same file name
    saved.add_configurations([Experiment("x", trainable, config={"lr": tune.grid_search([1, 2])})])
    (own := tmp_path / "own").mkdir()
    saved.save_to_dir(str(own), session_str="s")
    assert os.listdir(own) == [ray_internals.GRID_STATE.format("s")]


def test_a_trials_counter_heads_its_experiment_tag():
    grid = BasicVariantGenerator()
    grid.add_configurations([Experiment("x", trainable, config={"lr": tune.grid_search([1, 2])})])
    first, second = grid.next_trial(), grid.next_trial()
    assert [ray_internals.search_counter(first), ray_internals.search_counter(second)] == [0, 1], (
        f"Tune's experiment tags are now {first.experiment_tag!r}, {second.experiment_tag!r}: "
        "study.tuning.space.search_number numbers searched trials from them"
    )
    assert first.trial_id.endswith("00000") and second.trial_id.endswith("00001")


@pytest.mark.extra("search")
def test_a_completed_optuna_trial_is_not_told_to_optuna_again():
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    storage = optuna.storages.InMemoryStorage()
    searcher = OptunaSearch({"lr": tune.uniform(0, 1)}, metric="acc", mode="max", storage=storage, study_name="s")
    searcher.suggest("a")
    ray_internals.mark_completed(searcher, "a")
    searcher.on_trial_complete("a", {"acc": 0.5})
    (trial,) = optuna.load_study(study_name="s", storage=storage).trials
    assert trial.state.name == "RUNNING", "OptunaSearch no longer skips the trials in its _completed_trials"


def test_the_hparams_logger_adds_the_configs_settings():
    class Writer:
        summaries = []

        def add_summary(self, summary):
            self.summaries.append(summary.SerializeToString())

    class Trial:
        evaluated_params = {"seed": 0}
        config = {"seed": 0, "lr": 0.001, "name": "smoke cached"}

    logger, trial = ray_internals.HParamsLogger(["lr", "name"]), Trial()
    logger._trial_writer[trial] = type("SummaryWriter", (), {"file_writer": Writer()})()
    logger._try_log_hparams(trial, {"val_acc": 0.5})
    written = b"".join(Writer.summaries)
    assert b"lr" in written and b"smoke cached" in written, (
        "Tune's TBXLoggerCallback._try_log_hparams no longer logs the trial's evaluated_params"
    )
    assert trial.evaluated_params == {"seed": 0}


def test_a_torn_experiment_state_is_replaced_by_rays_local_copy_or_set_aside(tmp_path, monkeypatch):
    """study.tuning.tune_setup.repair_torn_state on a study a full disk tore: the experiment
    state from Ray's intact staged copy, a torn generator state set aside; without a staged
    copy, the torn state set aside too."""
    import json
    import pickle

    from study.tuning.tune_setup import repair_torn_state

    state, generator = "experiment_state-S.json", ray_internals.GRID_STATE.format("S")
    whole = json.dumps({"trial_data": [1, 2], "runner_data": {}}).encode()
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path / "ray"))
    staged = tmp_path / "ray" / "session_1" / "artifacts" / "stamp" / "full" / "driver_artifacts"
    staged.mkdir(parents=True)
    (staged / state).write_bytes(whole)
    for study in (tmp_path / "full", tmp_path / "other" / "full"):
        study.mkdir(parents=True)
        (study / state).write_bytes(whole[:20])  # torn at 20 bytes
        (study / generator).write_bytes(pickle.dumps({"_iterators": list(range(100))})[:30])
        (study / "study.json").write_text("{}")
    said = repair_torn_state(str(tmp_path / "full"))
    assert (tmp_path / "full" / state).read_bytes() == whole
    assert sorted(os.listdir(tmp_path / "full")) == sorted([state, generator + ".torn", "study.json"])
    assert len(said) == 2 and "replaced by Ray's intact copy" in said[0] + said[1]
    (staged / state).write_bytes(whole[:20])  # the local copy torn too: nothing intact
    repair_torn_state(str(tmp_path / "other" / "full"))
    assert sorted(os.listdir(tmp_path / "other" / "full")) == sorted(
        [state + ".torn", generator + ".torn", "study.json"]
    )
    assert repair_torn_state(str(tmp_path / "full")) == []  # whole files are left alone


@pytest.mark.slow
def test_the_driver_stages_its_experiment_state_where_a_repair_looks(tmp_path):
    """Ray's driver writes the experiment state under its session's artifacts before copying it to
    the storage: study.tuning.ray_internals.staged_experiment_state finds that copy."""
    import json

    import ray

    ray.init(num_cpus=1, include_dashboard=False, logging_level="ERROR")
    try:
        tune.Tuner(
            lambda config: tune.report({"x": 1}),
            run_config=tune.RunConfig(name="staged", storage_path=str(tmp_path), verbose=0),
        ).fit()
    finally:
        ray.shutdown()
    (name,) = [n for n in os.listdir(tmp_path / "staged") if n.startswith("experiment_state-")]
    staged = ray_internals.staged_experiment_state("staged", name)
    assert staged is not None, (
        "Ray no longer stages its experiment state in session_*/artifacts/*/NAME/driver_artifacts"
    )
    assert len(json.loads(staged)["trial_data"]) == 1
