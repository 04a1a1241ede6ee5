"""A study's trials as a source that knows its own steps: a grid (its TrialConfigs, expanded once)
or a search (a space of ranges and a searcher). study.run asks either the same questions: what it
records, its Tune space, what it encodes before the trials, how a dry run shows it, and which of
its configurations the confirmation reruns (`confirmation`, the one builder of that stage).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from study.bookkeeping.plan import Plan
from study.grids import expand, get_grid, grid_label, parse_where
from study.spec import StudySpec
from study.tuning.space import TrialNames
from trainable.config import TrialConfig
from trainable.errors import UserError
from trainable.results.layout import OPTUNA_FILE, SELECTIONS, search_trial_number
from trainable.results.study_record import SearchRecord

# --dry-run shows the paper's axes, then every other setting that varies and every --set one.
DRY_RUN_COLUMNS = ["seed", "optimizer", "lr", "momentum", "batch_size", "freeze", "augmentation"]
SAME_IN_NAME = ("experiment", "name", "config_id")  # said by the trial column


@dataclass(frozen=True)
class GridSource:
    """A grid's trials (or a confirmation's), each a TrialConfig, expanded once (study.grids.expand)."""

    label: str  # what it is, said before it runs
    configs: tuple[TrialConfig, ...]
    scheduler: str  # asha | none
    next_seed: int = 0  # the first seed it did not run: a confirmation's fresh seeds start there
    samples = 1  # Tune's num_samples: a grid is one sample of its grid_search
    searcher = None
    expansions = MappingProxyType({})  # its configs are whole: no named values to expand
    what = "configuration(s) of the grid"

    @property
    def trials(self) -> int:
        return len(self.configs)

    @property
    def restore_trials(self) -> int:
        """How many trials a restored Tuner must find (a grid knows; a search samples)."""
        return len(self.configs)

    @property
    def names(self) -> TrialNames:
        return TrialNames.of(list(self.configs))

    @property
    def weights(self) -> set[str]:
        return {c.weights for c in self.configs}

    @property
    def max_epochs(self) -> int:
        return max(c.max_epochs for c in self.configs)

    def recorded(self, plan: Plan) -> dict[str, Any]:
        """What study.json says of it: each trial's config, its weights resolved."""
        return {"trials": [c.to_dict() for c in plan.resolved(list(self.configs))]}

    def param_space(self, plan: Plan | None) -> dict[str, Any]:
        """A grid over experiments x seeds (weights resolved by `plan`; as given for a dry run)."""
        from study.tuning.space import param_space

        return param_space(plan.resolved(list(self.configs)) if plan else list(self.configs))

    def encode(self, spec: StudySpec, plan: Plan, data: Any) -> None:
        """Its trunk outputs, encoded once for all its trials before they start."""
        from study.tuning.encoding import encode_for_trials

        configs = plan.resolved(list(self.configs))
        cpus, gpus = spec.cpus_per_trial or 1, spec.gpus_per_trial
        encode_for_trials(configs, data, spec.cache_dir, cpus=cpus, gpus=gpus, every=spec.progress_every)

    def chosen(self, spec: StudySpec, plan: Plan, results: Any) -> list[TrialConfig]:
        """The --confirm-top best configurations by analysis.best's ranking (mean --select over
        seeds, every seed finished), each as its first trial."""
        from study.bookkeeping.summary import ranked_configurations

        top = ranked_configurations(plan.directory, spec.confirmations)
        return [next(c for c in self.configs if c.config_id == cid) for cid in top]

    def show(self, spec: StudySpec) -> None:
        """--dry-run: every trial Tune would run, in its order, from the same search space (where
        each stands, with --resume), then the confirmation that would follow."""
        import pandas as pd

        from study.bookkeeping.summary import recorded_outcomes
        from study.tuning.space import name_width, trial_name, trials_of

        trials = trials_of(self.param_space(None))
        width = name_width(c["experiment"] for c in trials)
        table = pd.DataFrame(trials)
        varying = [k for k in table.columns if k not in SAME_IN_NAME and table[k].astype(str).nunique() > 1]
        table = table.reindex(columns=list(dict.fromkeys([*DRY_RUN_COLUMNS, *varying, *spec.trial_settings()])))
        table.insert(0, "trial", [trial_name(c, width) for c in trials])
        if spec.resume:  # where each trial stands, from the study's own files
            now = recorded_outcomes(spec.resume)
            table.insert(1, "now", [now.get((c["config_id"], c["seed"]), "pending") for c in trials])
        print(table.to_string(index=False))
        n_configs = len({c["config_id"] for c in trials})
        print(
            f"\nGrid {grid_label(spec.grid)!r}: {n_configs} configurations x "
            f"{len(trials) // n_configs} seed(s) = {len(trials)} trials; scheduler {self.scheduler}."
        )
        if spec.resume:
            counts = table["now"].str.split(" ").str[0].value_counts()
            now = ", ".join(f"{n} {state}" for state, n in counts.items())
            print(f"Now: {now}; --resume runs what has not ended.")
        if spec.confirmations:
            print(
                f"Then the {spec.confirmations} best by {spec.select} again, seeds {self.next_seed}.."
                f"{self.next_seed + spec.confirm_seeds - 1} (a confirmation: "
                f"{spec.confirmations * spec.confirm_seeds} more trials, --confirm-seeds; "
                "--confirm-top 0 leaves it out)."
            )


@dataclass(frozen=True)
class SearchSource:
    """A search: its space (Tune domains and fixed values), `samples` trials, its searcher."""

    label: str
    space: dict[str, Any]
    names: TrialNames
    scheduler: str
    samples: int
    searcher: Callable[[str, str], Any]  # (study folder, name) -> the search algorithm, new Tuners only
    expansions: dict[str, Any]  # the named values its choices stand for (study.grids.Grid)
    search: SearchRecord  # what it is, as study.json records it
    next_seed: int  # every searched trial runs the search's seed; a confirmation's start after it
    restore_trials = None  # a restored search finds as many trials as it had sampled
    what = "searched configuration(s)"

    @property
    def trials(self) -> int:
        return self.samples

    @property
    def weights(self) -> set[str]:
        return {self.space["weights"]}

    @property
    def max_epochs(self) -> int:
        return self.space["max_epochs"]

    @property
    def fixed(self) -> dict[str, Any]:
        from ray.tune.search.sample import Domain

        return {k: v for k, v in self.space.items() if not isinstance(v, Domain)}

    def recorded(self, plan: Plan) -> dict[str, Any]:
        """What study.json says of it: its fixed settings (weights resolved), the search, its named values."""
        trials = [{**self.fixed, "weights": plan.weights[self.space["weights"]]}]
        return {"trials": trials, "search": self.search, "expansions": self.expansions}

    def param_space(self, plan: Plan | None) -> dict[str, Any]:
        return {**self.space, "weights": plan.weights[self.space["weights"]]} if plan else self.space

    def encode(self, spec: StudySpec, plan: Plan, data: Any) -> None:
        """Nothing before the trials: each searched configuration is new, its trunk encoded in its trial."""

    def chosen(self, spec: StudySpec, plan: Plan, results: Any) -> list[TrialConfig]:
        """The --confirm-top best searched configurations by their best epoch's --select value so
        far (what Tune and the searcher saw), each as the trial that ran it."""
        from study.tuning.search import best_searched

        key, mode = SELECTIONS[spec.select]
        scored = []
        for result in results:
            value = (result.metrics or {}).get(key)
            if value is not None and value == value:
                scored.append((search_trial_number(result.path), result.config, -value if mode == "min" else value))
        return best_searched(scored, spec.confirmations, self.expansions)

    def show(self, spec: StudySpec) -> None:
        """--dry-run: the space, searched and fixed."""
        searched = {k: v for k, v in self.space.items() if k not in self.fixed}
        print("searched:\n" + "\n".join(f"  {key}: {domain_text(value)}" for key, value in searched.items()))
        print("fixed:\n" + "\n".join(f"  {key}: {value}" for key, value in self.fixed.items()))
        print(f"\n{self.label}.")


Source = GridSource | SearchSource


def source_of(spec: StudySpec) -> Source:
    """The spec's trials: its grid, or (--search random | optuna) a search of its space of ranges."""
    return grid_source(spec) if spec.search == "grid" else search_source(spec)


def grid_source(spec: StudySpec) -> GridSource:
    configs = expand(
        spec.grid,
        seeds=spec.seeds,
        first_seed=spec.first_seed,
        overrides=spec.overrides(),
        where=parse_where(list(spec.where)),
        settings=spec.trial_settings(),
        max_trials=spec.max_trials,
    )
    label = f"{len(configs)} trial(s) of grid {grid_label(spec.grid)!r}"
    scheduler = spec.scheduler or get_grid(spec.grid).scheduler
    return GridSource(label, tuple(configs), scheduler, next_seed=spec.first_seed + spec.seeds)


def search_source(spec: StudySpec) -> SearchSource:
    """--search random | optuna: --num-samples trials of a space of ranges (study.tuning.search)."""
    from study.tuning import search

    grid = get_grid(spec.grid)
    if not grid.ranges:
        raise UserError(
            f"--search {spec.search} needs a space of ranges: --grid search, or a grid file with "
            f"{{loguniform|uniform|choice: ...}} values; grid {grid_label(spec.grid)!r} has none."
        )
    fixed = {**spec.trial_settings(), **spec.overrides()}  # a --set key is fixed, not searched
    space = search.search_space(grid, fixed, seed=spec.first_seed)
    searched = search.searched_keys(space)
    points = search.paper_points(grid, space, fixed, spec.num_samples)
    return SearchSource(
        f"{spec.search} search: {spec.num_samples} trial(s) over {', '.join(searched)}, the first "
        f"{len(points)} at distinct paper configurations",
        space,
        TrialNames(searched=tuple(searched)),
        spec.scheduler or grid.scheduler,
        samples=spec.num_samples,
        searcher=lambda folder, name: search.make_searcher(
            spec.search,
            points,
            spec.max_concurrent or 0,
            seed=spec.first_seed,
            journal=(os.path.join(folder, OPTUNA_FILE), name),
        ),
        expansions=grid.expansions,
        search=SearchRecord(spec.search, spec.num_samples, searched, len(points)),
        next_seed=spec.first_seed + 1,
    )


def confirmation(source: Source, chosen: list[TrialConfig], seeds: int) -> GridSource | None:
    """The confirmation stage: each of the `chosen` configurations (fixed before it runs) with
    `seeds` fresh seeds from the source's next_seed, as a grid (config_id confirm-ID); None when
    nothing was chosen."""
    configs = tuple(
        dataclasses.replace(c, seed=source.next_seed + k, config_id=f"confirm-{c.config_id}", name=f"confirm {c.name}")
        for c in chosen
        for k in range(seeds)
    )
    if not configs:
        return None
    return GridSource(f"the {len(chosen)} best {source.what}, {seeds} fresh seed(s)", configs, "none")


def domain_text(domain: Any) -> str:
    """A Tune domain as a grid file writes it: 'loguniform (0.0001, 0.01)', 'choice [...]'."""
    if hasattr(domain, "categories"):
        return f"choice {domain.categories}"
    from ray.tune.search.sample import LogUniform

    kind = "loguniform" if isinstance(domain.sampler, LogUniform) else "uniform"
    return f"{kind} {domain.domain_str}"
