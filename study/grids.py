"""Named grids are data: each is a list of experiments, each a dict of settings
that differ from experiment 1 of the original study."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from trainable.config import TrialConfig
from trainable.errors import UserError

# Experiment 1 of the 2021 report: freeze before block8, batch 32, static
# augmentation, Adam lr 1e-4, at most 400 epochs.
BASELINE: dict[str, Any] = {
    "freeze": "block8",
    "batch_size": 32,
    "augmentation": "static",
    "optimizer": "adam",
    "lr": 1e-4,
    "momentum": 0.0,
}

# (number, name, settings that differ from experiment 1)
PAPER = [
    (1, "baseline", {}),
    (2, "small batch", {"batch_size": 8}),
    (3, "no augmentation", {"augmentation": "none"}),
    (4, "no freezing", {"freeze": "none"}),
    (5, "Adam lr 1e-3", {"lr": 1e-3}),
    (6, "SGD lr 1e-5", {"optimizer": "sgd", "lr": 1e-5}),
    (7, "SGD lr 1e-4", {"optimizer": "sgd", "lr": 1e-4}),
]

# Two tiny trials for a first run and the end-to-end test: the cached path and
# the full network with fresh augmentation every epoch.
# Random weights, so it runs offline.
SMOKE = [
    (1, "smoke cached", {"weights": "none", "lr": 1e-3, "batch_size": 8, "max_epochs": 12}),
    (2, "smoke online", {"weights": "none", "augmentation": "online", "lr": 1e-3, "batch_size": 8, "max_epochs": 4}),
]

GRIDS: dict[str, list[tuple[int, str, dict[str, Any]]]] = {"paper": PAPER, "smoke": SMOKE}


def config_id(settings: dict[str, Any]) -> str:
    """A short id shared by every seed of one configuration."""
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def expand(grid: str, *, seeds: int, overrides: dict[str, Any]) -> list[dict[str, Any]]:
    """Flat, validated trial configs: every experiment of `grid` x seeds 0..seeds-1.

    `overrides` (weights, max_epochs, ...) apply to every trial, over the grid's
    own settings.
    """
    if grid not in GRIDS:
        raise UserError(f"Unknown grid {grid!r}; valid grids are {sorted(GRIDS)}.")
    if seeds < 1:
        raise UserError(f"--seeds must be at least 1, got {seeds}.")
    configs = []
    for number, name, changes in GRIDS[grid]:
        settings = {**BASELINE, **changes, **overrides}
        cid = f"{grid}-{number}-{config_id(settings)}"
        for seed in range(seeds):
            config = {"experiment": number, "name": name, "config_id": cid, "seed": seed, **settings}
            TrialConfig.from_dict(config)  # fail before Ray starts, naming the bad key
            configs.append(config)
    return configs
