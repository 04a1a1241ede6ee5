"""Run a named grid of trials on Ray Tune.

    python -m study.run --grid paper --data ../shared/data/el7008
    python -m study.run --grid smoke        # offline, generated images, ~2 minutes
"""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
import time
from typing import Any

from study.grids import GRIDS, expand
from study.provenance import write_provenance
from study.smoke_data import RANGES as SMOKE_RANGES
from study.smoke_data import make_smoke_data
from trainable.config import PRECISIONS
from trainable.data import DEFAULT_RANGES, FaceData, load_el7008, parse_ranges
from trainable.errors import UserError
from trainable.model import resolve_weights

SUMMARY_COLUMNS = {  # result key -> column title
    "experiment": "exp",
    "name": "name",
    "seed": "seed",
    "best_epoch": "best_epoch",
    "epoch": "epochs",
    "val_acc_best": "val_acc",
    "test_acc_best": "test_acc",
    "train_seconds": "train_s",
    "stopped_by": "stopped_by",
}


def _range_text(split: str) -> str:
    start, stop = DEFAULT_RANGES[split]
    return f"{start}-{stop - 1}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m study.run",
        description="Run a face-age fine-tuning study on Ray Tune.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--grid", required=True, choices=sorted(GRIDS), help="named grid of trials")
    p.add_argument("--data", help="dataset root (ROOT/1, ROOT/5, ROOT/28); smoke generates one")
    p.add_argument("--weights", help="vggface2 | casia-webface | none | PATH (default: the grid's, vggface2)")
    p.add_argument("--max-epochs", type=int, help="cap on epochs per trial (default: the grid's, 400)")
    p.add_argument("--seeds", type=int, default=1, help="seeds per configuration")
    p.add_argument("--precision", choices=PRECISIONS, help="trunk precision (default auto)")
    p.add_argument("--storage", default="results", help="directory that holds results")
    p.add_argument("--name", help="study name (default GRID-DATE-TIME)")
    p.add_argument("--cache-dir", help="trunk-output cache (default STORAGE/trunk-cache)")
    p.add_argument("--cpus-per-trial", type=float, default=1.0)
    p.add_argument("--gpus-per-trial", type=float, default=0.0, help="fractions pack trials on a GPU")
    p.add_argument("--address", help="join a running Ray cluster (auto or HOST:PORT)")
    p.add_argument("--dashboard-host", default="127.0.0.1", help="interface the dashboard listens on")
    for split in ("train", "val", "test"):
        p.add_argument(f"--{split}-range", default=_range_text(split), help="inclusive per-class indices")
    return p.parse_args(argv)


def check_args(args: argparse.Namespace) -> None:
    if args.cpus_per_trial <= 0:
        raise UserError(f"--cpus-per-trial must be > 0, got {args.cpus_per_trial}.")
    if args.gpus_per_trial < 0 or (args.gpus_per_trial > 1 and args.gpus_per_trial % 1):
        raise UserError(
            f"--gpus-per-trial must be a fraction in [0, 1] or a whole number, got {args.gpus_per_trial}."
        )
    if args.max_epochs is not None and args.max_epochs < 1:
        raise UserError(f"--max-epochs must be at least 1, got {args.max_epochs}.")


def load_data(args: argparse.Namespace, storage: str) -> FaceData:
    if args.data is None:
        if args.grid != "smoke":
            raise UserError(f"--data is required for grid {args.grid!r} (only 'smoke' generates its own).")
        root = make_smoke_data(os.path.join(storage, "smoke-data"))
        print(f"Generated smoke images under {root}")
        return load_el7008(root, SMOKE_RANGES)
    ranges = parse_ranges(args.train_range, args.val_range, args.test_range)
    return load_el7008(args.data, ranges)


def prepare(args: argparse.Namespace) -> tuple[list[dict[str, Any]], FaceData, str, str]:
    """Everything that can fail on user input, before Ray starts: configs, data, weights."""
    check_args(args)
    storage = os.path.abspath(os.path.expanduser(args.storage))
    name = args.name or f"{args.grid}-{time.strftime('%Y%m%d-%H%M%S')}"
    overrides = {
        key: value
        for key, value in {
            "weights": args.weights,
            "max_epochs": args.max_epochs,
            "precision": args.precision,
        }.items()
        if value is not None
    }
    configs = expand(args.grid, seeds=args.seeds, overrides=overrides)
    resolved = {w: resolve_weights(w) for w in {c["weights"] for c in configs}}
    for config in configs:
        config["weights"] = resolved[config["weights"]]
    data = load_data(args, storage)
    return configs, data, storage, name


def summarize(results: Any) -> tuple[str, int]:
    """One row per trial, sorted by experiment and seed; and how many trials failed."""
    import pandas as pd

    rows = []
    failed = 0
    for result in results:
        row = {**result.config, **(result.metrics or {})}
        if result.error is not None:
            failed += 1
            row["stopped_by"] = f"ERROR: {type(result.error).__name__}"
        rows.append({title: row.get(key) for key, title in SUMMARY_COLUMNS.items()})
    table = pd.DataFrame(rows).sort_values(["exp", "seed"])
    return table.to_string(index=False, float_format=lambda v: f"{v:.3f}"), failed


def run(args: argparse.Namespace) -> int:
    configs, data, storage, name = prepare(args)
    sizes = ", ".join(f"{k} {v}" for k, v in data.sizes().items())
    print(f"{len(configs)} trial(s) of grid {args.grid!r} on {data.root} ({sizes})")

    import ray
    from ray import tune
    from ray.tune.search.basic_variant import BasicVariantGenerator

    from trainable.tune_trial import train_face_age

    context = ray.init(
        address=args.address,
        include_dashboard=True,
        dashboard_host=args.dashboard_host,
        configure_logging=True,
        logging_level="WARNING",
    )
    if context.dashboard_url:
        print(
            f"Ray dashboard: http://{context.dashboard_url} "
            "(token in ~/.ray/auth_token; see README, 'Watching a study')"
        )
    check_resources(ray.cluster_resources(), args)
    experiment_dir = os.path.join(storage, name)
    write_provenance(
        experiment_dir, grid=args.grid, trials=configs, data_root=data.root,
        data_fingerprint=data.fingerprint, split_sizes=data.sizes(),
    )  # fmt: skip
    trainable = tune.with_resources(
        tune.with_parameters(
            train_face_age,
            data=data,
            cache_dir=os.path.abspath(args.cache_dir or os.path.join(storage, "trunk-cache")),
            threads=max(1, round(args.cpus_per_trial)),
        ),
        {"cpu": args.cpus_per_trial, "gpu": args.gpus_per_trial},
    )
    tuner = tune.Tuner(
        trainable,
        param_space=dict(configs[0]),  # names the keys; each trial's values come from its point
        tune_config=tune.TuneConfig(
            metric="val_loss",
            mode="min",
            search_alg=BasicVariantGenerator(points_to_evaluate=configs),
            num_samples=len(configs),  # each point to evaluate is one trial
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=storage,
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            verbose=1,
        ),
    )
    results = tuner.fit()
    table, failed = summarize(results)
    print(f"\n{table}\n\nResults: {experiment_dir}")
    if failed:
        print(f"{failed} trial(s) failed; their errors are in the trial directories.", file=sys.stderr)
    return 1 if failed else 0


def check_resources(available: dict[str, float], args: argparse.Namespace) -> None:
    """Refuse per-trial resources the cluster can never grant (Ray would wait forever)."""
    for key, need in (("CPU", args.cpus_per_trial), ("GPU", args.gpus_per_trial)):
        have = available.get(key, 0.0)
        if need > have:
            raise UserError(
                f"--{key.lower()}s-per-trial {need:g} exceeds the {have:g} {key}(s) this Ray "
                f"cluster has; lower it, or start Ray on a machine that has them."
            )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except UserError as err:
        print(textwrap.fill(f"error: {err}", width=100, replace_whitespace=False), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
