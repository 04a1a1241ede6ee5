"""The Ray Tune function trainable: a flat config dict in, `tune.report` out."""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

import torch
from ray import tune

from trainable.cache import TrunkCache
from trainable.config import TrialConfig
from trainable.data import FaceData
from trainable.trial import run_trial

STATE_FILE = "trial.pt"  # resumable state: TrainState, trainable weights, optimizer
MODEL_FILE = "model.pt"  # final checkpoint: the best model (trainable.model.load_trained)
METRICS_FILE = "metrics.json"  # final checkpoint: the trial's final metrics


def train_face_age(
    config: dict[str, Any], *, data: FaceData, cache_dir: str | None, threads: int
) -> None:
    """Run one trial. `data` comes from the object store via tune.with_parameters."""
    cfg = TrialConfig.from_dict(config)
    torch.set_num_threads(threads)
    resume = None
    if (checkpoint := tune.get_checkpoint()) is not None:
        with checkpoint.as_directory() as directory:
            resume = torch.load(os.path.join(directory, STATE_FILE), weights_only=True)
    run_trial(cfg, data, cache=TrunkCache(cache_dir), resume=resume, report=_report)


def _report(metrics: dict[str, Any], payload: dict[str, Any] | None) -> None:
    if payload is None:
        tune.report(metrics)
        return
    with tempfile.TemporaryDirectory() as directory:
        torch.save(
            {k: payload[k] for k in ("state", "weights", "optimizer")},
            os.path.join(directory, STATE_FILE),
        )
        if "model" in payload:
            torch.save(payload["model"], os.path.join(directory, MODEL_FILE))
            with open(os.path.join(directory, METRICS_FILE), "w") as f:
                json.dump(payload["metrics"], f, indent=1)
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))
