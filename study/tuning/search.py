"""Adaptive search over a space of ranges (study/grid_files/search.yaml, or any grid file
with `{loguniform|uniform|choice: ...}` values), then confirmation of the best.

`--search random` samples the space; `--search optuna` uses Ray Tune's OptunaSearch
(TPE), warm-started with the seven `paper` configurations where the space holds them.
Every searched trial is its own configuration, run with seed F (--first-seed, default 0;
also the sampler's seed; config_id SEARCH_ID).
A searched score is optimistic, chosen because it was high; `--confirm-top K --confirm-seeds C`
reruns the K best by --select with C fresh seeds (F+1..F+C) as a grid in STUDY/confirm
(study.sources.confirmation), and the report claims the search's first on those runs alone.
"""

from __future__ import annotations

from typing import Any

from ray import tune

from study.grids import BASELINE, Grid, expand
from trainable.config import TrialConfig, expand_choices
from trainable.errors import UserError
from trainable.results.layout import SEARCH_ID

IDENTITY = ("experiment", "name", "config_id", "seed")  # what is not a setting of a configuration


def search_space(grid: Grid, overrides: dict[str, Any], seed: int = 0) -> dict[str, Any]:
    """Tune's param_space: every setting fixed (experiment 1's, the file's, the options')
    except the ranged ones, which become Tune domains (a choice of labels where a value
    sets several keys). An option (e.g. --max-epochs) fixes a ranged key too. Every
    searched trial trains with `seed`."""
    fixed = {**TrialConfig().to_dict(), **BASELINE, **(grid.fixed or {}), **overrides}
    space: dict[str, Any] = {**fixed, "experiment": 0, "name": "search", "config_id": SEARCH_ID, "seed": seed}
    for key, r in (grid.ranges or {}).items():
        if key in overrides:
            continue
        if r.kind == "loguniform":
            space[key] = tune.loguniform(r.low, r.high)
        elif r.kind == "uniform":
            space[key] = tune.uniform(r.low, r.high)
        else:
            space[key] = tune.choice([label for label, _ in r.values])
    return space


def searched_keys(space: dict[str, Any]) -> list[str]:
    return [k for k, v in space.items() if isinstance(v, tune.search.sample.Domain)]


def paper_points(
    grid: Grid, space: dict[str, Any], overrides: dict[str, Any], num_samples: int | None = None
) -> list[dict[str, Any]]:
    """The paper grid's experiments as points of the space (searched keys only), those the
    space can hold, each point once (experiments that differ only in settings the space does
    not search are one point there): warm starts for the searcher, at most half of
    `num_samples` so that the search itself explores the rest."""
    points: list[dict[str, Any]] = []
    for config in expand("paper", seeds=1, overrides=overrides):
        point = {}
        for key in searched_keys(space):
            r = grid.ranges[key]
            if r.kind == "choice":
                sets = (lab for lab, settings in r.values if all(getattr(config, k) == v for k, v in settings.items()))
                label = next(sets, None)
                if label is None:
                    break
                point[key] = label
            elif r.low <= getattr(config, key) <= r.high:
                point[key] = getattr(config, key)
            else:
                break
        else:
            if point not in points:
                points.append(point)
    return points if num_samples is None else points[: num_samples // 2]


def make_searcher(
    kind: str, points: list[dict[str, Any]], max_concurrent: int, seed: int = 0, journal: tuple[str, str] | None = None
) -> Any:
    """The search algorithm: random sampling or Optuna's TPE, both trying `points` first,
    at most `max_concurrent` trials at a time (0: as many as the cluster runs). Optuna's study
    is kept in `journal` = (file, study name) when given (study.tuning.optuna_journal)."""
    if kind == "random":
        from ray.tune.search.basic_variant import BasicVariantGenerator

        return BasicVariantGenerator(points_to_evaluate=points, max_concurrent=max_concurrent, random_state=seed)
    try:  # Ray's wrapper imports optuna itself
        from study.tuning.optuna_journal import optuna_searcher
    except ImportError:
        raise UserError("--search optuna needs the optuna package: pip install -e '.[search]'.") from None
    from ray.tune.search import ConcurrencyLimiter

    searcher = optuna_searcher(points, seed, journal)
    return ConcurrencyLimiter(searcher, max_concurrent=max_concurrent) if max_concurrent else searcher


def best_searched(results: list[tuple[int, dict[str, Any], float]], top: int, expansions: dict) -> list[TrialConfig]:
    """The `top` best distinct searched configurations, each as the trial that ran it (experiment:
    its trial number). `results`: (trial number, config, score), higher is better (the --select
    metric, negated for val_loss). A configuration the search ran twice (a searcher may propose a
    point again) is one, as its best-scoring trial."""
    ranked = sorted((r for r in results if r[2] == r[2]), key=lambda r: -r[2])
    best, seen = [], []
    for number, config, _ in ranked:
        settings = expand_choices(config, expansions)
        if (same := {k: v for k, v in settings.items() if k not in IDENTITY}) not in seen and len(best) < top:
            seen.append(same)
            identity = {"experiment": number, "name": f"t{number:03d}", "config_id": str(number)}
            best.append(TrialConfig.from_dict({**settings, **identity}))
    return best
