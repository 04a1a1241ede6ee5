"""Serve a study's best model over HTTP with Ray Serve.

    python -m study.serve RESULTS_DIR|model.pt [--no-detect | --all-faces] [--port 8000]
        [--replicas N] [--cpus-per-replica C] [--gpus-per-replica G] [--max-batch-size B]
    serve run study.serve:build model=RESULTS_DIR [detect=false] [max_batch_size=8]

    POST /predict   an image (its bytes as image/* or application/octet-stream, one file of a
                    multipart form, or JSON {"image_base64": ...}): each face's index, box and the age
                    groups' probabilities, framed as study.predict frames them
                    (trainable.serving.face_crops); {"detail": reason} with 400 for a body that is not
                    an image, 413 past the byte cap, 415 for another content type, 422 for an image
                    with no usable face
    GET  /healthz   {"status": "ok"} once the model is loaded
    GET  /          the model's metadata: classes, preprocessing, weights, the trial it came from
    GET  /docs      the API's pages (FastAPI); /openapi.json its schema, answers and errors included

The deployment is study.http_app's; SIGTERM stops the server as Ctrl-C does.

Requests are batched across clients (@serve.batch: up to --max-batch-size faces' requests,
waiting at most --batch-wait-ms for more); --max-batch-size 1 turns batching off.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import logging
import os
import signal
import sys
import time
from typing import TYPE_CHECKING, Any

from trainable.cli_options import prog
from trainable.data.limits import image_limits
from trainable.errors import UserError, parse_printable
from trainable.results.layout import model_file
from trainable.serving.request_limits import serving_limits

if TYPE_CHECKING:  # Ray Serve, torch and OpenCV load after the arguments are parsed
    from ray import serve


APP = "face-age"  # the model's Serve application
QUEUED_BATCHES = 8  # requests waiting for a replica, in batches per replica, before Serve answers 503


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
    path = checked_model(model, replicas, cpus, gpus, max_batch_size, batch_wait_ms)
    from study.http_app import AgeGroups

    # A replica holds one batch being classified and the next one filling: Ray Serve's own bound on the
    # requests it lets in must leave room for both, or a batch never fills (and Serve warns so). Past a
    # queue of QUEUED_BATCHES batches per replica, Serve answers 503 at once.
    options = {
        "num_replicas": replicas,
        "ray_actor_options": {"num_cpus": cpus, "num_gpus": gpus},
        "max_ongoing_requests": 2 * max_batch_size,
        "max_queued_requests": QUEUED_BATCHES * replicas * max_batch_size,
    }
    deployment = AgeGroups.options(**options)
    return deployment.bind(path, detect, all_faces, max_batch_size, batch_wait_ms / 1000)


def checked_model(
    model: str, replicas: int, cpus: float, gpus: float, max_batch_size: int, batch_wait_ms: float
) -> str:
    """The model file's absolute path, once the sizes are checked: before Ray, torch and OpenCV load."""
    if replicas < 1 or cpus <= 0 or gpus < 0 or max_batch_size < 1 or batch_wait_ms < 0:
        raise UserError(
            "--replicas and --max-batch-size must be >= 1, --cpus-per-replica > 0, "
            "--gpus-per-replica and --batch-wait-ms >= 0."
        )
    return os.path.abspath(model_file(model, "RESULTS_DIR|model.pt"))


def health_application() -> serve.Application:
    """GET /healthz as an application of its own (study.http_app.Health): it answers from Serve's
    state while the model's replicas are busy. `serve run study.serve:build` has the model's own."""
    from study.http_app import Health

    return Health.bind(APP)


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
    p = argparse.ArgumentParser(
        prog=prog("study.serve"),
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("model", metavar="RESULTS_DIR|model.pt", help="a study (its best/model.pt) or a model file")
    faces = p.add_mutually_exclusive_group()
    faces.add_argument("--no-detect", action="store_true", help="posted images are face crops already")
    faces.add_argument("--all-faces", action="store_true", help="every detected face, not only the largest")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (0.0.0.0: every one)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on")
    p.add_argument("--replicas", type=int, default=1, help="copies of the model, each its own process")
    p.add_argument("--cpus-per-replica", type=float, default=1.0, help="CPUs Ray reserves for each replica")
    p.add_argument("--gpus-per-replica", type=float, default=0.0, help="fractions share a GPU")
    p.add_argument("--max-batch-size", type=int, default=8, help="requests batched together (1: no batching)")
    p.add_argument("--batch-wait-ms", type=float, default=5.0, help="longest wait for a batch to fill")
    p.add_argument("--address", help="a running Ray cluster (auto or HOST:PORT); default: start one here")
    p.add_argument(
        "-v", "--verbose", action="store_true", help="Ray Serve's own log: its INFO lines, an access line per request"
    )
    return parse_printable(p, argv)


def serve_until_stopped(app: Any, args: argparse.Namespace) -> None:
    """Ray started (its own, unless --address or RAY_ADDRESS), the model's application at / and the
    health one at /healthz, served until Ctrl-C or SIGTERM stops them cleanly."""
    import ray
    from ray import serve

    # default: a Ray of its own here (as --help says), not a stale one a crashed run left recorded
    address = args.address or os.environ.get("RAY_ADDRESS") or "local"
    # Without -v the log is this command's lines alone: no replica's or proxy's output (their lines
    # carry colour codes), no INFO line or access line of Serve's, no warning of its shutdown.
    ray.init(address=address, include_dashboard=False, logging_level="ERROR", log_to_driver=args.verbose)
    logging.getLogger("ray.serve").setLevel(logging.INFO if args.verbose else logging.ERROR)
    logs = {"log_level": "INFO" if args.verbose else "WARNING", "enable_access_log": args.verbose}
    # A clean stop on SIGTERM (Kubernetes, systemd), as on Ctrl-C, from here on: ray.init set its own.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        serve.start(http_options={"host": args.host, "port": args.port}, logging_config=logs)
        serve.run(app, name=APP, route_prefix="/", logging_config=logs)
        health = health_application()  # answers beside uploads
        serve.run(health, name=f"{APP}-health", route_prefix="/healthz", logging_config=logs)
        where = f"http://{args.host}:{args.port}: POST /predict, GET /healthz, GET /; API at /docs"
        print(f"Serving {model_file(args.model, 'RESULTS_DIR|model.pt')} at {where}", flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        # Ray prints to stdout, from a thread, that the controller serve.shutdown() kills on purpose
        # "failed": left out unless -v, with Ray itself stopped before its listener prints again.
        with contextlib.nullcontext() if args.verbose else contextlib.redirect_stdout(io.StringIO()):
            serve.shutdown()
            ray.shutdown()
        print("Stopped.", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Before Ray loads (it reads this once): SIGTERM stops the server cleanly, with no stack dump.
    os.environ.setdefault("RAY_DISABLE_FAILURE_SIGNAL_HANDLER", "1")
    try:
        if any(importlib.util.find_spec(m) is None for m in ("fastapi", "multipart", "requests")):
            raise UserError("study.serve needs the serve extra: pip install -e '.[serve]'.")
        image_limits(), serving_limits()  # FACE_AGE_* checked here, not first in a replica
        checked_model(  # before Ray, torch and OpenCV load
            args.model,
            args.replicas,
            args.cpus_per_replica,
            args.gpus_per_replica,
            args.max_batch_size,
            args.batch_wait_ms,
        )
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
    serve_until_stopped(app, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
