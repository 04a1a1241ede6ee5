"""A study's trials as a Ray Tune search space, so Tune itself knows every hyperparameter
(its status table, `ResultGrid.get_dataframe()`'s config/ columns, TensorBoard's HParams).

The expanded trial configs (study.grids.expand) become `tune.grid_search` over the
experiment numbers and over the seeds; every key that differs between experiments is a
`tune.sample_from` looking its value up by experiment; keys equal in every trial are
constants. Experiments that run the full network come first in the grid, so at each
seed they start before the short cached ones.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from trainable.config import TrialConfig
from trainable.results.layout import SEARCH_ID


@dataclass(frozen=True)
class ByExperiment:
    """sample_from's function: the value of `key` for the trial's experiment."""

    key: str
    values: dict[int, Any]

    def __call__(self, config: dict[str, Any]) -> Any:
        return self.values[config["experiment"]]


def param_space(configs: list[TrialConfig]) -> dict[str, Any]:
    """The Tune param_space whose grid is exactly `configs` (experiments x seeds): Tune's
    config, a flat dict, is where a TrialConfig becomes one (trainable.tune_trial reads it)."""
    from ray import tune  # here, not at the top: the CLI parses its arguments before Ray loads

    experiments: dict[int, dict[str, Any]] = {}
    for config in sorted(configs, key=lambda c: c.uses_cache):  # full network first
        experiments.setdefault(config.experiment, {k: v for k, v in config.to_dict().items() if k != "seed"})
    seeds = sorted({config.seed for config in configs})
    if len(experiments) * len(seeds) != len(configs):
        raise ValueError("the trial configs are not a grid of experiments x seeds")
    space: dict[str, Any] = {"experiment": tune.grid_search(list(experiments)), "seed": tune.grid_search(seeds)}
    first = next(iter(experiments.values()))
    for key in first:
        if key == "experiment":
            continue
        values = {number: settings[key] for number, settings in experiments.items()}
        varies = len({repr(v) for v in values.values()}) > 1
        space[key] = tune.sample_from(ByExperiment(key, values)) if varies else first[key]
    return space


def trials_of(space: dict[str, Any]) -> list[dict[str, Any]]:
    """The trial configs Tune generates from `space`, in the order it starts them."""
    from ray.tune.search.variant_generator import generate_variants

    return [config for _, config in generate_variants(space)]


def name_width(experiments: Iterable[int]) -> int:
    """Digits of the largest experiment number, at least 2: names sort in experiment order."""
    return max(2, len(str(max(experiments))))


def trial_name(config: dict[str, Any], width: int = 2) -> str:
    """What a trial is, e.g. 'e04-no-freezing-s1' or 'e055-adam-lr0.01-b8-freeze-block8-aug-none-s0'."""
    slug = re.sub(r"[^a-z0-9.]+", "-", str(config["name"]).lower()).strip("-")
    return f"e{config['experiment']:0{width}d}-{slug}-s{config['seed']}"


def search_number(trial: Any) -> int:
    """A searched trial's number from 1, in the order the search algorithm made it: Tune's
    counter heads its experiment tag ('7_lr=...'; Ray's BasicVariantGenerator counts from 0
    and ends its trial ids with the same number, its SearchGenerator from 1), kept with the
    searcher's state when a study resumes. (The name creator itself is copied per trial, so
    it cannot count.)"""
    from study.tuning.ray_internals import search_counter

    counter = search_counter(trial)
    return counter + 1 if trial.trial_id.endswith(f"{counter:05d}") else counter


def search_trial_name(index: int, config: dict[str, Any], searched: list[str]) -> str:
    """A searched trial: its number and values, e.g. 't007-lr0.00032-sgd-m0.9-b16-none'."""
    values = [f"{config[k]:.2g}" if isinstance(config[k], float) else str(config[k]) for k in searched]
    short = {"lr": "lr", "batch_size": "b", "dropout": "dr", "weight_decay": "wd"}
    parts = [short.get(k, "") + v for k, v in zip(searched, values, strict=True)]
    return re.sub(r"[^A-Za-z0-9.]+", "-", f"t{index:03d}-" + "-".join(parts)).strip("-")


@dataclass(frozen=True)
class TrialNames:
    """Tune's trial_name_creator and trial_dirname_creator. A grid trial: trial_name, its
    experiment's name looked up in `names` (Tune names a trial before it resolves its
    sample_from values), numbers padded to at least 2 digits. A searched trial (config_id
    SEARCH_ID): search_trial_name of its `searched` values, numbered by search_number."""

    names: tuple[tuple[int, str], ...] = ()
    searched: tuple[str, ...] = ()

    @classmethod
    def of(cls, configs: list[TrialConfig]) -> TrialNames:
        return cls(tuple(sorted({(c.experiment, c.name) for c in configs})))

    def __call__(self, trial: Any) -> str:
        if trial.config.get("config_id") == SEARCH_ID:
            return search_trial_name(search_number(trial), trial.config, list(self.searched))
        names = dict(self.names)
        config = {**trial.config, "name": names[trial.config["experiment"]]}
        return trial_name(config, name_width(names))
