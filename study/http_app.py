"""The HTTP application study.serve runs: one Ray Serve deployment (AgeGroups) with a FastAPI
ingress, which loads a model and the face detector once per replica and answers in FastAPI's
conventions: POST /predict, GET /healthz, GET / (the model's metadata), the OpenAPI schema at
/openapi.json and its pages at /docs; `{"detail": ...}` errors, 405 for a wrong method, 415 for
a body of another type. Ray, torch and OpenCV load with it, so study.serve imports it only after
its arguments are parsed."""

import asyncio  # no `from __future__ import annotations`: FastAPI reads the handlers' types
import base64
import binascii
import json
import os
import re
from collections import Counter
from typing import Any

import numpy as np
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError
from ray import serve
from starlette.formparsers import MultiPartException, MultiPartParser

from trainable.data.limits import image_limits
from trainable.data.problems import Kind
from trainable.data.scan import Unusable, decode_image
from trainable.results.atomic_io import read_json
from trainable.results.layout import BEST_DIR, BEST_FILE
from trainable.serving.face_crops import Face, Faces
from trainable.serving.inference import Predictor
from trainable.serving.request_limits import serving_limits

RAW_TYPES = ("image/", "application/octet-stream")  # a body that is the image itself
# curl --data-binary's default type: a body sent as it is, taken when its bytes open as an image does.
SNIFFED_TYPES = ("application/x-www-form-urlencoded",)
IMAGE_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*", b"RIFF")
MAX_BYTES = image_limits().bytes  # the largest image a study reads (FACE_AGE_MAX_IMAGE_BYTES)
JSON_BYTES = MAX_BYTES * 4 // 3 + 1024  # the largest image in base64, and its key
DECODES_AT_ONCE = 1  # images a replica decodes at once (a photo takes milliseconds; the largest, 400 MiB)
SLOW_AFTER_S = 1.0  # an upload still arriving after this long counts against its client's slow uploads
JSON_DEPTH = 8  # {"image_base64": "..."} nests one level; deeper bodies are refused before parsing
STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
OPEN, CLOSE = np.frombuffer(b"[{", np.uint8), np.frombuffer(b"]}", np.uint8)


class FaceAnswer(BaseModel):
    index: int = Field(description="the face's rank by size, 0 the largest (the only one without all_faces)")
    box: tuple[float, float, float, float] = Field(
        description="x0, y0, x1, y1 in pixels of the image as decoded (EXIF rotation applied), clipped to the "
        "image: the detector's box may reach past its edges; the whole image with detection off"
    )
    predicted: str = Field(description="the age group with the highest probability")
    probabilities: dict[str, float] = Field(description="each age group's probability (softmax), summing to 1")


class Prediction(BaseModel):
    faces: list[FaceAnswer]


class Base64Image(BaseModel):
    image_base64: str = Field(description="the image file's bytes in base64 (RFC 4648)")


class Problem(BaseModel):
    detail: str


ERRORS = {
    400: {"model": Problem, "description": "not an image, an empty body, or a malformed form or JSON"},
    411: {"model": Problem, "description": "a body without its Content-Length (a chunked upload)"},
    413: {"model": Problem, "description": f"a body over {MAX_BYTES:,} bytes (the largest image a study reads)"},
    415: {"model": Problem, "description": "a body of another content type"},
    422: {"model": Problem, "description": "an image with no usable face, or past the limits (pixels, sides' ratio)"},
}
BODY = {  # the request body, which the handler reads itself (streamed, capped)
    "requestBody": {
        "required": True,
        "content": {
            "image/*": {"schema": {"type": "string", "format": "binary"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            "multipart/form-data": {
                "schema": {"type": "object", "properties": {"image": {"type": "string", "format": "binary"}}}
            },
            "application/json": {"schema": Base64Image.model_json_schema()},
        },
    }
}

api = FastAPI(
    title="Face age groups",
    summary="A face-age study's model: each face's age group (1-4, 5-27, 28+ by default) from a photo",
    version="1",
)


def decode(data: bytes) -> np.ndarray:
    """The posted image, decoded as study.predict decodes it: 400 for what is not an image,
    422 for an image past the limits (pixels, ratio of the sides: FACE_AGE_MAX_*)."""
    try:
        return decode_image(data)[0]
    except Unusable as err:
        raise HTTPException(400 if err.kind is Kind.UNDECODABLE else 422, str(err)) from None


def answer(faces: list[Face], probs: np.ndarray, classes: list[str], size: tuple[int, int]) -> Prediction:
    """One image's faces: index, box clipped to the image (`size`: width, height), predicted
    group and each group's probability."""
    width, height = size
    return Prediction(
        faces=[
            FaceAnswer(
                index=i,
                box=tuple(
                    round(min(max(v, 0.0), limit), 1) for v, limit in zip(face.box, (width, height) * 2, strict=True)
                ),
                predicted=classes[int(p.argmax())],
                probabilities={c: float(v) for c, v in zip(classes, p, strict=True)},
            )
            for i, (face, p) in enumerate(zip(faces, probs, strict=True))
        ]
    )


def metadata(path: str, record: dict[str, Any]) -> dict[str, Any]:
    """What GET / says about the model: enough to know what answers and how it was made (the
    study and why this model, from best/best.json beside a study's best model)."""
    config = record.get("config", {})
    folder = os.path.dirname(path)
    best_file = os.path.join(folder, BEST_FILE)
    best = read_json(best_file) if os.path.basename(folder) == BEST_DIR and os.path.exists(best_file) else {}
    return {
        "model_file": os.path.basename(path),  # no server path in an answer
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


async def capped_stream(stream: Any, limit: int, seconds: float) -> Any:
    """The body's chunks as they come; 413 as soon as they pass `limit` bytes, 408 when the
    whole body has not come in `seconds` (ServingLimits.body_deadline of its Content-Length)."""
    seen, chunks = 0, stream.__aiter__()
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        try:
            left = deadline - asyncio.get_running_loop().time()
            chunk = await asyncio.wait_for(chunks.__anext__(), max(left, 0.0))
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise HTTPException(
                408, f"the body did not arrive in {seconds:.0f} s (FACE_AGE_BODY_SECONDS, FACE_AGE_MIN_BODY_RATE)"
            ) from None
        seen += len(chunk)
        if seen > limit:
            raise HTTPException(413, f"over {MAX_BYTES:,} bytes")
        yield chunk


async def capped(stream: Any, limit: int, seconds: float) -> bytes:
    """A body read whole, but never past `limit` bytes (413) nor `seconds` (408)."""
    return b"".join([chunk async for chunk in capped_stream(stream, limit, seconds)])


def json_depth(data: bytes) -> int:
    """How deeply a JSON text nests its arrays and objects (strings left out), counted before it is
    parsed: json.loads recurses once per level and a 100,000-deep body would exhaust the stack."""
    bare = np.frombuffer(STRINGS.sub(b'""', data), dtype=np.uint8)
    steps = np.isin(bare, OPEN).astype(np.int64) - np.isin(bare, CLOSE)
    return int(np.cumsum(steps).max(initial=0))


async def form_file(request: Request, seconds: float) -> bytes:
    """The one file of a multipart form, parsed as its capped stream comes (the file part spooled to a
    temporary file past 1 MiB), at most MAX_BYTES + 1 of it read."""
    body = capped_stream(request.stream(), MAX_BYTES + 64 * 1024, seconds)  # the file, and the form's framing
    try:
        form = await MultiPartParser(request.headers, body, max_files=1, max_fields=4).parse()
    except (MultiPartException, ValueError) as err:  # starlette's; python-multipart's FormParserError
        raise HTTPException(400, f"not a readable multipart form ({err})") from None
    files = [v for v in form.values() if hasattr(v, "read")]
    if len(files) != 1:
        raise HTTPException(400, "a multipart body needs exactly one file")
    return await files[0].read(MAX_BYTES + 1)


async def json_image(request: Request, seconds: float) -> bytes:
    """A JSON object's base64 `image_base64`, decoded; any other body a one-line 400 saying the shape."""
    text = await capped(request.stream(), JSON_BYTES, seconds)
    shape = 'a JSON body is {"image_base64": "<the file in base64>"}'
    if json_depth(text) > JSON_DEPTH:
        raise HTTPException(400, f"{shape}, not nested {JSON_DEPTH} levels deep")
    try:
        posted = Base64Image.model_validate(json.loads(text))
        return base64.b64decode(posted.image_base64, validate=True)
    except ValidationError as err:  # pydantic's text runs to several lines and a URL: its first error, briefly
        first = err.errors()[0]
        where = ".".join(map(str, first["loc"])) or "the body"
        raise HTTPException(400, f"{shape} ({where}: {first['msg'].lower()})") from None
    except (ValueError, binascii.Error) as err:
        raise HTTPException(400, f"{shape} ({err})") from None


async def image_bytes(request: Request) -> bytes:
    """The posted image: the body itself (image/*, application/octet-stream, no type, or curl
    --data-binary's form type when the bytes are an image file's), the one
    file of a multipart form, or a JSON object's base64 `image_base64`; never more than
    MAX_BYTES read (a multipart form is parsed as its capped stream comes: its file part is spooled
    to a temporary file past 1 MiB, never held whole in memory before the cap is checked)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    declared = request.headers.get("content-length")  # checked before a byte is read
    if declared is None:
        raise HTTPException(411, "a body needs its Content-Length (a chunked upload is not read)")
    if not declared.strip().isdigit():
        raise HTTPException(400, f"Content-Length {declared!r} is not a number of bytes")
    if int(declared) > (JSON_BYTES if kind == "application/json" else MAX_BYTES + 64 * 1024):
        raise HTTPException(413, f"over {MAX_BYTES:,} bytes")
    seconds = serving_limits().body_deadline(int(declared))
    if kind == "multipart/form-data":
        data = await form_file(request, seconds)
    elif kind == "application/json":
        data = await json_image(request, seconds)
    elif kind == "" or kind.startswith(RAW_TYPES):
        data = await capped(request.stream(), MAX_BYTES, seconds)
    elif kind in SNIFFED_TYPES:
        data = await capped(request.stream(), MAX_BYTES, seconds)
        if not data.startswith(IMAGE_SIGNATURES):
            raise HTTPException(
                415,
                f"{kind} (curl --data-binary's default) and the body is no image file: post the image's bytes "
                "with their type, e.g. curl -H 'Content-Type: image/jpeg' --data-binary @photo.jpg",
            )
    else:
        raise HTTPException(
            415, f"{kind}: post the image's bytes (image/*), a multipart form with one file, or JSON with image_base64"
        )
    if len(data) > MAX_BYTES:
        raise HTTPException(413, f"over {MAX_BYTES:,} bytes")
    if not data:
        raise HTTPException(400, "an empty body; POST the image's bytes")
    return data


@serve.deployment(num_replicas=1, ray_actor_options={"num_cpus": 0})
class Health:
    """GET /healthz as its own application (route prefix /healthz, study.serve): it answers from
    Serve's own state while every model replica is busy with uploads, 503 when they are not running."""

    def __init__(self, app: str) -> None:
        self.app, self.status, self.watching = app, None, None

    async def watch(self) -> None:
        """The model application's status from Serve's controller, refreshed every second: a health
        check answers from it and never waits on the controller."""
        while True:
            app = (await asyncio.to_thread(serve.status)).applications.get(self.app)
            self.status = app.status if app else "not deployed"
            await asyncio.sleep(1)

    async def __call__(self, request: Request) -> JSONResponse:
        if self.watching is None:
            self.watching = asyncio.create_task(self.watch())
        while self.status is None:
            await asyncio.sleep(0.05)
        if self.status != "RUNNING":
            return JSONResponse({"detail": f"the model's application is {self.status}"}, status_code=503)
        return JSONResponse({"status": "ok"})


@serve.deployment
@serve.ingress(api)
class AgeGroups:
    """One replica: the model and the face detector, loaded once; requests batched."""

    def __init__(self, path: str, detect: bool, all_faces: bool, max_batch_size: int, batch_wait_s: float) -> None:
        from trainable.device import pick_device

        self.slow = Counter()  # client address -> its uploads still arriving after SLOW_AFTER_S
        self.decoding = asyncio.Semaphore(DECODES_AT_ONCE)
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

    @api.get("/healthz", summary="200 once the model is loaded")
    async def healthz(self) -> dict[str, str]:
        return {"status": "ok"}

    @api.get("/", summary="the model: classes, preprocessing, weights, the trial it came from")
    async def model(self) -> dict[str, Any]:
        return self.meta

    @api.post(
        "/predict",
        response_model=Prediction,
        responses=ERRORS,
        openapi_extra=BODY,
        summary="each face's age group",
        description="Faces are found and framed as study.predict frames them (trainable.serving.face_crops).",
    )
    async def predict(self, request: Request) -> Prediction:
        return await self.answer(await self.body(request))

    async def body(self, request: Request) -> bytes:
        """The posted image; a body still arriving after SLOW_AFTER_S counts as one of its client's
        slow uploads, past FACE_AGE_UPLOADS_PER_CLIENT of which it is cut with 503 (fast ones never count)."""
        reading = asyncio.ensure_future(image_bytes(request))
        done, _ = await asyncio.wait({reading}, timeout=SLOW_AFTER_S)
        if done:
            return reading.result()
        client = request.client.host if request.client else ""
        if self.slow[client] >= serving_limits().uploads_per_client:
            reading.cancel()
            raise HTTPException(
                503,
                "this client has as many slow uploads arriving at once as a replica takes from one "
                "(FACE_AGE_UPLOADS_PER_CLIENT); try again when they have arrived",
                headers={"Retry-After": "1"},
            )
        self.slow[client] += 1
        try:
            return await reading
        finally:
            self.slow[client] -= 1
            if not self.slow[client]:
                del self.slow[client]

    async def answer(self, data: bytes) -> Prediction:
        async with self.decoding:  # a replica's memory: DECODES_AT_ONCE x FACE_AGE_MAX_DECODED_BYTES at most
            image = await asyncio.to_thread(decode, data)  # off the event loop
        faces, problem = await asyncio.to_thread(self.faces.crops, image)
        if problem:
            raise HTTPException(422, problem)
        probs = await self.classify([face.crop for face in faces])
        return answer(faces, probs, self.predictor.classes, (image.shape[1], image.shape[0]))
