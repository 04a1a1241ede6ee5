"""The measuring tools every benchmark uses: timing (synchronised on a GPU), the memory of a
process tree from /proc, and a study run through its CLI with its memory sampled."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pandas as pd
import torch

from trainable.results.layout import PARAMS_FILE, RESULT_FILE

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the checkout


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn, repeat: int = 1) -> float:
    """Best wall time of `repeat` calls, after one warm-up call (GPU work included)."""
    fn()
    sync()
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - start)
    return best


def tree_pss(root: int) -> dict[str, int]:
    """Proportional set size (bytes) of `root` and each of its descendants, by "pid name", from
    /proc (Linux): pages shared between processes (torch's libraries in every Ray worker) count once."""
    parent = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parent[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    tree, frontier = {root}, [root]
    while frontier:
        frontier = [pid for pid, ppid in parent.items() if ppid in frontier and pid not in tree]
        tree.update(frontier)
    pss = {}
    for pid in tree:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                name = f.read().split(b"\0")[0].decode(errors="replace").strip().rsplit("/", 1)[-1][:40]
            with open(f"/proc/{pid}/smaps_rollup") as f:
                pss[f"{pid} {name}"] = next(int(line.split()[1]) * 1024 for line in f if line.startswith("Pss:"))
        except (OSError, StopIteration):
            continue
    return pss


def private_bytes(pid: int) -> int:
    """USS: the memory only this process holds (private clean + dirty pages), from /proc."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            return sum(int(line.split()[1]) * 1024 for line in f if line.startswith(("Private_Clean", "Private_Dirty")))
    except OSError:
        return 0


class PeakMemory:
    """Peak summed PSS of a process and all its descendants, sampled every 0.5 s, the
    processes that made it up, and the peaks of the process itself: its PSS (`root_peak`,
    which moves with how many processes share its libraries) and its USS (`root_private_peak`,
    what it alone holds)."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self.at_peak, self.peak_at_s, self.root_peak = pid, 0, {}, 0.0, 0
        self.root_private_peak = 0
        self._start, self._stop = time.perf_counter(), threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            pss = tree_pss(self.pid)
            self.root_private_peak = max(self.root_private_peak, private_bytes(self.pid))
            self.root_peak = max([self.root_peak] + [v for k, v in pss.items() if k.split()[0] == str(self.pid)])
            if sum(pss.values()) > self.peak:
                self.peak, self.at_peak = sum(pss.values()), pss
                self.peak_at_s = time.perf_counter() - self._start
            time.sleep(0.5)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak

    def largest(self, n: int = 6) -> dict[str, float]:
        """The `n` largest processes at the peak, GiB."""
        return {k: v / 2**30 for k, v in sorted(self.at_peak.items(), key=lambda kv: -kv[1])[:n]}


def final_rows(study_dir: str) -> pd.DataFrame:
    """Each trial's config and last reported row (its final metrics), one row per trial."""
    rows = []
    for entry in os.scandir(study_dir):
        result = os.path.join(entry.path, RESULT_FILE)
        if os.path.exists(result):
            with open(os.path.join(entry.path, PARAMS_FILE)) as f, open(result) as g:
                rows.append({**json.load(f), **json.loads(g.read().splitlines()[-1])})
    return pd.DataFrame(rows)


def run_study_cli(options: list[str], what: str) -> tuple[str, float, PeakMemory]:
    """`python -m study.run OPTIONS` from the checkout, its memory sampled while it runs:
    (its output, wall seconds, the PeakMemory). A failed run raises with its last lines."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "study.run", *options],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    memory = PeakMemory(proc.pid)
    out, _ = proc.communicate()
    wall = time.perf_counter() - start
    memory.stop()
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed:\n{out[-3000:]}")
    return out, wall, memory
