"""Named grids are data: each experiment is a dict of settings that differ from
experiment 1 of the original study."""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass
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

Experiment = tuple[int, str, dict[str, Any]]  # (number, name, settings that differ from #1)


@dataclass(frozen=True)
class Grid:
    experiments: list[Experiment]
    scheduler: str = "none"  # default --scheduler
    description: str = ""


PAPER = [
    (1, "baseline", {}),
    (2, "small batch", {"batch_size": 8}),
    (3, "no augmentation", {"augmentation": "none"}),
    (4, "no freezing", {"freeze": "none"}),
    (5, "Adam lr 1e-3", {"lr": 1e-3}),
    (6, "SGD lr 1e-5", {"optimizer": "sgd", "lr": 1e-5}),
    (7, "SGD lr 1e-4", {"optimizer": "sgd", "lr": 1e-4}),
]

# The axes the original varied one at a time, crossed.
EXTENDED_AXES: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "optimizer": [
        ("adam", {"optimizer": "adam"}),
        ("sgd", {"optimizer": "sgd"}),
        ("sgd-m0.9", {"optimizer": "sgd", "momentum": 0.9}),
    ],
    "lr": [(f"lr{lr:g}", {"lr": lr}) for lr in (1e-5, 1e-4, 1e-3, 1e-2)],
    "batch_size": [(f"b{b}", {"batch_size": b}) for b in (8, 32)],
    "freeze": [(f"freeze-{f}", {"freeze": f}) for f in ("block8", "repeat_3", "none")],
    "augmentation": [(f"aug-{a}", {"augmentation": a}) for a in ("none", "static", "online")],
}


def cross(axes: dict[str, list[tuple[str, dict[str, Any]]]]) -> list[Experiment]:
    experiments = []
    for number, choice in enumerate(itertools.product(*axes.values()), start=1):
        name = " ".join(label for label, _ in choice)
        settings = {k: v for _, part in choice for k, v in part.items()}
        experiments.append((number, name, settings))
    return experiments


# Random weights, so it runs offline: the cached path and the full network
# with fresh augmentation every epoch.
SMOKE = [
    (1, "smoke cached", {"weights": "none", "lr": 1e-3, "batch_size": 8, "max_epochs": 12}),
    (2, "smoke online", {"weights": "none", "augmentation": "online", "lr": 1e-3, "batch_size": 8, "max_epochs": 4}),
]

GRIDS: dict[str, Grid] = {
    "paper": Grid(PAPER, "none", "the seven experiments of the 2021 report"),
    "extended": Grid(cross(EXTENDED_AXES), "asha", "optimizer x lr x batch x freeze x augmentation"),
    "smoke": Grid(SMOKE, "none", "two tiny trials on generated images, random weights"),
}


def reference_config(overrides: dict[str, Any]) -> dict[str, Any]:
    """Experiment 1 of the 2021 report under this study's overrides (weights, epochs, ...),
    whole and resolved: what every configuration's "differs from #1" is measured against."""
    return TrialConfig.from_dict({"experiment": 1, "name": "baseline", **BASELINE, **overrides}).to_dict()


def get_grid(name: str) -> Grid:
    if name not in GRIDS:
        raise UserError(f"Unknown grid {name!r}; valid grids are {sorted(GRIDS)}.")
    return GRIDS[name]


def config_id(settings: dict[str, Any]) -> str:
    """A short id shared by every seed of one configuration."""
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def parse_where(items: list[str]) -> dict[str, Any]:
    """['freeze=block8', 'lr=1e-3'] -> {'freeze': 'block8', 'lr': 0.001}, typed like TrialConfig."""
    fields = TrialConfig().to_dict()
    where = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or key not in fields:
            raise UserError(f"--where {item!r}: expected KEY=VALUE with KEY one of {sorted(fields)}.")
        try:
            where[key] = type(fields[key])(text)
        except ValueError:
            raise UserError(f"--where {item!r}: {text!r} is not a valid {key}.") from None
    return where


def expand(
    grid: str, *, seeds: int, overrides: dict[str, Any], where: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """Flat, validated, complete trial configs: every experiment of `grid` x seeds 0..seeds-1.

    `overrides` (weights, max_epochs, ...) apply to every trial, over the grid's
    own settings; `where` keeps only the trials whose config matches it on every key.
    """
    experiments = get_grid(grid).experiments
    if seeds < 1:
        raise UserError(f"--seeds must be at least 1, got {seeds}.")
    where = where or {}
    configs = []
    for number, name, changes in experiments:
        settings = {**BASELINE, **changes, **overrides}
        cid = f"{grid}-{number}-{config_id(settings)}"
        for seed in range(seeds):
            config = {"experiment": number, "name": name, "config_id": cid, "seed": seed, **settings}
            # Validated before Ray starts (naming a bad key), and whole: every key, resolved.
            config = TrialConfig.from_dict(config).to_dict()
            if all(config[k] == v for k, v in where.items()):  # any key: experiment, seed, lr, ...
                configs.append(config)
    if not configs:
        raise UserError(f"No experiment of grid {grid!r} matches --where {where}.")
    return configs
