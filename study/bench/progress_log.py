"""A study's log read back (its stdout redirected to a file): the longest a running trial
went without a line, and how far the time-left estimate (study.terminal.console) was from the
truth at 25, 50 and 75% of the study's wall time.

    python -m study.run --grid paper ... > study.log; python -m study.bench.progress_log study.log

Reads the first study of the log (a confirmation that follows has a clock of its own).
Standard library only."""

from __future__ import annotations

import argparse
import re
import sys
from typing import Any

from trainable.cli_options import prog

TRIAL_LINE = re.compile(r"^\[(\d+):(\d\d):(\d\d)\] (\S+)\s+(\S+)")
SUMMARY = re.compile(
    r"^\s+(\d+)/(\d+) done, .*; (\d+):(\d\d):(\d\d) elapsed"
    r"(?:, (?:about|up to|\d+:\d\d:\d\d to) (\d+):(\d\d):(\d\d) left[^,]*)?"
    r"(?:,? (?:and )?(\d+) trial\(s\) of a kind not yet timed)?"
)
AT = (0.25, 0.5, 0.75)


def seconds(h: str, m: str, s: str) -> int:
    return int(h) * 3600 + int(m) * 60 + int(s)


def read_log(text: str) -> dict[str, Any]:
    """{'duration_s', 'max_gap_s' (with 'max_gap_trial'), 'estimates': one per AT fraction:
    the last estimate printed by then, the truth (duration minus elapsed) and the error}."""
    said: dict[str, list[int]] = {}  # trial -> the times of its lines, from its start to its end
    estimates: list[tuple[int, int, int]] = []  # (elapsed, estimated seconds left, trials it leaves out)
    duration = None
    for line in text.splitlines():
        if m := TRIAL_LINE.match(line):
            said.setdefault(m[4], []).append(seconds(m[1], m[2], m[3]))
        elif m := SUMMARY.match(line):
            elapsed = seconds(m[3], m[4], m[5])
            if m[6] is not None:
                estimates.append((elapsed, seconds(m[6], m[7], m[8]), int(m[9] or 0)))
            if m[1] == m[2]:
                duration = elapsed
                break
    if duration is None:
        raise ValueError("the log holds no study that ended (no 'N/N done' line)")
    gaps = {
        trial: max((b - a for a, b in zip(times, times[1:], strict=False)), default=0) for trial, times in said.items()
    }
    worst = max(gaps, key=gaps.get) if gaps else None
    rows = []
    for fraction in AT:
        by = [row for row in estimates if row[0] <= fraction * duration]
        if not by:
            rows.append({"at": fraction, "elapsed_s": None, "estimate_s": None, "truth_s": None, "error_s": None})
        else:
            elapsed, left, untimed = by[-1]
            truth = duration - elapsed
            rows.append(
                {
                    "at": fraction,
                    "elapsed_s": elapsed,
                    "estimate_s": left,
                    "truth_s": truth,
                    "error_s": left - truth,
                    "untimed": untimed,
                }
            )
    return {"duration_s": duration, "max_gap_s": gaps.get(worst, 0), "max_gap_trial": worst, "estimates": rows}


def table(read: dict[str, Any]) -> str:
    lines = [
        f"study: {read['duration_s']} s; longest a running trial went without a line: {read['max_gap_s']} s "
        f"({read['max_gap_trial']})",
        "| at | elapsed s | estimated left s | true left s | error s | trials left out (kind not yet timed) |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in read["estimates"]:
        if r["estimate_s"] is None:
            lines.append(f"| {r['at']:.0%} | no estimate printed yet (none before the first timed epoch) | | | | |")
        else:
            lines.append(
                f"| {r['at']:.0%} | {r['elapsed_s']} | {r['estimate_s']} | {r['truth_s']} | {r['error_s']:+d} "
                f"| {r['untimed']} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog=prog("study.bench.progress_log"), description=__doc__.split("\n")[0])
    p.add_argument("log", help="a study's stdout, redirected to a file")
    args = p.parse_args(argv)
    try:
        with open(args.log) as f:
            print(table(read_log(f.read())))
    except (OSError, ValueError) as err:
        print(f"error: {args.log}: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
