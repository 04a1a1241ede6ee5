"""--mlflow: refused URIs end before any work; a smoke study logs to a local sqlite database."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.extra("mlflow")


@pytest.mark.parametrize("uri", ["file:///tmp/face-age-mlruns", "plain-folder"])
def test_a_uri_mlflow_refuses_ends_at_once_with_exit_code_2(tmp_path, uri, capsys, monkeypatch):
    from study.run import main

    monkeypatch.chdir(tmp_path.parent)  # a relative URI is not made inside the storage
    code = main(["--grid", "smoke", "--mlflow", uri, "--storage", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "maintenance mode" in err and "sqlite:///mlflow.db" in err
    assert list(tmp_path.iterdir()) == []  # nothing generated, nothing trained


@pytest.mark.long
@pytest.mark.slow
def test_a_smoke_study_logs_its_trials_to_sqlite(tmp_path):
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "study.run",
            "--grid",
            "smoke",
            "--confirm-top",
            "0",
            "--seeds",
            "1",
            "--mlflow",
            uri,
            "--storage",
            str(tmp_path),
            "--name",
            "tracked",
            "--mlflow-register",
            "face-age",
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
    assert len(parent) == 1 and len(trials) == 2
    assert (trials["tags.mlflow.parentRunId"] == parent.run_id.item()).all()
    assert sorted(trials["tags.name"]) == ["smoke cached", "smoke online"]
    assert set(trials["tags.seed"]) == {"0"} and set(trials["tags.experiment"]) == {"1", "2"}
    assert (trials["params.lr"] == "0.001").all() and (trials["params.weights"] == "none").all()
    assert not [c for c in runs.columns if c.startswith("metrics.config/")]
    assert trials["metrics.val_acc_best"].notna().all() and trials["metrics.best_epoch"].notna().all()
    client = mlflow.tracking.MlflowClient(uri)
    cached = trials[trials["tags.name"] == "smoke cached"].run_id.iloc[0]
    assert [m.step for m in client.get_metric_history(cached, "val_loss")] == list(range(1, 13))
    run = parent.run_id.item()
    assert [a.path for a in client.list_artifacts(run)] == ["best", "study.json", "summary.csv"]
    assert [a.path for a in client.list_artifacts(run, "best")] == ["best/best.json"]
    best = json.loads((tmp_path / "tracked" / "best" / "best.json").read_text())
    assert client.get_run(run).data.metrics["best_val_acc_mean"] == pytest.approx(best["val_acc"]["mean"])
    # The registered model, loaded back as MLflow serves it, answers as study.predict does.
    (version,) = client.search_model_versions("name = 'face-age'")
    assert version.run_id == run  # logged from the study's run (MLflow 3 keeps it as a LoggedModel)
    model = mlflow.pyfunc.load_model(f"models:/face-age/{version.version}")
    assert [c.name for c in model.metadata.get_input_schema().inputs] == ["image"]
    images = sorted(str(p) for p in (tmp_path / "smoke-data").rglob("*.jpg"))[:5]
    frame = pd.DataFrame({"image": [open(path, "rb").read() for path in images]})
    served = model.predict(frame)
    from study.predict import main as predict_main

    out = tmp_path / "predicted.csv"
    assert predict_main(["--model", str(tmp_path / "tracked"), "--no-detect", *images, "--out", str(out)]) == 0
    expected = pd.read_csv(out)
    assert list(served.predicted) == list(expected.predicted)
    columns = [c for c in expected.columns if c.startswith("p(")]
    # The same model and crops, batched alike (5 images at once): the same kernels, so the same floats.
    np.testing.assert_allclose(served[columns].to_numpy(), expected[columns].to_numpy(), atol=1e-6)

    from analysis.report import main as report_main

    assert report_main([str(tmp_path / "tracked")]) == 0  # the URI the study recorded
    logged = [a.path for a in client.list_artifacts(run, "report")]
    assert {"report/report.md", "report/report.html", "report/figures"} <= set(logged)
