"""Run a study on Ray Tune: a named grid, a grid file, or a search of a space of ranges.

python -m study.run --grid paper --data ../shared/data/el7008
python -m study.run --grid extended --data ../shared/data/el7008 --dry-run
python -m study.run --grid smoke                 # offline, generated images
python -m study.run --resume results/NAME        # continue an interrupted study

The command line becomes a StudySpec (study.cli.options); the spec a source of trials
(study.sources: a grid's TrialConfigs, or a search's space and searcher) that knows its own
steps; `run_study` plans, records, encodes, runs, summarizes and confirms either the same way.
"""

from __future__ import annotations

import os
import sys
import textwrap
from typing import Any

from study.bookkeeping.disk import disk_full_error
from study.bookkeeping.ownership import release_all
from study.bookkeeping.plan import Plan, load_data, plan_study, record_study
from study.bookkeeping.resume import check_same_study
from study.bookkeeping.summary import class_count_lines, evaluate_elsewhere, finish, print_answer, print_next
from study.cli.options import given_options, study_spec
from study.sources import Source, confirmation, source_of
from study.spec import StudySpec
from study.terminal.quiet import quiet_tools
from study.terminal.stopping import Stopped, catch_stops, deferred, received, stopped
from study.tuning.cluster import largest_node_cpus, start_ray
from trainable.data.dataset_options import check_data_args
from trainable.errors import UserError
from trainable.results import storage as store
from trainable.results.layout import CONFIRM_DIR, STUDY_FILE


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
    source.encode(spec, plan, data)
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


def finish_study(spec: StudySpec, source: Source, plan: Plan, results: Any, trainable: Any) -> int:
    """The summary and best/; then (--confirm-top) the confirmation of the configurations the
    source chose, fixed before it runs, and its summary and answer."""
    from study.terminal.console import Progress

    code = finish(plan, results)
    if not spec.confirmations:
        return code
    confirm = confirmation(source, source.chosen(spec, plan, results), spec.confirm_seeds)
    if confirm is None:
        print("\nNothing to confirm: no configuration has a score on every seed.")
        return code
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
    if spec.resume:
        for line in tune_setup.repair_torn_state(location):
            print(line)
    if spec.resume and tune_setup.can_restore(location):
        return tune_setup.restore_tuner(location, trainable, grid_trials=source.restore_trials).fit()
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
    source = source_of(spec)
    if spec.dry_run:
        source.show(spec)
        return 0
    return run_study(spec, source, argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    catch_stops()
    given = given_options(argv)
    try:
        return run(study_spec(given), argv)
    except UserError as err:
        print(error_paragraph(err), file=sys.stderr)
        return 2
    except Stopped as err:
        return say_stopped(err)
    except KeyboardInterrupt:
        return say_stopped(stopped(None))
    finally:
        release_all()


def say_stopped(said: Stopped) -> int:
    print(textwrap.fill(str(said), width=100, break_long_words=False, break_on_hyphens=False), file=sys.stderr)
    return said.code


def error_paragraph(err: UserError) -> str:
    """The message's first paragraph wrapped at 100 columns, never inside a word or path;
    what follows its first newline (a list, one file per line) exactly as it is."""
    head, sep, rest = store.redact(str(err)).partition("\n")  # credentials never printed
    return textwrap.fill(f"error: {head}", width=100, break_long_words=False, break_on_hyphens=False) + sep + rest


if __name__ == "__main__":
    sys.exit(main())
