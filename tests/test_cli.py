"""User mistakes end in one clear paragraph and exit code 2, before Ray starts."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from study.cli.options import given_options, study_spec
from study.run import main
from study.spec import StudySpec
from tests import study_json
from tests.conftest import ROOT, SMOKE_SPLIT
from trainable.config import TrialConfig


def fails(capsys, *argv):
    """study.run's exit 2 and its message, re-flowed onto one line (it wraps at the terminal's
    width, so where a long path breaks it depends on the temporary folder's name). Refused while
    parsing (as argparse refuses), the message follows the usage."""
    try:
        code = main(list(argv))
    except SystemExit as exit:
        code = exit.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err and (err.startswith("error: ") or "study.run: error: " in err)
    return " ".join(err.split())


def test_missing_data_directory(capsys, tmp_path):
    err = fails(capsys, "--grid", "paper", "--data", str(tmp_path / "nope"), "--weights", "none")
    assert "nope does not exist" in " ".join(err.split())  # wrapped at 100 columns: where depends on the path


def test_paper_needs_data(capsys):
    assert "--data is required" in fails(capsys, "--grid", "paper", "--weights", "none")


def test_corrupt_jpeg_is_named(capsys, tiny_root, tmp_path):
    root = shutil.copytree(tiny_root, tmp_path / "d")
    (root / "5" / "4.jpg").write_bytes(b"\xff\xd8\xff\xe0 broken")
    err = fails(capsys, "--grid", "smoke", "--data", str(root), "--storage", str(tmp_path / "r"), *SMOKE_SPLIT)
    assert "5/4.jpg: cannot be decoded" in err


def test_bad_options(capsys, tmp_path):
    assert "--cpus-per-trial must be a finite number > 0" in fails(capsys, "--grid", "smoke", "--cpus-per-trial", "0")
    assert "--weights" in fails(capsys, "--grid", "smoke", "--weights", str(tmp_path / "w.pt"))
    assert "--train-range" in fails(capsys, "--grid", "smoke", "--data", ".", "--train-range", "x")
    assert "--progress-every must be a finite number of seconds > 0, got nan" in fails(
        capsys, "--grid", "smoke", "--progress-every", "nan"
    )
    assert "--name: at most 200 characters (it names a folder), got 300." in fails(
        capsys, "--grid", "smoke", "--name", "x" * 300
    )
    deep = tmp_path / "deep.yaml"
    deep.write_text("lr: " + "[" * 50_000 + "]" * 50_000 + "\n")  # PyYAML recurses per level
    assert "nested too deeply to read" in fails(capsys, "--grid", str(deep))


def test_unknown_grid_names_the_valid_ones(capsys):
    err = fails(capsys, "--grid", "nope")
    assert "Unknown grid 'nope'" in err and "'extended', 'paper', 'search', 'smoke'" in err
    assert "Unknown grid 'papr' (did you mean 'paper'?)" in fails(capsys, "--grid", "papr")
    said = " ".join(fails(capsys, "--grid", "smoke", "--set", "droput=0.3").split())
    assert (
        "'droput' is not a setting a grid can change (did you mean 'dropout'?); the settings are augment_views," in said
    )
    said = " ".join(fails(capsys, "--grid", "smoke", "--where", "lrr=1e-3").split())
    assert "--where 'lrr=1e-3': 'lrr' is not a trial setting (did you mean 'lr'?); the settings are" in said
    said = " ".join(fails(capsys, "--grid", "paper", "--where", "freeze=blok8", "--dry-run").split())
    assert "No trial of grid 'paper' matches --where freeze=blok8: freeze is block8, none in its trials" in said
    assert "(did you mean 'block8'?)" in said and "{" not in said  # the values it could be, not a Python dict


@pytest.mark.parametrize(
    "text, expected",
    [
        ("lr: [1.0e-4, abc]", "'lr' must be float (or a list of them), got 'abc'"),
        (
            "lrr: [1.0e-4]",
            "'lrr' is not a trial setting (did you mean 'lr'?); expected a trial setting (augment_views,",
        ),
        ("freeze: [block9]", "Trial config 'freeze' is 'block9'; expected one of"),
        ("batch_size: []", "'batch_size' is an empty list"),
        ("scheduler: hyperband", "scheduler is 'hyperband'; expected one of ['none', 'asha']"),
        ("lr: [1.0e-4\n  batch_size: 3", "is not valid YAML"),
        ("experiments: {name: x}", "'experiments' must be a non-empty list of mappings"),
    ],
)
def test_a_malformed_grid_file_gets_one_paragraph_naming_the_key(capsys, tmp_path, text, expected):
    path = tmp_path / "my_grid.yaml"
    path.write_text(text.replace("\\n", "\n"))
    err = " ".join(fails(capsys, "--grid", str(path), "--data", ".", "--dry-run").split())  # unwrapped
    assert str(path) in err and expected in err


def test_a_grid_file_defines_fixed_values_lists_and_named_experiments(capsys, tmp_path):
    path = tmp_path / "my_grid.yaml"
    path.write_text(
        "description: mine\nweights: none\nlr: [1e-4, 1e-3]\nfreeze: [block8, none]\n"
        "experiments:\n  - {name: plain}\n  - {name: balanced, class_weights: balanced}\n"
    )
    assert main(["--grid", str(path), "--data", ".", "--dry-run", "--seeds", "1"]) == 0
    out = capsys.readouterr().out
    assert "Grid 'my_grid': 8 configurations x 1 seed(s) = 8 trials" in out
    assert "e01-plain-lr0.0001-freeze-block8-s0" in out and "e08-balanced-lr0.001-freeze-none-s0" in out


def test_mlflow_without_the_extra_says_how_to_install(capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "mlflow" else real(n, *a))
    assert ".[mlflow]" in fails(capsys, "--grid", "smoke", "--mlflow", "file:/tmp/mlruns")


def test_fp16_needs_a_gpu(capsys):
    assert "needs GPUs" in fails(capsys, "--grid", "smoke", "--precision", "fp16")


def recorded_study(tmp_path, **args):
    """A results directory whose study.json records `args`."""
    study = tmp_path / "old-study"
    study.mkdir()
    study_json.write(study, {"seeds": 2, "storage": str(tmp_path), "name": "old-study", **args})
    return study


def test_resume_refuses_options_that_differ_from_the_recorded_ones(capsys, tmp_path):
    study = recorded_study(tmp_path)
    err = " ".join(
        fails(capsys, "--resume", str(study), "--max-epochs", "5", "--seeds", "2", "--address", "auto").split()
    )
    assert "--max-epochs 5 (the study has None)" in err and "--seeds" not in err  # equal ones pass
    assert "--address" not in err  # where Ray runs may change between runs
    err = " ".join(fails(capsys, "--resume", str(study), "--storage", str(tmp_path / "elsewhere")).split())
    assert "--storage" in err and "start a new study with --name" in err


def test_resume_takes_the_recorded_options_at_the_studys_location(tmp_path):
    study = recorded_study(tmp_path, max_epochs=3)
    args = study_spec(given_options(["--resume", str(study)]))
    assert (args.max_epochs, args.seeds, args.grid) == (3, 2, "smoke")
    assert args.storage == str(tmp_path) and args.name == "old-study"


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"version": 0}, "study record of version 0; this version of the project reads version 1"),
        ({"classes": "1-4"}, "wrong type: classes (str, expected list[str])"),
        ({"split_id": None}, "wrong type: split_id"),
        ({"colour": "red"}, "unknown colour"),
        ({"data_fingerprint": ...}, "missing data_fingerprint"),
    ],
)
def test_a_study_json_not_of_the_schema_is_refused_naming_the_key(capsys, tmp_path, change, expected):
    study = tmp_path / "s"
    study.mkdir()
    value = {**study_json.record(), **change}
    value = {k: v for k, v in value.items() if v is not ...}
    (study / "study.json").write_text(json.dumps(value))
    for refused in (fails(capsys, "--resume", str(study)), reported_error(capsys, str(study))):
        assert f"{study / 'study.json'} " in refused and expected in " ".join(refused.split())


def reported_error(capsys, study):
    from analysis.report import main as report

    assert report([study]) == 2
    return capsys.readouterr().err


def test_paths_are_recorded_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = StudySpec.from_options(given_options(["--grid", "smoke", "--data", "faces", "--weights", "w.pt"]))
    assert (args.dataset.data, args.weights) == (str(tmp_path / "faces"), str(tmp_path / "w.pt"))
    assert args.storage == str(tmp_path / "results") and args.cache_dir == str(tmp_path / "results" / "trunk-cache")
    assert StudySpec.from_options({"grid": "smoke", "weights": "vggface2"}).weights == "vggface2"


def test_provenance_records_the_arguments_main_received(tmp_path):
    from study.bookkeeping.provenance import write_provenance

    made = ("version", "command", "python", "platform", "packages", "git_revision")  # what it adds
    facts = {k: v for k, v in study_json.record().items() if k not in made}
    write_provenance(str(tmp_path), ["--grid", "smoke", "--seeds", "1"], **facts)
    command = json.loads((tmp_path / "study.json").read_text())["command"]
    assert command[1:] == ["-m", "study.run", "--grid", "smoke", "--seeds", "1"]


@pytest.mark.parametrize(
    "option, value, said",
    [
        (
            "--gpus-per-trial",
            "1e308",
            "--gpus-per-trial 1e+308: a trial runs on one node, and no node has more than 16 GPUs",
        ),
        ("--cpus-per-trial", "5000", "--cpus-per-trial 5000: a trial runs on one node, and no node has more than 1024"),
    ],
)
def test_a_trial_larger_than_any_node_is_refused_before_ray(capsys, option, value, said):
    assert said in " ".join(fails(capsys, "--grid", "smoke", option, value, "--dry-run").split())


@pytest.mark.parametrize(
    "text, expected",
    [
        ("lr: .nan\n", "'lr' must be a finite number"),
        ("weight_decay: .inf\n", "'weight_decay' must be a finite number"),
        ("lr: [1.0e-4, -.inf]\n", "'lr' must be a finite number"),
        ("lr: {uniform: [0.0001, .nan]}\n", "'lr' must be a finite number"),
        ("a: &a [1, 1]\nb: &b [*a, *a]\nlr: *b\n", "aliases (*name) are not allowed"),
        ("lr: 0.1\ndropout: 0.2\nlr: 0.2\n", "line 3, column 1: 'lr' is set twice, on line 1 and line 3; keep one"),
        ("experiments:\n  - {name: a, lr: 0.1, lr: 0.2}\n", "'lr' is set twice, on line 2 and line 2"),
        ('{"lr": 0.1,\n "lr": 0.2}', "'lr' is set twice (lines 1, 2); keep one."),
        ('{"experiments": [{"name": "a", "name": "b"}]}', "'name' is set twice (lines 1, 1)"),
    ],
)
def test_nonsense_settings_in_a_grid_file_are_refused_naming_the_key(capsys, tmp_path, text, expected):
    grid = tmp_path / ("g.json" if text.startswith("{") else "g.yaml")
    grid.write_text(text)
    assert expected in " ".join(fails(capsys, "--grid", str(grid), "--dry-run").split())


def test_a_huge_grid_file_is_refused_unread(capsys, tmp_path):
    from study.grids import MAX_GRID_BYTES

    grid = tmp_path / "g.yaml"
    grid.write_text("# padding\n" * (MAX_GRID_BYTES // 10 + 1))
    assert "a grid file is a few lines" in " ".join(fails(capsys, "--grid", str(grid), "--dry-run").split())


def test_a_grid_that_crosses_to_too_many_trials_is_refused_counted_not_expanded(capsys, tmp_path):
    import resource
    import time

    grid = tmp_path / "g.yaml"  # 9 lists of 12 values: 12^9 = 5.2 billion experiments in under 1 KB
    grid.write_text(
        "\n".join(
            f"{key}: [{', '.join(str(v) for v in values)}]"
            for key, values in {
                "lr": [10.0**-k for k in range(1, 13)],
                "dropout": [k / 20 for k in range(12)],
                "weight_decay": [10.0**-k for k in range(1, 13)],
                "batch_size": list(range(2, 14)),
                "es_rounds": list(range(1, 13)),
                "momentum": [k / 20 for k in range(12)],
                "max_epochs": list(range(1, 13)),
                "patience": list(range(1, 13)),
                "min_delta": [k / 1000 for k in range(12)],
            }.items()
        )
    )
    before, start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.perf_counter()
    said = " ".join(fails(capsys, "--grid", str(grid), "--dry-run").split())
    assert "its lists cross to 5,159,780,352 experiments, over 10,000" in said and "--search random" in said
    assert time.perf_counter() - start < 5 and resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100_000
    grid.write_text("lr: [1.0e-4, 1.0e-3, 1.0e-2]\ndropout: [0.1, 0.3, 0.5, 0.6]\n")  # 12 experiments
    said = " ".join(fails(capsys, "--grid", str(grid), "--seeds", "3", "--max-trials", "30", "--dry-run").split())
    assert "expands to more than 30 trials (up to 36); --max-trials N runs more, --where runs fewer" in said
    assert main(["--grid", str(grid), "--seeds", "3", "--max-trials", "36", "--dry-run"]) == 0
    assert main(["--grid", str(grid), "--seeds", "3", "--max-trials", "30", "--where", "lr=0.01", "--dry-run"]) == 0


@pytest.mark.parametrize(
    "option, value, expected",
    [
        ("--gpus-per-trial", "nan", "--gpus-per-trial must be a finite number, got nan."),
        ("--cpus-per-trial", "inf", "--cpus-per-trial must be a finite number > 0, got inf."),
        ("--cpus-per-trial", "nan", "--cpus-per-trial must be a finite number > 0, got nan."),
    ],
)
def test_non_finite_resources_are_refused_with_the_options(capsys, option, value, expected):
    assert expected in fails(capsys, "--grid", "smoke", option, value, "--dry-run")


@pytest.mark.parametrize("first, seeds", [("99999999999999999999", "3"), ("4294967294", "3")])
def test_seeds_out_of_range_are_refused_with_the_options(capsys, first, seeds):
    said = " ".join(fails(capsys, "--grid", "smoke", "--first-seed", first, "--seeds", seeds, "--dry-run").split())
    assert f"--first-seed {first} with --seeds {seeds}: seeds run to" in said and "below 4,294,967,296" in said


def test_a_non_finite_trial_setting_is_refused_wherever_it_comes_from():
    from trainable.config import TrialConfig
    from trainable.errors import UserError

    for key in ("lr", "weight_decay", "dropout", "min_delta", "momentum"):
        with pytest.raises(UserError, match=f"'{key}' must be a finite number"):
            TrialConfig.from_dict({key: float("nan")})


@pytest.mark.parametrize("name", ["../../x", "a/b", "..", ".hidden", "a..b", "", "x\ny"])
def test_a_study_name_that_is_not_one_folder_is_refused(capsys, tmp_path, name):
    assert "--name" in fails(capsys, "--grid", "smoke", "--name", name, "--storage", str(tmp_path / "r"))
    assert not (tmp_path / "r").exists() and not (tmp_path.parent / "x").exists()


def test_search_optuna_without_the_extra_exits_2_before_ray_starts_and_writes_nothing(capsys, monkeypatch, tmp_path):
    import sys

    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna raises ImportError
    monkeypatch.setitem(sys.modules, "ray", None)  # and so would starting Ray: it must not be reached
    err = fails(capsys, "--grid", "search", "--search", "optuna", "--storage", str(tmp_path / "r"), "--name", "s")
    assert ".[search]" in err
    assert not (tmp_path / "r").exists()


@pytest.mark.extra("mlflow")
def test_credentials_are_never_recorded_and_resume_asks_for_them_again(tmp_path, tiny_data, capsys, monkeypatch):
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.delenv(name, raising=False)  # restored after the test
    from study.bookkeeping.plan import Plan, record_study

    args = StudySpec.from_options(
        {"grid": "smoke", "storage": str(tmp_path), "mlflow": "http://me:hunter2@mlflow:5000"}
    )
    plan = Plan("s", str(tmp_path / "s"), {}, TrialConfig(), {}, str(tmp_path / "s"))
    record_study(plan, args, ["--grid", "smoke", "--mlflow", "http://me:hunter2@mlflow:5000"], tiny_data, trials=[])
    text = (tmp_path / "s" / "study.json").read_text()
    assert "hunter2" not in text and "http://REDACTED@mlflow:5000" in text
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.delenv(name)  # set by from_options above: a new process would not have them
    argv = ["--resume", str(tmp_path / "s")]
    assert "held credentials, which are not recorded; pass --mlflow again" in " ".join(fails(capsys, *argv).split())
    argv += ["--mlflow", "http://me:hunter2@mlflow:5000"]
    assert study_spec(given_options(argv)).mlflow == "http://mlflow:5000"  # the credentials to the environment
    assert os.environ["MLFLOW_TRACKING_PASSWORD"] == "hunter2"
    assert study_spec(given_options(argv[:2])).mlflow == "http://mlflow:5000"  # or by environment alone
    argv[-1] = "http://me:hunter2@elsewhere:5000"
    assert "--mlflow" in fails(capsys, *argv)  # another server: refused as any changed option


def test_resume_refuses_a_replaced_weights_file(tmp_path, tiny_data):
    import torch

    from study.bookkeeping.resume import check_same_study
    from trainable.errors import UserError
    from trainable.model import weights_id

    weights = tmp_path / "w.pt"
    torch.save({"a": torch.zeros(2)}, weights)
    study = tmp_path / "study"
    study.mkdir()
    ids = {str(weights): weights_id(str(weights))}
    study_json.write(study, data_fingerprint=tiny_data.fingerprint, weights_ids=ids)
    check_same_study(str(study), tiny_data, "smoke", [str(weights)])  # the same file: resumes
    torch.save({"a": torch.ones(2)}, weights)
    with pytest.raises(UserError, match="changed since the study .* would mix two trunks"):
        check_same_study(str(study), tiny_data, "smoke", [str(weights)])


def test_a_failure_choosing_the_best_model_is_a_line_and_exit_code_1(tmp_path, capsys, monkeypatch, tiny_data):
    from analysis import best
    from study.bookkeeping.plan import Plan, record_study
    from study.bookkeeping.summary import finish

    def broken(directory):
        raise KeyError("best_val_acc")  # an injected bug in the selection

    monkeypatch.setattr(best, "write_best", broken)
    plan = Plan("s", str(tmp_path), {"none": "none"}, TrialConfig(), {"none": "none (random init)"}, str(tmp_path))
    record_study(plan, StudySpec(grid="smoke"), ["--grid", "smoke"], tiny_data, trials=[])  # a study, no trial yet
    assert finish(plan, []) == 1
    out = capsys.readouterr().out
    assert "Choosing the best model failed (KeyError: 'best_val_acc'); `python -m analysis.best" in out
    assert "Traceback" not in out
    monkeypatch.undo()
    assert finish(plan, []) == 0 and "no best model kept" in capsys.readouterr().out  # the same study, no bug


def test_set_changes_every_trial_typed_shown_in_the_dry_run_and_as_a_difference(capsys):
    from study.grids import expand, reference_config
    from trainable.config import differs_from

    assert (
        main(
            ["--grid", "paper", "--seeds", "1", "--set", "dropout=0.3", "--set", "class_weights=balanced", "--dry-run"]
        )
        == 0
    )
    header, *rows = capsys.readouterr().out.splitlines()[:8]
    assert header.split()[-2:] == ["dropout", "class_weights"] and all(
        r.split()[-2:] == ["0.3", "balanced"] for r in rows
    )
    spec = study_spec(given_options(["--grid", "paper", "--set", "dropout=0.3", "--set", "lr=1e-3"]))
    assert spec.trial_settings() == {"dropout": 0.3, "lr": 0.001}  # YAML's 1e-3 typed as TrialConfig's float
    configs = expand("paper", seeds=1, overrides=spec.overrides(), settings=spec.trial_settings())
    assert {c.dropout for c in configs} == {0.3} and {c.lr for c in configs} == {0.001}
    reference = reference_config(spec.overrides())  # --set is a change, not a condition of the study
    assert differs_from(configs[0].to_dict(), reference.to_dict()) == "lr=0.001, dropout=0.3"


@pytest.mark.parametrize(
    "item, expected",
    [
        ("dropout", "expected KEY=VALUE"),
        ("dropout=high", "--set dropout=high: 'dropout' must be float, got 'high'"),
        ("seed=3", "'seed' is not a setting a grid can change"),
        ("lr=-1", "--set lr=-1: Trial config 'lr' must be > 0"),
        ("colour=red", "'colour' is not a setting"),
    ],
)
def test_a_bad_set_is_named(capsys, item, expected):
    assert expected in " ".join(fails(capsys, "--grid", "paper", "--set", item, "--dry-run").split())


def test_set_and_its_own_option_together_are_refused(capsys):
    assert "--set max_epochs and --max-epochs are both given" in fails(
        capsys, "--grid", "paper", "--set", "max_epochs=3", "--max-epochs", "4", "--dry-run"
    )


def test_evaluate_on_a_missing_folder_or_two_of_one_name_are_refused_before_any_work(capsys, monkeypatch, tmp_path):
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)  # starting Ray must not be reached
    err = fails(
        capsys, "--grid", "smoke", "--evaluate-on", f"{tmp_path}/nowhere:fgnet", "--storage", str(tmp_path / "r")
    )
    assert "--evaluate-on" in err and "nowhere is not a folder" in err and not (tmp_path / "r").exists()
    from trainable.data.dataset_options import data_target

    (tmp_path / "a:b").mkdir()  # a colon that names no layout is part of the path
    assert data_target(f"{tmp_path}/a:b") == (str(tmp_path / "a:b"), "auto")
    assert data_target(f"{tmp_path}/a:b:fgnet") == (str(tmp_path / "a:b"), "fgnet")
    for folder in ("x/images", "y/images"):
        (tmp_path / folder).mkdir(parents=True)
    err = " ".join(
        fails(
            capsys,
            *("--grid", "smoke", "--storage", str(tmp_path / "r")),
            *("--evaluate-on", f"{tmp_path}/x/images:fgnet", "--evaluate-on", f"{tmp_path}/y/images/"),
        ).split()
    )
    assert "would both write evaluations/images.json" in err and not (tmp_path / "r").exists()  # one not overwritten


ONE_FILE_STUDY = """\
description: a whole study in one file
search: optuna
num_samples: 6
seeds: 2
confirm_top: 1
select: val_bacc
max_epochs: 2
lr: {loguniform: [1.0e-4, 1.0e-2]}
dropout: {uniform: [0.0, 0.5]}
"""


@pytest.mark.extra("search")
def test_a_grid_file_holds_the_study_options_and_the_command_line_overrides_them(tmp_path, capsys):
    path = tmp_path / "study.yaml"
    path.write_text(ONE_FILE_STUDY)
    spec = study_spec(given_options(["--grid", str(path)]))
    assert (spec.search, spec.num_samples, spec.seeds, spec.confirm_top, spec.select) == ("optuna", 6, 2, 1, "val_bacc")
    spec = study_spec(given_options(["--grid", str(path), "--num-samples", "3", "--search", "random"]))
    assert (spec.search, spec.num_samples, spec.seeds) == ("random", 3, 2)
    assert spec.record()["num_samples"] == 3  # study.json records what ran, so a resume needs no file
    assert main(["--grid", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "  lr: loguniform (0.0001, 0.01)" in out and "  max_epochs: 2" in out
    assert "optuna search: 6 trial(s) over lr, dropout" in out
    path.write_text(ONE_FILE_STUDY.replace("num_samples: 6", "num_samples: many"))
    err = " ".join(fails(capsys, "--grid", str(path)).split())
    assert "num_samples is 'many'; expected a whole number (as --num-samples)" in err
    path.write_text(ONE_FILE_STUDY.replace("search: optuna", "search: bayes"))
    err = " ".join(fails(capsys, "--grid", str(path)).split())
    assert "search is 'bayes'; expected one of ['grid', 'random', 'optuna']" in err


def test_the_options_page_lists_every_option_the_parser_takes():
    """docs/options.md's table is generated (docs/hooks.py) from the dataclasses the parser is
    built from: every flag of study.run's parser has its row, with its help."""
    from study.cli.options import parser
    from trainable.cli_options import markdown_table
    from trainable.data.dataset_options import DataOptions

    table = markdown_table(DataOptions, StudySpec)
    flags = [s for action in parser()._actions for s in action.option_strings if s not in ("-h", "--help")]
    rows = table.splitlines()[2:]
    assert len(rows) == len(parser()._actions) - 1
    assert all(any(f"`{flag}" in row or f", {flag}" in row for row in rows) for flag in flags)
    assert "| `--confirm-top K` | then rerun the K best configurations" in table
    assert not [row for row in rows if row.rsplit("|", 2)[1].strip() == ""]  # every option has its default said
    assert next(row for row in rows if row.startswith("| `--precision")).endswith("| auto |")  # from its help
    with open(os.path.join(ROOT, "docs", "options.md")) as f:
        assert "<!-- options -->" in f.read()


COMMANDS = [
    "study.run",
    "study.predict",
    "study.serve",
    *(f"analysis.{m}" for m in ("report", "baselines", "evaluate", "peer", "best", "results")),
]
HEAVY = ("torch", "ray", "cv2", "sklearn", "matplotlib")


@pytest.mark.parametrize("module", COMMANDS)
def test_every_command_parses_before_torch_ray_opencv_or_matplotlib_load(module):
    """`--help`, an unknown option and a mistake in study.run's arguments answer at once:
    nothing heavy is imported before the arguments are parsed (the times are in BENCHMARKS.md)."""
    mistakes = [["--help"], ["--no-such-option"], *([["--grid", "papr"]] if module == "study.run" else [])]
    code = (
        "import runpy, sys\n"
        "codes = []\n"
        f"for argv in {mistakes!r}:\n"
        f"    sys.argv = [{module!r}, *argv]\n"
        "    try:\n"
        f"        runpy.run_module({module!r}, run_name='__main__')\n"
        "    except SystemExit as end:\n"
        "        codes.append(end.code)\n"
        f"print(codes, [m for m in {HEAVY!r} if m in sys.modules])"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    expected = [0, 2, 2] if module == "study.run" else [0, 2]
    assert proc.stdout.strip().splitlines()[-1] == f"{expected} []", proc.stdout[-2000:] + proc.stderr[-2000:]


def test_every_console_script_names_a_main_and_the_study_command_is_installed():
    """pyproject's [project.scripts]: each names a module's main(argv=None) -> int (read from
    the source, nothing imported), and `pip install -e .` put them beside this Python."""
    import ast
    import tomllib

    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        scripts = tomllib.load(f)["project"]["scripts"]
    assert "face-age-study" in scripts and "face-age-report" in scripts
    for name, target in scripts.items():
        module, function = target.split(":")
        source = os.path.join(ROOT, *module.split(".")) + ".py"
        tree = ast.parse(open(source).read())
        mains = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == function]
        assert mains and [a.arg for a in mains[0].args.args] == ["argv"], f"{name}: {target}"
    for name in scripts:  # each introduces itself by the name it was started as
        command = os.path.join(os.path.dirname(sys.executable), name)
        proc = subprocess.run([command, "--help"], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0 and proc.stdout.startswith(f"usage: {name} "), (
            name,
            proc.stdout[:200],
            proc.stderr,
        )
    proc = subprocess.run([sys.executable, "-m", "study.run", "--help"], capture_output=True, text=True, timeout=60)
    assert proc.stdout.startswith("usage: python -m study.run ")  # and its module form by that


@pytest.mark.extra("serve")
def test_an_argument_is_named_as_the_user_gives_it():
    """study.serve's model is a positional (no --model); study.predict's is --model."""
    serve = subprocess.run(
        [sys.executable, "-m", "study.serve", "/nonexistent"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert serve.returncode == 2 and "RESULTS_DIR|model.pt /nonexistent does not exist" in serve.stderr
    assert "--model" not in serve.stderr, serve.stderr


QUIET = """
import os, sys, logging
from study.terminal.quiet import filter_stderr, quiet_tools
quiet_tools(verbose=VERBOSE)
filter_stderr(verbose=VERBOSE)
os.write(2, b"[2026-12-07 03:43:17,039 E 16226 16226] core_worker.cc:2465: Actor with class name: "
         b"'_WandbLoggingActor' and ID: '1b91' has constructor arguments in the object store and max_restarts > 0.\\n")
print("Successfully registered model 'face-age'.", file=sys.stderr)
print("Created version '1' of model 'face-age'.", file=sys.stderr)
os.write(2, b"[2026-12-07 03:43:18,000 E 1 1] core_worker.cc:99: a real error\\n")
logging.basicConfig()
logging.getLogger("mlflow.pyfunc").warning("Passing a Python object ... serialized using CloudPickle, ...")
logging.getLogger("mlflow.pyfunc").warning("a warning to act on")
print(os.environ.get("MLFLOW_LOGGING_LEVEL"), os.environ.get("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"))
"""


@pytest.mark.parametrize("verbose", [False, True])
def test_other_tools_noise_is_left_out_unless_verbose_and_everything_else_shown(verbose):
    """Ray core's line about W&B's logging actor (written to fd 2 from C++), MLflow's registry
    lines and CloudPickle warning are dropped; another error and another warning are kept, in
    order; -v keeps everything."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}  # as a new shell has them
    proc = subprocess.run(
        [sys.executable, "-c", QUIET.replace("VERBOSE", str(verbose))],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    kept = [line for line in proc.stderr.splitlines() if line]
    if verbose:
        assert len(kept) == 6 and proc.stdout.split() == ["None", "None"]
    else:
        assert kept[0].endswith("core_worker.cc:99: a real error") and kept[1].endswith("a warning to act on")
        assert len(kept) == 2 and proc.stdout.split() == ["WARNING", "false"]


@pytest.mark.parametrize(
    "command, option",
    [
        ("study.run", ["--grid", "smoke", "--storage", "r\x1b[2J"]),
        ("study.run", ["--grid", "smoke", "--name", "a\u2028Results: /etc"]),
        ("analysis.report", ["results", "--out", "x\x9b31m"]),
        ("study.predict", ["--model", "m\x07.pt", "a.jpg"]),
        ("analysis.results", ["r\u202egpj.exe"]),
    ],
)
def test_an_option_that_could_drive_a_terminal_is_refused_shown_escaped(command, option):
    proc = subprocess.run([sys.executable, "-m", command, *option], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2 and "holds a control character or a line or direction separator" in proc.stderr
    assert not any(c in proc.stderr for c in "\x1b\u2028\x9b\x07\u202e"), proc.stderr  # escaped, never raw


def test_a_full_disk_is_found_in_the_errors_chain_or_by_the_space_left(tmp_path, monkeypatch):
    import errno
    import shutil
    from collections import namedtuple

    from study.bookkeeping import disk

    plan = type("Plan", (), {"directory": str(tmp_path), "location": str(tmp_path)})()
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x.json"))
        except OSError:
            raise EOFError("Ran out of input")  # noqa: B904 (implicitly chained, as in Ray)
    except EOFError as err:
        chained = err
    assert disk.no_space(chained) and not disk.no_space(EOFError("Ran out of input"))
    paragraph = str(disk.disk_full_error(chained, plan, str(tmp_path)))
    assert paragraph.endswith(f"Free some space, then run: python -m study.run --resume {tmp_path}")
    assert f"(writing {tmp_path / 'x.json'}). What finished is kept." in paragraph  # the cause, not what it broke
    assert "EOFError" not in paragraph and "Ran out of input" not in paragraph
    assert disk.disk_full_error(ValueError("x"), plan, str(tmp_path)) is None  # space left: not ours
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(100, 100, 4096))
    assert f"the disk holding {tmp_path} (4,096 bytes free)" in str(disk.disk_full_error(ValueError("x"), plan, ""))


def test_ray_tunes_error_lines_keep_their_exceptions_last_line_and_lose_the_traceback():
    import logging

    from study.terminal.quiet import OneLine

    try:
        raise OSError(28, "Error writing bytes to file")
    except OSError:
        import sys as _sys

        record = logging.LogRecord(
            "ray.tune.execution.experiment_state",
            logging.ERROR,
            "f",
            1,
            "Saving to %s failed: ",
            ("/x",),
            _sys.exc_info(),
        )
    assert OneLine().filter(record) and record.exc_info is None
    assert logging.Formatter().format(record) == "Saving to /x failed: OSError: [Errno 28] Error writing bytes to file"
    other = logging.LogRecord("ray.serve", logging.ERROR, "f", 1, "kept whole", (), None)
    assert OneLine().filter(other) and other.getMessage() == "kept whole"


def test_a_mistyped_option_is_one_line_naming_the_closest(capsys):
    """Not argparse's whole usage: the option, the closest one known, where the rest are listed."""
    with pytest.raises(SystemExit) as end:
        main(["--sedes", "1"])
    err = capsys.readouterr().err
    assert end.value.code == 2 and len(err.strip().splitlines()) == 1
    assert "unrecognized argument --sedes (did you mean '--seeds'?)" in err and "--help lists them" in err
    with pytest.raises(SystemExit):
        main(["--grid", "smoke", "--zzzz-nothing-like-it"])
    assert "did you mean" not in capsys.readouterr().err


@pytest.mark.parametrize(
    "module, argv, said",
    [
        pytest.param(
            "study.serve",
            ["/nonexistent"],
            "RESULTS_DIR|model.pt /nonexistent does not",
            marks=pytest.mark.extra("serve"),
        ),
        pytest.param(
            "study.serve",
            ["x", "--replicas", "0"],
            "--replicas and --max-batch-size must",
            marks=pytest.mark.extra("serve"),
        ),
        ("analysis.baselines", ["--data", "/nonexistent", "--out", "x"], "Data directory /nonexistent does not exist"),
        (
            "analysis.evaluate",
            ["--model", "/nonexistent", "--data", ".", "--out", "x"],
            "--model /nonexistent does not",
        ),
        ("analysis.evaluate", ["--model", ".", "--data", ".", "--out", "x"], "python -m analysis.best ."),
        ("study.predict", ["--model", "/nonexistent", "x.jpg"], "--model /nonexistent does not exist"),
        ("analysis.studies", ["/nonexistent"], "/nonexistent is not a folder of studies"),
        ("analysis.studies", [".", "/nonexistent"], "holds no study.json"),
        ("study.bench", ["--quik"], "unrecognized argument --quik (did you mean '--quick'?)"),
        ("study.run", ["--grid", "smoke", "--data", "/nonexistent", "--dry-run"], "Data directory /nonexistent"),
        ("study.run", ["--grid", "smoke", "--age-bins", "5,abc", "--dry-run"], "--age-bins '5,abc': expected"),
    ],
)
def test_a_mistake_is_answered_before_torch_loads(module, argv, said):
    """Each command checks what it was given before it imports torch (seconds of CPU): exit 2, the
    reason, and torch absent from the process's modules when it answered."""
    entry = "study.bench.main" if module == "study.bench" else module  # study.bench's main is in its main.py
    code = (
        "import importlib, sys\n"
        f"try:\n    rc = importlib.import_module({entry!r}).main({argv!r})\n"
        "except SystemExit as exit:\n    rc = exit.code\n"
        "print('torch loaded' if 'torch' in sys.modules else 'torch not loaded', rc, file=sys.stderr)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    err = " ".join(proc.stderr.split())
    assert said in err and err.endswith("torch not loaded 2"), err[-2000:]
