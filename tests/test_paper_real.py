"""The paper grid on the real dataset, 3 epochs, through the CLI (slow: ~3 minutes)."""

import os
import subprocess
import sys

import pytest

from analysis.results import load_study
from tests.conftest import REAL_DATA, ROOT
from trainable.config import RANDOM_INIT_NOTICE

pytestmark = pytest.mark.slow


def test_paper_grid_three_epochs(tmp_path):
    if not os.path.isdir(REAL_DATA):
        pytest.skip(f"real dataset not found at {REAL_DATA} (set FACE_AGE_DATA)")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "study.run",
            "--grid",
            "paper",
            "--data",
            REAL_DATA,
            "--weights",
            "none",
            "--train-precision",
            "auto",  # bf16 where native, as the full-network trial ran before --train-precision: the same time
            "--max-epochs",
            "3",
            "--seeds",
            "1",
            "--storage",
            str(tmp_path),
            "--name",
            "paper",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    trials, epochs = load_study(str(tmp_path / "paper"))
    assert sorted(trials.experiment) == list(range(1, 8))
    assert (trials.status == "finished").all()
    assert ((trials.epochs == 3) | (trials.stopped_by == "early_stopping")).all()
    assert epochs.groupby("trial_id").epoch.max().le(3).all()
    for name in trials.name:
        assert name in proc.stdout
    for trial in trials.trial_id:
        assert any(d.startswith("checkpoint_") for d in os.listdir(tmp_path / "paper" / trial))
    assert "Settings per configuration" in proc.stdout and "none (random init)" in proc.stdout
    assert proc.stdout.rstrip().endswith(RANDOM_INIT_NOTICE)
    report = subprocess.run(
        [sys.executable, "-m", "analysis.report", str(tmp_path / "paper")], cwd=ROOT, capture_output=True, text=True
    )
    assert report.returncode == 0, report.stderr[-3000:]
    markdown = (tmp_path / "paper" / "report" / "report.md").read_text()
    assert RANDOM_INIT_NOTICE in markdown.split("\n\n")[1]  # first thing after the title
    assert "| weights |" in markdown and "| none (random init) |" in markdown
    assert "reported val" not in markdown and "Left out: the 2021 figures come from VGGFace2" in markdown
