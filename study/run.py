"""Run a study on Ray Tune: a named grid, a grid file, or a search of a space of ranges.

python -m study.run --grid paper --data ../shared/data/el7008
python -m study.run --grid extended --data ../shared/data/el7008 --dry-run
python -m study.run --grid smoke                 # offline, generated images
python -m study.run --resume results/NAME        # continue an interrupted study

The command line becomes a StudySpec (study.spec, study.cli.options); the spec a
source of trials, a GridSource (a grid's TrialConfigs, expanded once) or a SearchSource (a space
of ranges and a searcher); `run_study` plans, records, runs and summarizes either the same way.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import pandas as pd

from study.bookkeeping.disk import disk_full_error
from study.bookkeeping.ownership import release_all
from study.bookkeeping.plan import Plan, fetch, load_data, plan_study, record_study
from study.bookkeeping.resume import check_same_study
from study.bookkeeping.summary import (
    class_count_lines,
    evaluate_elsewhere,
    finish,
    print_answer,
    print_next,
    ranked_configurations,
    recorded_outcomes,
    summarize,
)
from study.cli.options import given_options, study_spec
from study.grids import expand, get_grid, grid_label, parse_where
from study.spec import StudySpec
from study.terminal.quiet import quiet_tools
from study.terminal.stopping import Stopped, catch_stops, deferred, received, stopped
from study.tuning.cluster import largest_node_cpus, start_ray
from study.tuning.space import TrialNames
from trainable import storage as store
from trainable.config import TrialConfig
from trainable.data.dataset_options import check_data_args
from trainable.errors import UserError
from trainable.results_layout import CONFIRM_DIR, OPTUNA_FILE, SELECTIONS, STUDY_FILE, search_trial_number

# --dry-run shows the paper's axes, then every other setting that varies and every --set one.
DRY_RUN_COLUMNS = ["seed", "optimizer", "lr", "momentum", "batch_size", "freeze", "augmentation"]
SAME_IN_NAME = ("experiment", "name", "config_id")  # said by the trial column


@dataclass(frozen=True)
class GridSource:
    """A grid's trials (or a confirmation's), each a TrialConfig, expanded once (study.grids.expand)."""

    label: str  # what it is, said before it runs
    configs: tuple[TrialConfig, ...]
    scheduler: str  # asha | none
    samples = 1  # Tune's num_samples: a grid is one sample of its grid_search
    searcher = None
    expansions = MappingProxyType({})  # its configs are whole: no named values to expand

    @property
    def trials(self) -> int:
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
    search: dict[str, Any]  # what it is, as study.json records it

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


Source = GridSource | SearchSource


def grid_source(spec: StudySpec) -> Source:
    where = parse_where(list(spec.where))
    configs = expand(
        spec.grid,
        seeds=spec.seeds,
        first_seed=spec.first_seed,
        overrides=spec.overrides(),
        where=where,
        settings=spec.trial_settings(),
        max_trials=spec.max_trials,
    )
    label = f"{len(configs)} trial(s) of grid {grid_label(spec.grid)!r}"
    return GridSource(label, tuple(configs), spec.scheduler or get_grid(spec.grid).scheduler)


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
        search={"kind": spec.search, "num_samples": spec.num_samples, "searched": searched, "warm_starts": len(points)},
    )


def confirm_source(spec: StudySpec, searched: Any, expansions: dict[str, Any]) -> GridSource | None:
    """The --confirm-top best searched configurations (by the best epoch's --select value so
    far: what Tune and the searcher saw) with --seeds fresh seeds, as a grid; None when no
    searched trial has a score."""
    from study.tuning import search

    key, mode = SELECTIONS[spec.select]
    scored = []
    for result in searched:
        value = (result.metrics or {}).get(key)
        if value is not None and value == value:
            scored.append((search_trial_number(result.path), result.config, -value if mode == "min" else value))
    configs = search.confirm_configs(scored, spec.confirmations, spec.confirm_seeds, expansions, spec.first_seed)
    if not configs:
        return None
    label = (
        f"the {len(configs) // spec.confirm_seeds} best searched configuration(s), {spec.confirm_seeds} fresh seed(s)"
    )
    return GridSource(label, tuple(configs), "none")


def dry_run(spec: StudySpec, source: Source) -> int:
    """Every trial Tune would run, in its order, from the same search space; or a search's space."""
    from study.tuning.space import name_width, trial_name, trials_of

    if isinstance(source, SearchSource):
        searched = {k: v for k, v in source.space.items() if k not in source.fixed}
        print("searched:\n" + "\n".join(f"  {key}: {domain_text(value)}" for key, value in searched.items()))
        print("fixed:\n" + "\n".join(f"  {key}: {value}" for key, value in source.fixed.items()))
        print(f"\n{source.label}.")
        return 0
    trials = trials_of(source.param_space(None))
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
        f"{len(trials) // n_configs} seed(s) = {len(trials)} trials; scheduler {source.scheduler}."
    )
    if spec.resume:
        counts = table["now"].str.split(" ").str[0].value_counts()
        print(
            "Now: " + ", ".join(f"{n} {state}" for state, n in counts.items()) + "; --resume runs what has not ended."
        )
    if spec.confirmations:
        print(
            f"Then the {spec.confirmations} best by {spec.select} again, seeds {spec.first_seed + spec.seeds}.."
            f"{spec.first_seed + spec.seeds + spec.confirm_seeds - 1} (a confirmation: "
            f"{spec.confirmations * spec.confirm_seeds} more trials, --confirm-seeds; --confirm-top 0 leaves it out)."
        )
    return 0


def domain_text(domain: Any) -> str:
    """A Tune domain as a grid file writes it: 'loguniform (0.0001, 0.01)', 'choice [...]'."""
    if hasattr(domain, "categories"):
        return f"choice {domain.categories}"
    from ray.tune.search.sample import LogUniform

    kind = "loguniform" if isinstance(domain.sampler, LogUniform) else "uniform"
    return f"{kind} {domain.domain_str}"


def run_study(spec: StudySpec, source: Source, argv: list[str]) -> int:
    """Plan, record, run and summarize a study; with --confirm-top, its confirmation too. A
    full disk stops it with one paragraph (study.bookkeeping.disk)."""
    plan = plan_study(spec, source.weights)
    try:
        return run_planned(spec, source, argv, plan)
    except KeyboardInterrupt:  # a stop signal outside Tune's trials (loading, encoding, summing up)
        raise stop_paragraph(plan) from None
    except Exception as err:
        if (stopped := disk_full_error(err, plan, spec.cache_dir)) is None:
            raise
        raise stopped from None


def run_planned(spec: StudySpec, source: Source, argv: list[str], plan: Plan) -> int:
    """Load the data, check or record the study, start Ray, encode, run and summarize."""
    from study.terminal.console import Progress
    from study.tuning import tune_setup
    from study.tuning.detection import ray_runner
    from study.tuning.encoding import encode_for_trials

    data = load_data(spec)
    if spec.resume:
        check_same_study(plan.directory, data, spec.grid, list(plan.weights_labels))
    sizes = ", ".join(f"{k} {v}" for k, v in data.sizes().items())
    print(
        f"{source.label} on {data.root} ({data.layout}: {sizes}; classes {', '.join(data.classes)}), "
        f"scheduler {source.scheduler}"
    )
    print(class_count_lines(data.class_counts()))
    with deferred():  # a signal while Ray starts stops the study once Ray is up
        ray = start_ray(spec)
    if not spec.resume:
        record_study(plan, spec, argv, data, **source.recorded(plan))
    if isinstance(source, GridSource):  # a grid's trunk outputs, encoded once for all its trials
        encode_for_trials(
            plan.resolved(list(source.configs)),
            data,
            spec.cache_dir,
            cpus=spec.cpus_per_trial or 1,
            gpus=spec.gpus_per_trial,
            every=spec.progress_every,
        )
    trainable = tune_setup.make_trainable(
        data,
        cache_dir=spec.cache_dir,
        cpus=spec.cpus_per_trial,
        gpus=spec.gpus_per_trial,
        node_cpus=largest_node_cpus(ray, spec.cluster_config),
        expansions=source.expansions,
    )
    budget = tune_setup.EpochBudget(spec.budget_epochs, plan.directory) if spec.budget_epochs else None
    progress = [] if spec.verbose else [Progress(source.trials, spec.progress_every)]  # Tune's own with -v
    watchers = progress + tune_setup.tracking_callbacks(spec.mlflow, spec.wandb, plan.name, plan.directory)
    results = fit(spec, source, trainable, plan, budget=budget, callbacks=watchers)
    check_finished(results, plan, budget=budget)
    code = finish_study(spec, source, plan, results, trainable)
    if spec.evaluate_on:
        images = os.path.join(spec.cache_dir, "images")
        code = max(code, evaluate_elsewhere(plan, spec.evaluate_on, spec.dataset.age_bins, images, ray_runner(spec)))
    if spec.mlflow:
        from study.tuning.tracking import log_outcome

        code = max(code, log_outcome(spec.mlflow, plan, data, register=spec.mlflow_register))
    print_next(plan.location)
    return code


def grid_confirm_source(spec: StudySpec, source: GridSource, plan: Plan) -> GridSource | None:
    """The grid's --confirm-top best configurations (analysis.best's ranking: mean --select
    over seeds, every seed finished) rerun with --confirm-seeds C fresh seeds (F+S..F+S+C-1); None
    when no configuration is ranked."""
    top = ranked_configurations(plan.directory, spec.confirmations)
    first = {cid: next(c for c in source.configs if c.config_id == cid) for cid in top}
    configs = tuple(
        dataclasses.replace(
            c, seed=spec.first_seed + spec.seeds + k, config_id=f"confirm-{c.config_id}", name=f"confirm {c.name}"
        )
        for c in first.values()
        for k in range(spec.confirm_seeds)
    )
    if not configs:
        return None
    label = f"the {len(top)} best configuration(s) of the grid, {spec.confirm_seeds} fresh seed(s)"
    return GridSource(label, configs, "none")


def finish_study(spec: StudySpec, source: Source, plan: Plan, results: Any, trainable: Any) -> int:
    """The summary and best/; then the confirmation (--confirm-top) and its summary. A grid's
    is summarized first (its best is chosen there), a search's only as the search's own runs."""
    from study.terminal.console import Progress

    if not spec.confirmations:
        return finish(plan, results)
    if isinstance(source, GridSource):
        code = finish(plan, results)
        confirm = grid_confirm_source(spec, source, plan)
    else:
        fetch(plan)
        summarize(results, plan.directory, plan.weights_labels, plan.reference)  # the search's own summary.csv
        code, confirm = 0, confirm_source(spec, results, source.expansions)
    if confirm is None:
        print("\nNothing to confirm: no configuration has a score on every seed.")
        return code if isinstance(source, GridSource) else finish(plan, results)
    print(f"\nConfirming {confirm.label}")
    progress = [] if spec.verbose else [Progress(confirm.trials, spec.progress_every)]
    confirmed = fit(spec, confirm, trainable, plan, CONFIRM_DIR, callbacks=progress)
    check_finished(confirmed, plan, "the confirmation's ")
    code = max(code, finish(plan, confirmed, os.path.join(plan.directory, CONFIRM_DIR)))
    print_answer(plan.directory)
    return code


def stop_paragraph(plan: Plan, finished: str = "") -> Stopped:
    """A study stopped by a signal: continued with --resume once its study.json is written."""
    recorded = os.path.exists(os.path.join(plan.directory, STUDY_FILE))
    return stopped(store.redact(plan.location) if recorded else None, finished)


def check_finished(results: Any, plan: Plan, which: str = "", budget: Any = None) -> None:
    """Stopped (a signal reached Tune, which ended the trials keeping their state) when a stop
    signal came or a trial did not end, unless --budget-epochs ended them: the summary waits for --resume."""
    ended = results.num_terminated + results.num_errors
    spent = budget is not None and budget.spent >= budget.epochs
    if received or (ended < len(results) and not spent):
        raise stop_paragraph(plan, f"{ended} of {which}{len(results)} trials ended")


def fit(
    spec: StudySpec, source: Source, trainable: Any, plan: Plan, part: str = "", *, callbacks: list, budget: Any = None
) -> Any:
    """Run `source` as the study's Tune experiment, or as its `part` inside it (the
    confirmation): a new Tuner, or the interrupted one restored (finished trials stay
    finished); its ResultGrid."""
    from study.tuning import tune_setup

    storage, name = (plan.location, part) if part else (spec.storage, plan.name)
    location = store.join(storage, name)
    grid_trials = source.trials if isinstance(source, GridSource) else None
    if spec.resume:
        for line in tune_setup.repair_torn_state(location):
            print(line)
    if spec.resume and tune_setup.can_restore(location):
        return tune_setup.restore_tuner(location, trainable, grid_trials=grid_trials).fit()
    if spec.resume:
        print("Ray recorded no trial of this study before it stopped; starting its trials afresh.")
    return tune_setup.make_tuner(
        trainable,
        source.param_space(plan),
        name=name,
        storage=storage,
        scheduler=tune_setup.make_scheduler(
            source.scheduler, max_epochs=source.max_epochs, grace_period=spec.grace_period
        ),
        max_failures=spec.max_failures,
        names=source.names,
        select=spec.select,
        search_alg=source.searcher(plan.directory, plan.name) if source.searcher else None,
        num_samples=source.samples,
        budget=budget,
        verbose=2 if spec.verbose else 0,
        callbacks=callbacks,
    ).fit()


def run(spec: StudySpec, argv: list[str]) -> int:
    quiet_tools(spec.verbose)
    check_data_args(spec.dataset)  # the folder, the age bins, the ranges, --dry-run or not
    source = grid_source(spec) if spec.search == "grid" else search_source(spec)
    return dry_run(spec, source) if spec.dry_run else run_study(spec, source, argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    catch_stops()
    given = given_options(argv)
    try:
        return run(study_spec(given), argv)
    except UserError as err:
        print(error_paragraph(err), file=sys.stderr)
        return 2
    except (Stopped, KeyboardInterrupt) as err:
        said = err if isinstance(err, Stopped) else stopped(None)
        print(textwrap.fill(str(said), width=100, break_long_words=False, break_on_hyphens=False), file=sys.stderr)
        return said.code
    finally:
        release_all()


def error_paragraph(err: UserError) -> str:
    """The message's first paragraph wrapped at 100 columns, never inside a word or path;
    what follows its first newline (a list, one file per line) exactly as it is."""
    head, sep, rest = store.redact(str(err)).partition("\n")  # credentials never printed
    return textwrap.fill(f"error: {head}", width=100, break_long_words=False, break_on_hyphens=False) + sep + rest


if __name__ == "__main__":
    sys.exit(main())
