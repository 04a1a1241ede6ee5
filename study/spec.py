"""A study's settings: `StudySpec`, the study-level twin of `TrialConfig`, frozen and
validated once. Its fields are the command-line options (trainable.cli_options), study.json
records it (`record`) and a resumed study is rebuilt from that record (study.cli.options)."""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import os
import re
from dataclasses import dataclass
from typing import Any

from study.grids import GRIDS, MAX_TRIALS, SEARCHES, STUDY_KEYS, get_grid, is_grid_file, parse_settings
from trainable.cli_options import option, options
from trainable.config import CLASS_WEIGHTS, NAMED_WEIGHTS, NORMALIZATIONS, PRECISIONS, SAMPLERS, STOP_RULES
from trainable.data.dataset_options import DataOptions, check_targets
from trainable.errors import UserError
from trainable.results import storage as store
from trainable.results.layout import DEFAULT_SELECT, SELECTIONS
from trainable.seeds import MAX_SEED

STUDY_NAME = re.compile(r"(?!.*\.\.)[A-Za-z0-9_+=,-][A-Za-z0-9._+=,-]*")
MAX_NAME = 200  # a folder name: file systems allow 255 bytes, and Ray's files inside add to paths
# The options that set one trial config key for every trial (None: the grid's own value).
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


@dataclass(frozen=True)
class StudySpec:
    """Everything a study depends on, and where and how this run of it happens."""

    grid: str | None = option(
        None, f"named grid ({', '.join(sorted(GRIDS))}) or a grid file FILE.yaml/.json", path=True
    )
    dataset: DataOptions = DataOptions()  # --data, --layout, ... (smoke generates its data when --data is absent)
    # what every trial of the grid gets
    weights: str | None = option(None, "vggface2 | casia-webface | none | PATH (default: the grid's)", path=True)
    max_epochs: int | None = option(None, "cap on epochs per trial (default: the grid's, 400)", type=int)
    precision: str | None = option(None, "the frozen trunk's precision (default auto)", choices=PRECISIONS)
    train_precision: str | None = option(
        None,
        "the trained part's precision, the same cached or not (default fp32; bf16 speeds up full-network "
        "trials on CPUs with AMX or AVX512-BF16 and on GPUs)",
        choices=PRECISIONS,
    )
    normalization: str | None = option(
        None,
        "input scaling: facenet (what the pretrained trunks expect) or dataset statistics (default facenet)",
        choices=NORMALIZATIONS,
    )
    stop_rule: str | None = option(
        None,
        "patience: no val-loss improvement for `patience` epochs (default 10; --set patience=N); paper: the "
        "2021 report's rule "
        "(the user guide's 'Running a study')",
        choices=STOP_RULES,
    )
    es_rounds: int | None = option(None, "paper stop rule: epochs allowed in a row (default 10)", type=int)
    class_weights: str | None = option(
        None,
        "balanced: weight each class's training loss by n / (classes x its count) (default none)",
        choices=CLASS_WEIGHTS,
    )
    sampler: str | None = option(
        None,
        "balanced: each epoch draws training images with every class equally likely (default random)",
        choices=SAMPLERS,
    )
    augment_views: int | None = option(
        None, "online augmentation from K cached views per image (frozen trunk) instead of fresh draws", type=int
    )
    settings: tuple[str, ...] = option(
        (),
        "set any trial setting for every trial, as a grid file's top-level value would (repeatable, e.g. "
        "--set dropout=0.3); shown in --dry-run and in 'differs from #1'",
        metavar="KEY=VALUE",
        flags=("--set",),
    )
    # which trials, ranked how
    seeds: int = option(3, "seeds per configuration")
    first_seed: int = option(
        0,
        "grid trials use seeds F..F+seeds-1; a search's sampler and trials use F, its confirmation F+1..",
        metavar="F",
    )
    where: tuple[str, ...] = option(
        (), "keep only the grid's experiments with this setting (repeatable)", metavar="KEY=VALUE"
    )
    max_trials: int = option(MAX_TRIALS, "refuse a grid study of more trials (experiments x seeds, after --where)")
    scheduler: str | None = option(None, "default: the grid file's (asha for extended)", choices=("asha", "none"))
    search: str = option(
        "grid",
        "grid: every trial of --grid; random or optuna: --num-samples trials of a space of ranges "
        "(--grid search, or a file with loguniform/uniform/choice values)",
        choices=SEARCHES,
    )
    num_samples: int = option(20, "--search random/optuna: trials to run")
    max_concurrent: int | None = option(None, "--search random/optuna: trials at a time (default: no cap)", type=int)
    confirm_top: int | None = option(
        None,
        "then rerun the K best configurations (by --select) with --confirm-seeds fresh seeds: the report claims the "
        "best against the baselines and the 2021 figures on those runs only (default: 1 for a grid, 0 for a "
        "search; 0: none)",
        metavar="K",
        type=int,
    )
    confirm_seeds: int = option(
        5,
        "fresh seeds of each --confirm-top configuration; 5, what the report's test of the best against a "
        "one-run baseline (HOG + SVM) needs to hold its level and find a 10-point gap 4 times in 10 (3 seeds: "
        "a third of the time; docs/statistics.md)",
        metavar="N",
    )
    select: str = option(
        DEFAULT_SELECT,
        "the one metric Tune, ASHA, the searcher, --confirm-top, best.json and the report rank on: the best "
        "epoch's (lowest val loss) value",
        choices=tuple(SELECTIONS),
    )
    grace_period: int = option(10, "epochs before ASHA may stop a trial")
    budget_epochs: int | None = option(
        None,
        "stop the study once its trials have trained N epochs in all (trials not started are left out)",
        type=int,
        metavar="N",
    )
    # where results go
    evaluate_on: tuple[str, ...] = option(
        (),
        "after the study, score every seed of the best configuration on this other labelled dataset (repeatable; "
        "LAYOUT as --layout; faces detected for fgnet): the report's 'Beyond the training data'",
        metavar="DIR[:LAYOUT]",
        runtime=True,
    )
    storage: str = option("results", "directory (or s3://, gs://, file:// URI) that holds results", path=True)
    name: str | None = option(None, "study name (default GRID-DATE-TIME)")
    cache_dir: str | None = option(None, "trunk-output cache (default STORAGE/trunk-cache)", path=True)
    max_failures: int = option(0, "retries of a failing trial from its checkpoint")
    mlflow: str | None = option(
        None,
        "also log the study to this MLflow tracking URI, e.g. sqlite:///mlflow.db or http://HOST:5000: a run per "
        "trial, the study's run with its summary, best.json and best model (an MLflow model)",
        metavar="URI",
    )
    wandb: str | None = option(
        None,
        "also log each trial to this Weights & Biases project (Ray's WandbLoggerCallback; one run per trial, "
        "grouped by study; WANDB_MODE=offline writes the runs under STUDY/wandb)",
        metavar="PROJECT",
    )
    mlflow_register: str | None = option(
        None, "with --mlflow: register the best model in MLflow's model registry under NAME", metavar="NAME"
    )
    cpus_per_trial: float | None = option(
        None, "default: 1 for cached trials, up to 4 for full-network ones", type=float
    )
    gpus_per_trial: float = option(0.0, "fractions pack trials on a GPU")
    # this run: free to differ when the study resumes
    resume: str | None = option(None, "continue this interrupted study", metavar="RESULTS_DIR", runtime=True)
    resume_existing: bool = option(
        False, "with --name: if that study exists, resume it instead of refusing (a retried job)", runtime=True
    )
    address: str | None = option(None, "join a running Ray cluster (auto or HOST:PORT)", runtime=True)
    cluster_config: str | None = option(
        None,
        "the autoscaler's cluster config, for the node types it may add (default ~/ray_bootstrap_config.yaml)",
        metavar="FILE",
        runtime=True,
    )
    dashboard_host: str = option("127.0.0.1", "interface the dashboard listens on", runtime=True)
    dry_run: bool = option(False, "print the trials and exit without Ray", runtime=True)
    verbose: bool = option(False, "Tune's full output and Ray's log messages", flags=("-v", "--verbose"), runtime=True)
    progress_every: float = option(
        30.0,
        "off a terminal (a log file, a batch job), a line per running trial at least every S seconds",
        metavar="S",
        runtime=True,
    )
    # Not an option: the URI options whose credentials moved to the environment (from_options);
    # study.json marks them REDACTED, so that --resume asks for them again.
    with_credentials: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check(self)

    @classmethod
    def from_options(cls, values: dict[str, Any]) -> StudySpec:
        """From option values (the parsed command line, or a study.json record: check_recorded
        refuses a key that is no option), with paths made absolute so the record means the same
        from any directory; a key not given takes its default."""
        defaults = {name: f.default for name, f in FIELDS.items()}
        from_file = grid_file_options(values.get("grid")) if set(STUDY_KEYS) - set(values) else {}
        values = {**defaults, **from_file, **values}
        values = {k: absolute(k, v) for k, v in values.items()}
        # Credentials in a URI move to the environment here, before anything records or prints it.
        moved = {
            key: store.credentials_to_environment(values[key], f"--{key}") for key in ("storage", "mlflow", "resume")
        }
        values["with_credentials"] = tuple(key for key, clean in moved.items() if clean != values[key])
        values.update(moved)
        values["where"], values["settings"] = tuple(values["where"] or ()), tuple(values["settings"] or ())
        values["cache_dir"] = values["cache_dir"] or os.path.join(local_root(values["storage"]), "trunk-cache")
        dataset = DataOptions(**{f.name: values.pop(f.name) for f in options(DataOptions)})
        return cls(dataset=dataset, **values)

    def record(self) -> dict[str, Any]:
        """The options as study.json records them: flat (as on the command line), credentials redacted
        (an option whose URI held them as scheme://REDACTED@...)."""
        flat = {**dataclasses.asdict(self.dataset), **{f.name: getattr(self, f.name) for f in options(StudySpec)}}
        for key in self.with_credentials:
            scheme, rest = flat[key].split("://", 1)
            flat[key] = f"{scheme}://{store.SECRET}@{rest}"
        return {
            k: store.redact_argument(v) if isinstance(v, str) else list(v) if isinstance(v, tuple) else v
            for k, v in flat.items()
        }

    def overrides(self) -> dict[str, Any]:
        """The options that set a trial config key for every trial of the grid (experiment 1's
        reference too: they are the study's conditions, not a difference)."""
        return {key: getattr(self, key) for key in OVERRIDES if getattr(self, key) is not None}

    @property
    def confirmations(self) -> int:
        """--confirm-top, or its default: 1 for a grid (its best is claimed on fresh seeds), 0 for a search."""
        if self.confirm_top is not None:
            return self.confirm_top
        return 1 if self.search == "grid" else 0

    def trial_settings(self) -> dict[str, Any]:
        """--set KEY=VALUE, typed: settings every trial gets as if the grid file had them
        (so they differ from experiment 1 where its value differs)."""
        return parse_settings(self.settings)


KIND_NAMES = {int: "a whole number", float: "a number", str: "text"}


def grid_file_options(grid: str | None) -> dict[str, Any]:
    """The study options a grid file holds (study.grids.STUDY_KEYS), each checked as its
    option would be; {} for a named grid or none."""
    if not grid or not is_grid_file(str(grid)):
        return {}  # (a study.json record holds every option: its grid file is not read again here)
    found = get_grid(str(grid)).study or {}
    for key, value in found.items():
        meta = FIELDS[key].metadata
        kind = meta["type"] or type(FIELDS[key].default)
        if not isinstance(value, kind) or isinstance(value, bool) or (meta["choices"] and value not in meta["choices"]):
            expected = f"one of {list(meta['choices'])}" if meta["choices"] else KIND_NAMES.get(kind, kind.__name__)
            raise UserError(f"--grid {grid}: {key} is {value!r}; expected {expected} (as --{key.replace('_', '-')}).")
    return found


def is_runtime(key: str) -> bool:
    return key in FIELDS and FIELDS[key].metadata["runtime"]


def absolute(key: str, value: Any) -> Any:
    """A path option as an absolute path (a named weights spec, a named grid or a URI stays as it is)."""
    named = (key == "weights" and value in NAMED_WEIGHTS) or (key == "grid" and not is_grid_file(str(value)))
    if key in FIELDS and FIELDS[key].metadata["path"] and isinstance(value, str) and not named:
        return value if store.is_uri(value) else os.path.abspath(os.path.expanduser(value))
    return value


def local_root(storage: str) -> str:
    """Where local files that would go beside the results go: --storage, unless it is a URI."""
    return store.MIRRORS if store.is_uri(storage) else storage


def check(spec: StudySpec) -> None:
    """Every setting that can be checked without reading a file, each error naming its option."""
    if spec.grid is None:
        raise UserError("--grid is required (one of " + ", ".join(sorted(GRIDS)) + ") unless --resume.")
    if spec.name is not None and len(spec.name) > MAX_NAME:
        raise UserError(f"--name: at most {MAX_NAME} characters (it names a folder), got {len(spec.name)}.")
    if spec.name is not None and not STUDY_NAME.fullmatch(spec.name):
        raise UserError(
            f"--name {spec.name!r}: a study's name is one folder name: letters, digits, '.', '_', '-', '+', "
            "'=' or ',', not starting with '.' (no '/', no '..')."
        )
    check_trial_resources(spec)
    check_counts(spec)
    given = spec.trial_settings()  # each --set typed and checked, naming it
    both = sorted(k for k in given if k in OVERRIDES and getattr(spec, k) is not None)
    if both:
        raise UserError(f"--set {both[0]} and --{both[0].replace('_', '-')} are both given; keep one.")
    if spec.mlflow_register and not spec.mlflow:
        raise UserError("--mlflow-register NAME registers the best model in MLflow: give --mlflow URI too.")
    check_targets(spec.evaluate_on)
    check_extras(spec)


def check_trial_resources(spec: StudySpec) -> None:
    """--cpus-per-trial, --gpus-per-trial (a fraction or whole GPUs, at most one node's), fp16 on GPUs
    only, and --progress-every."""
    if not 0 < spec.progress_every < math.inf:  # NaN fails too
        raise UserError(f"--progress-every must be a finite number of seconds > 0, got {spec.progress_every}.")
    if spec.cpus_per_trial is not None and not 0 < spec.cpus_per_trial < math.inf:  # NaN fails too
        raise UserError(f"--cpus-per-trial must be a finite number > 0, got {spec.cpus_per_trial}.")
    if not math.isfinite(spec.gpus_per_trial):
        raise UserError(f"--gpus-per-trial must be a finite number, got {spec.gpus_per_trial}.")
    if spec.gpus_per_trial < 0 or (spec.gpus_per_trial > 1 and spec.gpus_per_trial % 1):
        raise UserError(f"--gpus-per-trial must be a fraction in [0, 1] or a whole number, got {spec.gpus_per_trial}.")
    for option_name, value in (("cpus_per_trial", spec.cpus_per_trial), ("gpus_per_trial", spec.gpus_per_trial)):
        kind = option_name[:3].upper()
        if value is not None and value > LARGEST_NODE[kind]:
            raise UserError(
                f"--{option_name.replace('_', '-')} {value:g}: a trial runs on one node, and no node has more than "
                f"{LARGEST_NODE[kind]} {kind}s (the study checks the cluster's own nodes when Ray starts)."
            )
    for option_name, value in (("--precision", spec.precision), ("--train-precision", spec.train_precision)):
        if value == "fp16" and not spec.gpus_per_trial:
            raise UserError(f"{option_name} fp16 needs GPUs (--gpus-per-trial); CPUs run bf16 or fp32.")


def check_counts(spec: StudySpec) -> None:
    """Epochs, samples, confirmations, failures and seeds: whole numbers in their ranges."""
    for option_name in ("max_epochs", "grace_period", "es_rounds", "budget_epochs"):
        value = getattr(spec, option_name)
        if value is not None and value < 1:
            raise UserError(f"--{option_name.replace('_', '-')} must be at least 1, got {value}.")
    if spec.search != "grid" and spec.num_samples < 1:
        raise UserError(f"--num-samples must be at least 1, got {spec.num_samples}.")
    if spec.confirmations < 0 or (spec.max_concurrent is not None and spec.max_concurrent < 1):
        raise UserError("--confirm-top must be >= 0 and --max-concurrent >= 1.")
    if spec.confirmations and spec.confirm_seeds < 2:
        raise UserError(
            f"--confirm-seeds {spec.confirm_seeds}: a confirmation needs at least 2 seeds to measure its training "
            "noise (5 by default); --confirm-top 0 leaves the confirmation out."
        )
    for option_name in ("first_seed", "max_failures", "max_trials"):
        if (value := getattr(spec, option_name)) < 0:
            raise UserError(f"--{option_name.replace('_', '-')} must be >= 0, got {value}.")
    last = spec.first_seed + spec.seeds + (spec.confirm_seeds if spec.confirmations else 0)  # then fresh seeds
    if last > MAX_SEED:
        raise UserError(
            f"--first-seed {spec.first_seed} with --seeds {spec.seeds}: seeds run to {last - 1}; every seed must be "
            f"below {MAX_SEED:,} (Optuna's samplers take 32 bits)."
        )


def check_extras(spec: StudySpec) -> None:
    """The optional packages the settings need are installed."""
    if spec.search == "optuna" and importlib.util.find_spec("optuna") is None:
        raise UserError("--search optuna needs the search extra: pip install -e '.[search]'.")
    if spec.wandb and importlib.util.find_spec("wandb") is None:
        raise UserError("--wandb needs the wandb package: pip install -e '.[wandb]'.")
    if spec.mlflow and importlib.util.find_spec("mlflow") is None:
        raise UserError(
            "--mlflow needs the mlflow package: pip install -e '.[mlflow]' (or drop --mlflow; "
            "Tune's CSV, JSON and TensorBoard logs are always written)."
        )


LARGEST_NODE = {"CPU": 1024, "GPU": 16}  # more than any one machine has (a trial's resources are one node's)

# Every option of a study, by name: the data options and the study's own.
FIELDS = {f.name: f for f in [*options(DataOptions), *options(StudySpec)]}


def kind_of(field: dataclasses.Field) -> type:
    """The type an option's value has once parsed (what study.json records): bool for a switch, a
    list for a repeatable option, else its type, its default's, or str."""
    default = field.default
    if isinstance(default, bool | tuple):
        return list if isinstance(default, tuple) else bool
    return field.metadata["type"] or (type(default) if default is not None else str)


def check_recorded(args: Any, source: str) -> dict[str, Any]:
    """A study.json's `args`, refused (naming `source` and each key) unless every key is an option
    and every value one the option's parser could have produced: its type (or unset), its choices."""
    if not isinstance(args, dict):
        raise UserError(f"{source}: args is {type(args).__name__}, not the options (a JSON object).")
    wrong = [f"{k} (no such option)" for k in args if k not in FIELDS]
    for key, value in args.items():
        if key not in FIELDS or value is None and not isinstance(FIELDS[key].default, bool | tuple):
            continue
        kind, choices = kind_of(FIELDS[key]), FIELDS[key].metadata["choices"]
        fits = (
            isinstance(value, int | float) and not isinstance(value, bool) if kind is float else isinstance(value, kind)
        )
        fits = fits and (kind is bool or not isinstance(value, bool))
        if kind is list:
            fits = fits and all(isinstance(v, str) for v in value)
        if not fits:
            wrong.append(f"{key} {value!r} (expected {'a list of str' if kind is list else kind.__name__})")
        elif choices and value not in choices:
            wrong.append(f"{key} {value!r} (expected one of {', '.join(choices)})")
    if wrong:
        raise UserError(f"{source}: args holds {'; '.join(wrong)}. Restore it from a copy.")
    return args
