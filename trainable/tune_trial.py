"""The Ray Tune function trainable: a flat config dict in, `tune.report` out."""

from __future__ import annotations

import json
import os
import tempfile
import time
from typing import Any

import ray
import torch
from ray import tune

from trainable.cache import TrunkCache
from trainable.config import TrialConfig
from trainable.data import FaceData
from trainable.device import release_memory
from trainable.layout import METRICS_FILE, MODEL_FILE, STATE_FILE
from trainable.trial import run_trial

# Test hook: "EPOCH:DIR" makes each trial raise once, before reporting EPOCH
# (DIR records which trials already did), to test retries from checkpoints.
FAULT_ENV = "FACE_AGE_TEST_FAULT"
# Test hook: DIR makes the first checkpoint of each worker stall half-written (files
# saved, not yet reported) after leaving a marker in DIR, so a test can kill it there.
STALL_ENV = "FACE_AGE_TEST_STALL_CHECKPOINT"


def train_face_age(config: dict[str, Any], *, data: FaceData, cache_dir: str | None) -> None:
    """Run one trial. `data` comes from the object store via tune.with_parameters."""
    cfg = TrialConfig.from_dict(config)
    cpus = tune.get_context().get_trial_resources().required_resources.get("CPU", 1)
    torch.set_num_threads(max(1, round(cpus)))  # one thread per CPU Ray gave this trial
    resume = None
    if (checkpoint := tune.get_checkpoint()) is not None:
        with checkpoint.as_directory() as directory:
            resume = torch.load(os.path.join(directory, STATE_FILE), weights_only=True)
            if os.path.exists(model_file := os.path.join(directory, MODEL_FILE)):
                resume["model"] = torch.load(model_file, weights_only=True)

    def report(metrics: dict[str, Any], payload: dict[str, Any] | None) -> None:
        _inject_fault(cfg, metrics["epoch"])
        _report({**metrics, "node_id": ray.get_runtime_context().get_node_id()}, payload)

    try:
        run_trial(cfg, data, cache=TrunkCache(cache_dir), resume=resume, report=report)
    finally:
        release_memory()  # the worker is reused for the next trial (reuse_actors)


def _inject_fault(cfg: TrialConfig, epoch: int) -> None:
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    at, directory = spec.split(":", 1)
    marker = os.path.join(directory, f"{cfg.config_id}-seed{cfg.seed}")
    if epoch == int(at) and not os.path.exists(marker):
        open(marker, "w").close()
        raise RuntimeError(f"fault injected at epoch {epoch} by {FAULT_ENV}")


def _report(metrics: dict[str, Any], payload: dict[str, Any] | None) -> None:
    if payload is None:
        tune.report(metrics)
        return
    with tempfile.TemporaryDirectory() as directory:
        torch.save(
            {k: payload[k] for k in ("state", "weights", "optimizer") if k in payload},
            os.path.join(directory, STATE_FILE),
        )
        if "model" in payload:
            torch.save(payload["model"], os.path.join(directory, MODEL_FILE))
            with open(os.path.join(directory, METRICS_FILE), "w") as f:
                json.dump(payload["metrics"], f, indent=1)
        if stall_dir := os.environ.get(STALL_ENV):
            open(os.path.join(stall_dir, f"stalled-{os.getpid()}"), "w").close()
            time.sleep(600)
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))
