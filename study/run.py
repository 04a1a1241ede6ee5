"""Run a named grid of trials on Ray Tune.

python -m study.run --grid paper --data ../shared/data/el7008
python -m study.run --grid extended --data ../shared/data/el7008 --dry-run
python -m study.run --grid smoke                 # offline, generated images
python -m study.run --resume results/NAME        # continue an interrupted study
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import re
import shutil
import sys
import textwrap
import time
from dataclasses import dataclass
from typing import Any

import pandas as pd
import yaml

from study.grids import GRIDS, SEARCHES, expand, get_grid, grid_label, is_grid_file, parse_where, reference_config
from study.ownership import StudyLock, release_all
from study.provenance import write_provenance
from study.smoke_data import RANGES as SMOKE_RANGES
from study.smoke_data import make_smoke_data
from trainable import storage as store
from trainable.config import (
    CLASS_WEIGHTS,
    NAMED_WEIGHTS,
    NORMALIZATIONS,
    PRECISIONS,
    RANDOM_INIT_NOTICE,
    SAMPLERS,
    STOP_RULES,
    comparable_settings,
    differs_from,
    is_pretrained,
)
from trainable.data import FaceData, load_el7008
from trainable.data_options import add_data_arguments, dataset_from_args
from trainable.errors import UserError
from trainable.files import read_json, write_json, write_text, write_with
from trainable.model import resolve_weights, weights_id, weights_label
from trainable.results_files import (
    BUDGET_FILE,
    CONFIRM_DIR,
    DEFAULT_SELECT,
    SELECTIONS,
    SKIPPED_FILE,
    STOPPED_FILE,
    STUDY_FILE,
    SUMMARY_FILE,
    is_final,
    search_trial_number,
    trial_outcome,
)

SUMMARY_COLUMNS = {  # result key -> column title
    "experiment": "exp",
    "name": "name",
    "seed": "seed",
    "status": "status",
    "stopped_by": "stopped_by",
    "epoch": "epochs",
    "best_epoch": "best_epoch",
    "val_acc_best": "val_acc",
    "test_acc_best": "test_acc",
    "test_bacc_best": "test_bacc",
    "test_f1_best": "test_f1",
    "train_seconds": "train_s",
}
SETTINGS_COLUMNS = ["weights", "max epochs", "stop rule", "precision", "normalization", "differs from #1"]
DRY_RUN_COLUMNS = ["seed", "optimizer", "lr", "momentum", "batch_size", "freeze", "augmentation"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def explicit_options(argv: list[str]) -> dict[str, Any]:
    """The options `argv` sets itself (defaults left out)."""
    parser = build_parser()
    for action in parser._actions:
        action.default = argparse.SUPPRESS
    return vars(parser.parse_args(argv))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m study.run",
        description="Run a face-age fine-tuning study on Ray Tune.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--grid",
        help=f"named grid ({', '.join(sorted(GRIDS))}) or a grid file FILE.yaml/.json (required unless --resume)",
    )
    add_data_arguments(p)  # --data (smoke generates one when absent), --layout, ...
    p.add_argument("--weights", help="vggface2 | casia-webface | none | PATH (default: the grid's, vggface2)")
    p.add_argument("--max-epochs", type=int, help="cap on epochs per trial (default: the grid's, 400)")
    p.add_argument("--seeds", type=int, default=3, help="seeds per configuration")
    p.add_argument(
        "--first-seed",
        type=int,
        default=0,
        metavar="F",
        help="grid trials use seeds F..F+seeds-1; a search's sampler and trials use F, its confirmation F+1..",
    )
    p.add_argument(
        "--where",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="keep only the grid's experiments with this setting (repeatable)",
    )
    p.add_argument("--scheduler", choices=("asha", "none"), help="default: the grid file's (asha for extended)")
    p.add_argument(
        "--search",
        choices=SEARCHES,
        default="grid",
        help="grid: every trial of --grid; random or optuna: --num-samples trials of a space of ranges "
        "(--grid search, or a file with loguniform/uniform/choice values)",
    )
    p.add_argument("--num-samples", type=int, default=20, help="--search random/optuna: trials to run")
    p.add_argument("--max-concurrent", type=int, help="--search random/optuna: trials at a time (default: no cap)")
    p.add_argument(
        "--confirm-top",
        type=int,
        default=0,
        metavar="K",
        help="after a search, rerun its K best configurations (by --select) with --seeds fresh seeds",
    )
    p.add_argument(
        "--select",
        choices=tuple(SELECTIONS),
        default=DEFAULT_SELECT,
        help="the one metric Tune, ASHA, the searcher, --confirm-top, best.json and the report rank on: the best "
        f"epoch's (lowest val loss) value (default {DEFAULT_SELECT})",
    )
    p.add_argument("--grace-period", type=int, default=10, help="epochs before ASHA may stop a trial")
    p.add_argument(
        "--budget-epochs",
        type=int,
        metavar="N",
        help="stop the study once its trials have trained N epochs in all (trials not started are left out)",
    )
    p.add_argument("--precision", choices=PRECISIONS, help="the frozen trunk's precision (default auto)")
    p.add_argument(
        "--train-precision",
        choices=PRECISIONS,
        help="the trained part's precision, the same cached or not (default fp32; bf16 speeds up full-network "
        "trials on CPUs with AMX or AVX512-BF16 and on GPUs)",
    )
    p.add_argument(
        "--normalization",
        choices=NORMALIZATIONS,
        help="input scaling: facenet (what the pretrained trunks expect) or dataset statistics (default facenet)",
    )
    p.add_argument(
        "--stop-rule",
        choices=STOP_RULES,
        help="patience: no val-loss improvement for --patience epochs (default); "
        "paper: the 2021 report's rule, see README",
    )
    p.add_argument("--es-rounds", type=int, help="paper stop rule: epochs allowed in a row (default 10)")
    p.add_argument(
        "--class-weights",
        choices=CLASS_WEIGHTS,
        help="balanced: weight each class's training loss by n / (classes x its count) (default none)",
    )
    p.add_argument(
        "--sampler",
        choices=SAMPLERS,
        help="balanced: each epoch draws training images with every class equally likely (default random)",
    )
    p.add_argument(
        "--augment-views",
        type=int,
        help="online augmentation from K cached views per image (frozen trunk) instead of fresh draws",
    )
    add_run_options(p)
    return p


def add_run_options(p: argparse.ArgumentParser) -> None:
    """Where results go, how a study resumes, and where and how trials run."""
    p.add_argument("--storage", default="results", help="directory that holds results")
    p.add_argument("--name", help="study name (default GRID-DATE-TIME)")
    p.add_argument("--resume", metavar="RESULTS_DIR", help="continue this interrupted study")
    p.add_argument(
        "--resume-existing",
        action="store_true",
        help="with --name: if that study exists, resume it instead of refusing (a retried job)",
    )
    p.add_argument("--max-failures", type=int, default=0, help="retries of a failing trial from its checkpoint")
    p.add_argument("--cache-dir", help="trunk-output cache (default STORAGE/trunk-cache)")
    p.add_argument("--cpus-per-trial", type=float, help="default: 1 for cached trials, up to 4 for full-network ones")
    p.add_argument("--gpus-per-trial", type=float, default=0.0, help="fractions pack trials on a GPU")
    p.add_argument("--address", help="join a running Ray cluster (auto or HOST:PORT)")
    p.add_argument(
        "--cluster-config",
        metavar="FILE",
        help="the autoscaler's cluster config, for the node types it may add (default ~/ray_bootstrap_config.yaml)",
    )
    p.add_argument("--dashboard-host", default="127.0.0.1", help="interface the dashboard listens on")
    p.add_argument(
        "--mlflow",
        metavar="URI",
        help="also log trials to this MLflow tracking URI, e.g. sqlite:///mlflow.db or http://HOST:5000",
    )
    p.add_argument("--dry-run", action="store_true", help="print the trials and exit without Ray")
    p.add_argument("-v", "--verbose", action="store_true", help="Tune's full output and Ray's log messages")


def check_args(args: argparse.Namespace) -> None:
    if args.grid is None:
        raise UserError("--grid is required (one of " + ", ".join(sorted(GRIDS)) + ") unless --resume.")
    if args.name is not None and not STUDY_NAME.fullmatch(args.name):
        raise UserError(
            f"--name {args.name!r}: a study's name is one folder name: letters, digits, '.', '_', '-', '+', "
            "'=' or ',', not starting with '.' (no '/', no '..')."
        )
    if args.search == "optuna":
        try:
            import optuna  # noqa: F401
        except ImportError:
            raise UserError("--search optuna needs the search extra: pip install -e '.[search]'.") from None
    if args.cpus_per_trial is not None and args.cpus_per_trial <= 0:
        raise UserError(f"--cpus-per-trial must be > 0, got {args.cpus_per_trial}.")
    if args.gpus_per_trial < 0 or (args.gpus_per_trial > 1 and args.gpus_per_trial % 1):
        raise UserError(f"--gpus-per-trial must be a fraction in [0, 1] or a whole number, got {args.gpus_per_trial}.")
    for option in ("max_epochs", "grace_period", "es_rounds", "budget_epochs"):
        value = getattr(args, option)
        if value is not None and value < 1:
            raise UserError(f"--{option.replace('_', '-')} must be at least 1, got {value}.")
    for option, value in (("--precision", args.precision), ("--train-precision", args.train_precision)):
        if value == "fp16" and not args.gpus_per_trial:
            raise UserError(f"{option} fp16 needs GPUs (--gpus-per-trial); CPUs run bf16 or fp32.")
    if args.search != "grid" and args.num_samples < 1:
        raise UserError(f"--num-samples must be at least 1, got {args.num_samples}.")
    if args.confirm_top and args.search == "grid":
        raise UserError("--confirm-top confirms a search: use it with --search random or optuna.")
    if args.confirm_top < 0 or (args.max_concurrent is not None and args.max_concurrent < 1):
        raise UserError("--confirm-top must be >= 0 and --max-concurrent >= 1.")
    if args.first_seed < 0:
        raise UserError(f"--first-seed must be >= 0, got {args.first_seed}.")
    if args.max_failures < 0:
        raise UserError(f"--max-failures must be >= 0, got {args.max_failures}.")
    if args.mlflow and importlib.util.find_spec("mlflow") is None:
        raise UserError(
            "--mlflow needs the mlflow package: pip install -e '.[mlflow]' (or drop --mlflow; "
            "Tune's CSV, JSON and TensorBoard logs are always written)."
        )


STUDY_NAME = re.compile(r"(?!.*\.\.)[A-Za-z0-9_+=,-][A-Za-z0-9._+=,-]*")

# may change when a study resumes
RUNTIME_OPTIONS = ("resume", "resume_existing", "address", "cluster_config", "dashboard_host", "dry_run", "verbose")
PATH_OPTIONS = ("data", "storage", "cache_dir", "weights", "grid")  # recorded as absolute paths


def resumed_args(args: argparse.Namespace, argv: list[str]) -> argparse.Namespace:
    """The recorded arguments of the study at `args.resume`, with its current location.
    An option given beside --resume that differs from the recorded one is refused; an
    option the recording lacks (an older version) takes its default."""
    if store.is_uri(args.resume):  # its study.json, copied to the study's local mirror
        directory = args.resume.rstrip("/")
        path = store.join(directory, STUDY_FILE)  # not a local file: the error below, unless it is stored
        if store.exists(path):
            path = store.download(path, os.path.join(store.mirror(directory), STUDY_FILE))
    else:
        directory = os.path.abspath(args.resume)
        path = os.path.join(directory, STUDY_FILE)
    if not os.path.isfile(path):
        raise UserError(f"--resume {args.resume}: no {STUDY_FILE} there; is it a study's results directory?")
    recorded = {**vars(parse_args([])), **read_json(path)["args"]}
    parent, _, name = directory.rpartition("/")  # a URI's parent, or the path's
    recorded.update(storage=parent if store.is_uri(directory) else os.path.dirname(directory), name=name)
    given = explicit_options(argv)
    for key, value in list(recorded.items()):  # credentials are never recorded: given again, or refused
        if isinstance(value, str) and store.SECRET in value:
            if key not in given:
                option = f"--{key.replace('_', '-')}"
                raise UserError(
                    f"--resume {store.redact(directory)}: the study's {option} {value} held credentials, which are "
                    f"not recorded; pass {option} again (or give them by environment: AWS_*, MLFLOW_TRACKING_*)."
                )
            if store.redact(given[key]) == value:
                recorded[key] = given[key]
    differ = [
        f"--{key.replace('_', '-')} {value!r} (the study has {recorded[key]!r})"
        for key, value in given.items()
        if key not in RUNTIME_OPTIONS and comparable(key, value) != comparable(key, recorded[key])
    ]
    if differ:
        raise UserError(
            f"--resume {directory} continues the study with the options it started with, and "
            f"these differ: {'; '.join(differ)}. Drop them, or start a new study with --name."
        )
    recorded.update(
        resume=directory,
        address=args.address,
        cluster_config=args.cluster_config,
        dashboard_host=args.dashboard_host,
        dry_run=False,
        verbose=args.verbose,
    )
    return argparse.Namespace(**recorded)


def existing_study(args: argparse.Namespace) -> str | None:
    """--resume-existing: the study --name names under --storage, if it has a study.json."""
    if not args.name:
        raise UserError("--resume-existing resumes the study --name names; give --name.")
    location = store.join(comparable("storage", args.storage), args.name)
    if not store.exists(store.join(location, STUDY_FILE)):
        return None
    print(f"{store.redact(location)} exists: resuming it (--resume-existing).")
    return location


def comparable(key: str, value: Any) -> Any:
    """Paths compare as absolute paths (a named weights spec stays a name)."""
    named = (key == "weights" and value in NAMED_WEIGHTS) or (key == "grid" and not is_grid_file(str(value)))
    if key in PATH_OPTIONS and isinstance(value, str) and not named and not store.is_uri(value):
        return os.path.abspath(os.path.expanduser(value))
    return value


def with_absolute_paths(args: argparse.Namespace) -> argparse.Namespace:
    """--data, --weights (a file), --storage and --cache-dir as absolute paths, so the
    record means the same from any directory; --cache-dir defaults to STORAGE/trunk-cache
    (with --storage URI, on this machine's disk: ~/.cache/face-age/trunk-cache)."""
    paths = {key: comparable(key, getattr(args, key)) for key in PATH_OPTIONS}
    paths["cache_dir"] = paths["cache_dir"] or os.path.join(local_root(paths["storage"]), "trunk-cache")
    return argparse.Namespace(**{**vars(args), **paths})


def local_root(storage: str) -> str:
    """Where local files that would go beside the results go: --storage, unless it is a URI."""
    return store.MIRRORS if store.is_uri(storage) else storage


def load_data(args: argparse.Namespace) -> FaceData:
    """The dataset, its decoded images stored beside the trunk cache (CACHE_DIR/images)."""
    images = os.path.join(args.cache_dir, "images")
    if args.data is None:
        if args.grid != "smoke":
            raise UserError(f"--data is required for grid {args.grid!r} (only 'smoke' generates its own).")
        root = make_smoke_data(os.path.join(local_root(args.storage), "smoke-data"))
        print(f"Generated smoke images under {root}")
        return load_el7008(root, SMOKE_RANGES, images)
    return dataset_from_args(args, images)


OVERRIDES = (
    "weights",
    "max_epochs",
    "precision",
    "train_precision",
    "augment_views",
    "normalization",
    "stop_rule",
    "es_rounds",
    "class_weights",
    "sampler",
)


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The options that set a trial config key for every trial of the grid."""
    return {key: getattr(args, key) for key in OVERRIDES if getattr(args, key) is not None}


def trial_configs(args: argparse.Namespace) -> list[dict[str, Any]]:
    where = parse_where(args.where)
    return expand(args.grid, seeds=args.seeds, first_seed=args.first_seed, overrides=overrides(args), where=where)


def dry_run(args: argparse.Namespace, configs: list[dict[str, Any]]) -> int:
    """Every trial Tune would run, in its order, from the same search space."""
    from study.space import name_width, param_space, trial_name, trials_of

    trials = trials_of(param_space(configs))
    width = name_width(c["experiment"] for c in trials)
    table = pd.DataFrame(trials).reindex(columns=DRY_RUN_COLUMNS)
    table.insert(0, "trial", [trial_name(c, width) for c in trials])
    print(table.to_string(index=False))
    n_configs = len({c["config_id"] for c in trials})
    print(
        f"\nGrid {grid_label(args.grid)!r}: {n_configs} configurations x {len(trials) // n_configs} seed(s) = "
        f"{len(trials)} trials; scheduler {args.scheduler or get_grid(args.grid).scheduler}."
    )
    return 0


def summary_row(
    result: Any, directory: str, weights_labels: dict[str, str], reference: dict[str, Any]
) -> dict[str, Any]:
    """One trial: how it ended, its best epoch's scores, and the settings that make them comparable."""
    metrics = result.metrics or {}
    status, stopped_by = trial_outcome(directory, final_metrics(result))
    if result.error is not None:
        status, stopped_by = "error", f"error: {type(result.error).__name__}"
    values = {**result.config, **metrics, "status": status, "stopped_by": stopped_by}
    return {
        **{title: values.get(key) for key, title in SUMMARY_COLUMNS.items()},
        # the resolved precisions once finished
        **comparable_settings(result.config, weights_labels, values.get("precision"), values.get("precision_trained")),
        "differs from #1": differs_from(result.config, reference),
    }


def summarize(
    results: Any, experiment_dir: str, weights_labels: dict[str, str], reference: dict[str, Any]
) -> tuple[str, int]:
    """The trials (sorted by experiment and seed) and, per configuration, their settings;
    summary.csv holds both, one row per trial. Returns the text and how many trials failed."""
    rows = [summary_row(r, trial_dir(r, experiment_dir), weights_labels, reference) for r in results]
    if not rows:
        return "No trial started.", 0
    table = pd.DataFrame(rows).sort_values(["exp", "seed"])
    write_with(os.path.join(experiment_dir, SUMMARY_FILE), lambda tmp: table.to_csv(tmp, index=False))
    settings = table[["exp", "name", *SETTINGS_COLUMNS]].drop_duplicates()
    text = "\n\n".join(
        [
            table[list(SUMMARY_COLUMNS.values())].to_string(index=False, float_format=lambda v: f"{v:.3f}"),
            "Settings per configuration:\n" + settings.to_string(index=False),
        ]
    )
    return text, int((table.status == "error").sum())


@dataclass
class Plan:
    """A study about to run: where it goes, its trials, and what its summary compares with."""

    name: str
    directory: str  # on this machine: the study itself, or the local mirror of a stored one
    configs: list[dict[str, Any]]
    reference: dict[str, Any]  # experiment 1's resolved config, for "differs from #1"
    weights_labels: dict[str, str]
    location: str  # where Ray writes the trials: `directory`, or a URI (trainable.storage)

    @property
    def stored(self) -> bool:
        """In object storage: Ray writes to `location`, the study's own files go to `directory` first."""
        return self.location != self.directory


def run(args: argparse.Namespace, argv: list[str]) -> int:
    if args.resume_existing and not args.resume:
        args.resume = existing_study(args)
    if args.resume:
        args = resumed_args(args, argv)
    check_args(args)
    args = with_absolute_paths(args)
    if args.search != "grid":
        return run_search(args, argv)
    configs = trial_configs(args)
    if args.dry_run:
        return dry_run(args, configs)
    plan = plan_study(args, configs)
    data = load_data(args)
    if args.resume:
        check_same_study(plan.directory, data, args.grid, list(plan.weights_labels))
    scheduler = args.scheduler or get_grid(args.grid).scheduler
    sizes = ", ".join(f"{k} {v}" for k, v in data.sizes().items())
    print(
        f"{len(configs)} trial(s) of grid {grid_label(args.grid)!r} on {data.root} ({data.layout}: {sizes}; "
        f"classes {', '.join(data.classes)}), scheduler {scheduler}"
    )
    print(class_count_lines(data.class_counts()))
    ray = start_ray(args)
    if not args.resume:
        record_study(plan, args, argv, data)
    from study.encoding import encode_for_trials

    encode_for_trials(plan.configs, data, args.cache_dir, cpus=args.cpus_per_trial or 1, gpus=args.gpus_per_trial)
    results = grid_tuner(plan, args, data, ray, scheduler).fit()
    return finish(plan, results)


def run_search(args: argparse.Namespace, argv: list[str]) -> int:
    """--search random | optuna: --num-samples trials of a space of ranges, then (with
    --confirm-top K) the K best again with --seeds fresh seeds (study.search)."""
    from ray.tune.search.sample import Domain

    from study import search

    grid = get_grid(args.grid)
    if not grid.ranges:
        raise UserError(
            f"--search {args.search} needs a space of ranges: --grid search, or a grid file with "
            f"{{loguniform|uniform|choice: ...}} values; grid {grid_label(args.grid)!r} has none."
        )
    space = search.search_space(grid, overrides(args), seed=args.first_seed)
    searched = search.searched_keys(space)
    fixed = {k: v for k, v in space.items() if not isinstance(v, Domain)}
    if args.dry_run:
        print("\n".join(f"{k}: {space[k].domain_str if k in searched else space[k]}" for k in space))
        print(f"\n{args.search} search: {args.num_samples} trials over {', '.join(searched)}.")
        return 0
    plan = plan_study(args, [fixed])
    space["weights"] = plan.configs[0]["weights"]
    data = load_data(args)
    if args.resume:
        check_same_study(plan.directory, data, args.grid, list(plan.weights_labels))
    scheduler = args.scheduler or grid.scheduler
    print(f"{args.search} search: {args.num_samples} trial(s) over {', '.join(searched)}; scheduler {scheduler}")
    print(class_count_lines(data.class_counts()))
    ray = start_ray(args)
    if not args.resume:
        record = {"kind": args.search, "num_samples": args.num_samples, "searched": searched}
        record_study(plan, args, argv, data, search=record, expansions=grid.expansions)
    from study import tune_setup
    from study.space import TrialNames

    trainable = study_trainable(args, data, ray, grid.expansions)
    if args.resume and tune_setup.can_restore(plan.location):
        tuner = tune_setup.restore_tuner(plan.location, trainable)
    else:
        points = search.paper_points(grid, space, overrides(args))
        tuner = tune_setup.make_tuner(
            trainable,
            space,
            name=plan.name,
            storage=args.storage,
            scheduler=tune_setup.make_scheduler(
                scheduler, max_epochs=fixed["max_epochs"], grace_period=args.grace_period
            ),
            max_failures=args.max_failures,
            names=TrialNames(searched=tuple(searched)),
            select=args.select,
            search_alg=search.make_searcher(args.search, points, args.max_concurrent or 0, seed=args.first_seed),
            num_samples=args.num_samples,
            budget=budget(args, plan),
            verbose=2 if args.verbose else 0,
            callbacks=watchers(args, plan, args.num_samples),
        )
    results = tuner.fit()
    if not args.confirm_top:
        return finish(plan, results)
    fetch(plan)
    summarize(results, plan.directory, plan.weights_labels, plan.reference)  # the search's own summary.csv
    confirmed = confirm(plan, args, trainable, results, grid.expansions)
    if confirmed is None:
        return finish(plan, results)
    return finish(plan, confirmed, os.path.join(plan.directory, CONFIRM_DIR))


def confirm(plan: Plan, args: argparse.Namespace, trainable: Any, searched: Any, expansions: dict) -> Any:
    """Rerun the --confirm-top best searched configurations with --seeds fresh seeds, as a grid
    in STUDY/confirm; return its results (None when no searched trial has a score)."""
    from study import search, tune_setup
    from study.console import Progress
    from study.space import TrialNames, param_space

    location = store.join(plan.location, CONFIRM_DIR)
    scored = []
    key, mode = SELECTIONS[args.select]
    for result in searched:
        value = (result.metrics or {}).get(key)  # the best epoch's so far: what Tune and the searcher saw
        if value is None or value != value:
            continue
        scored.append((search_trial_number(result.path), result.config, -value if mode == "min" else value))
    configs = search.confirm_configs(scored, args.confirm_top, args.seeds, expansions, args.first_seed)
    if not configs:
        print("\nNothing to confirm: no searched trial has a finite validation loss.")
        return None
    print(f"\nConfirming the {len(configs) // args.seeds} best searched configuration(s), {args.seeds} fresh seed(s)")
    if tune_setup.can_restore(location):
        tuner = tune_setup.restore_tuner(location, trainable, grid_trials=len(configs))
    else:
        tuner = tune_setup.make_tuner(
            trainable,
            param_space(configs),
            name=CONFIRM_DIR,
            storage=plan.location,
            scheduler=tune_setup.make_scheduler("none", max_epochs=1, grace_period=1),
            max_failures=args.max_failures,
            names=TrialNames.of(configs),
            select=args.select,
            verbose=2 if args.verbose else 0,
            callbacks=[] if args.verbose else [Progress(len(configs))],
        )
    return tuner.fit()


def study_trainable(args: argparse.Namespace, data: FaceData, ray: Any, expansions: dict) -> Any:
    from study import tune_setup

    live, addable = node_shapes(ray, args.cluster_config)
    node_cpus = max(shape.get("CPU", 0) for shape in [*live, *addable.values()] if shape)
    return tune_setup.make_trainable(
        data,
        cache_dir=args.cache_dir,
        cpus=args.cpus_per_trial,
        gpus=args.gpus_per_trial,
        node_cpus=node_cpus,
        expansions=expansions,
    )


def class_count_lines(counts: dict[str, dict[str, int]]) -> str:
    """'Images per class: train 1-4 120 (33%), ...', one line per split: imbalance in plain sight."""
    lines = ["Images per class (share of the split):"]
    for split, per_class in counts.items():
        total = sum(per_class.values()) or 1
        lines.append(f"  {split:5} " + ", ".join(f"{c} {n} ({100 * n / total:.0f}%)" for c, n in per_class.items()))
    return "\n".join(lines)


def plan_study(args: argparse.Namespace, configs: list[dict[str, Any]]) -> Plan:
    """Name the study and check what can be checked before any work: the directory, the
    MLflow URI and the weights (downloaded or read once here)."""
    name = args.name or f"{grid_label(args.grid)}-{time.strftime('%Y%m%d-%H%M%S')}"
    location = store.join(args.storage, name)
    directory = store.mirror(location) if store.is_uri(location) else location
    lock = StudyLock(directory)
    if args.resume:
        lock.take()
    else:
        if store.is_uri(location):
            if store.exists(location):
                raise UserError(f"{location} exists; pick another --name, or continue it with --resume {location}.")
            lock.refuse_if_held()
            shutil.rmtree(directory, ignore_errors=True)  # the mirror of an older study of that URI
        lock.create(f"--resume {location}")
    if args.mlflow:
        from study.tracking import check_tracking_uri

        check_tracking_uri(args.mlflow, name)
    resolved = {w: resolve_weights(w) for w in {c["weights"] for c in configs}}
    for config in configs:
        config["weights"] = resolved[config["weights"]]
    reference = reference_config(overrides(args))
    reference["weights"] = resolved.get(reference["weights"], reference["weights"])
    labels = {spec: weights_label(spec) for spec in resolved.values()}
    return Plan(name, directory, configs, reference, labels, location)


def start_ray(args: argparse.Namespace) -> Any:
    """Start (or join) Ray with its dashboard and check the cluster can run a trial."""
    import ray

    logging.getLogger("ray._private.authentication").setLevel(logging.WARNING)  # shown even without -v
    if not args.verbose:  # Tune's classic reporter prints nothing at verbose 0; the new one still does
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    context = ray.init(
        address=args.address,
        log_to_driver=args.verbose,  # the trials' own log lines (checkpoints saved, ...) only with -v
        include_dashboard=True,
        dashboard_host=args.dashboard_host,
        logging_level="INFO" if args.verbose else "ERROR",  # Ray's chatter only with -v
    )
    if context.dashboard_url:
        print(f"Ray dashboard: http://{context.dashboard_url} (token: `ray get-auth-token`; see README)")
    private_token_file()
    check_resources(*node_shapes(ray, args.cluster_config), args)
    return ray


def private_token_file() -> None:
    """Ray's token file (RAY_AUTH_TOKEN_PATH, else ~/.ray/auth_token, which Ray writes
    readable by everyone) made readable by its owner only: the token lets code run on the cluster."""
    path = os.path.expanduser(os.environ.get("RAY_AUTH_TOKEN_PATH") or os.path.join("~", ".ray", "auth_token"))
    if os.path.isfile(path) and os.stat(path).st_mode & 0o077:
        os.chmod(path, 0o600)
        print(f"Made {path} (Ray's authentication token) readable by its owner only (mode 600).")


def record_study(plan: Plan, args: argparse.Namespace, argv: list[str], data: FaceData, **extra: Any) -> None:
    """study.json (and the list of skipped files) before the first trial starts."""
    write_provenance(
        plan.directory,
        argv,
        args={k: store.redact(v) if isinstance(v, str) else v for k, v in vars(args).items()},
        grid=grid_label(args.grid),
        grid_file={"path": args.grid, "text": get_grid(args.grid).text},
        trials=plan.configs,
        reference_config=plan.reference,
        weights_labels=plan.weights_labels,
        weights_ids={spec: weights_id(spec) for spec in plan.weights_labels},
        data_root=data.root,
        data_fingerprint=data.fingerprint,
        data_files=dict(zip(data.paths, data.hashes, strict=True)),
        data_layout=data.layout,
        classes=data.classes,
        split_sizes=data.sizes(),
        class_counts=data.class_counts(),
        skipped_files=data.skipped,
        converted_files=data.converted,
        duplicate_files=data.duplicates,
        **data.split_record(),
        **extra,
    )
    if data.skipped:
        write_text(os.path.join(plan.directory, SKIPPED_FILE), "\n".join(data.skipped) + "\n")
    if plan.stored:
        store.upload(plan.directory, plan.location)


def grid_tuner(plan: Plan, args: argparse.Namespace, data: FaceData, ray: Any, scheduler: str) -> Any:
    """A new Tuner, or the interrupted one restored (finished trials stay finished)."""
    from study import tune_setup
    from study.space import TrialNames, param_space

    trainable = study_trainable(args, data, ray, {})
    if args.resume and tune_setup.can_restore(plan.location):
        return tune_setup.restore_tuner(plan.location, trainable, grid_trials=len(plan.configs))
    if args.resume:
        print("Ray recorded no trial of this study before it stopped; starting its trials afresh.")
    max_epochs = max(c["max_epochs"] for c in plan.configs)
    return tune_setup.make_tuner(
        trainable,
        # A grid over experiments x seeds; long full-network trials first: started last, they
        # would wait for a whole node while short cached trials keep taking single cores.
        param_space(plan.configs),
        names=TrialNames.of(plan.configs),
        select=args.select,
        name=plan.name,
        storage=args.storage,
        scheduler=tune_setup.make_scheduler(scheduler, max_epochs=max_epochs, grace_period=args.grace_period),
        max_failures=args.max_failures,
        budget=budget(args, plan),
        verbose=2 if args.verbose else 0,
        callbacks=watchers(args, plan, len(plan.configs)),
    )


def watchers(args: argparse.Namespace, plan: Plan, trials: int) -> list[Any]:
    """The console's progress lines (Tune's own output instead with -v) and, with --mlflow,
    the MLflow logger (it attaches study.json from the study's local folder)."""
    from study.console import Progress
    from study.tune_setup import mlflow_callbacks

    return ([] if args.verbose else [Progress(trials)]) + mlflow_callbacks(args.mlflow, plan.name, plan.directory)


def budget(args: argparse.Namespace, plan: Plan) -> Any:
    from study.tune_setup import EpochBudget

    return EpochBudget(args.budget_epochs, plan.directory) if args.budget_epochs else None


def fetch(plan: Plan) -> None:
    """A stored study's files into its local mirror (Ray wrote the trials to the URI)."""
    if plan.stored:
        store.download(plan.location, plan.directory)


def finish(plan: Plan, results: Any, summary_dir: str | None = None) -> int:
    """Print the summary (and the random-weights note), written to SUMMARY_DIR/summary.csv
    (default the study's); exit 1 if any trial failed. A stored study is summarized in its
    local mirror, and what that adds (summary.csv, best/, ...) is copied up."""
    fetch(plan)
    summary_dir = summary_dir or plan.directory
    started = [r for r in results if r.config is not None and os.path.isdir(trial_dir(r, summary_dir))]
    if os.path.exists(spent_file := os.path.join(plan.directory, BUDGET_FILE)):
        mark_budget_stops(started, summary_dir)
        with open(spent_file) as f:
            spent = json.load(f)
        print(
            f"\nThe budget of {spent['budget_epochs']} trial-epochs was spent ({spent['spent']} trained): "
            f"{len(results) - len(started)} trial(s) never started; trials running then stopped (stopped_by budget)."
        )
    table, failed = summarize(started, summary_dir, plan.weights_labels, plan.reference)
    best_line, best_failed = choose_best(plan.directory)
    if plan.stored:
        store.upload(plan.directory, plan.location)
    where = f"{store.redact(plan.location)} (local copy: {plan.directory})" if plan.stored else plan.location
    print(f"\n{table}\n\nResults: {where}")
    print(best_line)
    if not all(is_pretrained(c["weights"]) for c in plan.configs):
        print(f"\nNote: {RANDOM_INIT_NOTICE}")
    if failed:
        print(f"{failed} trial(s) failed; their errors are in the trial directories.", file=sys.stderr)
    return 1 if failed or best_failed else 0


def choose_best(directory: str) -> tuple[str, bool]:
    """Write best/ (analysis.best, the one part of analysis the study runs: in this process,
    so its failure is seen); (the line to print, whether it failed). The results stay
    whatever happens there: a failure is a line and exit code 1, never a traceback."""
    from analysis.best import NO_BEST, write_best

    try:
        return write_best(directory) or NO_BEST, False
    except Exception as err:  # any bug there must not hide the summary printed before it
        where = f"python -m analysis.best {directory}"
        return f"Choosing the best model failed ({type(err).__name__}: {err}); `{where}` retries it.", True


def trial_dir(result: Any, experiment_dir: str) -> str:
    """A trial's folder on this machine (Ray's result.path may be a path in object storage)."""
    return os.path.join(experiment_dir, os.path.basename(result.path))


def final_metrics(result: Any) -> dict[str, Any] | None:
    """A trial's final report (its test scores), or None if it ended before making one."""
    return result.metrics if is_final(result.metrics or {}) else None


def mark_budget_stops(results: Any, experiment_dir: str) -> None:
    """Trials that --budget-epochs stopped before they ended say so (STOPPED_FILE)."""
    for result in results:
        directory = trial_dir(result, experiment_dir)
        if trial_outcome(directory, final_metrics(result))[0] == "unfinished":
            write_json(os.path.join(directory, STOPPED_FILE), {"stopped_by": "budget"})


def check_same_study(experiment_dir: str, data: FaceData, grid: str, weights: list[str]) -> None:
    """A resumed study runs on the images, the grid file and the weights files it started with."""
    recorded = read_json(os.path.join(experiment_dir, STUDY_FILE))
    for spec in weights:  # (a study recorded before weights_ids is not checked)
        before, now = recorded.get("weights_ids", {}).get(spec), weights_id(spec)
        if before is not None and before != now:
            raise UserError(
                f"--weights {spec} changed since the study in {experiment_dir} started ({now[:19]}..., recorded "
                f"{before[:19]}...); resuming would mix two trunks. Restore the file, or start a new study with --name."
            )
    if recorded["data_fingerprint"] != data.fingerprint:
        raise UserError(
            f"The images under {data.root} changed since the study in {experiment_dir} started "
            f"(fingerprint {data.fingerprint[:12]} vs {recorded['data_fingerprint'][:12]}); resuming would mix results."
        )
    text = recorded.get("grid_file", {}).get("text")
    if text is not None and text != get_grid(grid).text:
        raise UserError(
            f"The grid file {grid} changed since the study in {experiment_dir} started (its text is recorded in "
            f"{STUDY_FILE}); resuming would mix grids. Restore the file, or start a new study with --name."
        )


Shape = dict[str, float]  # a node's resources, e.g. {"CPU": 8, "GPU": 1}


def node_shapes(ray: Any, cluster_config: str | None) -> tuple[list[Shape], dict[str, Shape | None]]:
    """The resources of each live node, and of each node type the cluster's autoscaler may
    add (None where its config leaves them to be detected). Ray has no public call for the
    latter: the types come from the cluster config the autoscaler runs (--cluster-config,
    by default ~/ray_bootstrap_config.yaml, where `ray up` puts it on the head), or from
    the node groups Ray's state API holds (KubeRay reports them)."""
    live = [node["Resources"] for node in ray.nodes() if node["Alive"]]
    path = cluster_config or os.path.expanduser("~/ray_bootstrap_config.yaml")
    if os.path.isfile(path):
        with open(path) as f:
            types = (yaml.safe_load(f) or {}).get("available_node_types", {})
        return live, {name: t.get("resources") or None for name, t in types.items() if t.get("max_workers", 1) > 0}
    try:
        from ray._private.state import state

        groups = state.get_cluster_config().node_group_configs
    except Exception:  # no autoscaler (a local Ray), or a Ray without this call
        groups = []
    return live, {group.name: dict(group.resources) for group in groups if group.max_count != 0}


def check_resources(live: list[Shape], addable: dict[str, Shape | None], args: argparse.Namespace) -> None:
    """Refuse a per-trial request no node can ever grant (Ray would wait forever): a trial's
    CPUs and GPUs must fit on one node, live or of a type the autoscaler may add. When only
    such a type fits, say that the study waits for the autoscaler to add one."""
    need = {"CPU": args.cpus_per_trial or 1, "GPU": args.gpus_per_trial}

    def fits(shape: Shape | None) -> bool:  # None: a node type whose resources Ray detects at launch
        return shape is None or all(shape.get(key, 0) >= amount for key, amount in need.items())

    if any(fits(shape) for shape in live):
        return
    wanted = "CPU {CPU:g}, GPU {GPU:g}".format(**need)
    if types := [name for name, shape in addable.items() if fits(shape)]:
        print(f"No live node has {wanted} for a trial; the autoscaler can add node type {types[0]!r}: waiting for it.")
        return
    largest = ", ".join(sorted({shape_text(s) for s in live})) or "none"
    kinds = ", ".join(f"{name} ({shape_text(s)})" for name, s in addable.items()) or "none known (see --cluster-config)"
    raise UserError(
        f"A trial asks for {wanted} on one node (--cpus-per-trial, --gpus-per-trial), more than any node "
        f"has or the autoscaler can add. Live nodes: {largest}; node types it can add: {kinds}. Lower "
        f"the request, or add a node type that has it to the cluster config."
    )


def shape_text(shape: Shape | None) -> str:
    if shape is None:
        return "resources detected at launch"
    return f"CPU {shape.get('CPU', 0):g}, GPU {shape.get('GPU', 0):g}"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    try:
        return run(args, argv)
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
