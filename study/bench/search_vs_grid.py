"""A fixed grid against adaptive search at the same budget of trial-epochs, side by side.

    python -m study.bench.search_vs_grid --data ../shared/data/el7008 --out search-bench

runs, for each repetition r, two studies through `python -m study.run` with `--weights
none` and `--budget-epochs B` (the study stops once its trials have trained B epochs):

- grid: `extended` with ASHA, one seed (r), in the grid's own order;
- optuna: the `search` space with OptunaSearch (TPE, sampler seed r, warm-started with the
  paper's configurations) and ASHA.

Both spaces leave out what costs one to two orders of magnitude more per epoch on a CPU
(training the whole network, `freeze none` and `mixed_7a`, and online augmentation, which
runs the trunk every epoch), so that a trial-epoch costs about the same in both arms.
Per study it reports the best validation accuracy any trial-epoch reached and the
trial-epochs spent (in the order Ray recorded them) until the best so far came within
1 point of it. `--quick` runs one small repetition for the slow test tier.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Any

import pandas as pd
import yaml

from analysis.results import load_study
from analysis.tables import budget_curve
from study.bench.measure import ROOT
from study.grids import GRID_FILES
from trainable.cli_options import prog
from trainable.device import describe_cpu
from trainable.results.atomic_io import write_json, write_text

CHEAP = {"freeze": ["block8", "repeat_3"], "augmentation": ["none", "static"]}  # kept in both spaces
WITHIN = 0.01  # "within 1 point" of the best validation accuracy


def cheap_space(name: str, directory: str) -> str:
    """The shipped grid file `name` with only the CHEAP freeze points and augmentations."""
    with open(os.path.join(GRID_FILES, f"{name}.yaml")) as f:
        spec = yaml.safe_load(f)
    for key, values in CHEAP.items():
        if isinstance(spec[key], dict):  # a range: {choice: [...]}
            spec[key] = {"choice": [v for v in spec[key]["choice"] if v in values]}
        else:
            spec[key] = [v for v in spec[key] if v in values]
    spec["description"] = f"{spec['description']} (search_bench: {CHEAP})"
    path = os.path.join(directory, f"{name}-cheap.yaml")
    write_text(path, yaml.safe_dump(spec, sort_keys=False))
    return path


def arms(directory: str) -> dict[str, list[str]]:
    return {
        "extended grid + ASHA": ["--grid", cheap_space("extended", directory), "--scheduler", "asha"],
        "optuna + ASHA": ["--grid", cheap_space("search", directory), "--search", "optuna", "--scheduler", "asha"],
    }


def score(study: str) -> dict[str, Any]:
    """Best val acc over every trial-epoch, and the trial-epochs until within 1 point of it."""
    trials, epochs = load_study(study)
    spent, best = budget_curve(epochs)
    top = float(best.iloc[-1])
    return {
        "trials": len(trials),
        "trial-epochs": int(spent.iloc[-1]),
        "best val acc": top,
        "trial-epochs to within 1 pt": int(spent[best >= top - WITHIN - 1e-12].iloc[0]),
    }


def run_arm(label: str, options: list[str], rep: int, args: argparse.Namespace, common: list[str]) -> dict[str, Any]:
    """One study, or the row of one an earlier run of this command finished (OUT/NAME.json)."""
    name = f"{label.split()[0]}-r{rep}"
    done = os.path.join(args.out, f"{name}.json")
    if os.path.exists(done):
        print(f"[{label}, repetition {rep}] finished before: {done}", flush=True)
        with open(done) as f:
            return json.load(f)
    command = [sys.executable, "-m", "study.run", *options, *common, "--first-seed", str(rep), "--name", name]
    print(f"[{label}, repetition {rep}] {' '.join(command[1:])}", flush=True)
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        tail = proc.stdout[-3000:] + proc.stderr[-3000:]
        sys.exit(f"{label} repetition {rep} failed (exit {proc.returncode}):\n{tail}")
    row = {"arm": label, "rep": rep, **score(os.path.join(args.out, name)), "wall s": round(wall, 1)}
    write_json(done, row)
    return row


def cpu_line() -> str:
    """What it ran on, as study.bench says it: model, flags and torch's kernel level."""
    return f"CPU: {describe_cpu()}; {os.cpu_count()} cores"


COLUMNS = ["best val acc", "trial-epochs to within 1 pt", "trial-epochs", "trials", "wall s"]


def table(rows: pd.DataFrame) -> str:
    """A markdown table: each repetition, then per arm the mean ± sd over repetitions."""
    lines = ["| arm | rep | " + " | ".join(COLUMNS) + " |", "|---|---|" + "---|" * len(COLUMNS)]
    for _, row in rows.iterrows():
        cells = [f"{row[c]:.3f}" if c == "best val acc" else str(row[c]) for c in COLUMNS]
        lines.append(f"| {row.arm} | {row.rep} | " + " | ".join(cells) + " |")
    for arm, group in rows.groupby("arm", sort=False):
        if len(group) > 1:
            cells = [f"{group[c].mean():.3g} ± {group[c].std(ddof=1):.2g}" for c in COLUMNS]
            lines.append(f"| **{arm}** | mean ± sd | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog=prog("study.bench.search_vs_grid"), description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="el7008 dataset root")
    p.add_argument("--out", required=True, help="folder for the studies and search_bench.json")
    p.add_argument("--budget", type=int, default=120, help="trial-epochs per study")
    p.add_argument("--max-epochs", type=int, default=12)
    p.add_argument("--grace-period", type=int, default=2, help="ASHA's")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="1 repetition, budget 8, 3 epochs, 90 images")
    args = p.parse_args(argv)
    if args.quick:
        args.budget, args.max_epochs, args.grace_period, args.reps = 8, 3, 1, 1
    args.out = os.path.abspath(args.out)
    os.makedirs(args.out, exist_ok=True)
    common = [
        "--data",
        os.path.abspath(args.data),
        "--weights",
        "none",
        "--seeds",
        "1",
        "--max-epochs",
        str(args.max_epochs),
        "--grace-period",
        str(args.grace_period),
        "--budget-epochs",
        str(args.budget),
        "--num-samples",
        str(args.budget),  # the budget ends it
        "--storage",
        args.out,
        "--cache-dir",
        os.path.join(args.out, "trunk-cache"),
    ]
    if args.quick:
        common += ["--train-range", "0-19", "--val-range", "120-129", "--test-range", "160-169"]
    print(cpu_line())
    print(
        f"Budget {args.budget} trial-epochs per study, at most {args.max_epochs} epochs per trial, "
        f"ASHA grace {args.grace_period}, {args.reps} repetition(s); weights none",
        flush=True,
    )
    studies = arms(args.out)
    rows = [run_arm(label, opts, rep, args, common) for rep in range(args.reps) for label, opts in studies.items()]
    write_json(
        os.path.join(args.out, "search_bench.json"), {"cpu": cpu_line(), "args": vars(args), "rows": rows}, indent=1
    )
    print(table(pd.DataFrame(rows)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
