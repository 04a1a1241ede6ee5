"""The paper grid's six cached experiments on the real dataset (all but #4, the whole network: 9
minutes a trial on an AVX2-only CPU; tests/test_trial.py trains it on tiny images), 3 seeds of 3 epochs,
through the CLI, with its baselines and report: the verdicts hold where a user looks (slow)."""

import os
import subprocess
import sys

import pytest

from analysis.results import load_study
from study.bench.progress_log import read_log, table
from tests.conftest import REAL_DATA, ROOT
from trainable.config import RANDOM_INIT_NOTICE

pytestmark = [pytest.mark.slow, pytest.mark.long]


def test_paper_grid_three_seeds_reported_with_baselines(tmp_path):
    if not os.path.isdir(REAL_DATA):
        pytest.skip(f"real dataset not found at {REAL_DATA} (set FACE_AGE_DATA)")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "study.run",
            "--grid",
            "paper",
            "--where",
            "freeze=block8",
            "--data",
            REAL_DATA,
            "--weights",
            "none",
            "--max-epochs",
            "3",
            "--seeds",
            "3",
            "--storage",
            str(tmp_path),
            "--name",
            "paper",
            "--progress-every",
            "5",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    trials, epochs = load_study(str(tmp_path / "paper"))
    assert sorted(trials.experiment) == sorted([1, 2, 3, 5, 6, 7] * 3)
    assert (trials.status == "finished").all()
    assert ((trials.epochs == 3) | (trials.stopped_by == "early_stopping")).all()
    assert epochs.groupby("trial_id").epoch.max().le(3).all()
    for name in trials.name:
        assert name in proc.stdout
    for trial in trials.trial_id:
        assert any(d.startswith("checkpoint_") for d in os.listdir(tmp_path / "paper" / trial))
    assert "Settings per configuration" in proc.stdout and "none (random init)" in proc.stdout
    assert proc.stdout.count(RANDOM_INIT_NOTICE) == 1 and proc.stdout.count("Best configuration (by") == 1
    assert proc.stdout.rstrip().endswith(f"python -m analysis.report {tmp_path / 'paper'}")  # the next step last
    # Its log, read back as study.bench.progress_log reads one: no running trial went more than
    # --progress-every (plus Tune's step and a checkpoint's write) without a line; encoding said how far it was.
    assert "shards encoded" in proc.stdout
    progress = read_log(proc.stdout)
    assert progress["max_gap_s"] <= 5 + 10, table(progress)
    print(table(progress))
    confirmed, _ = load_study(str(tmp_path / "paper" / "confirm"), "confirm/")
    assert sorted(confirmed.seed) == [3, 4, 5, 6, 7] and confirmed.config_id.nunique() == 1  # the best, 5 fresh seeds
    for module, args in (
        ("analysis.baselines", ["--data", REAL_DATA, "--seeds", "1", "--out", str(tmp_path / "baselines")]),
        ("analysis.report", [str(tmp_path / "paper"), "--baselines", str(tmp_path / "baselines")]),
    ):
        done = subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-3000:]
    markdown = (tmp_path / "paper" / "report" / "report.md").read_text()
    assert RANDOM_INIT_NOTICE in markdown.split("\n\n")[1]  # first thing after the title
    # then the answer: the chosen configuration on its confirmation runs, against each baseline, the seeds needed
    answer = markdown.split("## The answer")[1].split("\n## ")[0]
    assert markdown.index("## The answer") < markdown.index("## Summary") and "Chosen: #" in answer
    assert "On 5 run(s) it was not chosen on (seeds 3, 4, 5, 6, 7): test accuracy" in answer
    verdict_rows = [
        line.split(" | ") for line in answer.splitlines() if line.startswith("| HOG") or line.startswith("| LBP")
    ]
    assert len(verdict_rows) == 2 and "(one run, deterministic)" in verdict_rows[0][0], answer
    assert "Seeds needed, from this study's own variances" in answer and "--confirm-seeds N" in answer
    assert "| weights |" in markdown and "| none (random init) |" in markdown
    assert "reported val" not in markdown and "Left out: the 2021 figures come from VGGFace2" in markdown

    summary = markdown.split("## Summary")[1].split("\n## ")[0]
    assert "the full 95% interval: training seeds and test images" in summary.split("Ranking by")[1].split("\n")[0]
    section = markdown.split("## Is the difference real?")[1].split("\n## ")[0]
    rows = [line.split(" | ") for line in section.splitlines() if line.startswith("| accuracy | ")]
    assert len(rows) == 5 + 2  # each configuration against #1, and the best against HOG and against LBP
    assert len({(r[1], r[2]) for r in rows}) == len(rows)  # one metric, each pair once: no hypothesis twice
    for r in rows:
        lo, hi = (float(x) for x in r[5].split(" (")[0].split(" to "))
        assert (lo > 0 or hi < 0) == r[9].startswith("yes"), r  # interval and verdict agree
        assert -100 <= lo <= hi <= 100, r  # a difference of two accuracies, in points
        detectable = r[6]  # beside every comparison, a number that can exist
        assert detectable.startswith("over 100") or 0 < float(detectable) <= 100, r
    claims = [r for r in rows if "best CNN" in r[1]]
    assert len(claims) == 2 and all("fresh seeds 3, 4, 5, 6, 7" in r[1] for r in claims), claims
