"""The report (Markdown, HTML, figures, epochs.csv) logged to its study's MLflow run
(analysis.report --mlflow, or the URI the study recorded)."""

from __future__ import annotations

import sys

from trainable.results.storage import SECRET


def log_report(uri: str, name: str, out: str) -> int:
    """The report (Markdown, HTML, figures, epochs.csv) as artifacts of the study's MLflow run."""
    if SECRET in uri:  # study.json redacts credentials: the URI must be given again
        print(f"note: {uri} was recorded without its credentials; give --mlflow URI to log the report to it")
        return 0
    try:
        from mlflow.tracking import MlflowClient

        from trainable.serving.mlflow_model import study_run

        client = MlflowClient(tracking_uri=uri)
        run = study_run(client, name)
        if run is None:
            print(f"error: --mlflow {uri}: no MLflow run of study {name} there", file=sys.stderr)
            return 1
        client.log_artifacts(run, out, "report")
    except ImportError:
        print("error: logging the report to MLflow needs the mlflow extra: pip install -e '.[mlflow]'", file=sys.stderr)
        return 1
    except Exception as err:  # MLflow raises its own, requests' and SQLAlchemy's errors
        print(f"error: logging the report to MLflow at {uri} failed ({type(err).__name__}: {err})", file=sys.stderr)
        return 1
    print(f"logged the report to MLflow run {run} at {uri}")
    return 0
