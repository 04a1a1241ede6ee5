"""Grids are data: files (study/grid_files/*.yaml, or any --grid FILE.yaml/.json) whose
experiments are dicts of settings that differ from experiment 1 of the original study."""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import re
import typing
from dataclasses import dataclass
from typing import Any

import yaml

from trainable.config import IDENTITY_KEYS, TrialConfig
from trainable.errors import UserError, did_you_mean

# Experiment 1 of the 2021 report: freeze before block8, batch 32, static
# augmentation, Adam lr 1e-4, at most 400 epochs.
# Experiment 1 of the 2021 report in the settings its seven experiments vary; the values are
# TrialConfig's defaults (the one source of experiment 1).
PAPER_KEYS = ("freeze", "batch_size", "augmentation", "optimizer", "lr", "momentum")
BASELINE: dict[str, Any] = {key: getattr(TrialConfig(), key) for key in PAPER_KEYS}

Experiment = tuple[int, str, dict[str, Any]]  # (number, name, settings that differ from #1)


@dataclass(frozen=True)
class Range:
    """A searched setting: loguniform/uniform over [low, high], or a choice of values (each
    (label, settings): a label stands for the settings it sets, see Grid.expansions)."""

    kind: str
    low: float = 0.0
    high: float = 0.0
    values: tuple[tuple[str, dict[str, Any]], ...] = ()


@dataclass(frozen=True)
class Grid:
    experiments: list[Experiment]
    scheduler: str = "none"  # default --scheduler
    description: str = ""
    text: str = ""  # the file it was read from, recorded in study.json
    fixed: dict[str, Any] | None = None  # settings every trial has (search spaces)
    ranges: dict[str, Range] | None = None  # searched settings: --search random | optuna
    study: dict[str, Any] | None = None  # the file's study options (STUDY_KEYS), below the command line's

    @property
    def expansions(self) -> dict[str, dict[str, dict[str, Any]]]:
        """key -> label -> the settings a choice's label stands for, where a label is not
        the value itself (e.g. optimizer 'sgd-m0.9' -> optimizer sgd, momentum 0.9)."""
        out: dict[str, dict[str, dict[str, Any]]] = {}
        for key, r in (self.ranges or {}).items():
            for label, settings in r.values:
                if settings != {key: label}:
                    out.setdefault(key, {})[label] = settings
        return out


GRID_FILES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "grid_files")
# The study options a grid file may hold too (the command line overrides them): one file, one study.
STUDY_KEYS = (
    "search",
    "num_samples",
    "max_concurrent",
    "select",
    "seeds",
    "first_seed",
    "confirm_top",
    "confirm_seeds",
    "grace_period",
    "budget_epochs",
)
RESERVED = ("description", "scheduler", "experiments", *STUDY_KEYS)
RANGE_KINDS = ("loguniform", "uniform", "choice")
SEARCHES = ("grid", "random", "optuna")  # --search: every trial of a grid, or samples of a space of ranges
SCHEDULERS = ("none", "asha")
# How a value of an axis appears in experiment names: lr 1e-05 -> 'lr1e-05', batch 8 -> 'b8'.
LABELS = {"optimizer": "{}", "lr": "lr{:g}", "batch_size": "b{}", "freeze": "freeze-{}", "augmentation": "aug-{}"}


MAX_GRID_BYTES = 256 * 1024  # the largest grid file read (the extended grid's is 1 KB)
MAX_EXPERIMENTS = 10_000  # the most a grid file's lists may cross to (extended: 216); beyond, search it
MAX_TRIALS = 5_000  # --max-trials' default: the most trials a grid study expands to


class GridLoader(yaml.SafeLoader):
    """YAML without aliases (`*name`): a few hundred bytes of nested aliases expand to
    gigabytes ("billion laughs"), and a grid file has no need of them."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise yaml.composer.ComposerError(None, None, "aliases (*name) are not allowed in a grid file", mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node: Any, deep: bool = False) -> dict:
        """A mapping whose keys are each set once: a key set twice is refused with both lines."""
        lines: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, typing.Hashable) and key in lines:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"{key!r} is set twice, on line {lines[key]} and line {key_node.start_mark.line + 1}; keep one",
                    key_node.start_mark,
                )
            lines[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)


def json_object(path: str, text: str):
    """json.loads' object_pairs_hook: an object whose keys are each set once."""

    def pairs_to_dict(pairs: list[tuple[str, Any]]) -> dict:
        keys = [k for k, _ in pairs]
        twice = next((k for k in keys if keys.count(k) > 1), None)
        if twice is not None:
            lines = [
                text.count("\n", 0, m.start()) + 1 for m in re.finditer(re.escape(json.dumps(twice)) + r"\s*:", text)
            ]
            raise UserError(f"--grid {path}: {twice!r} is set twice (lines {', '.join(map(str, lines))}); keep one.")
        return dict(pairs)

    return pairs_to_dict


def grid_text(path: str) -> str:
    """A grid file's text: UTF-8 and at most MAX_GRID_BYTES characters, read no further."""
    try:
        with open(path) as f:
            text = f.read(MAX_GRID_BYTES + 1)
    except OSError as err:
        raise UserError(f"--grid {path}: cannot be read ({err.strerror}).") from None
    except UnicodeDecodeError:
        raise UserError(f"--grid {path}: not UTF-8 text.") from None
    if len(text) > MAX_GRID_BYTES:
        raise UserError(f"--grid {path}: over {MAX_GRID_BYTES:,} characters; a grid file is a few lines of settings.")
    return text


def read_grid(path: str) -> Grid:
    """A grid file (.yaml/.yml/.json): optional `description`, `scheduler` (none | asha) and
    `experiments` (a list of mappings, each a `name` and the settings it changes); every
    other key is a trial setting: a value fixes it for every trial, a list grids over its
    values (a mapping in the list is one value that sets several keys, named by `label`).
    Lists are crossed with each other and with the experiments. Settings start from
    experiment 1 of the 2021 report (BASELINE)."""
    text = grid_text(path)
    spec = parsed(path, text)
    fields = TrialConfig().to_dict()
    unknown = sorted(k for k in spec if k not in fields and k not in RESERVED)
    if unknown:
        raise UserError(
            f"--grid {path}: {', '.join(map(repr, unknown))} is not a trial setting{did_you_mean(unknown[0], fields)}; "
            "expected a trial setting "
            f"({', '.join(sorted(k for k in fields if k not in IDENTITY_KEYS))}), a study option "
            f"({', '.join(STUDY_KEYS)}) or {', '.join(RESERVED[:3])}."
        )
    scheduler = spec.get("scheduler", "none")
    if scheduler not in SCHEDULERS:
        raise UserError(f"--grid {path}: scheduler is {scheduler!r}; expected one of {list(SCHEDULERS)}.")
    study = {k: spec[k] for k in STUDY_KEYS if k in spec}
    ranges = {k: as_range(path, k, v) for k, v in spec.items() if k not in RESERVED and isinstance(v, dict)}
    fixed = {k: typed(path, k, v) for k, v in spec.items() if k not in RESERVED and not isinstance(v, list | dict)}
    axes = [axis(path, k, v) for k, v in spec.items() if k not in RESERVED and isinstance(v, list)]
    if ranges:
        if axes or "experiments" in spec:
            raise UserError(
                f"--grid {path}: a search space ({', '.join(ranges)} are ranges) cannot also have lists or "
                "experiments; write a list as {choice: [...]}."
            )
        return Grid([], scheduler, str(spec.get("description", "")), text, fixed, ranges, study)
    experiments = crossed(path, spec.get("experiments", [{"name": ""}]), fixed, axes)
    return Grid(experiments, scheduler, str(spec.get("description", "")), text, study=study)


def parsed(path: str, text: str) -> dict:
    """A grid file's text as a mapping (JSON or YAML, duplicate keys refused), each error naming the file."""
    try:
        if path.endswith(".json"):
            spec = json.loads(text, object_pairs_hook=json_object(path, text))
        else:
            spec = yaml.load(text, Loader=GridLoader)
    except json.JSONDecodeError as err:
        raise UserError(f"--grid {path} is not valid JSON: line {err.lineno}, column {err.colno}: {err.msg}.") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise UserError(f"--grid {path} is not valid YAML: {where}{getattr(err, 'problem', err)}.") from None
    except RecursionError:
        raise UserError(f"--grid {path}: nested too deeply to read (a grid file is a few levels deep).") from None
    if not isinstance(spec, dict):
        raise UserError(f"--grid {path}: expected a mapping of settings at the top, got {type(spec).__name__}.")
    return spec


def crossed(path: str, named: Any, fixed: dict[str, Any], axes: list) -> list[tuple[int, str, dict[str, Any]]]:
    """The `experiments` crossed with the lists (`axes`), each (number, name, settings) and its
    settings checked as a TrialConfig now, naming the file; refused past MAX_EXPERIMENTS."""
    if not isinstance(named, list) or not named or not all(isinstance(e, dict) for e in named):
        raise UserError(f"--grid {path}: 'experiments' must be a non-empty list of mappings (name: and settings).")
    count = len(named) * math.prod(len(a) for a in axes)  # counted, not expanded
    if count > MAX_EXPERIMENTS:
        raise UserError(
            f"--grid {path}: its lists cross to {count:,} experiments, over {MAX_EXPERIMENTS:,}; a space that large "
            "is searched, not gridded: write each list as {choice: [...]} and run --search random or optuna."
        )
    experiments = []
    for number, choice in enumerate(itertools.product([experiment(path, e) for e in named], *axes), start=1):
        name = " ".join(label for label, _ in choice if label) or f"experiment {number}"
        settings = {**fixed, **{k: v for _, part in choice for k, v in part.items()}}
        try:
            TrialConfig.from_dict({**BASELINE, **settings})
        except UserError as err:
            raise UserError(f"--grid {path}, experiment {number} ({name}): {err}") from None
        experiments.append((number, name, settings))
    return experiments


def typed(path: str, key: str, value: Any, source: str | None = None) -> Any:
    """A setting's value as TrialConfig types it (YAML reads 1e-3 without a dot as text);
    errors name `source` (default: --grid PATH)."""
    source = source or f"--grid {path}"
    fields = TrialConfig().to_dict()
    if key not in fields or key in IDENTITY_KEYS:
        valid = sorted(k for k in fields if k not in IDENTITY_KEYS)
        raise UserError(
            f"{source}: {key!r} is not a setting a grid can change{did_you_mean(key, valid)}; the settings are "
            f"{', '.join(valid)}."
        )
    kind = type(fields[key])
    if kind is float and isinstance(value, str | int | float) and not isinstance(value, bool):
        try:
            value = float(value)
        except ValueError:
            pass
        else:
            if not math.isfinite(value):
                raise UserError(f"{source}: {key!r} must be a finite number, got {value!r}.")
            return value
    if not isinstance(value, kind) or isinstance(value, bool):
        plural = "" if source.startswith("--set") else " (or a list of them)"
        raise UserError(f"{source}: {key!r} must be {kind.__name__}{plural}, got {value!r}.")
    return value


def parse_settings(items: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """--set ['dropout=0.3', 'class_weights=balanced'] -> {'dropout': 0.3, ...}: each value read
    as YAML (as a grid file would), typed like TrialConfig and checked with the others."""
    settings: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise UserError(f"--set {item!r}: expected KEY=VALUE, e.g. --set dropout=0.3.")
        try:
            value = yaml.load(text, Loader=GridLoader) if text else ""
        except (yaml.YAMLError, RecursionError):
            value = text
        settings[key] = typed("", key, text if value is None else value, source=f"--set {item}")
    try:
        TrialConfig.from_dict({**BASELINE, **settings})
    except UserError as err:
        raise UserError(f"--set {' '.join(items)}: {err}") from None
    return settings


def axis(path: str, key: str, values: list) -> list[tuple[str, dict[str, Any]]]:
    """A list in a grid file -> (label, settings) per value."""
    if not values:
        raise UserError(f"--grid {path}: {key!r} is an empty list; give at least one value.")
    out = []
    for value in values:
        if isinstance(value, dict):
            settings = {k: typed(path, k, v) for k, v in value.items() if k != "label"}
            out.append((str(value.get("label", "-".join(map(str, settings.values())))), settings))
        else:
            value = typed(path, key, value)
            out.append((LABELS.get(key, key + "={}").format(value), {key: value}))
    return out


def as_range(path: str, key: str, spec: dict[str, Any]) -> Range:
    """{loguniform: [low, high]}, {uniform: [low, high]} or {choice: [values]} -> Range."""
    if len(spec) != 1 or next(iter(spec)) not in RANGE_KINDS:
        raise UserError(
            f"--grid {path}: {key!r} is {spec!r}; a range is one of "
            + ", ".join(f"{{{kind}: [...]}}" for kind in RANGE_KINDS)
            + "."
        )
    kind, bounds = next(iter(spec.items()))
    if kind == "choice":  # a plain value stands for itself; a mapping for its settings, by its label
        values = bounds if isinstance(bounds, list) else [bounds]
        labelled = axis(path, key, values)
        return Range(
            kind,
            values=tuple(
                (label, settings) if isinstance(value, dict) else (settings[key], settings)
                for value, (label, settings) in zip(values, labelled, strict=True)
            ),
        )
    if not (isinstance(bounds, list) and len(bounds) == 2):
        raise UserError(f"--grid {path}: {key!r}: {kind} needs [low, high], got {bounds!r}.")
    low, high = (typed(path, key, float(b) if isinstance(b, str) else b) for b in bounds)
    if not isinstance(low, float) or not low < high or (kind == "loguniform" and low <= 0):
        raise UserError(
            f"--grid {path}: {key!r}: {kind} needs numbers low < high"
            + (" and low > 0" if kind == "loguniform" else "")
            + f", got {bounds!r}."
        )
    return Range(kind, low, high)


def experiment(path: str, spec: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """One entry of `experiments` -> (its name, its settings)."""
    return str(spec.get("name", "")), {k: typed(path, k, v) for k, v in spec.items() if k != "name"}


GRIDS: dict[str, Grid] = {
    name.rsplit(".", 1)[0]: read_grid(os.path.join(GRID_FILES, name)) for name in sorted(os.listdir(GRID_FILES))
}


def reference_config(overrides: dict[str, Any]) -> TrialConfig:
    """Experiment 1 of the 2021 report under this study's overrides (weights, epochs, ...),
    whole and resolved: what every configuration's "differs from #1" is measured against."""
    return TrialConfig.from_dict({"experiment": 1, "name": "baseline", **BASELINE, **overrides})


def grid_label(grid: str) -> str:
    """'paper', or a grid file's name without folder and extension."""
    return os.path.splitext(os.path.basename(grid))[0] if is_grid_file(grid) else grid


def is_grid_file(grid: str) -> bool:
    return grid.endswith((".yaml", ".yml", ".json"))


def get_grid(name: str) -> Grid:
    """A named grid (study/grid_files/NAME.yaml), or a grid file's path."""
    if is_grid_file(name):
        return read_grid(name)
    if name not in GRIDS:
        raise UserError(
            f"Unknown grid {name!r}{did_you_mean(name, GRIDS)}; valid grids are {sorted(GRIDS)}, or a .yaml/.json "
            "grid file."
        )
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
            what = f"{key!r} is not a trial setting{did_you_mean(key, fields)}" if sep else "expected KEY=VALUE"
            raise UserError(f"--where {item!r}: {what}; the settings are {', '.join(sorted(fields))}.")
        try:
            where[key] = type(fields[key])(text)
        except ValueError:
            raise UserError(f"--where {item!r}: {text!r} is not a valid {key}.") from None
    return where


def expand(
    grid: str,
    *,
    seeds: int,
    overrides: dict[str, Any],
    where: dict[str, Any] | None = None,
    first_seed: int = 0,
    settings: dict[str, Any] | None = None,
    max_trials: int = MAX_TRIALS,
) -> list[TrialConfig]:
    """Validated, complete trial configs: every experiment of `grid` x `seeds` seeds
    from `first_seed`; refused once more than `max_trials` match (--max-trials), before
    any more are built.

    `settings` (--set) change every experiment as the grid file's own top-level values
    would; `overrides` (weights, max_epochs, ...) apply to every trial over both; `where`
    keeps only the trials whose config matches it on every key.
    """
    experiments = get_grid(grid).experiments
    if seeds < 1:
        raise UserError(f"--seeds must be at least 1, got {seeds}.")
    where = where or {}
    configs, values = [], {key: set() for key in where}  # what the grid's trials hold, for a --where that matches none
    for number, name, changes in experiments:
        merged = {**BASELINE, **changes, **(settings or {}), **overrides}
        cid = f"{grid_label(grid)}-{number}-{config_id(merged)}"
        for seed in range(first_seed, first_seed + seeds):
            # Validated before Ray starts (naming a bad key), and whole: every key, resolved.
            identity = {"experiment": number, "name": name, "config_id": cid, "seed": seed}
            config = TrialConfig.from_dict({**identity, **merged})
            for key in where:
                values[key].add(getattr(config, key))
            if all(getattr(config, k) == v for k, v in where.items()):  # any key: experiment, seed, lr, ...
                configs.append(config)
            if len(configs) > max_trials:
                raise UserError(
                    f"--grid {grid} with --seeds {seeds} expands to more than {max_trials:,} trials (up to "
                    f"{len(experiments) * seeds:,}); --max-trials N runs more, --where runs fewer."
                )
    if not configs:
        said = "; ".join(
            f"{key} is {', '.join(map(str, sorted(values[key], key=str)))} in its trials"
            + did_you_mean(str(value), values[key])
            for key, value in where.items()
        )
        given = " ".join(f"--where {key}={value}" for key, value in where.items())
        raise UserError(f"No trial of grid {grid!r} matches {given}: {said}.")
    return configs
