"""Run a study on Ray Tune: a named grid, a grid file, or a search of a space of ranges.

python -m study.run --grid paper --data ../shared/data/el7008
python -m study.run --grid extended --data ../shared/data/el7008 --dry-run
python -m study.run --grid smoke                 # offline, generated images
python -m study.run --resume results/NAME        # continue an interrupted study

The command line becomes a StudySpec (study.cli.spec, study.bookkeeping.resume); the spec a Source (what
Tune runs); `run_study` plans, records, runs and summarizes any source the same way.
"""

from __future__ import annotations

import os
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from study.bookkeeping.ownership import release_all
from study.bookkeeping.plan import Plan, fetch, load_data, plan_study, record_study
from study.bookkeeping.resume import check_same_study, study_spec
from study.bookkeeping.summary import class_count_lines, evaluate_elsewhere, finish, ranked_configurations, summarize
from study.cli.spec import StudySpec, given_options
from study.grids import expand, get_grid, grid_label, parse_where
from study.tuning.cluster import largest_node_cpus, start_ray
from study.tuning.space import TrialNames
from trainable import storage as store
from trainable.errors import UserError
from trainable.results_layout import CONFIRM_DIR, OPTUNA_FILE, SELECTIONS, search_trial_number

# --dry-run shows the paper's axes, then every other setting that varies and every --set one.
DRY_RUN_COLUMNS = ["seed", "optimizer", "lr", "momentum", "batch_size", "freeze", "augmentation"]
SAME_IN_NAME = ("experiment", "name", "config_id")  # said by the trial column


@dataclass
class Source:
    """What a study runs: a grid's trials, or a search's space and searcher."""

    label: str  # what it is, said before it runs
    configs: list[dict[str, Any]]  # a grid's trials, or a search's fixed settings (plan_study resolves weights)
    names: TrialNames
    scheduler: str  # asha | none
    ranges: dict[str, Any] | None = None  # a search's space: Tune domains and fixed values
    samples: int = 1  # Tune's num_samples: a search's trials (a grid is one sample of its grid_search)
    searcher: Callable[[str, str], Any] | None = None  # (study folder, name) -> a search's algorithm, new Tuners only
    expansions: dict[str, Any] = field(default_factory=dict)  # a search's named values (study.grids.Grid)
    record: dict[str, Any] = field(default_factory=dict)  # what study.json says about it

    @property
    def trials(self) -> int:
        return len(self.configs) if self.ranges is None else self.samples

    def param_space(self) -> dict[str, Any]:
        from study.tuning.space import param_space

        if self.ranges is None:
            # A grid over experiments x seeds; long full-network trials first: started last, they
            # would wait for a whole node while short cached trials keep taking single cores.
            return param_space(self.configs)
        return {**self.ranges, "weights": self.configs[0]["weights"]}  # the resolved weights


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
    return Source(label, configs, TrialNames.of(configs), spec.scheduler or get_grid(spec.grid).scheduler)


def search_source(spec: StudySpec) -> Source:
    """--search random | optuna: --num-samples trials of a space of ranges (study.tuning.search)."""
    from ray.tune.search.sample import Domain

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
    return Source(
        f"{spec.search} search: {spec.num_samples} trial(s) over {', '.join(searched)}, the first "
        f"{len(points)} at distinct paper configurations",
        [{k: v for k, v in space.items() if not isinstance(v, Domain)}],
        TrialNames(searched=tuple(searched)),
        spec.scheduler or grid.scheduler,
        ranges=space,
        samples=spec.num_samples,
        searcher=lambda folder, name: search.make_searcher(
            spec.search,
            points,
            spec.max_concurrent or 0,
            seed=spec.first_seed,
            journal=(os.path.join(folder, OPTUNA_FILE), name),
        ),
        expansions=grid.expansions,
        record={
            "search": {
                "kind": spec.search,
                "num_samples": spec.num_samples,
                "searched": searched,
                "warm_starts": len(points),
            },
            "expansions": grid.expansions,
        },
    )


def confirm_source(spec: StudySpec, searched: Any, expansions: dict[str, Any]) -> Source | None:
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
    configs = search.confirm_configs(scored, spec.confirmations, spec.seeds, expansions, spec.first_seed)
    if not configs:
        return None
    label = f"the {len(configs) // spec.seeds} best searched configuration(s), {spec.seeds} fresh seed(s)"
    return Source(label, configs, TrialNames.of(configs), "none", expansions=expansions)


def dry_run(spec: StudySpec, source: Source) -> int:
    """Every trial Tune would run, in its order, from the same search space; or a search's space."""
    from study.tuning.space import name_width, trial_name, trials_of

    if source.ranges is not None:
        searched = {k: v for k, v in source.ranges.items() if hasattr(v, "sampler")}
        print("searched:\n" + "\n".join(f"  {key}: {domain_text(value)}" for key, value in searched.items()))
        fixed = {k: v for k, v in source.ranges.items() if k not in searched}
        print("fixed:\n" + "\n".join(f"  {key}: {value}" for key, value in fixed.items()))
        print(f"\n{source.label}.")
        return 0
    trials = trials_of(source.param_space())
    width = name_width(c["experiment"] for c in trials)
    table = pd.DataFrame(trials)
    varying = [k for k in table.columns if k not in SAME_IN_NAME and table[k].astype(str).nunique() > 1]
    table = table.reindex(columns=list(dict.fromkeys([*DRY_RUN_COLUMNS, *varying, *spec.trial_settings()])))
    table.insert(0, "trial", [trial_name(c, width) for c in trials])
    print(table.to_string(index=False))
    n_configs = len({c["config_id"] for c in trials})
    print(
        f"\nGrid {grid_label(spec.grid)!r}: {n_configs} configurations x "
        f"{len(trials) // n_configs} seed(s) = {len(trials)} trials; scheduler {source.scheduler}."
    )
    if spec.confirmations:
        print(
            f"Then the {spec.confirmations} best by {spec.select} again, seeds {spec.first_seed + spec.seeds}.."
            f"{spec.first_seed + 2 * spec.seeds - 1} (a confirmation: {spec.confirmations * spec.seeds} more "
            "trials; --confirm-top 0 leaves it out)."
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
    """Plan, record, run and summarize a study; with --confirm-top, its confirmation too."""
    from study.cli.console import Progress
    from study.tuning import tune_setup
    from study.tuning.detection import ray_runner
    from study.tuning.encoding import encode_for_trials

    plan = plan_study(spec, source.configs)
    data = load_data(spec)
    if spec.resume:
        check_same_study(plan.directory, data, spec.grid, list(plan.weights_labels))
    sizes = ", ".join(f"{k} {v}" for k, v in data.sizes().items())
    print(
        f"{source.label} on {data.root} ({data.layout}: {sizes}; classes {', '.join(data.classes)}), "
        f"scheduler {source.scheduler}"
    )
    print(class_count_lines(data.class_counts()))
    ray = start_ray(spec)
    if not spec.resume:
        record_study(plan, spec, argv, data, **source.record)
    if source.ranges is None:  # a grid's trunk outputs, encoded once for all its trials
        encode_for_trials(
            plan.configs,
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
    code = finish_study(spec, source, plan, results, trainable)
    if spec.evaluate_on:
        images = os.path.join(spec.cache_dir, "images")
        code = max(code, evaluate_elsewhere(plan, spec.evaluate_on, spec.dataset.age_bins, images, ray_runner(spec)))
    if spec.mlflow:
        from study.tuning.tracking import log_outcome

        code = max(code, log_outcome(spec.mlflow, plan, data, register=spec.mlflow_register))
    return code


def grid_confirm_source(spec: StudySpec, plan: Plan) -> Source | None:
    """The grid's --confirm-top best configurations (analysis.best's ranking: mean --select
    over seeds, every seed finished) rerun with --seeds fresh seeds (F+S..F+2S-1); None when
    no configuration is ranked."""
    top = ranked_configurations(plan.directory, spec.confirmations)
    configs = [
        {**c, "seed": c["seed"] + spec.seeds, "config_id": f"confirm-{c['config_id']}", "name": f"confirm {c['name']}"}
        for cid in top
        for c in plan.configs
        if c["config_id"] == cid
    ]
    if not configs:
        return None
    label = f"the {len(top)} best configuration(s) of the grid, {spec.seeds} fresh seed(s)"
    return Source(label, configs, TrialNames.of(configs), "none")


def finish_study(spec: StudySpec, source: Source, plan: Plan, results: Any, trainable: Any) -> int:
    """The summary and best/; then the confirmation (--confirm-top) and its summary. A grid's
    is summarized first (its best is chosen there), a search's only as the search's own runs."""
    from study.cli.console import Progress

    if not spec.confirmations:
        return finish(plan, results)
    if source.ranges is None:
        code = finish(plan, results)
        confirm = grid_confirm_source(spec, plan)
    else:
        fetch(plan)
        summarize(results, plan.directory, plan.weights_labels, plan.reference)  # the search's own summary.csv
        code, confirm = 0, confirm_source(spec, results, source.expansions)
    if confirm is None:
        print("\nNothing to confirm: no configuration has a score on every seed.")
        return code if source.ranges is None else finish(plan, results)
    print(f"\nConfirming {confirm.label}")
    progress = [] if spec.verbose else [Progress(confirm.trials, spec.progress_every)]
    confirmed = fit(spec, confirm, trainable, plan, CONFIRM_DIR, callbacks=progress)
    return max(code, finish(plan, confirmed, os.path.join(plan.directory, CONFIRM_DIR)))


def fit(
    spec: StudySpec, source: Source, trainable: Any, plan: Plan, part: str = "", *, callbacks: list, budget: Any = None
) -> Any:
    """Run `source` as the study's Tune experiment, or as its `part` inside it (the
    confirmation): a new Tuner, or the interrupted one restored (finished trials stay
    finished); its ResultGrid."""
    from study.tuning import tune_setup

    storage, name = (plan.location, part) if part else (spec.storage, plan.name)
    location = store.join(storage, name)
    grid_trials = len(source.configs) if source.ranges is None else None
    if spec.resume and tune_setup.can_restore(location):
        return tune_setup.restore_tuner(location, trainable, grid_trials=grid_trials).fit()
    if spec.resume:
        print("Ray recorded no trial of this study before it stopped; starting its trials afresh.")
    max_epochs = max(c["max_epochs"] for c in source.configs)
    return tune_setup.make_tuner(
        trainable,
        source.param_space(),
        name=name,
        storage=storage,
        scheduler=tune_setup.make_scheduler(source.scheduler, max_epochs=max_epochs, grace_period=spec.grace_period),
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
    source = grid_source(spec) if spec.search == "grid" else search_source(spec)
    return dry_run(spec, source) if spec.dry_run else run_study(spec, source, argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    given = given_options(argv)
    try:
        return run(study_spec(given), argv)
    except UserError as err:
        print(error_paragraph(err), file=sys.stderr)
        return 2
    finally:
        release_all()


def error_paragraph(err: UserError) -> str:
    """The message's first paragraph wrapped at 100 columns, never inside a word or path;
    what follows its first newline (a list, one file per line) exactly as it is."""
    head, sep, rest = store.redact(str(err)).partition("\n")  # credentials never printed
    return textwrap.fill(f"error: {head}", width=100, break_long_words=False, break_on_hyphens=False) + sep + rest


if __name__ == "__main__":
    sys.exit(main())
