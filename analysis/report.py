"""A results directory -> report.md, a self-contained report.html, PNG figures
and a tidy CSV (one row per trial x epoch).

    python -m analysis.report RESULTS_DIR [--baselines DIR] [--out DIR]

Scores are the best epoch's (lowest validation loss): accuracy, and beside it
balanced accuracy (mean per-class recall) and macro-F1, which a classifier
cannot raise by favouring the largest class. Each configuration gets two
intervals: across seeds (Student t) and the full one that also counts the test
images' noise (stats.full_interval). Comparisons are the seed-and-image t-test
(stats.METHOD_NOTE), Holm-adjusted over every comparison the report makes.
Works on a study that is still running, or was
interrupted, and says so. Imports neither torch, OpenCV, scikit-image nor Ray.
"""

from __future__ import annotations

import argparse
import errno
import glob
import os
import sys
from typing import TYPE_CHECKING

from analysis.report_mlflow import log_report
from trainable.cli_options import prog
from trainable.errors import UserError, parse_printable
from trainable.results.layout import BASELINES_FILE, EVALUATIONS_DIR, STUDY_FILE
from trainable.results.storage import download, is_uri
from trainable.results.study_record import read_study_record

if TYPE_CHECKING:  # matplotlib, pandas and scipy load after the arguments are parsed (build_report)
    from analysis.document import Document
    from analysis.study_inputs import Study


def build_report(
    results_dir: str, out_dir: str, baselines_dir: str | None = None, external: list[str] = ()
) -> tuple[Document, list[str]]:
    """Write report.md, report.html, figures/, tables/ and epochs.csv to `out_dir`; return the
    document and the notes on what was left out."""
    from analysis.results import epochs_table
    from analysis.study_inputs import load_inputs
    from trainable.results.atomic_io import write_csv, write_text

    s = load_inputs(results_dir, baselines_dir)
    os.makedirs(out_dir, exist_ok=True)
    external = [*sorted(glob.glob(os.path.join(results_dir, EVALUATIONS_DIR, "*.json"))), *external]
    doc = compose(s, out_dir, external)
    if len(s.trials):
        write_csv(os.path.join(out_dir, "epochs.csv"), epochs_table(results_dir))
    write_text(os.path.join(out_dir, "report.md"), doc.markdown())
    doc.write_tables(out_dir)
    write_text(os.path.join(out_dir, "report.html"), doc.html(out_dir))
    return doc, s.notes


def compose(s: Study, out_dir: str, external: list[str]) -> Document:
    """The report's sections in their order: the answer first, then what ran, the tables and
    figures (drawn into `out_dir`), other datasets' evaluations (`external`), and provenance."""
    from analysis.document import Document
    from analysis.sections import (
        balance_section,
        baselines_section,
        comparisons_section,
        external_section,
        figures_section,
        header,
        paper_section,
        provenance_section,
        search_section,
        summary_section,
        title,
        verdict_section,
        verdicts,
    )
    from analysis.tables import baseline_table

    btable = baseline_table(s.baselines, s.labels, len(s.classes), s.groups) if s.baselines else None
    doc, found = Document(), verdicts(s, btable) if len(s.configs) else None
    title(doc, s)
    if len(s.configs):
        verdict_section(doc, s, found)
    header(doc, s)
    for note in s.notes:
        doc.p(note)
    if len(s.configs):
        summary_section(doc, s)
        if s.searched is not None:
            search_section(doc, s)
        balance_section(doc, s, btable)
        if s.baselines:
            baselines_section(doc, s)
        paper_section(doc, s, btable)
        comparisons_section(doc, s, found)
        figures_section(doc, s, btable, out_dir)
    if external:
        external_section(doc, external)
    provenance_section(doc, s)
    return doc


UNWRITABLE = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog("analysis.report"), description="Build a study's report.")
    p.add_argument("results_dir", help="a study's folder, or its URI (s3://..., gs://...: copied down first)")
    p.add_argument(
        "--download", metavar="DIR", help="a stored study: the local folder it is copied to (default ./NAME)"
    )
    p.add_argument("--baselines", help="directory holding baselines.json (python -m analysis.baselines)")
    p.add_argument("--out", help="output directory (default RESULTS_DIR/report)")
    p.add_argument("--external", nargs="+", default=[], metavar="EVAL.json", help="python -m analysis.evaluate outputs")
    p.add_argument(
        "--mlflow", metavar="URI", help="also log the report to the study's MLflow run (default: the URI it recorded)"
    )
    return p


def check_inputs(args: argparse.Namespace) -> None:
    """study.json and baselines.json are where the arguments say (UserError naming the one that is not)."""
    for path, what in (
        (os.path.join(args.results_dir, STUDY_FILE), "a study results directory"),
        (args.baselines and os.path.join(args.baselines, BASELINES_FILE), "a baselines directory"),
    ):
        if path and not os.path.isfile(path):
            raise UserError(f"{path} not found; is {os.path.dirname(path)} {what}?")


def unwritable(err: OSError, out: str) -> str:
    where = f": {err.filename}" if err.filename else ""
    return (
        f"cannot write the report in {out} ({err.strerror}{where}); free space, or give --out a folder you can "
        "write, and run the command again. What was written is whole: every file is written under a temporary "
        "name and renamed."
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_printable(parser(), argv)
    out = args.out
    try:
        if missing := [path for path in args.external if not os.path.isfile(path)]:
            raise UserError(f"--external {missing[0]} not found (write it with python -m analysis.evaluate)")
        if is_uri(args.results_dir):  # read it here: the report, its figures and epochs.csv stay local
            uri, local = args.results_dir, args.download or os.path.basename(args.results_dir.rstrip("/"))
            args.results_dir = download(uri, local)
            print(f"copied {uri} to {os.path.abspath(local)}")
        check_inputs(args)
        out = args.out or os.path.join(args.results_dir, "report")
        record = read_study_record(args.results_dir)  # checked against its schema before any work
        _, notes = build_report(args.results_dir, out, args.baselines, args.external)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # the output's disk: full, read-only, not ours
        if err.errno not in UNWRITABLE:
            raise
        print(f"error: {unwritable(err, out or args.results_dir)}", file=sys.stderr)
        return 2
    for note in notes:
        print(f"note: {note}")
    print(f"wrote {os.path.join(out, 'report.md')}, report.html, figures/, tables/ and epochs.csv")
    uri = args.mlflow or record.args.get("mlflow")
    return log_report(uri, os.path.basename(os.path.abspath(args.results_dir)), out) if uri else 0


if __name__ == "__main__":
    sys.exit(main())
