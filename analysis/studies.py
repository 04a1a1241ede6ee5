"""Studies side by side: every study under a results folder, one line each; or two studies
compared configuration by configuration (the same grid on two datasets, before and after a change).

    python -m analysis.studies results/                      # every study under results/
    python -m analysis.studies results/A results/B [--csv F]  # A against B, each configuration both ran

Two studies on the same test images (the same data and split) are compared image by image, as the
report compares two configurations (the seed-and-image t-test, analysis.stats.compare); on
different test images, unpaired (each side's seed-and-image variance added, Welch-Satterthwaite
degrees of freedom). Either way the family of configurations is Holm-adjusted, and each interval
is at the level its test was held to. A configuration is matched by its name in both grids.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, Any

from trainable.cli_options import prog
from trainable.errors import UserError, parse_printable
from trainable.results.atomic_io import read_json, write_csv
from trainable.results.layout import BEST_DIR, BEST_FILE, STUDY_FILE
from trainable.results.study_record import read_study_record

if TYPE_CHECKING:  # pandas and scipy load after the arguments are parsed
    import pandas as pd

    from analysis.study_inputs import Study


def study_folders(root: str) -> list[str]:
    """The studies directly under `root` (each a folder holding study.json), by name."""
    if not os.path.isdir(root):
        raise UserError(f"{root} is not a folder of studies (give a results folder, or two studies to compare).")
    return sorted(e.path for e in os.scandir(root) if e.is_dir() and os.path.isfile(os.path.join(e.path, STUDY_FILE)))


def listing(root: str) -> pd.DataFrame:
    """One row per study under `root`: its name, grid, data, trials finished of those recorded, when
    it was recorded, and its chosen configuration with its test accuracy and full 95% interval on
    the seeds that ranked it (best/best.json; the report claims it on its confirmation runs)."""
    import pandas as pd

    from analysis.results import load_study

    rows = []
    for folder in study_folders(root):
        record = read_study_record(folder)
        trials, _ = load_study(folder)
        best_file = os.path.join(folder, BEST_DIR, BEST_FILE)
        best = read_json(best_file) if os.path.isfile(best_file) else {}
        test = best.get("test_acc_full_interval") or {}
        rows.append(
            {
                "study": os.path.basename(folder),
                "grid": record.grid,
                "data": f"{os.path.basename(record.data_root.rstrip('/'))} ({record.data_fingerprint[:8]})",
                "search": (record.search or {}).get("kind", "grid"),
                "finished": f"{int((trials.status == 'finished').sum()) if len(trials) else 0}/{len(trials)}",
                "recorded": pd.Timestamp(os.path.getmtime(os.path.join(folder, STUDY_FILE)), unit="s").strftime(
                    "%Y-%m-%d %H:%M"
                ),
                "chosen": f"#{best['experiment']} {best['name']}" if best else "—",
                "test acc": test.get("mean"),
                "test acc lo": test.get("lo"),
                "test acc hi": test.get("hi"),
            }
        )
    return pd.DataFrame(rows)


def same_test_images(a: Study, b: Study) -> bool:
    return a.record.data_fingerprint == b.record.data_fingerprint and a.record.split_id == b.record.split_id


def compared(a: Study, b: Study) -> pd.DataFrame:
    """Each configuration both studies ran (by name, every seed scored): A's and B's test accuracy
    with their full 95% intervals, A - B in points with its interval at Holm's level, and the verdict."""
    import pandas as pd

    from analysis.stats import holm, holm_levels

    rows_a = {r["name"]: r for _, r in a.configs.iterrows() if r.scored > 0}
    rows_b = {r["name"]: r for _, r in b.configs.iterrows() if r.scored > 0}
    names = [n for n in rows_a if n in rows_b]
    paired = same_test_images(a, b)
    tests = [difference(rows_a[n], rows_b[n], a, b, paired) for n in names]
    adjusted, levels = holm([t["p"] for t in tests]), holm_levels([t["p"] for t in tests])
    rows = []
    for name, t, p, level in zip(names, tests, adjusted, levels, strict=True):
        lo, hi = t["interval"](level)
        rows.append(
            {
                "configuration": name,
                "A test acc": rows_a[name].test_full[0],
                "A lo": rows_a[name].test_full[1],
                "A hi": rows_a[name].test_full[2],
                "B test acc": rows_b[name].test_full[0],
                "B lo": rows_b[name].test_full[1],
                "B hi": rows_b[name].test_full[2],
                "A - B (points)": 100 * t["diff"],
                "lo (Holm's level)": 100 * lo,
                "hi (Holm's level)": 100 * hi,
                f"p (Holm, {len(tests)})": p,
                "verdict": "no test (zero variance)" if t["no_variance"] else verdict(t["diff"], p),
            }
        )
    return pd.DataFrame(rows)


def verdict(diff: float, p: float) -> str:
    if p < 0.05:
        return "A better" if diff > 0 else "B better"
    return "not distinguishable from noise"


def difference(ra: Any, rb: Any, a: Study, b: Study, paired: bool) -> dict[str, Any]:
    """A - B of one configuration's test accuracy: paired on shared test images, else unpaired."""
    import numpy as np
    from scipy import stats as st

    from analysis.stats import accuracy_estimate, compare, unpaired

    if paired:
        c = compare("accuracy", ra.preds, rb.preds, a.labels, len(a.classes), groups=a.groups)
        return {"diff": c.diff, "p": c.p, "interval": c.interval, "no_variance": not c.se > 0}
    sides = [accuracy_estimate(np.asarray(r.preds) == s.labels, groups=s.groups) for r, s in ((ra, a), (rb, b))]
    diff, se, df = (float(v) for v in unpaired(*sides))  # each side's seeds x images correctness, its own variance
    p = float(2 * st.t.sf(abs(diff) / se, df)) if se > 0 else (1.0 if diff == 0 else 0.0)

    def interval(level: float) -> tuple[float, float]:
        half = st.t.ppf(1 - level / 2, df) * se
        return max(-1.0, diff - half), min(1.0, diff + half)

    return {"diff": diff, "p": p, "interval": interval, "no_variance": not se > 0}


def differences(a: Study, b: Study) -> list[str]:
    """What differs between the two studies' records: the data, the grid, and each option."""
    said = []
    if a.record.data_fingerprint != b.record.data_fingerprint:
        said.append(f"data: {a.record.data_root} vs {b.record.data_root} (other images)")
    elif a.record.split_id != b.record.split_id:
        said.append("split: the same images split otherwise")
    if a.record.grid_file != b.record.grid_file:
        said.append(
            f"grid: {a.record.grid} vs {b.record.grid}"
            + (" (its file changed)" if a.record.grid == b.record.grid else "")
        )
    where = {"name", "storage", "resume", "data", "cache_dir"}  # where each ran, not what
    for key in sorted((set(a.record.args) | set(b.record.args)) - where):
        if (was := a.record.args.get(key)) != (now := b.record.args.get(key)):
            said.append(f"--{key.replace('_', '-')}: {was!r} vs {now!r}")
    return said


def compare_studies(path_a: str, path_b: str, csv: str | None) -> int:
    import pandas as pd

    from analysis.study_inputs import load_inputs

    a, b = load_inputs(path_a, None), load_inputs(path_b, None)
    table = compared(a, b)
    paired = same_test_images(a, b)
    print(
        f"A: {path_a} ({a.record.grid}, {len(a.trials)} trials)\nB: {path_b} ({b.record.grid}, {len(b.trials)} trials)"
    )
    print("What differs: " + ("; ".join(differences(a, b)) or "nothing recorded"))
    how = (
        "the same test images: compared image by image (seed-and-image t-test)"
        if paired
        else "different test images: unpaired (each side's seed-and-image variance, Welch-Satterthwaite df)"
    )
    print(f"Test accuracy of each configuration both ran ({how}); A - B in points, its interval at Holm's level:\n")
    if table.empty:
        print("No configuration of one name has scored trials in both studies.")
        return 0
    with pd.option_context("display.width", 200, "display.max_columns", None):
        print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if csv:
        write_csv(csv, table)
        print(f"\nwrote {csv}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog=prog("analysis.studies"), description=__doc__.split("\n")[0])
    p.add_argument("folders", nargs="+", metavar="FOLDER", help="a results folder (list its studies), or two studies")
    p.add_argument("--csv", help="also write the table here")
    args = parse_printable(p, argv)
    try:
        if len(args.folders) == 1:
            table = listing(args.folders[0])
            if table.empty:
                raise UserError(f"{args.folders[0]} holds no study (a folder with {STUDY_FILE}).")
            print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}", na_rep="—"))
            if args.csv:
                write_csv(args.csv, table)
            return 0
        if len(args.folders) != 2:
            raise UserError(
                f"{len(args.folders)} folders given: one results folder to list, or two studies to compare."
            )
        for folder in args.folders:
            if not os.path.isfile(os.path.join(folder, STUDY_FILE)):
                raise UserError(f"{folder} holds no {STUDY_FILE}; is it a study's results directory?")
        return compare_studies(*args.folders, args.csv)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
