"""The paper grid timed end to end: through the CLI and Ray (wall time, peak memory), or through
the Ray-free trial function in worker processes (the GPU check, where the machine has no Ray)."""

from __future__ import annotations

import multiprocessing
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import torch

from study.bench.measure import final_rows, run_study_cli
from trainable.cache import TrunkCache
from trainable.config import TrialConfig
from trainable.data.dataset import load_el7008
from trainable.results.records import reported


def paper_grid(data_root: str, seeds: int, keep: str | None, gpus: float) -> dict[str, Any]:
    """The paper grid end to end through the CLI (weights none): wall time, peak memory, split.
    Results go to `keep` when given (for a report), else to a temporary directory."""
    with tempfile.TemporaryDirectory() as scratch:
        storage = os.path.abspath(keep) if keep else scratch
        options = ["--grid", "paper", "--data", data_root, "--weights", "none", "--seeds", str(seeds)]
        options += ["--storage", storage, "--name", "bench", "--gpus-per-trial", str(gpus)]
        _, wall, memory = run_study_cli(options, "paper grid")
        trials = final_rows(os.path.join(storage, "bench"))
    frozen = trials[trials.freeze != "none"]
    return {
        "command": " ".join(["-m", "study.run", *options]),
        "seeds": seeds,
        "wall_s": wall,
        "peak_memory_gb (PSS, all processes)": memory.peak / 2**30,
        "peak_memory_at_s": memory.peak_at_s,
        "largest_processes_at_peak_gb": memory.largest(),
        "inputs_s (transforms + trunk encoding, all trials)": float(trials.inputs_seconds.sum()),
        "frozen_train_s (sum over trials)": float(frozen.train_seconds.sum()),
        "unfrozen_train_s (sum over trials)": float(trials[trials.freeze == "none"].train_seconds.sum()),
        "epochs": dict(zip(trials.name + " s" + trials.seed.astype(str), trials.epoch.astype(int), strict=False)),
    }


QUICK_RANGES = {"train": (0, 8), "val": (8, 12), "test": (12, 16)}  # per class: runs on the smoke data too


_WORKER: dict[str, Any] = {}  # a grid worker's dataset, loaded once per process


def _start_worker(data_root: str, ranges: dict, threads: int) -> None:
    torch.set_num_threads(threads)
    _WORKER["data"] = load_el7008(data_root, ranges)


def _grid_trial(config: TrialConfig, cache_dir: str) -> dict[str, Any]:
    """One trial through trainable.trial.run_trial in this worker process; its own peak GPU memory."""
    from trainable.trial import run_trial

    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    final = run_trial(config, _WORKER["data"], cache=TrunkCache(cache_dir))
    return {
        "trial": f"e{config.experiment:02d} {config.name} s{config.seed}",
        "freeze": config.freeze,
        "epochs": final[reported.epoch],
        "stopped_by": final[reported.stopped_by],
        "wall_s": time.perf_counter() - start,
        "inputs_s": final[reported.inputs_seconds],
        "train_s": final[reported.train_seconds],
        "precision": f"trunk {final[reported.precision]}, trained {final[reported.precision_trained]}",
        "peak_gpu_mb": torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
        "test_acc_best": final[reported.test_acc_best],
    }


def grid_without_ray(
    data_root: str, seeds: int, concurrent: int, *, max_epochs: int | None, ranges: dict, cache_dir: str
) -> dict[str, Any]:
    """The paper grid x `seeds` (weights none) through the Ray-free trial function, `concurrent`
    trials at a time, each in a spawned worker process (its own CUDA context and peak memory;
    the trunk cache's file locks let concurrent trials share entries). Full-network trials go
    first, as the study schedules them."""
    from study.grids import expand

    overrides = {"weights": "none", **({"max_epochs": max_epochs} if max_epochs else {})}
    configs = sorted(expand("paper", seeds=seeds, overrides=overrides), key=lambda c: c.freeze != "none")
    threads = max(1, (os.cpu_count() or 1) // concurrent)
    context = multiprocessing.get_context("spawn")
    start = time.perf_counter()
    worker = {"mp_context": context, "initializer": _start_worker, "initargs": (data_root, ranges, threads)}
    with ProcessPoolExecutor(concurrent, **worker) as pool:
        trials = list(pool.map(_grid_trial, configs, [cache_dir] * len(configs)))
    wall = time.perf_counter() - start
    return {
        "trials": len(trials),
        "seeds": seeds,
        "concurrent": concurrent,
        "threads_per_worker": threads,
        "wall_s": wall,
        "train_s (sum over trials)": sum(t["train_s"] for t in trials),
        "inputs_s (sum over trials)": sum(t["inputs_s"] for t in trials),
        "per_trial": trials,
    }


def grid_table(grid: dict[str, Any]) -> str:
    """The Ray-free grid as a Markdown table, one row per trial."""
    columns = ["trial", "epochs", "stopped_by", "wall_s", "inputs_s", "train_s", "peak_gpu_mb", "precision"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for t in grid["per_trial"]:
        cells = [f"{t[c]:.1f}" if isinstance(t[c], float) else str(t[c]) for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    head = (
        f"paper grid x {grid['seeds']} seed(s), {grid['trials']} trials, {grid['concurrent']} at a time "
        f"({grid['threads_per_worker']} CPU threads each): {grid['wall_s']:.1f} s wall"
    )
    return head + "\n\n" + "\n".join(lines)
