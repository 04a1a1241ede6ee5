"""--mlflow: refused URIs end before any work; a smoke study logs to a local sqlite database."""

import subprocess
import sys

import pytest

mlflow = pytest.importorskip("mlflow", reason="the mlflow extra is not installed (.ci/run installs it)")


@pytest.mark.parametrize("uri", ["file:///tmp/face-age-mlruns", "plain-folder"])
def test_a_uri_mlflow_refuses_ends_at_once_with_exit_code_2(tmp_path, uri, capsys, monkeypatch):
    from study.run import main

    monkeypatch.chdir(tmp_path.parent)  # a relative URI is not made inside the storage
    code = main(["--grid", "smoke", "--mlflow", uri, "--storage", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "maintenance mode" in err and "sqlite:///mlflow.db" in err
    assert list(tmp_path.iterdir()) == []  # nothing generated, nothing trained


@pytest.mark.slow
def test_a_smoke_study_logs_its_trials_to_sqlite(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "study.run",
            "--grid",
            "smoke",
            "--seeds",
            "2",
            "--mlflow",
            uri,
            "--storage",
            str(tmp_path),
            "--name",
            "tracked",
        ],
        cwd=tmp_path,  # MLflow puts a sqlite store's artifacts under ./mlruns
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=["tracked"])
    parent = runs[runs["tags.role"] == "study"]
    trials = runs[runs["tags.role"] != "study"]
    assert len(parent) == 1 and len(trials) == 4
    assert (trials["tags.mlflow.parentRunId"] == parent.run_id.item()).all()
    assert sorted(trials["tags.name"]) == ["smoke cached"] * 2 + ["smoke online"] * 2
    assert set(trials["tags.seed"]) == {"0", "1"} and set(trials["tags.experiment"]) == {"1", "2"}
    assert (trials["params.lr"] == "0.001").all() and (trials["params.weights"] == "none").all()
    assert not [c for c in runs.columns if c.startswith("metrics.config/")]
    assert trials["metrics.val_acc_best"].notna().all() and trials["metrics.best_epoch"].notna().all()
    client = mlflow.tracking.MlflowClient(uri)
    cached = trials[trials["tags.name"] == "smoke cached"].run_id.iloc[0]
    assert [m.step for m in client.get_metric_history(cached, "val_loss")] == list(range(1, 13))
    assert [a.path for a in client.list_artifacts(parent.run_id.item())] == ["study.json"]
