"""A trained model as an MLflow model (pyfunc): model.pt as its artifact, the trainable
package as its code, so `mlflow.pyfunc.load_model(uri).predict(frame)` needs nothing else;
and `study_run`, the study's own MLflow run that the model, the summary and the report join.

Input: a DataFrame with an `image` column of encoded face crops (JPEG/PNG bytes, like the
training crops; --no-detect's input). The model's own preprocessing (crop, resize,
normalization, from model.pt) is applied inside. Output: one row per image, the predicted
age group and each group's probability, as study.predict writes them (`p(CLASS)`)."""

from __future__ import annotations

from typing import Any

import mlflow
import numpy as np
import pandas as pd

from trainable.serving.face_crops import decoded
from trainable.serving.inference import Predictor


class FaceAgeModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context: Any) -> None:
        self.predictor = Predictor(context.artifacts["model"])

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        images = []
        for i, data in enumerate(model_input["image"]):
            image, problem = decoded(bytes(data))
            if image is None:
                raise ValueError(f"row {i}: {problem}")
            images.append(image)
        probs = self.predictor.probabilities(images)
        classes = self.predictor.classes
        out = pd.DataFrame(probs, columns=[f"p({c})" for c in classes])
        out.insert(0, "predicted", [classes[int(i)] for i in np.argmax(probs, axis=1)] if len(probs) else [])
        return out


def log_model(model_file: str, example: bytes, register: str | None = None) -> Any:
    """Log `model_file` as an MLflow model named 'model' in the active run, with its
    signature inferred from `example` (one encoded face crop) and that example kept;
    registered as `register` when given. Returns MLflow's ModelInfo."""
    import os

    import trainable

    frame = pd.DataFrame({"image": [example]})
    model = FaceAgeModel()
    model.predictor = Predictor(model_file)
    signature = mlflow.models.infer_signature(frame, model.predict(None, frame))
    return mlflow.pyfunc.log_model(
        name="model",
        python_model=FaceAgeModel(),
        artifacts={"model": model_file},
        code_paths=[os.path.dirname(trainable.__file__)],
        signature=signature,
        input_example=frame,
        registered_model_name=register,
    )


def study_run(client: Any, name: str) -> str | None:
    """The study's own MLflow run (study.tuning.tracking's parent run, tagged study=NAME and
    role=study in experiment NAME), or None if it was never made."""
    found = client.get_experiment_by_name(name)
    if found is None:
        return None
    runs = client.search_runs([found.experiment_id], f"tags.study = '{name}' and tags.role = 'study'", max_results=1)
    return runs[0].info.run_id if runs else None
