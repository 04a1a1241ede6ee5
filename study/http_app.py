"""The HTTP application study.serve runs: one Ray Serve deployment (AgeGroups) that loads a
model and the face detector once per replica and answers POST /predict, GET /healthz and GET /
(the routes and answers study.serve's docstring lists). Ray, torch and OpenCV load with it, so
study.serve imports it only after its arguments are parsed."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import numpy as np
from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse

from trainable.atomic_io import read_json
from trainable.data.scan import MAX_BYTES
from trainable.results_layout import BEST_DIR, BEST_FILE
from trainable.serving.face_crops import Face, Faces, decoded
from trainable.serving.inference import Predictor


def answer(faces: list[Face], probs: np.ndarray, classes: list[str]) -> list[dict[str, Any]]:
    """The JSON of one image's faces: label, box, predicted group and each group's probability."""
    return [
        {
            "face": face.label,
            "box": [round(v, 1) for v in face.box],
            "predicted": classes[int(p.argmax())],
            "probabilities": {c: float(v) for c, v in zip(classes, p, strict=True)},
        }
        for face, p in zip(faces, probs, strict=True)
    ]


def metadata(path: str, record: dict[str, Any]) -> dict[str, Any]:
    """What GET / says about the model: enough to know what answers and how it was made (the
    study and why this model, from best/best.json beside a study's best model)."""
    config = record.get("config", {})
    folder = os.path.dirname(path)
    best_file = os.path.join(folder, BEST_FILE)
    best = read_json(best_file) if os.path.basename(folder) == BEST_DIR and os.path.exists(best_file) else {}
    return {
        "model_file": path,
        "study": os.path.basename(os.path.dirname(folder)) if best else None,
        "chosen_by": best.get("chosen_by"),
        "classes": list(record["classes"]),
        "preprocessing": record.get("preprocessing"),
        "weights": record.get("weights_label") or record.get("weights"),
        "weights_id": record.get("weights_id"),
        "trial": {k: config.get(k) for k in ("name", "experiment", "config_id", "seed", "freeze", "lr", "optimizer")},
        "precision": {"trunk": record.get("precision"), "trained": record.get("train_precision")},
        "packages": record.get("packages"),
    }


async def image_bytes(request: Request) -> bytes:
    """The posted image: the body itself, or the one file of a multipart form; at most
    MAX_BYTES (the largest image the study reads), read no further than that."""
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        try:
            form = await request.form(max_files=1, max_fields=4)
        except Exception as err:  # starlette's and python-multipart's parse errors
            raise ValueError(f"not a readable multipart form ({err})") from None
        files = [v for v in form.values() if hasattr(v, "read")]
        if len(files) != 1:
            raise ValueError("a multipart body needs exactly one file")
        data = await files[0].read(MAX_BYTES + 1)
    else:
        data = bytearray()
        async for chunk in request.stream():
            data += chunk
            if len(data) > MAX_BYTES:
                break
    if len(data) > MAX_BYTES:
        raise ValueError(f"over {MAX_BYTES:,} bytes")
    if not data:
        raise ValueError("an empty body; POST the image's bytes")
    return bytes(data)


@serve.deployment
class AgeGroups:
    """One replica: the model and the face detector, loaded once; requests batched."""

    def __init__(self, path: str, detect: bool, all_faces: bool, max_batch_size: int, batch_wait_s: float) -> None:
        from trainable.device import pick_device

        self.predictor = Predictor(path, pick_device())  # the replica's GPU where Ray gave it one
        self.faces = Faces(detect, all_faces)
        self.meta = metadata(path, self.predictor.record)
        self.classify.set_max_batch_size(max_batch_size)
        self.classify.set_batch_wait_timeout_s(batch_wait_s)

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.005)
    async def classify(self, requests: list[list[np.ndarray]]) -> list[np.ndarray]:
        """The probabilities of each request's crops, all requests' crops in one forward pass."""
        flat = [crop for crops in requests for crop in crops]
        probs = await asyncio.to_thread(self.predictor.probabilities, flat)
        ends = np.cumsum([len(crops) for crops in requests])[:-1]
        return np.split(probs, ends)

    async def __call__(self, request: Request) -> JSONResponse:
        path = request.url.path.rstrip("/")
        if request.method == "GET" and path.endswith("/healthz"):
            return JSONResponse({"status": "ok"})
        if request.method == "GET" and path == "":
            return JSONResponse(self.meta)
        if request.method != "POST" or not path.endswith("/predict"):
            return JSONResponse({"error": "POST /predict an image; GET / or /healthz"}, status_code=404)
        try:
            data = await image_bytes(request)
        except ValueError as err:
            return JSONResponse({"error": str(err)}, status_code=400)
        image, problem = decoded(data)
        if image is None:
            return JSONResponse({"error": problem}, status_code=400)
        faces, problem = await asyncio.to_thread(self.faces.crops, image)
        if problem:
            return JSONResponse({"error": problem}, status_code=422)
        probs = await self.classify([face.crop for face in faces])
        return JSONResponse({"faces": answer(faces, probs, self.predictor.classes)})
