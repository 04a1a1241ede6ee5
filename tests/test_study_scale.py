"""Grids at scale through the CLI: dry runs, ASHA, SIGKILL + resume, a two-node cluster."""

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from analysis.results import load_study
from tests.conftest import ROOT, SMOKE_SPLIT, wait_for


def cached_slice(root):
    """The extended grid's 12 cached configurations (freeze block8, no augmentation, batch 32)
    on the tiny set, random weights."""
    where = ["--where", "freeze=block8", "--where", "augmentation=none", "--where", "batch_size=32"]
    return ["--grid", "extended", "--confirm-top", "0", "--data", root, *SMOKE_SPLIT, "--weights", "none", *where]


def cli(*args, timeout=600, **kwargs):
    return subprocess.run(
        [sys.executable, "-m", "study.run", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, **kwargs
    )


def in_process(capsys, *args) -> tuple[int, str, str]:
    """study.run's main in this process (no interpreter start-up): (exit code, stdout, stderr)."""
    from study.run import main

    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_dry_run_of_the_extended_grid_starts_nothing(tmp_path, capsys):
    code, out, err = in_process(capsys, "--grid", "extended", "--dry-run", "--storage", str(tmp_path))
    assert code == 0, err
    assert "216 configurations x 3 seed(s) = 648 trials; scheduler asha" in out
    assert "e216-sgd-m0.9-lr0.01-b32-freeze-none-aug-online-s2" in out
    assert os.listdir(tmp_path) == []


def test_where_selects_experiments(capsys):
    where = ["--where", "freeze=repeat_3", "--where", "optimizer=adam"]
    _, out, _ = in_process(capsys, "--grid", "extended", "--dry-run", "--seeds", "2", *where)
    assert "24 configurations x 2 seed(s) = 48 trials" in out


@pytest.mark.slow
def test_asha_stops_some_trials_and_the_results_say_which(tiny_root, tmp_path):
    proc = cli(
        *cached_slice(tiny_root),
        "--seeds",
        "1",
        "--max-epochs",
        "9",
        "--grace-period",
        "1",
        "--storage",
        str(tmp_path),
        "--name",
        "asha",
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    trials, epochs = load_study(str(tmp_path / "asha"))
    assert len(trials) == 12
    stopped = trials[trials.status == "stopped"]
    assert len(stopped) >= 3 and (stopped.stopped_by == "asha").all()
    assert (stopped.epochs < 9).all()
    assert (trials[trials.status == "finished"].stopped_by != "asha").all()
    assert "asha" in proc.stdout  # the summary says it too
    report = subprocess.run(
        [sys.executable, "-m", "analysis.report", str(tmp_path / "asha")], cwd=ROOT, capture_output=True, text=True
    )
    assert report.returncode == 0, report.stderr[-3000:]
    markdown = (tmp_path / "asha" / "report" / "report.md").read_text()
    assert "asha x1" in markdown and "## Effect of each axis" in markdown
    assert (tmp_path / "asha" / "report" / "figures" / "axes.png").exists()


def finished_trials(directory):
    done = {}
    if not os.path.isdir(directory):
        return done
    for entry in os.scandir(directory):
        path = os.path.join(entry.path, "result.json")
        if entry.is_dir() and os.path.exists(path):
            text = open(path).read()
            if '"stopped_by"' in text:
                done[entry.name] = text
    return done


def said(study, *words):
    """What the driver has printed so far contains every one of `words`."""
    log = study.parent / "driver.log"
    return log.exists() and all(w in log.read_text() for w in words)


KILL_POINTS = {  # name -> (when to kill, extra environment)
    # Ray copies trial files to the storage only from time to time: the driver's own
    # output (study.terminal.console's progress lines) is the first sign that a trial runs.
    "before the first trial finishes": (
        lambda study, marks: said(study, "0/4 done, 1 running") and not said(study, "1/4 done"),
        {},
    ),
    # Killed between Ray's copies of its experiment state and of the grid generator's state
    # (seen once in CI): the generator's file is missing; the study still resumes.
    "mid-study, the grid's generator state lost": (lambda study, marks: 1 <= len(finished_trials(study)) < 4, "lose"),
    "while a checkpoint is being written": (lambda study, marks: bool(os.listdir(marks)), "stall"),
}


@pytest.mark.slow
# .ci/run kills at the point that once failed in CI (the generator's state lost); -m long adds the others.
@pytest.mark.parametrize(
    "point", [pytest.param(p, marks=() if "state lost" in p else pytest.mark.long) for p in KILL_POINTS]
)
def test_sigkilled_study_resumes_with_every_trial_once(point, tmp_path):
    when, extra = KILL_POINTS[point]
    study, marks = tmp_path / "killed", tmp_path / "marks"
    marks.mkdir()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if extra == "stall":
        env["FACE_AGE_TEST_STALL_CHECKPOINT"] = str(marks)
    # 4 trials: both configurations, two at a time, each kill point still between trials
    argv = ["--grid", "smoke", "--confirm-top", "0", "--seeds", "2", "--storage", str(tmp_path), "--name", "killed"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.faults", *argv],
        cwd=ROOT,
        start_new_session=True,
        stdout=open(tmp_path / "driver.log", "w"),
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:
        assert wait_for(lambda: when(study, marks), 300), f"never reached: {point}"
        if point == "before the first trial finishes":  # one owner: a second run and a resume both refused
            for second in (argv, ["--resume", str(study)]):
                refused = cli(*second, timeout=120)
                text = " ".join(refused.stderr.split())
                assert refused.returncode == 2 and f"in use by process {proc.pid} on this host" in text, text
                assert "Traceback" not in refused.stderr
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray it started
        proc.wait()
    before = finished_trials(study)
    if extra == "lose":
        for path in study.glob("basic-variant-state-*.json"):
            path.unlink()

    resumed = cli("--resume", str(study))
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert f"its process {proc.pid} " in resumed.stderr and "no longer runs" in resumed.stderr  # the lock taken over
    trials, epochs = load_study(str(study))
    assert len(trials) == 4 and (trials.status == "finished").all()
    assert sorted(zip(trials.experiment, trials.seed, strict=False)) == [(e, s) for e in (1, 2) for s in range(2)]
    assert trials.trial_id.is_unique
    after = finished_trials(study)
    for name, text in before.items():
        # Finished before the kill: never retrained. If the driver died before Ray
        # recorded the completion, the trial restores its final checkpoint and
        # reports the same final row once more; nothing else is added.
        assert after[name].startswith(text)
        last = json.loads(text.splitlines()[-1])
        for line in after[name][len(text) :].splitlines():
            again = json.loads(line)
            assert again["epoch"] == last["epoch"] and again["test_acc_best"] == last["test_acc_best"]
            assert again["train_loss"] == last["train_loss"]
    for trial in trials.itertuples():  # every epoch once, in order, up to where it stopped
        assert epochs[epochs.trial_id == trial.trial_id].epoch.tolist() == list(range(1, trial.epochs + 1))
    report = subprocess.run(
        [sys.executable, "-m", "analysis.report", str(study)], cwd=ROOT, capture_output=True, text=True
    )
    assert report.returncode == 0, report.stderr[-3000:]


def test_resume_refuses_a_directory_that_is_not_a_study(tmp_path, capsys):
    code, _, err = in_process(capsys, "--resume", str(tmp_path))
    assert code == 2 and "study.json" in err


@pytest.mark.long
@pytest.mark.slow
def test_utkface_layout_trains_and_reports(utk_root, tmp_path):
    """With class-weighted loss: the class counts are printed and recorded, and the summary has
    balanced accuracy and macro-F1 beside accuracy."""
    proc = cli(
        "--grid",
        "smoke",
        "--data",
        utk_root,
        "--layout",
        "utkface",
        "--class-weights",
        "balanced",
        "--seeds",
        "1",
        "--storage",
        str(tmp_path),
        "--name",
        "utk",
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Left out 2 file(s) (the whole list: " in proc.stdout and "unnamed.jpg" in proc.stdout
    trials, _ = load_study(str(tmp_path / "utk"))
    assert (trials.status == "finished").all() and (trials.val_acc_best > 0.5).all()
    with open(tmp_path / "utk" / "study.json") as f:
        record = json.load(f)
    assert record["data_layout"] == "utkface" and len(record["skipped_files"]) == 2
    assert record["split_sizes"] == {"train": 36, "val": 12, "test": 12}
    assert record["class_counts"]["test"] == {"1-4": 4, "5-27": 4, "28+": 4}
    assert "Images per class (share of the split):" in proc.stdout and "test  1-4 4 (33%)" in proc.stdout
    assert (trials.class_weights == "balanced").all() and (trials.sampler == "random").all()
    summary = pd.read_csv(tmp_path / "utk" / "summary.csv")
    assert summary[["test_acc", "test_bacc", "test_f1"]].notna().all().all()


@pytest.mark.slow
@pytest.mark.long
@pytest.mark.exclusive
def test_losing_a_worker_node_reschedules_its_trials(tmp_path):
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        worker = cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        study = tmp_path / "node-loss"
        log = open(tmp_path / "driver.log", "w")  # a pipe nobody reads would fill and stall the driver
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "study.run",
                "--grid",
                "smoke",
                "--seeds",
                "2",
                "--where",
                "augmentation=online",
                "--max-epochs",
                "25",
                "--max-failures",
                "3",
                "--address",
                cluster.address,
                "--storage",
                str(tmp_path),
                "--name",
                "node-loss",
            ],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

        def on_worker():
            return study.exists() and any(
                worker.node_id in open(os.path.join(e.path, "result.json")).read()
                for e in os.scandir(study)
                if os.path.exists(os.path.join(e.path, "result.json"))
            )

        assert wait_for(on_worker, 300), "no trial ever ran on the worker node"
        cluster.remove_node(worker, allow_graceful=False)
        proc.wait(timeout=900)
        assert proc.returncode == 0, (tmp_path / "driver.log").read_text()[-4000:]
    finally:
        cluster.shutdown()
    trials, epochs = load_study(str(study))
    assert len(trials) == 2 and (trials.status == "finished").all()
    assert ((trials.epochs == 25) | (trials.stopped_by == "early_stopping")).all()
    assert (trials.node_id != worker.node_id).all()  # both finished on the surviving head node
    assert (epochs.groupby("trial_id").epoch.max() == trials.set_index("trial_id").epochs).all()


def driver_rss(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS"))


@pytest.mark.long
@pytest.mark.slow
def test_sixty_trials_keep_disk_and_driver_memory_bounded(tiny_root, tmp_path):
    log = open(tmp_path / "driver.log", "w")  # a pipe nobody reads would fill and stall the driver
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "study.run",
            *cached_slice(tiny_root),
            "--seeds",
            "5",
            "--max-epochs",
            "12",
            "--scheduler",
            "none",
            "--storage",
            str(tmp_path),
            "--name",
            "many",
        ],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    samples = []
    while proc.poll() is None:
        try:
            samples.append(driver_rss(proc.pid))
        except (OSError, StopIteration):
            pass
        time.sleep(0.5)
    assert proc.returncode == 0, (tmp_path / "driver.log").read_text()[-3000:]
    trials, _ = load_study(str(tmp_path / "many"))
    assert len(trials) == 60 and (trials.status == "finished").all()
    total = sum(f.stat().st_size for f in (tmp_path / "many").rglob("*") if f.is_file())
    checkpoints = list((tmp_path / "many").glob("*/checkpoint_*"))
    quarter = len(samples) // 4
    early, late = max(samples[quarter : 2 * quarter]), max(samples[3 * quarter :])
    print(
        f"\nresults directory: {total / 2**20:.0f} MiB for 60 trials ({total / 60 / 2**20:.1f} MiB each), "
        f"{len(checkpoints)} checkpoints; driver RSS {early / 2**20:.0f} MiB after a quarter of the run, "
        f"{late / 2**20:.0f} MiB at the end"
    )
    assert len(checkpoints) == 60  # one per trial: the final one, older ones pruned
    assert total / 60 < 15 * 2**20  # the head's best weights (~10 MB) and logs
    assert late < early * 1.25 + 100 * 2**20


@pytest.mark.long
@pytest.mark.slow
def test_a_diverging_trial_ends_as_diverged_and_the_study_and_report_go_on(tiny_root, tmp_path):
    """A two-configuration grid registered for this test: one sane, one at SGD lr 1e6."""
    code = (
        "import sys; import study.grids as g; "
        "g.GRIDS['diverge'] = g.Grid([(1, 'sane', {'weights': 'none', 'lr': 1e-3, 'batch_size': 8}), "
        "(2, 'lr 1e6', {'weights': 'none', 'optimizer': 'sgd', 'lr': 1e6, 'batch_size': 8})]); "
        "from study.run import main; sys.exit(main(sys.argv[1:]))"
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            "--grid",
            "diverge",
            "--data",
            tiny_root,
            *SMOKE_SPLIT,
            "--seeds",
            "1",
            "--max-epochs",
            "6",
            "--storage",
            str(tmp_path),
            "--name",
            "div",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    trials, _ = load_study(str(tmp_path / "div"))
    by_name = trials.set_index("name")
    assert by_name.loc["lr 1e6", "stopped_by"] == "diverged" and by_name.loc["lr 1e6", "status"] == "finished"
    assert by_name.loc["sane", "stopped_by"] in ("max_epochs", "early_stopping")
    assert "diverged" in proc.stdout
    report = subprocess.run(
        [sys.executable, "-m", "analysis.report", str(tmp_path / "div")], cwd=ROOT, capture_output=True, text=True
    )
    assert report.returncode == 0, report.stderr[-3000:]
    assert "diverged x1" in (tmp_path / "div" / "report" / "report.md").read_text()


@pytest.fixture
def small_disk(tmp_path):
    """A 200 MB tmpfs (root only: skipped elsewhere), unmounted after the test."""
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200m", "tmpfs", str(mount)], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (root only): {made.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


SUMMARY_KEYS = ["exp", "seed", "status", "stopped_by", "epochs", "best_epoch", "val_acc", "test_acc", "test_f1"]


@pytest.mark.long
@pytest.mark.slow
def test_a_disk_filled_mid_trial_stops_in_a_paragraph_and_the_resumed_study_is_the_uninterrupted_one(
    small_disk, tmp_path
):
    """The study's disk fills while its first trial runs and stays full until the driver
    ends: one paragraph names the disk and the resume command, no traceback; once space is
    freed, --resume mends what the full disk tore (Ray's experiment state) and ends with the
    summary of the same study run on a disk that never filled."""
    argv = ["--grid", "smoke", "--confirm-top", "0", "--seeds", "2", "--name", "full"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "study.run", *argv, "--storage", str(small_disk)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    filler = small_disk / "filler"
    try:
        assert wait_for(lambda: any(small_disk.glob("full/e0*")), 300), "no trial ever started"
        with open(filler, "wb") as f:  # every byte left, until the write fails
            try:
                while True:
                    f.write(b"\0" * 2**20)
                    f.flush()
            except OSError:
                pass
        out, _ = proc.communicate(timeout=600)
    finally:
        proc.kill()
    filler.unlink()
    assert proc.returncode == 2 and "Traceback" not in out, out[-4000:]
    paragraph = " ".join(out[out.index("error: the study stopped") :].split())
    assert f"no space left on the disk holding {small_disk / 'full'}" in paragraph
    assert f"python -m study.run --resume {small_disk / 'full'}" in paragraph
    resumed = cli("--resume", str(small_disk / "full"))
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    uninterrupted = cli(*argv, "--storage", str(tmp_path / "whole"))
    assert uninterrupted.returncode == 0, uninterrupted.stdout[-3000:] + uninterrupted.stderr[-3000:]
    got, want = (
        pd.read_csv(folder / "full" / "summary.csv")[SUMMARY_KEYS].sort_values(["exp", "seed"], ignore_index=True)
        for folder in (small_disk, tmp_path / "whole")
    )
    pd.testing.assert_frame_equal(got, want, check_exact=False, rtol=1e-9)
