"""The served model under load (python -m study.bench --serve): study.serve's deployment on a
local Ray, one replica, loopback only; el7008 face crops posted by K concurrent clients
(K = 1, 8, 32), with batching (@serve.batch, up to 8 requests) and without (batch of 1).
Each cell is bounded in requests and in time; every reply is counted, and one that is not
200 is an error in the table, not dropped. The model has random weights (its speed is the
trained model's: the same network)."""

from __future__ import annotations

import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

CONCURRENCY = (1, 8, 32)
BATCHES = {"no batching": 1, "batching (8)": 8}


def crops(data_root: str, n: int = 32) -> list[bytes]:
    """n el7008 images as JPEG bytes (every class), posted as face crops (--no-detect)."""
    names = sorted(os.path.join(d, f) for d, _, files in os.walk(data_root) for f in files if f.endswith(".jpg"))
    if not names:
        raise SystemExit(f"--serve: no .jpg images under {data_root} (give --data)")
    step = max(1, len(names) // n)
    out = []
    for path in names[::step][:n]:
        with open(path, "rb") as f:
            out.append(f.read())
    return out


def load(url: str, bodies: list[bytes], concurrency: int, requests_n: int, seconds: float) -> dict[str, Any]:
    """`requests_n` POSTs (at most `seconds` of them) by `concurrency` clients: throughput and
    latency percentiles of the answered ones, and how many were not 200."""
    import requests

    deadline = time.perf_counter() + seconds
    sessions = [requests.Session() for _ in range(concurrency)]

    def one(i: int) -> tuple[float, int]:
        if time.perf_counter() > deadline:
            return float("nan"), 0
        start = time.perf_counter()
        reply = sessions[i % concurrency].post(url, data=bodies[i % len(bodies)], timeout=120)
        return time.perf_counter() - start, reply.status_code

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        done = list(pool.map(one, range(requests_n)))
    wall = time.perf_counter() - start
    latencies = np.array([t for t, status in done if status == 200]) * 1000
    sent = sum(status != 0 for _, status in done)
    return {
        "concurrency": concurrency,
        "sent": sent,
        "answered_200": len(latencies),
        "errors": sent - len(latencies),
        "rps": len(latencies) / wall,
        **{f"p{q}_ms": float(np.percentile(latencies, q)) if len(latencies) else float("nan") for q in (50, 95, 99)},
    }


def serve_load(data_root: str, requests_n: int = 192, seconds: float = 60.0) -> list[dict[str, Any]]:
    """Every (batching, concurrency) cell on one fresh deployment per batching mode."""
    import ray
    from ray import serve

    from study.serve import application
    from trainable.model import random_model_file

    bodies = crops(data_root)
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        model = random_model_file(os.path.join(scratch, "model.pt"))
        ray.init(include_dashboard=False, logging_level="ERROR", log_to_driver=False)
        port = 8000 + os.getpid() % 1000
        serve.start(http_options={"host": "127.0.0.1", "port": port}, logging_config={"log_level": "WARNING"})
        try:
            for label, batch in BATCHES.items():
                app = application(model, detect=False, max_batch_size=batch, batch_wait_ms=5)
                serve.run(app, name="bench", route_prefix="/")
                url = f"http://127.0.0.1:{port}/predict"
                load(url, bodies, 1, 8, seconds)  # warm-up: the replica's first forward passes
                for concurrency in CONCURRENCY:
                    rows.append({"mode": label, **load(url, bodies, concurrency, requests_n, seconds)})
                    print(f"{label}, {concurrency} client(s): {rows[-1]}", flush=True)
        finally:
            serve.shutdown()
            ray.shutdown()
    return rows


def serve_table(rows: list[dict[str, Any]]) -> str:
    columns = ["mode", "concurrency", "sent", "answered_200", "errors", "rps", "p50_ms", "p95_ms", "p99_ms"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append(
            "| " + " | ".join(f"{row[c]:.1f}" if isinstance(row[c], float) else str(row[c]) for c in columns) + " |"
        )
    return "\n".join(lines)
