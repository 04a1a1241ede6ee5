"""The smoke grid end to end through the CLI and a real Ray Tune run: the slow tier's one shared
smoke study (tests.conftest.smoke_study) and its report."""

import fnmatch
import glob
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from analysis.results import load_study
from tests.conftest import ROOT
from trainable.config import RANDOM_INIT_NOTICE
from trainable.results.study_record import read_study_record

# Ray end to end: about two minutes for the study, its baselines and report (once a session,
# however many pytest-xdist workers run these tests: conftest.once_per_session).
pytestmark = pytest.mark.slow


def test_summary_is_printed(smoke_study):
    storage, stdout = smoke_study
    assert "smoke cached" in stdout and "smoke online" in stdout
    assert f"Results: {storage / 'e2e'}" in stdout
    assert "Ray dashboard: http://127.0.0.1:" in stdout
    assert "Settings per configuration" in stdout and "none (random init)" in stdout
    assert RANDOM_INIT_NOTICE in stdout.split("Results:")[1]  # after the summary (then --evaluate-on's lines)
    assert stdout.count(RANDOM_INIT_NOTICE) == 1 and stdout.count("Best configuration (by") == 1  # not again
    assert "python -m analysis.report" in stdout.split(RANDOM_INIT_NOTICE)[1]  # the next step, after it
    summary = pd.read_csv(storage / "e2e" / "summary.csv")
    assert {
        "status",
        "stopped_by",
        "weights",
        "max epochs",
        "stop rule",
        "precision",
        "normalization",
        "differs from #1",
    } <= set(summary.columns)
    assert (summary["normalization"] == "facenet").all() and (summary["precision"] != "auto").all()


def test_the_study_ends_with_its_answer_on_the_runs_that_did_not_choose_it(smoke_study):
    storage, stdout = smoke_study
    confirmed, _ = load_study(str(storage / "e2e" / "confirm"), "confirm/")
    assert sorted(confirmed.seed) == [3, 4, 5, 6, 7]  # --confirm-seeds 5: the best again, fresh seeds
    answer = next(line for line in stdout.splitlines() if line.startswith("The answer: #"))
    assert "test accuracy" in answer and "on 5 runs it was not chosen on (seeds 3, 4, 5, 6, 7)" in answer


def test_every_trial_has_per_epoch_metrics_and_a_checkpoint(smoke_study):
    storage, _ = smoke_study
    trials, epochs = load_study(str(storage / "e2e"))
    assert len(trials) == 6 and (trials["status"] == "finished").all()  # 2 experiments x 3 seeds
    assert trials.groupby("config_id").seed.apply(sorted).tolist() == [[0, 1, 2]] * 2
    for trial in trials.itertuples():
        rows = epochs[epochs.trial_id == trial.trial_id]
        assert rows.epoch.tolist() == list(range(1, trial.max_epochs + 1))
        assert rows[["train_loss", "val_loss", "val_acc"]].notna().all().all()
        final = sorted(glob.glob(str(storage / "e2e" / trial.trial_id / "checkpoint_*")))[-1]
        assert {"model.pt", "metrics.json", "trial.pt"} <= set(os.listdir(final))
        with open(os.path.join(final, "metrics.json")) as f:
            assert json.load(f)["best_epoch"] == trial.best_epoch
        events = glob.glob(str(storage / "e2e" / trial.trial_id / "events.out.tfevents.*"))
        with open(events[0], "rb") as f:  # TensorBoard's HParams: the settings the grid varies
            assert b"augmentation" in f.read()
    assert set(trials.trial_id) == {
        f"e0{e}-smoke-{kind}-s{s}" for e, kind in ((1, "cached"), (2, "online")) for s in (0, 1, 2)
    }
    cached = trials[trials.name == "smoke cached"]
    assert (cached.val_acc_best >= 0.75).all()  # the generated classes are learnable


RESCORE = """
import json, sys
from study.smoke_data import RANGES
from trainable.data.dataset import load_el7008
from trainable.serving.inference import Predictor
data = load_el7008(sys.argv[1], RANGES)
print(json.dumps([Predictor(f).probabilities(data.images_of("test")).argmax(1).tolist() for f in sys.argv[2:]]))
"""


@pytest.mark.numerics
def test_a_model_file_alone_reproduces_its_trials_test_predictions_in_a_fresh_process(smoke_study):
    """model.pt carries its config, classes, preprocessing and precision: a new process
    that has nothing else gives the trial's recorded test predictions, image for image."""
    storage, _ = smoke_study
    trials, _ = load_study(str(storage / "e2e"))
    files = [sorted(glob.glob(str(storage / "e2e" / t / "checkpoint_*")))[-1] + "/model.pt" for t in trials.trial_id]
    proc = subprocess.run(
        [sys.executable, "-c", RESCORE, str(storage / "smoke-data"), *files], cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.splitlines()[-1]) == trials.test_pred.tolist()
    record = torch.load(files[0], weights_only=True)
    assert record["classes"] == ["1-4", "5-27", "28+"] and record["preprocessing"]["normalization"] == "facenet"
    assert record["config"]["seed"] in (0, 1, 2) and record["packages"]["torch"] == importlib.metadata.version("torch")


def test_the_best_configuration_is_kept_by_validation_accuracy(smoke_study, smoke_report):
    storage, stdout = smoke_study
    best = json.loads((storage / "e2e" / "best" / "best.json").read_text())
    trials, _ = load_study(str(storage / "e2e"))
    by_val = trials.groupby("config_id").val_acc_best.mean()
    assert by_val[best["config_id"]] == by_val.max() and "never test" in best["chosen_by"]
    kept = trials[trials.trial_id == best["model_trial"]].iloc[0]
    assert kept.config_id == best["config_id"] and kept.val_acc_best == best["model_val_acc"] == best["model_selected"]
    assert (storage / "e2e" / "best" / "model.pt").stat().st_size > 1e6
    assert "Best configuration (by mean val_acc" in stdout and best["select"] == "val_acc"
    assert "Best model kept: best/model.pt" in (smoke_report / "report.md").read_text()


def test_predict_with_a_studys_best_model_gives_one_row_per_image(smoke_study):
    storage, _ = smoke_study
    folder = storage / "smoke-data" / "5"
    proc = subprocess.run(
        [sys.executable, "-m", "study.predict", "--model", str(storage / "e2e"), "--no-detect", str(folder)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [line for line in proc.stdout.splitlines() if line.strip().startswith(str(folder))]
    assert len(rows) == len(os.listdir(folder)) == 16 and all("5-27" in row for row in rows)  # learnable colours


def test_provenance_is_recorded(smoke_study):
    storage, _ = smoke_study
    record = read_study_record(str(storage / "e2e"))
    assert record.grid == "smoke" and len(record.trials) == 6
    assert record.packages["ray"] and len(record.data_fingerprint) == 64
    assert len(record.data_files) == 48 and record.args["seeds"] == 3


def test_a_faulted_trial_retries_from_its_checkpoint_to_the_same_metrics(smoke_study, tmp_path):
    """Each trial raises once at epoch 11 (after the epoch-10 checkpoint); with
    --max-failures 2 it resumes from that checkpoint and ends as if unfaulted."""
    storage, _ = smoke_study
    env = {**os.environ, "FACE_AGE_TEST_FAULT": f"11:{tmp_path}"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.faults",
            "--grid",
            "smoke",
            "--confirm-top",
            "0",
            "--seeds",
            "1",
            "--storage",
            str(storage),
            "--name",
            "faulted",
            "--max-failures",
            "2",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # the e2e study encoded the trunk outputs into the shared cache: no task starts for them again
    assert "set(s) the cached trials read are in the cache already" in proc.stdout and "shard task" not in proc.stdout
    assert len(os.listdir(tmp_path)) == 1  # only the 12-epoch trial reached epoch 11
    faulted, epochs = load_study(str(storage / "faulted"))
    clean, _ = load_study(str(storage / "e2e"))
    keys = ["name", "seed", "best_epoch", "best_val_loss", "val_acc_best", "test_acc_best"]
    merged = faulted[keys].merge(clean[keys], on=["name", "seed"], suffixes=("", "_clean"))
    assert len(merged) == 2
    for key in keys[2:]:
        assert (merged[key] == merged[f"{key}_clean"]).all(), key
    cached = faulted[faulted.name == "smoke cached"].trial_id.item()
    assert epochs[epochs.trial_id == cached].epoch.tolist() == list(range(1, 13))


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def test_evaluate_on_scores_every_seed_of_the_best_configuration_and_fills_the_report(smoke_study, smoke_report):
    storage, stdout = smoke_study
    best = json.loads((storage / "e2e" / "best" / "best.json").read_text())
    result = json.loads(next((storage / "e2e" / "evaluations").glob("*.json")).read_text())
    assert result["models"] == best["seeds"] == len(result["predictions"]) == len(best["seed_models"])
    assert result["seeds"] == sorted(m["seed"] for m in best["seed_models"]) and not result["detect_faces"]
    assert result["images"] == 15 and result["class_shares"] == pytest.approx([1 / 3] * 3)
    lo, hi = result["accuracy_interval_95"]
    assert 0 <= lo <= result["accuracy"] <= hi <= 1 and len(result["recall_interval_95"]) == 3
    assert "Beyond the training data: accuracy" in stdout
    section = (smoke_report / "report.md").read_text().split("## Beyond the training data")[1].split("\n## ")[0]
    assert result["data_root"] in section and f"{result['accuracy']:.3f} [{lo:.3f}, {hi:.3f}]" in section
    assert "1-4 33%" in section and f"seeds {result['seeds']}" in section and "no face found" in section


def test_report_holds_every_configuration_and_figure(smoke_study, smoke_report):
    storage, _ = smoke_study
    trials, epochs = load_study(str(storage / "e2e"))
    markdown = (smoke_report / "report.md").read_text()
    for name in trials.name.unique():
        assert f"| {name} |" in markdown
    for figure in ("test_accuracy.png", "loss_curves.png", "confusion.png"):
        assert f"(figures/{figure})" in markdown and (smoke_report / "figures" / figure).stat().st_size > 5000
    assert "HOG + SVM" in markdown and "LBP + MLP" in markdown
    searched = markdown.split("## Baselines: searched on validation")[1].split("\n## ")[0]
    assert "HOG cell [8, 10, 16]" in searched and "gamma (x 1/features)" in searched
    assert any(f"HOG cell {c};" in searched for c in (8, 10, 16))  # what was chosen
    assert "not distinguishable from noise" in markdown or "beyond the noise of" in markdown
    assert "Method: The seed-and-image t-test" in markdown
    exported = pd.read_csv(smoke_report / "epochs.csv")  # the study's epochs and its confirmation's, as data
    _, confirmed = load_study(str(storage / "e2e" / "confirm"), "confirm/")
    assert len(exported) == len(epochs) + len(confirmed) and len(confirmed) > 0
    assert exported.stage.value_counts().to_dict() == {"study": len(epochs), "confirm": len(confirmed)}
    assert not [c for c in exported.columns if c.endswith(("_x", "_y"))]
    assert {"val_bacc", "best_val_loss", "experiment", "seed", "test_acc_best", "reported_at"} <= set(exported.columns)
    assert not {"precision_used", "precision_trained", "time", "time_total_s"} & set(exported.columns)
    assert set(exported.precision) <= {"fp32", "bf16", "fp16"}  # what the trunk ran in, auto resolved
    html_text = (smoke_report / "report.html").read_text()
    assert html_text.count("data:image/png;base64,") == 3 and 'src="figures/' not in html_text  # inlined


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_report_html_renders_in_headless_chromium(smoke_report, tmp_path):
    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--screenshot={shot}",
            "--window-size=1200,1600",
            (smoke_report / "report.html").as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.shape == (1600, 1200)
    assert (pixels < 128).mean() > 0.01  # text, tables and plots, not a blank page
    assert pixels.std() > 20


def test_baselines_of_another_split_are_left_out_with_the_reason_printed(smoke_study, tmp_path):
    storage, _ = smoke_study
    other = ["--train-range", "0-9", "--val-range", "10-12", "--test-range", "13-15"]
    base = tmp_path / "other-split"
    for module, args in (
        ("analysis.baselines", ["--data", str(storage / "smoke-data"), *other, "--seeds", "1", "--out", str(base)]),
        ("analysis.report", [str(storage / "e2e"), "--baselines", str(base), "--out", str(tmp_path / "report")]),
    ):
        proc = subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-3000:]
    assert "another split" in proc.stdout and "train, val, test" in proc.stdout
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "HOG + SVM" not in markdown and "another split" in markdown
    assert RANDOM_INIT_NOTICE in markdown.split("\n\n")[1]  # smoke runs on random weights


def test_a_study_whose_trials_all_errored_ends_with_its_summary(tmp_path):
    """Every trial raises at its first epoch: the study prints its summary and says there is
    no best model; nothing after the trials fails (Ray logs each trial's own injected error),
    and the exit code says trials failed."""
    env = {**os.environ, "FACE_AGE_TEST_FAULT": f"1:{tmp_path}"}
    argv = ["--grid", "smoke", "--seeds", "1", "--storage", str(tmp_path / "results"), "--name", "all-errored"]
    proc = subprocess.run(
        [sys.executable, "-m", "tests.faults", *argv], cwd=ROOT, capture_output=True, text=True, timeout=600, env=env
    )
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "analysis/" not in proc.stdout + proc.stderr and "Choosing the best model failed" not in proc.stdout
    assert "Settings per configuration" in proc.stdout and "no best model kept" in proc.stdout
    assert "2 trial(s) failed" in proc.stderr


@pytest.mark.long  # a study of its own, 3 min; --select's ranking is also checked without Ray (test_report)
def test_select_val_bacc_is_what_tune_ranked_and_what_the_study_ranks(tiny_root, tmp_path):
    """An imbalanced folders dataset, --select val_bacc: Tune's metric (which ASHA and a searcher
    read) is best_val_bacc, each trial's last reported value is the one the ranking and
    best.json use, and best.json's configuration is the one with the best mean of it."""
    from ray import tune

    from analysis.tables import selected
    from trainable.tune_trial import train_face_age

    data = tmp_path / "imbalanced"
    for label, keep in (("1", 6), ("5", 16), ("28", 16)):
        (data / label).mkdir(parents=True)
        for i in range(keep):
            shutil.copy(os.path.join(tiny_root, label, f"{i}.jpg"), data / label / f"{i}.jpg")
    argv = [
        "--grid",
        "smoke",
        "--confirm-top",
        "0",
        "--seeds",
        "2",
        "--data",
        str(data),
        "--layout",
        "folders",
        "--max-epochs",
        "3",
    ]
    argv += ["--select", "val_bacc", "--storage", str(tmp_path / "results"), "--name", "bacc"]
    proc = subprocess.run(
        [sys.executable, "-m", "study.run", *argv], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    directory = tmp_path / "results" / "bacc"
    grid = tune.Tuner.restore(str(directory), trainable=train_face_age).get_results()
    told_config = grid._experiment_analysis  # the TuneConfig the scheduler and searcher were given
    assert (told_config.default_metric, told_config.default_mode) == ("best_val_bacc", "max")
    told = {os.path.basename(r.path): r.metrics["best_val_bacc"] for r in grid}
    assert grid.get_best_result().metrics["best_val_bacc"] == max(told.values())
    trials, epochs = load_study(str(directory))
    assert selected(epochs, "val_bacc").to_dict() == told
    best = json.loads((directory / "best" / "best.json").read_text())
    by_bacc = trials.assign(told=trials.trial_id.map(told)).groupby("config_id").told.mean()
    assert best["select"] == "val_bacc" and by_bacc[best["config_id"]] == by_bacc.max()
    assert best["selected"]["mean"] == pytest.approx(by_bacc.max())


def test_every_json_file_of_a_smoke_study_is_strict(smoke_study, smoke_report):
    """study.json, best.json, every trial's params.json and result.json lines, Ray's own state
    files, the baselines' record: none holds NaN or Infinity (jq and JavaScript reject them)."""
    from tests.test_files import strict_load

    storage, _ = smoke_study
    files = glob.glob(str(storage / "e2e" / "**" / "*.json"), recursive=True)
    files += glob.glob(str(smoke_report.parent / "baselines*" / "*.json"))
    files = [f for f in files if not os.path.basename(f).startswith("basic-variant-state")]  # a pickle Ray names .json
    assert any(f.endswith("result.json") for f in files) and any(f.endswith("best.json") for f in files)
    for path in files:
        with open(path) as f:
            lines = f.read().splitlines() if path.endswith("result.json") else [f.read()]
        for line in lines:
            strict_load(line)  # raises on NaN / Infinity, naming the constant
    assert not glob.glob(str(storage / "e2e" / "**" / "*.tmp"), recursive=True, include_hidden=True)
    assert not os.path.exists(storage / "e2e" / "study.lock")  # released at the end


def readme_results_tree() -> list[tuple[str, str]]:
    """(entry, description) of each line of the documentation's results tree, nested entries
    as 'trial/NAME'."""
    text = open(os.path.join(ROOT, "docs", "guide", "results.md")).read()
    block = text.split("`STORAGE/NAME/` is a Ray Tune experiment directory")[1].split("\n\n")[1]
    entries = []
    for line in block.splitlines():
        name, _, what = line.strip().partition("  ")
        if name and what.strip():  # continuation lines are description only
            entries.append(("trial/" + name if line.startswith("      ") else name, what.strip()))
    return entries


def test_the_documented_results_tree_is_what_a_study_writes(smoke_study):
    """Every entry of the documented tree that every grid study writes is in the smoke study's
    folder, and every file or folder there is in the tree."""
    storage, _ = smoke_study
    study = storage / "e2e"
    tree = readme_results_tree()
    optional = ("only if", "a search", "--search", "--on-bad-image")
    trial = sorted(study.glob("e01-*"))[0]
    for entry, what in tree:
        for name in entry.replace("trial/", "").split(", "):
            where = trial if entry.startswith("trial/") else study
            pattern = name.rstrip("/").replace("NNNNNN", "*").replace("e01-baseline-s0", "e01-*")
            if not any(o in what for o in optional):
                assert glob.glob(str(where / pattern)), f"docs/guide/results.md lists {name}, the study has none"
    listed = [n.replace("trial/", "") for entry, _ in tree for n in entry.split(", ")]
    patterns = [n.rstrip("/").replace("NNNNNN", "*").replace("e01-baseline-s0", "e*-*-s*") for n in listed]
    present = [p.name for p in [*study.iterdir(), *trial.iterdir()] if not p.name.startswith(".")]
    assert [p for p in present if not any(fnmatch.fnmatch(p, pat) for pat in patterns)] == []


def test_resume_dry_run_says_where_each_trial_stands(smoke_study, tmp_path):
    """--resume --dry-run lists each trial with how it stands (finished, with its epochs) and counts;
    a trial whose folder is gone reads pending. On a copy: the session's study stays whole."""
    import shutil

    storage, _ = smoke_study
    study = tmp_path / "e2e"
    shutil.copytree(storage / "e2e", study, ignore=shutil.ignore_patterns("study.lock"))
    trials, _ = load_study(str(study))
    gone = trials[trials.seed == 2].trial_id.iloc[0]
    shutil.rmtree(study / gone)
    proc = subprocess.run(
        [sys.executable, "-m", "study.run", "--resume", str(study), "--dry-run"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [line.split() for line in proc.stdout.splitlines() if line.startswith("e0")]
    assert len(rows) == 6 and sum(r[1] == "finished" for r in rows) == 5 and sum(r[1] == "pending" for r in rows) == 1
    assert "Now: 5 finished, 1 pending; --resume runs what has not ended." in proc.stdout
