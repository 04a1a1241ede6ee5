"""The report on hand-made results directories: what it shows, leaves out and says,
for random weights, other splits, single seeds, unfinished and diverged trials."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from analysis.report import build_report
from tests import study_json
from tests.conftest import ROOT, epoch_row, final_row
from trainable.config import RANDOM_INIT_NOTICE, TrialConfig
from trainable.results.layout import ERROR_FILE, STOPPED_FILE, split_identity

N_TEST = 30
LABELS = [i % 3 for i in range(N_TEST)]
PAPER = {1: {}, 2: {"batch_size": 8}, 3: {"augmentation": "none"}}


def split(test_labels=LABELS):
    paths = {s: [f"{s}/{i}.jpg" for i in range(n)] for s, n in (("train", 60), ("val", 30), ("test", N_TEST))}
    labels = {"train": [i % 3 for i in range(60)], "val": [i % 3 for i in range(30)], "test": list(test_labels)}
    return {"split_paths": paths, "split_labels": labels, "split_id": split_identity(paths, labels)}


def config(experiment, seed, weights, **changes):
    identity = {"name": f"exp{experiment}", "config_id": f"c{experiment}"}
    settings = {**identity, **PAPER.get(experiment, {}), **changes}
    return TrialConfig(experiment=experiment, seed=seed, weights=weights, max_epochs=5, **settings).to_dict()


def preds(accuracy, seed):
    """Test predictions right on the first `accuracy` share of images (shifted by seed)."""
    right = np.roll(np.arange(N_TEST) < round(accuracy * N_TEST), seed)
    return [label if ok else (label + 1) % 3 for label, ok in zip(LABELS, right, strict=True)]


def write_trial(study, cfg, outcome="max_epochs", accuracy=0.8, epochs=5):
    trial = study / f"train_face_age_{cfg['experiment']}_{cfg['seed']}"
    trial.mkdir()
    (trial / "params.json").write_text(json.dumps(cfg))
    rows = [epoch_row(epoch=e, train_loss=1 / e, val_loss=1 / e + 0.1, val_acc=0.7) for e in range(1, epochs + 1)]
    if outcome == "diverged":
        rows[-1].update(train_loss=float("nan"), val_loss=float("inf"))
    if outcome in ("max_epochs", "early_stopping", "diverged"):
        matrix = np.eye(3).tolist()
        rows[-1] = final_row(
            **rows[-1]
            | dict(
                best_epoch=epochs - 1,
                best_val_loss=0.3,
                stopped_by=outcome,
                precision="fp32",
                train_seconds=5.0,
                seconds_to_best=4.0,
                train_acc_best=0.9,
                val_acc_best=0.7,
                test_acc_best=accuracy,
                val_pred=preds(0.7, 0),
                test_pred=preds(accuracy, cfg["seed"]),
                train_confusion=matrix,
                val_confusion=matrix,
                test_confusion=matrix,
            )
        )
    elif outcome == "asha":
        (trial / STOPPED_FILE).write_text(json.dumps({"stopped_by": "asha", "epoch": epochs}))
    elif outcome == "error":
        (trial / ERROR_FILE).write_text("RuntimeError: boom")
    with open(trial / "result.json", "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


def make_study(tmp_path, trials, *, grid="paper", weights="none", name="study"):
    """trials: (experiment, seed, outcome, test accuracy) tuples."""
    study = tmp_path / name
    study.mkdir()
    configs = [config(e, s, weights) for e, s, *_ in trials]
    study_json.write(
        study,
        grid=grid,
        split_sizes={"train": 60, "val": 30, "test": N_TEST},
        trials=configs,
        reference_config=config(1, 0, weights),
        weights_labels={weights: weights},
        **split(),
    )
    for cfg, (_, _, outcome, accuracy) in zip(configs, trials, strict=True):
        write_trial(study, cfg, outcome, accuracy)
    return study


def report(study, baselines=None, external=()):
    doc, notes = build_report(str(study), str(study / "report"), baselines, external)
    return (study / "report" / "report.md").read_text(), notes


def test_random_weights_get_the_notice_a_weights_column_and_no_2021_table(tmp_path):
    study = make_study(tmp_path, [(e, 0, "max_epochs", 0.8) for e in (1, 2, 3)])
    markdown, _ = report(study)
    first_paragraph = markdown.split("\n\n")[1]
    assert RANDOM_INIT_NOTICE in first_paragraph
    assert "| weights | max epochs | stop rule | precision | normalization |" in markdown
    assert "| none | 5 | patience 10 | trunk fp32, trained fp32 | facenet |" in markdown
    section = markdown.split("## Against the 2021 report")[1].split("##")[0]
    assert "Left out" in section and "reported val" not in section


def test_pretrained_paper_study_has_the_2021_table_with_its_caveats(tmp_path):
    study = make_study(tmp_path, [(e, 0, "max_epochs", 0.8) for e in (1, 2, 3)], weights="vggface2")
    markdown, _ = report(study)
    assert RANDOM_INIT_NOTICE not in markdown
    section = markdown.split("## Against the 2021 report")[1].split("##")[0]
    assert "reported val" in section and "ran each experiment once" in section and "Listing 11" in section
    departures = section.split("this study's own departures")[1]
    for said in ("normalization facenet", "stop rule patience", "precision trunk fp32, trained fp32", "evaluation"):
        assert said in departures, said
    assert "fallback" not in section  # every 2021 figure cites where it comes from
    assert "0.84 (§6.8)" in section


def test_one_seed_gets_a_wilson_interval_and_comparisons_are_holm_adjusted(tmp_path):
    study = make_study(tmp_path, [(1, 0, "max_epochs", 0.8), (2, 0, "max_epochs", 0.6), (3, 0, "max_epochs", 0.7)])
    markdown, _ = report(study)
    row = next(line for line in markdown.splitlines() if line.startswith("| 1 | exp1 |"))
    assert "0.800 [0.627, 0.905]" in row  # Wilson, 24 of 30
    assert "p (Holm, 2)" in markdown and "2 comparison(s), one per pair, on accuracy" in markdown
    assert "seed-and-image t-test" in markdown and "balanced accuracy is accuracy here" in markdown  # 10 a class
    rows = [line for line in markdown.splitlines() if line.startswith("| accuracy | #")]
    assert len(rows) == 2 and all("training noise of A and B unmeasured (one run)" in row for row in rows)
    assert "real difference" not in markdown  # one seed a side: never without the caveat


def test_baselines_on_another_split_are_left_out_with_the_reason(tmp_path):
    study = make_study(tmp_path, [(1, 0, "max_epochs", 0.8), (2, 0, "max_epochs", 0.6)])
    base = tmp_path / "baselines"
    base.mkdir()
    record = {
        "name": "HOG + SVM",
        "features": "HOG",
        "method": "SVM",
        "seed": None,
        "val_acc": 0.7,
        "test_acc": 0.7,
        "test_pred": preds(0.7, 0),
    }
    other = split(test_labels=LABELS[::-1])
    (base / "baselines.json").write_text(json.dumps({**other, "baselines": [record]}))
    markdown, notes = report(study, str(base))
    assert len(notes) == 1 and "another split" in notes[0] and "test" in notes[0]
    assert "HOG + SVM" not in markdown and notes[0] in markdown
    (base / "baselines.json").write_text(json.dumps({**split(), "baselines": [record]}))
    markdown, notes = report(study, str(base))
    assert notes == [] and "HOG + SVM" in markdown


def test_unfinished_asha_error_and_diverged_trials_are_told_apart(tmp_path):
    study = make_study(
        tmp_path,
        [
            (1, 0, "max_epochs", 0.8),
            (1, 1, "max_epochs", 0.7),
            (2, 0, "max_epochs", 0.9),
            (2, 1, "asha", None),
            (3, 0, "diverged", 0.5),
            (3, 1, "unfinished", None),
        ],
    )
    (study / "train_face_age_9_0").mkdir()  # a trial Ray had not recorded yet: no params.json
    markdown, _ = report(study)
    section = markdown.split("## Summary")[1].split("##")[0]
    summary = {line.split(" | ")[1]: line for line in section.splitlines() if line.startswith("| ")}
    assert "1/2" in summary["exp2"] and "asha x1 (epoch 5)" in summary["exp2"]
    assert "diverged x1" in summary["exp3"] and "unfinished x1" in summary["exp3"] and "asha" not in summary["exp3"]
    assert "only the 1 configuration(s) whose seeds all finished; first: #1" in markdown  # exp2 is better, unranked
    assert "## Stopped by ASHA" in markdown.replace("### Stopped", "## Stopped")
    assert "1 trial(s) have not finished" in markdown


def test_a_study_killed_before_any_trial_finished_still_gets_a_report(tmp_path):
    study = make_study(tmp_path, [(1, 0, "unfinished", None), (2, 0, "unfinished", None)])
    proc = subprocess.run(
        [sys.executable, "-m", "analysis.report", str(study)], cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    markdown = (study / "report" / "report.md").read_text()
    assert "Nothing has finished yet" in markdown
    empty = make_study(tmp_path, [], name="empty")  # killed before Ray wrote any trial
    markdown, _ = report(empty)
    assert "Nothing has finished yet" in markdown and "none started" in markdown


def test_the_report_imports_no_torch_opencv_skimage_or_ray(tmp_path):
    study = make_study(tmp_path, [(1, 0, "max_epochs", 0.8)])
    code = (
        "import sys; from analysis.report import main; main([sys.argv[1]]); "
        "heavy = [m for m in ('torch', 'cv2', 'skimage', 'ray') if m in sys.modules]; print(heavy)"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(study)], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_choosing_the_best_at_the_end_of_a_study_imports_no_matplotlib(tmp_path):
    """study.bookkeeping.summary chooses the best with analysis.best: the report's figures stay out of it."""
    study = make_study(tmp_path, [(1, 0, "max_epochs", 0.8), (2, 0, "max_epochs", 0.7)])
    code = "import sys; from analysis.best import main; main([sys.argv[1]]); print('matplotlib' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code, str(study)], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "False"


@pytest.mark.parametrize("outcome", ["asha", "unfinished"])
def test_analysis_results_lists_a_study_in_progress(tmp_path, outcome):
    study = make_study(tmp_path, [(1, 0, "max_epochs", 0.8), (2, 0, outcome, None)])
    proc = subprocess.run(
        [sys.executable, "-m", "analysis.results", str(study)], cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert outcome in proc.stdout and "none (random init)" not in proc.stdout  # labels from study.json
    assert "patience 10" in proc.stdout and "facenet" in proc.stdout


def test_analysis_results_on_a_folder_that_is_no_study_says_so(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "analysis.results", str(tmp_path)], cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 2 and "holds no study.json; is it a study's results directory?" in proc.stderr


def test_imbalanced_classes_get_counts_balanced_scores_and_recall_per_class(tmp_path):
    """A test set that is 2/3 one class and a model that always says that class: accuracy
    0.667 but balanced accuracy 1/3 and recall 1, 0, 0, in report.md as text."""
    study = make_study(tmp_path, [(1, 0, "max_epochs", 0.8), (2, 0, "max_epochs", 0.8)])
    labels = [0] * 20 + [1] * 5 + [2] * 5
    record = json.loads((study / "study.json").read_text())
    record.update(split(labels))
    (study / "study.json").write_text(json.dumps(record))
    majority = study / "train_face_age_2_0" / "result.json"
    rows = [json.loads(line) for line in majority.read_text().splitlines()]
    rows[-1]["test_pred"] = [0] * N_TEST
    majority.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    markdown, _ = report(study)
    section = markdown.split("## Classes: counts, balanced scores and recall per class")[1].split("\n## ")[0]
    assert "| test | 20 (67%) | 5 (17%) | 5 (17%) | 30 |" in section
    row = next(line for line in section.splitlines() if line.startswith("| #2 exp2"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[2].startswith("0.667 [")  # accuracy
    assert cells[3] == "0.333" and cells[4].startswith("0.333 [")  # balanced accuracy
    assert cells[5] == "0.267" and cells[6].startswith("0.267 [")  # macro-F1: (0.8 + 0 + 0) / 3
    assert cells[7:] == ["1.000", "0.000", "0.000"]  # recall per class
    comparisons = markdown.split("## Is the difference real?")[1].split("\n## ")[0]
    assert "| accuracy | #2 exp2 | #1 exp1 |" in comparisons  # one question (--select val_acc), one test
    assert "| balanced accuracy | #2" not in comparisons and "| macro-F1 | #2" not in comparisons
    assert "Balanced accuracy and macro-F1 are descriptive" in comparisons


def test_any_study_with_two_varying_settings_gets_the_exploration_figures(tmp_path):
    study = make_study(tmp_path, [(e, s, "max_epochs", 0.8) for e in (1, 2, 3) for s in (0, 1)])
    markdown, _ = report(study)
    section = markdown.split("## Exploring the hyperparameters")[1].split("\n## ")[0]
    assert "(figures/parallel_coordinates.png)" in section and "(figures/best_so_far.png)" in section
    assert "Hyperparameter importance, out of sample" in section and "held-out R²" in section
    assert "| hyperparameter | importance (drop in held-out R²) | ± sd |" in section
    rows = {line.split("|")[1].strip() for line in section.splitlines() if line.startswith("| ")}
    assert {"batch_size", "augmentation"} <= rows


def test_every_table_is_also_csv_and_latex_and_every_figure_also_svg(tmp_path):
    """For a paper's appendix: tables/NN-section.csv and .tex, linked under each table, and
    an SVG beside each PNG; a second report leaves no table of the first behind."""
    study = make_study(tmp_path, [(e, s, "max_epochs", 0.8) for e in (1, 2, 3) for s in (0, 1)])
    markdown, _ = report(study)
    out = study / "report"
    links = re.findall(r"This table as \[CSV\]\((tables/[^)]+)\.csv\), \[LaTeX\]\(\1\.tex\)", markdown)
    assert len(links) == markdown.count("\n|---") >= 5 and len(set(links)) == len(links)
    assert sorted(os.listdir(out / "tables")) == sorted(f"{link[7:]}.{ext}" for link in links for ext in ("csv", "tex"))
    summary = next(link for link in links if "summary" in link)
    frame = pd.read_csv(out / f"{summary}.csv")
    shown = [c for c in frame.columns if not c.endswith((" lo", " hi", " ±"))]  # an interval's ends: CSV columns
    assert len(shown) <= 8  # the rest in the settings table below it
    tex = (out / f"{summary}.tex").read_text()
    assert tex.startswith("\\begin{tabular}{") and "\\toprule" in tex and tex.rstrip().endswith("\\end{tabular}")
    assert tex.count(" \\\\\n") == len(frame) + 1  # the header and one line per row
    pngs = [n for n in os.listdir(out / "figures") if n.endswith(".png")]
    assert pngs and all((out / "figures" / n.replace(".png", ".svg")).exists() for n in pngs)
    (out / "tables" / "99-old.csv").write_text("stale")
    report(study)
    assert "99-old.csv" not in os.listdir(out / "tables")


def test_importance_is_scored_on_held_out_trials():
    """lr decides val acc, batch size is noise: lr ranks first; a target of pure noise has no
    held-out R² (the report then says the importances say nothing), though a forest explains
    most of it on the trials it was fitted to."""
    from analysis.tables import importance

    rng = np.random.default_rng(0)
    n = 40
    lr = rng.choice([1e-4, 1e-3, 1e-2], n)
    batch = rng.choice(["8", "32"], n)
    points = pd.DataFrame({"lr": lr, "batch_size": batch, "val acc": 0.5 + 10 * lr + rng.normal(0, 0.01, n)})
    table, r2, folds = importance(points, trees=50)  # 50 trees: the same ranking and R² > 0.8 as 200
    assert folds == 5 and r2 > 0.8 and table.iloc[0].hyperparameter == "lr"
    noise = points.assign(**{"val acc": rng.normal(0.7, 0.05, n)})
    from sklearn.ensemble import RandomForestRegressor

    X = pd.get_dummies(noise[["lr", "batch_size"]].astype(str), dtype=float)
    in_sample = RandomForestRegressor(50, random_state=0).fit(X, noise["val acc"]).score(X, noise["val acc"])
    assert importance(noise, trees=50)[1] < 0.1 < in_sample


@pytest.mark.parametrize("select, picked", [("val_acc", "c1"), ("val_bacc", "c2"), ("val_loss", "c2")])
def test_select_decides_the_ranking_and_best_json(tmp_path, select, picked):
    """Experiment 1 has the higher val acc, experiment 2 the higher val balanced accuracy and
    the lower val loss (what an imbalanced dataset does): --select picks the winner, from the
    best-so-far values each trial reported, and best.json keeps that configuration's model."""
    from analysis.best import choose

    study = make_study(tmp_path, [(e, s, "max_epochs", 0.8) for e in (1, 2) for s in (0, 1)])
    reported = {1: (0.40, 0.80, 0.50), 2: (0.30, 0.70, 0.65)}  # best_val_loss, best_val_acc, best_val_bacc
    for e, s in [(e, s) for e in (1, 2) for s in (0, 1)]:
        path = study / f"train_face_age_{e}_{s}" / "result.json"
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        loss, acc, bacc = reported[e]
        for row in rows:
            row.update(best_val_loss=loss + s / 100, best_val_acc=acc + s / 100, best_val_bacc=bacc + s / 100)
        path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    record = json.loads((study / "study.json").read_text())
    record["args"] = {"select": select}
    (study / "study.json").write_text(json.dumps(record))
    best = choose(str(study))
    assert best["config_id"] == picked and best["select"] == select
    assert best["model_seed"] == (0 if select == "val_loss" else 1)  # the best seed by the same metric
    markdown, _ = report(study)
    assert f"Selection metric: {select}" in markdown
    summary = markdown.split("## Summary")[1]
    first = next(line for line in summary.splitlines() if line.startswith("| 1 |") or line.startswith("| 2 |"))
    assert first.startswith(f"| {picked[1]} |")


def test_an_evaluation_over_seeds_gives_intervals_over_seeds_and_images_and_fills_the_report(tmp_path):
    """Known answers: 3 models on 40 images (20 of class 0, 10 each of 1 and 2); model k is
    right on all but k images of class 0, and found no face in image 39 (class 2)."""
    from types import SimpleNamespace

    from analysis.evaluate import scores
    from analysis.stats import full_interval
    from trainable.scoring import NO_FACE

    y = np.array([0] * 20 + [1] * 10 + [2] * 10)
    preds = np.tile(y, (3, 1))
    for k in range(3):
        preds[k, :k] = 1  # k wrong answers on class 0
    preds[:, 39] = NO_FACE
    data = SimpleNamespace(root=str(tmp_path / "other"), layout="folders", skipped=[], detection=None, subjects=None)
    e = scores(data, y, preds, ["1-4", "5-27", "28+"])
    assert e["accuracy"] == pytest.approx(1 - (0 + 1 + 2 + 3) / 120)  # 3 no-face answers, wrong for each model
    assert e["faces_not_found"] == 1 and np.array(e["confusion_counts"])[2, 3] == 3  # summed over the models
    assert e["recall"] == pytest.approx([1 - 3 / 60, 1.0, 0.9])
    assert e["recall_interval_95"][0] == pytest.approx(list(full_interval("accuracy", preds[:, :20], y[:20], 3)[1:]))
    lo, hi = e["accuracy_interval_95"]
    seeds_only = np.array([1 - (k + 1) / 40 for k in range(3)])
    assert lo < seeds_only.min() and hi > seeds_only.max()  # wider than the seeds' spread alone
    assert e["class_shares"] == [0.5, 0.25, 0.25] and e["models"] == 3
    e.update(seeds=[0, 1, 2], configuration="#1 baseline", detect_faces=False)
    study = make_study(tmp_path, [(1, 0, "max_epochs", 0.8)])
    (study / "evaluations").mkdir()
    (study / "evaluations" / "other.json").write_text(json.dumps(e))  # found by the report without --external
    section = report(study)[0].split("## Beyond the training data")[1].split("\n## ")[0]
    assert f"{e['accuracy']:.3f} [{lo:.3f}, {hi:.3f}]" in section and "1-4 50%, 5-27 25%, 28+ 25%" in section
    assert "3 (#1 baseline, seeds [0, 1, 2])" in section and "summed over 3 models" in section


@pytest.mark.extra("search")
def test_fanova_is_left_out_when_every_trial_gave_the_same_value(tmp_path):
    """fANOVA raises on zero variance; random-weight trials on tiny data often tie."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    from analysis.tables import fanova_importance

    journal = str(tmp_path / "optuna.journal")
    study = optuna.create_study(study_name="s", storage=JournalStorage(JournalFileBackend(journal)))
    study.optimize(lambda trial: 0 * trial.suggest_float("lr", 1e-4, 1e-2, log=True) + 0.5, n_trials=3)
    assert fanova_importance(journal) is None
    study.optimize(lambda trial: trial.suggest_float("lr", 1e-4, 1e-2, log=True), n_trials=2)
    table, trials = fanova_importance(journal)
    assert trials == 5 and list(table.hyperparameter) == ["lr"]


def hog_baseline(accuracy=0.7):
    return {"name": "HOG + SVM", "features": "HOG", "method": "SVM", "seed": None, "val_acc": 0.7,
            "test_acc": accuracy, "test_pred": preds(accuracy, 0)}  # fmt: skip


def test_the_best_is_claimed_against_baselines_on_its_confirmation_runs_only(tmp_path):
    study = make_study(tmp_path, [(e, s, "max_epochs", 0.8) for e in (1, 2) for s in (0, 1)])
    base = tmp_path / "baselines"
    base.mkdir()
    (base / "baselines.json").write_text(json.dumps({**split(), "baselines": [hog_baseline()]}))
    markdown, _ = report(study, str(base))
    section = markdown.split("## Is the difference real?")[1].split("\n## ")[0]
    assert "No test of the best configuration against the baselines" in section and "best CNN" not in section
    assert "#2 exp2" in section  # comparisons with #1, chosen in advance, stay
    (study / "confirm").mkdir()
    ranked_first = 1  # equal val accuracy: the lower experiment number ranks first
    for seed in (2, 3):
        again = config(
            ranked_first, seed, "none", config_id=f"confirm-c{ranked_first}", name=f"confirm exp{ranked_first}"
        )
        write_trial(study / "confirm", again, accuracy=0.9)
    markdown, _ = report(study, str(base))
    section = markdown.split("## Is the difference real?")[1].split("\n## ")[0]
    assert "No test of the best configuration" not in section
    assert f"best CNN #{ranked_first} (fresh seeds 2, 3)" in section
    assert "Confirmation: the best again, on fresh seeds" in markdown and "0.900" in markdown


def test_a_grouped_test_set_counts_people_and_says_how_many(tmp_path):
    study = make_study(tmp_path, [(e, s, "max_epochs", 0.9 - e / 10) for e in (1, 2) for s in (0, 1)])
    plain, _ = report(study)
    record = json.loads((study / "study.json").read_text())
    record["split_groups"] = {"test": [f"person{i // 6}" for i in range(N_TEST)]}  # 5 people, 6 photos each
    (study / "study.json").write_text(json.dumps(record))
    grouped, _ = report(study)
    assert "30 photos of 5 people" in grouped and "the test images show 5 people" in grouped
    assert "people" not in plain.split("## Is the difference real?")[1].split("\n## ")[0]
    interval = lambda md: next(line for line in md.splitlines() if line.startswith("| accuracy | #"))  # noqa: E731
    assert interval(plain) != interval(grouped)  # four degrees of freedom for the images, not 29


def test_epochs_csv_has_one_column_per_quantity(tmp_path):
    study = make_study(tmp_path, [(1, 0, "max_epochs", 0.8), (2, 0, "max_epochs", 0.6)])
    report(study)
    exported = pd.read_csv(study / "report" / "epochs.csv")
    assert not [c for c in exported.columns if c.endswith(("_x", "_y"))], list(exported.columns)
    assert {"val_bacc", "best_val_loss", "experiment", "seed", "test_acc_best"} <= set(exported.columns)
    assert len(exported) == 10  # 5 epochs x 2 trials


def test_report_tables_load_as_numbers_with_names_of_their_own(tmp_path):
    """The CSV beside each table holds numbers: a value with its interval is three columns, a mean
    ± its half-width two; no column without a name; two tables of one section named apart."""
    study = make_study(tmp_path, [(1, 0, "max_epochs", 0.8), (1, 1, "max_epochs", 0.7), (2, 0, "max_epochs", 0.6)])
    report(study)
    names = sorted(p.name for p in (study / "report" / "tables").glob("*.csv"))
    assert len({n.split("-", 1)[1] for n in names}) == len(names), names
    for path in (study / "report" / "tables").glob("*.csv"):
        table = pd.read_csv(path)
        assert not [c for c in table.columns if c.startswith("Unnamed")], (path.name, list(table.columns))
        assert not table.astype(str).apply(lambda c: c.str.fullmatch(r"[-+]?[\d.]+ \[[-+\d.]+, [-+\d.]+\]")).any().any()
    ranking = pd.read_csv(next((study / "report" / "tables").glob("*-summary-ranking.csv")))
    full = [c for c in ranking.columns if c.startswith("test acc [full")]
    assert len(full) == 3 and all(pd.api.types.is_float_dtype(ranking[c]) for c in full), list(ranking.columns)
    assert (ranking[full[1]] <= ranking[full[0]]).all() and (ranking[full[0]] <= ranking[full[2]]).all()


def test_confusion_matrices_count_every_seed_not_the_best_one():
    """Two seeds of one configuration on 10 test images per class: the figure's cell is the
    seeds' mean share and the images summed over both, whichever seed scored higher."""
    from analysis import figures

    good = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    poor = [[0.5, 0.5, 0.0], [0.0, 1.0, 0.0], [0.0, 0.2, 0.8]]
    trials = pd.DataFrame(
        {"config_id": ["c1", "c1"], "test_acc_best": [1.0, 0.77], "val_acc_best": [0.9, 0.4], "seed": [0, 1]}
    )
    trials["test_confusion"] = [good, poor]
    configs = pd.DataFrame({"config_id": ["c1"], "experiment": [1], "name": ["baseline"]})
    fig = figures.confusion_matrices(trials, configs, ["1-4", "5-27", "28+"], [10, 10, 10])
    cells = [t.get_text() for t in fig.axes[0].texts]
    assert cells[:3] == ["0.75\n(15)", "0.25\n(5)", "0.00\n(0)"] and cells[-1] == "0.90\n(18)"
    assert "2 seed(s)" in fig.axes[0].get_title()


def test_parallel_coordinates_label_every_value_or_five_marks_not_only_the_ends():
    from analysis.figures import axis_marks

    assert axis_marks(pd.Series([8.0, 16.0, 32.0, 8.0]), 8, 32, False) == ([0.0, 1 / 3, 1.0], ["8", "16", "32"])
    lr = pd.Series(10 ** np.linspace(-5, -2, 20))
    positions, labels = axis_marks(lr, -5, -2, True)  # a logged axis: marks evenly spaced in log10
    assert positions == [0.0, 0.25, 0.5, 0.75, 1.0] and labels == ["1e-05", "5.62e-05", "0.000316", "0.00178", "0.01"]


def test_the_val_acc_column_is_the_stoppers_kept_epoch_when_min_delta_is_above_0():
    """Val losses 1.0, 0.97, 0.96 with min_delta 0.05: the stopper keeps epoch 1 (val acc 0.60),
    as the trial reports (best_val_acc); the lowest loss's epoch (3, val acc 0.72) is not the one kept."""
    from analysis.tables import explored
    from trainable.loop import EarlyStopping

    stopper, rows = EarlyStopping(patience=10, min_delta=0.05), []
    for epoch, (loss, acc) in enumerate(((1.0, 0.60), (0.97, 0.65), (0.96, 0.72)), start=1):
        stopper.step(epoch, loss)
        kept = rows[stopper.best_epoch - 1]["val_acc"] if stopper.best_epoch < epoch else acc
        rows.append(epoch_row(epoch=epoch, val_loss=loss, val_acc=acc, best_val_acc=kept, best_val_loss=1.0))
    assert stopper.best_epoch == 1
    epochs = pd.DataFrame(
        [{**r, "trial_id": "t1"} for r in rows]
        + [{**r, "trial_id": "t2", "val_acc": 0.5, "best_val_acc": 0.5} for r in rows]
    )
    trials = pd.DataFrame({"trial_id": ["t1", "t2"], "lr": [0.1, 0.01]})
    assert explored(trials, epochs)["val acc"].tolist() == [0.60, 0.5]


@pytest.mark.parametrize("select, best", [("val_acc", "#1 a"), ("val_bacc", "#2 b"), ("val_loss", "#2 b")])
def test_the_per_axis_table_ranks_on_select(select, best):
    """Two configurations at lr 0.01: #1 is better on val acc, #2 on the --select value the study
    ranked on (config_table's `selected`); the per-axis best is the study's own ranking's."""
    from analysis.figures import axis_effects

    selected = {"val_acc": [0.8, 0.7, 0.6], "val_bacc": [0.5, 0.7, 0.6], "val_loss": [0.9, 0.4, 0.6]}[select]
    configs = pd.DataFrame(
        {
            **{k: ["x"] * 3 for k in ("optimizer", "momentum", "batch_size", "freeze", "augmentation")},
            **{k: ["x"] * 3 for k in ("class_weights", "sampler")},
            "lr": [0.01, 0.01, 0.1],
            "experiment": [1, 2, 3],
            "name": ["a", "b", "c"],
            "complete": True,
            "scored": 3,
            "val_acc": [0.8, 0.7, 0.6],
            "test_acc": [0.7, 0.7, 0.6],
            "selected": selected,
        }
    )
    _, table = axis_effects(configs, select)
    assert table.set_index("value").loc[0.01, "best configuration"] == best


def confirmed_paper_study(tmp_path, weights="vggface2"):
    """A paper study of experiments 1-3 (2 seeds each; equal val accuracy, so #1 ranks first), its best
    confirmed on seeds 2-4, and HOG + SVM (deterministic) on the same split."""
    study = make_study(
        tmp_path, [(e, s, "max_epochs", 0.6 + e / 10) for e in (1, 2, 3) for s in (0, 1)], weights=weights
    )
    (study / "confirm").mkdir()
    for i, seed in enumerate((2, 3, 4)):
        again = config(1, seed, weights, config_id="confirm-c1", name="confirm exp1")
        write_trial(study / "confirm", again, accuracy=0.85 + i / 100)
    base = tmp_path / "baselines"
    base.mkdir()
    (base / "baselines.json").write_text(json.dumps({**split(), "baselines": [hog_baseline(0.6)]}))
    return study, base


def test_the_report_opens_with_the_answer_on_the_runs_that_did_not_choose_it(tmp_path):
    study, base = confirmed_paper_study(tmp_path)
    markdown, _ = report(study, str(base))
    assert markdown.index("## The answer") < markdown.index("## Summary")
    answer = markdown.split("## The answer")[1].split("\n## ")[0]
    assert (
        "Chosen: #1 exp1, by its mean val_acc" in answer
        and "On 3 run(s) it was not chosen on (seeds 2, 3, 4)" in answer
    )
    hog = next(line for line in answer.splitlines() if line.startswith("| HOG + SVM"))
    assert "(one run, deterministic)" in hog and "better (Holm" in hog
    assert "the 2021 report's #1 (test acc 0.82, one run)" in answer
    needed = answer.split("Seeds needed, from this study's own variances")[1]
    assert "a 5-point difference: " in needed and "a 10-point difference: " in needed
    assert "about 1,211 test images would do" in needed  # 30 test images: their noise is the floor
    section = markdown.split("## Is the difference real?")[1].split("\n## ")[0]
    assert "training noise of B unmeasured" not in section  # HOG + SVM has none to measure
    assert "on the study's own runs, the seeds that ranked them (a description, not a test)" in markdown


def test_a_searchs_claimed_configuration_is_the_one_chosen_before_its_confirmation():
    """--confirm-top 2 on a search: trial 9 led the search, trial 4 scored higher on the confirmation
    runs; the claim stays with 9 (picking again on the runs that test it is the winner's curse)."""
    from analysis.study_inputs import Study, search_choice

    searched = pd.DataFrame({"trial_id": ["t004", "t009"], "experiment": [4, 9]})
    epochs = pd.DataFrame(
        [{**epoch_row(epoch=1, best_val_acc=v), "trial_id": t} for t, v in (("t004", 0.6), ("t009", 0.7))]
    )
    assert search_choice(searched, epochs, "val_acc") == 9
    assert search_choice(searched, epochs.assign(best_val_loss=[0.3, 0.5]), "val_loss") == 4
    configs = pd.DataFrame({"experiment": [4, 9], "complete": True, "scored": 3, "name": ["a", "b"]})  # 4 first
    study = Study(
        "s", None, pd.DataFrame(), pd.DataFrame(), configs, np.zeros(3), None, [], searched=(searched, epochs)
    )
    assert study.claimed is None  # no choice recorded: nothing claimed, never the confirmation's first
    study.search_choice = 9
    assert study.claimed.experiment == 9


def test_a_report_on_a_full_disk_is_one_paragraph_and_leaves_nothing_partial(tmp_path, monkeypatch, capsys):
    import errno

    from analysis.report import main
    from trainable.results import atomic_io

    study = make_study(tmp_path, [(1, 0, "max_epochs", 0.8)])
    real_replace, written = os.replace, []

    def fills_up(src, dst, *args, **kwargs):  # the disk fills after the first two files
        if len(written) == 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(dst))
        written.append(dst)
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(atomic_io.os, "replace", fills_up)
    assert main([str(study)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "Traceback" not in err and f"error: cannot write the report in {study / 'report'} (No space left" in err
    assert "free space, or give --out a folder you can write" in err
    left = [p for p in (study / "report").rglob("*") if p.is_file()]
    assert sorted(map(str, left)) == sorted(map(str, written)), left  # no temporary or half-written file
