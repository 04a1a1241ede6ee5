"""Classical baselines on exactly the study's split (analysis.baseline_models: HOG + SVM /
Random Forest, LBP + a one-hidden-layer network), written to DIR/baselines.json for the report.

    python -m analysis.baselines --data PATH [--layout ...] [--seeds 3] --out DIR
"""

from __future__ import annotations

import argparse
import os
import sys

from trainable.cli_options import prog
from trainable.data.dataset_options import add_data_arguments, check_data_args, dataset_from_args
from trainable.errors import UserError, parse_printable
from trainable.results.layout import BASELINES_FILE


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog=prog("analysis.baselines"), description="HOG and LBP baselines.")
    add_data_arguments(p)
    p.add_argument("--seeds", type=int, default=3, help="seeds of the random methods (RF, MLP)")
    p.add_argument("--out", required=True, help="directory for baselines.json")
    args = parse_printable(p, argv)
    if args.data is None:
        p.error("--data is required")
    try:
        check_data_args(args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    import torch  # with OpenCV, scikit-image and scikit-learn: after the arguments are checked

    from analysis.baseline_models import run_baselines
    from trainable.results.atomic_io import write_json

    torch.set_num_threads(os.cpu_count() or 1)
    try:
        data = dataset_from_args(args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if sys.stdout.isatty():  # each line, and rich's bar of the steps done below them
        from rich.progress import MofNCompleteColumn, Progress

        with Progress(*Progress.get_default_columns(), MofNCompleteColumn(), transient=True) as bars:
            task = bars.add_task("baselines", total=None)

            def step(line: str, done: int, steps: int) -> None:
                bars.console.print(line, markup=False, highlight=False)
                bars.update(task, completed=done, total=steps)

            records = run_baselines(data, seeds=args.seeds, step=step)
    else:
        records = run_baselines(data, seeds=args.seeds)
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, BASELINES_FILE)
    record = {
        "data_root": data.root,
        "data_fingerprint": data.fingerprint,
        "classes": data.classes,
        **data.split_record(),
        "baselines": records,
    }
    write_json(path, record, indent=1)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
