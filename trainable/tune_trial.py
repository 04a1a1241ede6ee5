"""The Ray Tune function trainable: a flat config dict in, `tune.report` out."""

from __future__ import annotations

import os
import tempfile
import time
from typing import Any

import ray
import torch
from ray import tune

from trainable.cache import TrunkCache
from trainable.config import TrialConfig, expand_choices
from trainable.data.dataset import FaceData
from trainable.device import release_memory
from trainable.results.atomic_io import write_json
from trainable.results.layout import METRICS_FILE, MODEL_FILE, STATE_FILE
from trainable.results.records import reported
from trainable.trial import run_trial


def train_face_age(
    config: dict[str, Any], *, data: FaceData, cache_dir: str | None, expansions: dict | None = None
) -> None:
    """Run one trial. `data` comes from the object store via tune.with_parameters; a searched
    config's choice labels become their settings (`expansions`, trainable.config.expand_choices)."""
    cfg = TrialConfig.from_dict(expand_choices(config, expansions or {}))
    cpus = tune.get_context().get_trial_resources().required_resources.get("CPU", 1)
    torch.set_num_threads(max(1, round(cpus)))  # one thread per CPU Ray gave this trial
    resume = None
    if (checkpoint := tune.get_checkpoint()) is not None:
        with checkpoint.as_directory() as directory:
            resume = torch.load(os.path.join(directory, STATE_FILE), weights_only=True)
            if os.path.exists(model_file := os.path.join(directory, MODEL_FILE)):
                resume["model"] = torch.load(model_file, weights_only=True)

    def report(metrics: dict[str, Any], payload: dict[str, Any] | None) -> None:
        # reported_at: Ray's own timestamp is in whole seconds; epochs of short trials share one
        _report(
            {**metrics, reported.node_id: ray.get_runtime_context().get_node_id(), reported.reported_at: time.time()},
            payload,
        )

    try:
        run_trial(cfg, data, cache=TrunkCache(cache_dir), resume=resume, report=report)
    finally:
        release_memory()  # the worker is reused for the next trial (reuse_actors)


def _report(metrics: dict[str, Any], payload: dict[str, Any] | None) -> None:
    if payload is None:
        tune.report(metrics)
        return
    with tempfile.TemporaryDirectory() as directory:
        torch.save(
            {k: payload[k] for k in ("state", "weights", "optimizer", "scaler") if k in payload},
            os.path.join(directory, STATE_FILE),
        )
        if "model" in payload:
            torch.save(payload["model"], os.path.join(directory, MODEL_FILE))
            write_json(os.path.join(directory, METRICS_FILE), payload["metrics"], indent=1)
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))
