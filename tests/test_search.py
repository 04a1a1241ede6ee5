"""Spaces of ranges, their Tune domains, the paper's warm starts and the confirmation stage
(no Ray cluster needed); the whole search end to end is in the slow tier."""

import json
import os
import subprocess
import sys

import pytest

from study.grids import GRIDS, read_grid
from study.tuning.search import best_searched, paper_points, search_space, searched_keys
from tests.conftest import REAL_DATA, ROOT
from trainable.config import TrialConfig, expand_choices
from trainable.errors import UserError
from trainable.results.layout import BUDGET_FILE, OPTUNA_FILE
from trainable.results.study_record import SearchRecord, read_study_record


def test_the_shipped_search_space_is_the_issues():
    grid = GRIDS["search"]
    space = search_space(grid, {"weights": "none", "max_epochs": 5})
    assert set(searched_keys(space)) == {
        "lr",
        "optimizer",
        "batch_size",
        "freeze",
        "augmentation",
        "dropout",
        "weight_decay",
    }
    assert (space["lr"].lower, space["lr"].upper) == (1e-5, 1e-2)
    assert space["optimizer"].categories == ["adam", "sgd", "sgd-m0.9"]
    assert space["max_epochs"] == 5 and space["weights"] == "none" and space["seed"] == 0
    fixed = {k: v for k, v in space.items() if k not in searched_keys(space)}
    sampled = {
        "lr": 1e-3,
        "optimizer": "sgd-m0.9",
        "batch_size": 16,
        "freeze": "mixed_7a",
        "augmentation": "online",
        "dropout": 0.3,
        "weight_decay": 1e-4,
    }
    config = expand_choices({**fixed, **sampled}, grid.expansions)
    cfg = TrialConfig.from_dict(config)
    assert (cfg.optimizer, cfg.momentum, cfg.freeze) == ("sgd", 0.9, "mixed_7a")


def test_the_paper_configurations_warm_start_the_search():
    grid = GRIDS["search"]
    points = paper_points(grid, search_space(grid, {}), {})
    assert len(points) == 7  # every paper experiment lies in the space
    assert points[3]["freeze"] == "none" and points[5] == {
        "lr": 1e-5,
        "optimizer": "sgd",
        "batch_size": 32,
        "freeze": "block8",
        "augmentation": "static",
        "dropout": 0.6,
        "weight_decay": 0.0,
    }


def test_confirmation_takes_the_best_by_val_acc_with_fresh_seeds():
    base = {**TrialConfig().to_dict(), "config_id": "search", "optimizer": "sgd-m0.9"}
    scored = [(1, base, 0.5), (2, {**base, "lr": 1e-3}, 0.9), (3, base, float("nan")), (4, base, 0.7)]
    expansions = GRIDS["search"].expansions
    configs = confirm_configs(scored, top=2, seeds=2, expansions=expansions)
    assert [(c.experiment, c.seed) for c in configs] == [(2, 1), (2, 2), (4, 1), (4, 2)]
    assert configs[0].config_id == "confirm-2" and configs[0].momentum == 0.9 and configs[0].lr == 1e-3
    assert configs[0].name == "confirm t002"
    later = confirm_configs(scored, top=1, seeds=2, expansions=expansions, search_seed=5)  # --first-seed 5
    assert [c.seed for c in later] == [6, 7]


def confirm_configs(scored, top: int, seeds: int, expansions: dict, search_seed: int = 0):
    """A search's confirmation trials (study.sources): the best searched, with fresh seeds after the search's."""
    from study.sources import SearchSource, confirmation

    search = SearchSource("", {}, None, "none", 1, None, expansions, {}, next_seed=search_seed + 1)
    return list(confirmation(search, best_searched(scored, top, expansions), seeds).configs)


def test_a_grid_and_a_search_are_confirmed_by_one_builder():
    """A grid's chosen configuration gets the seeds after the grid's, its id and name marked."""
    from study.sources import GridSource, confirmation

    first = TrialConfig.from_dict({**TrialConfig().to_dict(), "config_id": "exp3", "name": "exp 3", "seed": 0})
    grid = GridSource("", (first,), "asha", next_seed=3)
    confirm = confirmation(grid, [first], 2)
    assert [(c.config_id, c.name, c.seed) for c in confirm.configs] == [("confirm-exp3", "confirm exp 3", 3)] + [
        ("confirm-exp3", "confirm exp 3", 4)
    ]
    assert confirm.label == "the 1 best configuration(s) of the grid, 2 fresh seed(s)" and confirm.scheduler == "none"
    assert confirmation(grid, [], 2) is None


# the documentation's one-file search (Grids in files)
README_SEARCH = "lr: {loguniform: [1.0e-5, 1.0e-2]}\ndropout: {uniform: [0.0, 0.8]}\n"


def test_warm_starts_are_distinct_and_leave_half_the_budget_to_the_search(tmp_path):
    """The seven paper experiments projected onto lr x dropout are 3 points (lr 1e-4, 1e-3 and
    1e-5 at dropout 0.6); once each, and at most num_samples // 2 of them."""
    (tmp_path / "s.yaml").write_text(README_SEARCH)
    grid = read_grid(str(tmp_path / "s.yaml"))
    space = search_space(grid, {})
    every = paper_points(grid, space, {})
    assert len(every) == len({tuple(sorted(p.items())) for p in every}) == 3
    assert {p["dropout"] for p in every} == {0.6}
    assert paper_points(grid, space, {}, num_samples=4) == every[:2]
    assert paper_points(grid, space, {}, num_samples=1) == []
    assert len(paper_points(GRIDS["search"], search_space(GRIDS["search"], {}), {}, num_samples=40)) == 7


def test_confirmation_never_reruns_one_configuration_twice():
    """Four searched trials of one configuration (a warm start proposed again) and one other:
    --confirm-top 2 confirms the two configurations, each once, the first as its best trial."""
    base = {**TrialConfig().to_dict(), "config_id": "search", "optimizer": "sgd-m0.9"}
    other = {**base, "lr": 1e-3}
    scored = [(0, base, 0.8), (1, base, 0.9), (2, other, 0.5), (3, base, 0.7), (4, base, 0.8)]
    configs = confirm_configs(scored, top=2, seeds=3, expansions=GRIDS["search"].expansions)
    assert [(c.experiment, c.seed) for c in configs] == [(1, 1), (1, 2), (1, 3), (2, 1), (2, 2), (2, 3)]
    assert configs[3].lr == 1e-3
    assert len(confirm_configs(scored[:2], top=3, seeds=1, expansions=GRIDS["search"].expansions)) == 1


@pytest.mark.slow
@pytest.mark.extra("search")
def test_the_readmes_lr_and_dropout_search_with_4_samples_runs_at_least_3_distinct_points(tmp_path):
    """Ray Tune itself, with the study's space and searchers (a trainable that only reports):
    4 samples of the documented search are at least 3 distinct configurations, for both searchers."""
    import ray
    from ray import tune

    from study.tuning.search import make_searcher

    (tmp_path / "s.yaml").write_text(README_SEARCH)
    grid = read_grid(str(tmp_path / "s.yaml"))
    space = search_space(grid, {})
    points = paper_points(grid, space, {}, num_samples=4)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        for kind in ("random", "optuna"):
            tuner = tune.Tuner(
                lambda config: {"val_acc": config["lr"]},
                param_space=space,
                tune_config=tune.TuneConfig(
                    metric="val_acc", mode="max", num_samples=4, search_alg=make_searcher(kind, points, 1, seed=0)
                ),
                run_config=tune.RunConfig(storage_path=str(tmp_path / kind), verbose=0),
            )
            tried = {(r.config["lr"], r.config["dropout"]) for r in tuner.fit()}
            assert len(tried) >= 3, (kind, tried)
    finally:
        ray.shutdown()


@pytest.mark.parametrize(
    "text, expected",
    [
        ("lr: {loguniform: [0, 1.0e-2]}", "loguniform needs numbers low < high and low > 0"),
        ("lr: {normal: [0, 1]}", "a range is one of {loguniform: [...]}, {uniform: [...]}, {choice: [...]}"),
        ("lr: {uniform: [1.0e-3]}", "uniform needs [low, high]"),
        ("lr: {uniform: [0.1, 0.2]}\nbatch_size: [8, 16]", "cannot also have lists or experiments"),
    ],
)
def test_bad_ranges_are_named(tmp_path, text, expected):
    path = tmp_path / "space.yaml"
    path.write_text(text)
    with pytest.raises(UserError, match="space.yaml") as err:
        read_grid(str(path))
    assert expected in str(err.value)


SPACE = """
weights: none
max_epochs: 3
lr: {loguniform: [1.0e-4, 1.0e-2]}
batch_size: {choice: [8, 16]}
optimizer: {choice: [adam, {label: sgd-m0.9, optimizer: sgd, momentum: 0.9}]}
dropout: {uniform: [0.0, 0.8]}
"""


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["optuna"])
@pytest.mark.extra("search")
def test_a_search_confirmed_then_reported(tiny_root, tmp_path, kind):
    """--search optuna: its trials, the two best again with two fresh seeds in confirm/, and
    a report that ranks on the confirmation alone with the search apart and its figures."""
    import subprocess
    import sys

    from analysis.results import load_study
    from tests.conftest import ROOT, SMOKE_SPLIT

    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    study = tmp_path / "s" / "search"
    run = [
        sys.executable,
        "-m",
        "study.run",
        "--grid",
        str(space),
        "--data",
        tiny_root,
        *SMOKE_SPLIT,
        "--search",
        kind,
        "--num-samples",
        "4",
        "--max-concurrent",
        "2",
        "--confirm-top",
        "2",
        "--confirm-seeds",
        "2",
        "--seeds",
        "2",
        "--storage",
        str(tmp_path / "s"),
        "--name",
        "search",
    ]
    proc = subprocess.run(run, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Pre-set value" not in proc.stdout + proc.stderr
    searched, _ = load_study(str(study))
    assert len(searched) == 4 and searched.config_id.nunique() == 4
    assert set(searched.trial_id.str[:4]) == {"t001", "t002", "t003", "t004"}
    assert (searched.name == searched.trial_id).all()  # the trial's number and its searched values
    with open(study / "summary.csv") as f:  # the search's own summary: one row per trial, each named so
        names = [line.split(",")[1] for line in f.read().splitlines()[1:]]
    assert sorted(names) == sorted(searched.trial_id) and "lr" in names[0]
    assert set(searched.optimizer) <= {"adam", "sgd"} and (searched[searched.optimizer == "sgd"].momentum == 0.9).all()
    confirmed, _ = load_study(str(study / "confirm"), "confirm/")
    assert len(confirmed) == 4 and sorted(confirmed.seed) == [1, 1, 2, 2] and confirmed.config_id.nunique() == 2
    record = read_study_record(str(study))
    assert record.search.kind == kind and "sgd-m0.9" in record.expansions["optimizer"]
    kept = optuna_trials(study)  # the Optuna study is kept, named as the study, for optuna-dashboard
    assert [t.number for t in kept] == [0, 1, 2, 3] and {t.state.name for t in kept} == {"COMPLETE"}
    assert {"lr", "batch_size", "optimizer", "dropout"} <= set(kept[0].params)
    report = subprocess.run(
        [sys.executable, "-m", "analysis.report", str(study)], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert report.returncode == 0, report.stderr[-3000:]
    markdown = (study / "report" / "report.md").read_text()
    assert "The ranking below uses only the confirmation runs" in markdown
    assert "## Search runs (not used for the ranking)" in markdown
    assert "parallel_coordinates.png" in markdown and "best_so_far.png" in markdown
    assert "Hyperparameter importance, out of sample: permutation importance of a random forest" in markdown
    assert "Optuna's fANOVA importance over the Optuna study's 4 completed trials" in markdown
    summary = markdown.split("## Summary")[1].split("\n## ")[0]
    assert "confirm t" in summary and "search-" not in summary
    # the one claimed is the search's first, chosen before the confirmation ran, whatever it scored there
    first = max(searched.itertuples(), key=lambda t: t.val_acc_best).experiment
    assert f"Chosen: #{first} " in markdown.split("## The answer")[1] and "The answer: #" in proc.stdout


@pytest.mark.long
@pytest.mark.slow
@pytest.mark.extra("search")
def test_the_search_benchmark_runs_both_arms_to_the_same_budget(tmp_path):
    """study.bench.search_vs_grid --quick on the real data: the extended grid and Optuna, each
    stopped by --budget-epochs 8 (at most one epoch more per trial running then). ASHA and the
    budget stop trials whose workers Tune then reuses: with Ray's thread timeout at 0 in the
    driver, each reuse would fail its next trial unless the study sets it on the workers
    (study.tuning.cluster.WORKER_ENV; CI saw it fail at Ray's default of 2 s)."""
    if not os.path.isdir(REAL_DATA):
        pytest.skip(f"real dataset not found at {REAL_DATA}")
    command = [
        sys.executable,
        "-m",
        "study.bench.search_vs_grid",
        "--data",
        REAL_DATA,
        "--out",
        str(tmp_path),
        "--quick",
    ]
    env = {**os.environ, "TUNE_FUNCTION_THREAD_TIMEOUT_S": "0"}
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.startswith("CPU: ") and "| arm | rep | best val acc |" in proc.stdout
    rows = json.loads((tmp_path / "search_bench.json").read_text())["rows"]
    assert [r["arm"] for r in rows] == ["extended grid + ASHA", "optuna + ASHA"]
    for row, study in zip(rows, ("extended-r0", "optuna-r0"), strict=True):
        assert 8 <= row["trial-epochs"] <= 8 + (os.cpu_count() or 1)
        assert 1 <= row["trial-epochs to within 1 pt"] <= row["trial-epochs"] and 0 <= row["best val acc"] <= 1
        assert json.loads((tmp_path / study / BUDGET_FILE).read_text())["budget_epochs"] == 8


def optuna_trials(study):
    """The trials of the one Optuna study a search keeps in STUDY/optuna.journal, by number."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    storage = JournalStorage(JournalFileBackend(str(study / OPTUNA_FILE)))
    assert optuna.get_all_study_names(storage) == [study.name]
    return sorted(optuna.load_study(study_name=study.name, storage=storage).trials, key=lambda t: t.number)


@pytest.mark.long
@pytest.mark.slow
@pytest.mark.extra("search")
def test_a_killed_optuna_search_resumes_the_same_optuna_study(tiny_root, tmp_path):
    """SIGKILLed after its first trial, then --resume: one Optuna study in the journal, whose
    trial numbers go on from where the killed run left them, and every Tune trial once."""
    import signal

    from analysis.results import load_study
    from tests.conftest import SMOKE_SPLIT, wait_for

    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    study = tmp_path / "s" / "search"
    run = ["--grid", str(space), "--data", tiny_root, *SMOKE_SPLIT, "--search", "optuna", "--num-samples", "4"]
    run += ["--max-concurrent", "1", "--max-epochs", "2", "--storage", str(tmp_path / "s"), "--name", "search"]
    log = tmp_path / "driver.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "study.run", *run],
        cwd=ROOT,
        start_new_session=True,
        stdout=open(log, "w"),
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:
        assert wait_for(lambda: "1/4 done" in log.read_text(), 600), log.read_text()[-3000:]
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray it started
        proc.wait()
    before = optuna_trials(study)
    assert before and before[0].state.name == "COMPLETE"
    resumed = subprocess.run(
        [sys.executable, "-m", "study.run", "--resume", str(study)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    after = optuna_trials(study)
    assert [t.number for t in after] == list(range(len(after)))  # one study, numbers going on
    assert [(t.number, t.params) for t in after[: len(before)]] == [(t.number, t.params) for t in before]
    assert sum(t.state.name == "COMPLETE" for t in after) >= 4
    trials, _ = load_study(str(study))
    assert len(trials) == 4 and (trials.status == "finished").all() and trials.trial_id.is_unique


@pytest.mark.long
@pytest.mark.slow
@pytest.mark.extra("search")
def test_a_one_file_study_runs_with_only_its_file_and_the_data(tmp_path):
    """A YAML with search: optuna, num_samples and seeds is the whole study: `--grid FILE
    --data DIR` and nothing else (results under ./results, named after the file)."""
    if not os.path.isdir(REAL_DATA):
        pytest.skip(f"real dataset not found at {REAL_DATA}")
    study_file = tmp_path / "tiny-search.yaml"
    study_file.write_text(
        "search: optuna\nnum_samples: 2\nseeds: 1\nmax_epochs: 1\nweights: none\naugmentation: none\n"
        "lr: {loguniform: [1.0e-4, 1.0e-2]}\n"
    )
    command = [sys.executable, "-m", "study.run", "--grid", str(study_file), "--data", REAL_DATA]
    proc = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (study,) = (tmp_path / "results").glob("tiny-search-*")
    record = read_study_record(str(study))
    # lr 1e-4 and 1e-3 are the paper's points in the space; half of 2 samples: the first alone
    assert record.search == SearchRecord("optuna", num_samples=2, searched=["lr"], warm_starts=1)
    assert record.args["seeds"] == 1 and record.args["num_samples"] == 2
    kept = optuna_trials(study)  # the paper's warm starts are enqueued up front; those not reached wait
    assert [t.number for t in kept if t.state.name == "COMPLETE"] == [0, 1]
    assert {t.state.name for t in kept[2:]} <= {"WAITING"}
