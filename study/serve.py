"""Serve a study's best model over HTTP with Ray Serve.

    python -m study.serve RESULTS_DIR|model.pt [--no-detect | --all-faces] [--port 8000]
        [--replicas N] [--cpus-per-replica C] [--gpus-per-replica G] [--max-batch-size B]
    serve run study.serve:build model=RESULTS_DIR [detect=false] [max_batch_size=8]

    POST /predict   an image (the raw bytes, or one file of a multipart form): each face's box
                    and the age groups' probabilities, framed as study.predict frames them
                    (trainable.serving.face_crops); 400 for a body that is not an image, 422 for an
                    image with no usable face, each with a JSON reason
    GET  /healthz   {"status": "ok"} once the model is loaded
    GET  /          the model's metadata: classes, preprocessing, weights, the trial it came from

Requests are batched across clients (@serve.batch: up to --max-batch-size faces' requests,
waiting at most --batch-wait-ms for more); --max-batch-size 1 turns batching off.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from typing import Any

import numpy as np
from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse

from trainable.atomic_io import read_json
from trainable.data.scan import MAX_BYTES
from trainable.errors import UserError
from trainable.results_layout import BEST_DIR, BEST_FILE
from trainable.serving.face_crops import Face, Faces, decoded
from trainable.serving.inference import Predictor, model_file


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


def application(
    model: str,
    *,
    detect: bool = True,
    all_faces: bool = False,
    replicas: int = 1,
    cpus: float = 1.0,
    gpus: float = 0.0,
    max_batch_size: int = 8,
    batch_wait_ms: float = 5.0,
) -> serve.Application:
    """The Serve application of a results directory's best model (or a model.pt)."""
    if replicas < 1 or cpus <= 0 or gpus < 0 or max_batch_size < 1 or batch_wait_ms < 0:
        raise UserError(
            "--replicas and --max-batch-size must be >= 1, --cpus-per-replica > 0, "
            "--gpus-per-replica and --batch-wait-ms >= 0."
        )
    path = os.path.abspath(model_file(model))
    options = {"num_replicas": replicas, "ray_actor_options": {"num_cpus": cpus, "num_gpus": gpus}}
    deployment = AgeGroups.options(**options)
    return deployment.bind(path, detect, all_faces, max_batch_size, batch_wait_ms / 1000)


def build(args: dict[str, str]) -> serve.Application:
    """`serve run study.serve:build model=RESULTS_DIR [key=value ...]`: the same application."""
    flags = {"true": True, "false": False}  # as `serve run` passes them, or YAML's booleans
    known = {"model", "detect", "all_faces", "replicas", "cpus", "gpus", "max_batch_size", "batch_wait_ms"}
    unknown = sorted(set(args) - known)
    if unknown or "model" not in args:
        raise UserError(f"serve run study.serve:build takes model=PATH and {sorted(known - {'model'})}; got {args}.")
    return application(
        args["model"],
        detect=flags[str(args.get("detect", "true")).lower()],
        all_faces=flags[str(args.get("all_faces", "false")).lower()],
        replicas=int(args.get("replicas", 1)),
        cpus=float(args.get("cpus", 1)),
        gpus=float(args.get("gpus", 0)),
        max_batch_size=int(args.get("max_batch_size", 8)),
        batch_wait_ms=float(args.get("batch_wait_ms", 5)),
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m study.serve", description=__doc__.split("\n")[0])
    p.add_argument("model", metavar="RESULTS_DIR|model.pt", help="a study (its best/model.pt) or a model file")
    faces = p.add_mutually_exclusive_group()
    faces.add_argument("--no-detect", action="store_true", help="posted images are face crops already")
    faces.add_argument("--all-faces", action="store_true", help="every detected face, not only the largest")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (0.0.0.0: every one)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--replicas", type=int, default=1)
    p.add_argument("--cpus-per-replica", type=float, default=1.0)
    p.add_argument("--gpus-per-replica", type=float, default=0.0, help="fractions share a GPU")
    p.add_argument("--max-batch-size", type=int, default=8, help="requests batched together (1: no batching)")
    p.add_argument("--batch-wait-ms", type=float, default=5.0, help="longest wait for a batch to fill")
    p.add_argument("--address", help="a running Ray cluster (auto or HOST:PORT); default: start one here")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        app = application(
            args.model,
            detect=not args.no_detect,
            all_faces=args.all_faces,
            replicas=args.replicas,
            cpus=args.cpus_per_replica,
            gpus=args.gpus_per_replica,
            max_batch_size=args.max_batch_size,
            batch_wait_ms=args.batch_wait_ms,
        )
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    import ray

    ray.init(address=args.address, include_dashboard=False, logging_level="ERROR")
    serve.start(http_options={"host": args.host, "port": args.port})
    serve.run(app, name="face-age", route_prefix="/")
    where = f"http://{args.host}:{args.port}"
    print(f"Serving {model_file(args.model)} at {where}: POST /predict, GET /healthz, GET /", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        serve.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
