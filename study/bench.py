"""Benchmark the study on this machine, in one process, against the naive way.

    python -m study.bench [--quick | --grid-only | --scale] [--seeds N] [--out FILE.json] [--data PATH]
    python -m study.bench --device cuda --no-ray [--quick] [--seeds 5] [--concurrent K] --out DIR

Prints a table and writes the figures as JSON. Everything compared is measured
in the same run; absolute times on shared machines vary, ratios much less.
`--quick` (under a minute) uses a third of the images and skips the paper grid;
`--grid-only` runs only the paper grid (with `--seeds N`); `--scale` runs one
cached trial through the CLI on generated datasets of `--sizes` images (see scale()).
`--no-ray` (the GPU check, BENCHMARKS.md "GPU"; needs only torch and facenet-pytorch besides
the scientific stack): the kernel figures, every throughput also as a fraction of the matmul
peak at its precision, then the paper grid x `--seeds` through the Ray-free trial function,
`--concurrent` trials at a time, each in a worker process of its own, so its peak GPU memory is
its own; DIR gets bench.json and table.md. With `--quick`: 1 seed, 1 epoch, 8/4/4 images per
class (so it runs on the tests' generated data too).
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.flop_counter import FlopCounterMode

from trainable.cache import TrunkCache, encode
from trainable.data import DEFAULT_RANGES, load_el7008
from trainable.device import cpu_has_bf16, cpu_info, describe_cpu
from trainable.files import write_json, write_text
from trainable.loop import EarlyStopping, Examples, Recipe, TrainState, fit
from trainable.model import build_model
from trainable.records import reported
from trainable.results_files import PARAMS_FILE, RESULT_FILE
from trainable.transforms import apply_transform, eval_transform

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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


def matmul_peak(dtype: torch.dtype, device: torch.device) -> float:
    """FLOP/s of a square matmul with the current thread count (or on the GPU)."""
    n = 8192 if device.type == "cuda" else 1024
    a, b = (torch.randn(n, n, dtype=dtype, device=device) for _ in range(2))
    return 2 * n**3 / timed(lambda: torch.mm(a, b), repeat=5)


def frozen_epoch(model, images, features, labels, split, *, cached: bool, precision: str, device) -> float:
    """Seconds for one epoch of experiment 1 (batch 32): the naive way runs the frozen
    trunk on every image each epoch, the cached way trains block8+head on stored outputs."""
    inputs = features if cached else images
    net = model.head if cached else model
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4, fused=True)

    def one_epoch():
        train, val = split["train"], split["val"]
        examples = Examples(lambda e: inputs[train], labels[train], inputs[val], labels[val])
        recipe = Recipe(optimizer, device, precision, batch_size=32, max_epochs=1)
        fit(model, net, examples, recipe, TrainState(EarlyStopping(patience=100)))

    return timed(one_epoch, repeat=1 if not cached else 3)


def train_step_rate(net, inputs, labels, batch: int, precision: str, device) -> tuple[float, float]:
    """(images/s, FLOP per image) of training steps of `net` at `batch`."""
    optimizer = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=1e-4, fused=True)
    x, y = inputs[:batch].contiguous(memory_format=torch.channels_last), labels[:batch].to(device)
    ctx = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if precision == "bf16" else torch.enable_grad

    def step():
        net.train()
        with ctx():
            loss = torch.nn.functional.cross_entropy(net(x).float(), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    counter = FlopCounterMode(display=False)
    with counter:
        step()
    seconds = timed(step, repeat=3 if batch <= 32 else 1)
    return batch / seconds, counter.get_total_flops() / batch


def ray_overhead(epochs: int, epoch_seconds: float, reports: int = 200) -> dict[str, float]:
    """Ray Tune's cost: start-up, per trial, and per reported epoch, against the same
    trivial loop without Ray; and its share of a cached trial of `epochs` epochs.
    Trials of 1 and `reports` epochs, twice each (the faster counts): their difference
    isolates the per-epoch cost from the per-trial one."""
    import ray
    from ray import tune

    work = torch.randn(128, 128)

    def one_epoch():
        for _ in range(10):
            work @ work

    def trainable(config):
        start = time.perf_counter()
        for epoch in range(1, config["epochs"] + 1):
            one_epoch()
            tune.report({"epoch": epoch, "val_loss": 1.0 / epoch, "inside_s": time.perf_counter() - start})

    plain = timed(lambda: [one_epoch() for _ in range(reports)]) / reports
    start = time.perf_counter()
    ray.init(include_dashboard=False, logging_level="ERROR", num_cpus=1)
    init_seconds = time.perf_counter() - start
    walls, inside = {1: math.inf, reports: math.inf}, math.inf
    with tempfile.TemporaryDirectory() as storage:
        for run, n in enumerate((1, reports, 1, reports)):
            tuner = tune.Tuner(
                tune.with_resources(trainable, {"cpu": 1}),
                param_space={"epochs": n},
                run_config=tune.RunConfig(storage_path=storage, name=f"overhead{run}", verbose=0),
            )
            start = time.perf_counter()
            metrics = tuner.fit()[0].metrics
            walls[n] = min(walls[n], time.perf_counter() - start)
            if n == reports:
                inside = min(inside, metrics["inside_s"])
    ray.shutdown()
    per_epoch = (walls[reports] - walls[1]) / (reports - 1) - plain
    per_report_inside = inside / reports - plain
    per_trial = walls[1] - plain
    trial = epochs * epoch_seconds
    return {
        "ray_init_s": init_seconds,
        "per_trial_start_s": per_trial,
        "per_epoch_wall_s": per_epoch,
        "per_report_in_trial_s": per_report_inside,
        f"share_of_a_{epochs}_epoch_cached_trial": (per_trial + epochs * max(per_epoch, 0)) / (trial + per_trial),
        "per_epoch_share_of_a_cached_epoch": max(per_epoch, per_report_inside) / epoch_seconds,
    }


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


def paper_grid(data_root: str, seeds: int, keep: str | None, gpus: float) -> dict[str, Any]:
    """The paper grid end to end through the CLI (weights none): wall time, peak memory, split.
    Results go to `keep` when given (for a report), else to a temporary directory."""
    with tempfile.TemporaryDirectory() as scratch:
        storage = os.path.abspath(keep) if keep else scratch
        cmd = [
            sys.executable,
            "-m",
            "study.run",
            "--grid",
            "paper",
            "--data",
            data_root,
            "--weights",
            "none",
            "--seeds",
            str(seeds),
            "--storage",
            storage,
            "--name",
            "bench",
            "--gpus-per-trial",
            str(gpus),
        ]
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        memory = PeakMemory(proc.pid)
        _, err = proc.communicate()
        wall = time.perf_counter() - start
        peak = memory.stop()
        if proc.returncode != 0:
            raise RuntimeError(f"paper grid failed:\n{err[-2000:]}")
        trials = final_rows(os.path.join(storage, "bench"))
    frozen = trials[trials.freeze != "none"]
    return {
        "command": " ".join(cmd[1:]),
        "seeds": seeds,
        "wall_s": wall,
        "peak_memory_gb (PSS, all processes)": peak / 2**30,
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


def _grid_trial(config: dict[str, Any], cache_dir: str) -> dict[str, Any]:
    """One trial through trainable.trial.run_trial in this worker process; its own peak GPU memory."""
    from trainable.config import TrialConfig
    from trainable.trial import run_trial

    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    final = run_trial(TrialConfig.from_dict(config), _WORKER["data"], cache=TrunkCache(cache_dir))
    return {
        "trial": f"e{config['experiment']:02d} {config['name']} s{config['seed']}",
        "freeze": config["freeze"],
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
    configs = sorted(expand("paper", seeds=seeds, overrides=overrides), key=lambda c: c["freeze"] != "none")
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


SCALE_SHARES = (0.22, 0.33, 0.45)  # UTKFace's classes: 1-4, 5-27, 28+


def generate_faces(root: str, n: int, seed: int = 0) -> str:
    """n distinct 200x200 JPEGs (face-sized, about 10 kB) in one folder per class, in
    UTKFace's class shares; a class is a tint, so a head can learn it. Reuses a folder
    that already holds n images."""
    from PIL import Image

    folder = os.path.join(root, f"faces-{n}")
    counts = [round(share * n) for share in SCALE_SHARES[:-1]]
    counts.append(n - sum(counts))
    if os.path.exists(os.path.join(folder, "done")):
        return folder
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 200, (64, 200, 200, 3)).astype(np.int16)  # textures, reused with noise
    for c, count in enumerate(counts):
        os.makedirs(os.path.join(folder, f"class{c}"), exist_ok=True)
        for i in range(count):
            image = base[rng.integers(64)] + rng.integers(-20, 21, (200, 200, 3))
            image[..., c] += 50
            Image.fromarray(image.clip(0, 255).astype(np.uint8)).save(os.path.join(folder, f"class{c}", f"{i}.jpg"))
    write_text(os.path.join(folder, "done"), "")
    return folder


def read_and_hash(root: str) -> float:
    """Seconds to read and sha256 every file under root: the scan's share of a load."""
    import hashlib

    start = time.perf_counter()
    for folder, _, files in os.walk(root):
        for name in files:
            with open(os.path.join(folder, name), "rb") as f:
                hashlib.sha256(f.read()).digest()
    return time.perf_counter() - start


def scale(sizes: list[int], keep: str | None) -> list[dict[str, Any]]:
    """Per dataset size: scan (read + sha256 of every file) and decode (the rest of a load,
    which also writes the image store), each timed in this process with a fresh store; then
    `study.run --grid paper --where experiment=3` (cached, no augmentation) for one epoch with
    random weights through the CLI: its trunk-encoding rate (the CLI's 'Encoded in' line),
    its one cached epoch (the trial's epoch_seconds) and peak PSS, of the driver alone and
    of the driver with every Ray process (sampled every 0.5 s)."""
    from trainable.data import load_dataset

    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        root = os.path.abspath(keep) if keep else scratch
        for n in sizes:
            data_dir = generate_faces(os.path.join(root, "generated"), n)
            scan_s = read_and_hash(data_dir)
            start = time.perf_counter()
            with tempfile.TemporaryDirectory(dir=root) as store:
                data = load_dataset(data_dir, layout="folders", store=store)
                load_s = time.perf_counter() - start
            storage = os.path.join(root, f"scale-{n}")
            cmd = [
                sys.executable,
                "-m",
                "study.run",
                "--grid",
                "paper",
                "--where",
                "experiment=3",
                "--seeds",
                "1",
                "--max-epochs",
                "1",
                "--weights",
                "none",
                "--data",
                data_dir,
                "--layout",
                "folders",
                "--storage",
                storage,
                "--name",
                "study",
            ]
            start = time.perf_counter()
            proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            memory = PeakMemory(proc.pid)
            out, _ = proc.communicate()
            wall = time.perf_counter() - start
            memory.stop()
            if proc.returncode != 0:
                raise RuntimeError(f"scale run of {n} images failed:\n{out[-3000:]}")
            encoded = next(line for line in out.splitlines() if line.startswith("Encoded in"))
            encode_s = float(encoded.split()[2])
            trial = final_rows(os.path.join(storage, "study")).iloc[0]
            rows.append(
                {
                    "images": n,
                    "split": data.sizes(),
                    "scan_s": scan_s,
                    "decode_s": load_s - scan_s,
                    "encoding_img_per_s": n / encode_s,
                    "cached_epoch_s": float(trial.epoch_seconds),
                    "study_wall_s": wall,
                    "driver_peak_pss_gb": memory.root_peak / 2**30,
                    "driver_peak_uss_gb": memory.root_private_peak / 2**30,
                    "all_processes_peak_pss_gb": memory.peak / 2**30,
                    "largest_processes_at_peak_gb": memory.largest(),
                }
            )
            print(f"{n} images: {rows[-1]}", flush=True)
            if not keep:
                subprocess.run(["rm", "-rf", storage], check=True)
    return rows


def scale_table(rows: list[dict[str, Any]]) -> str:
    """The --scale figures as a markdown table, with each time's cost per image and the
    driver's growth against the smallest size."""
    table = pd.DataFrame(
        {
            "images": [r["images"] for r in rows],
            "scan s": [r["scan_s"] for r in rows],
            "decode s": [r["decode_s"] for r in rows],
            "encoding img/s": [r["encoding_img_per_s"] for r in rows],
            "cached epoch s": [r["cached_epoch_s"] for r in rows],
            "ms/image (scan+decode+encode+epoch)": [
                1000
                * (r["scan_s"] + r["decode_s"] + r["images"] / r["encoding_img_per_s"] + r["cached_epoch_s"])
                / r["images"]
                for r in rows
            ],
            "driver peak PSS GB": [r["driver_peak_pss_gb"] for r in rows],
            "driver peak USS GB": [r["driver_peak_uss_gb"] for r in rows],
            "driver USS vs smallest": [r["driver_peak_uss_gb"] / rows[0]["driver_peak_uss_gb"] for r in rows],
            "all processes peak PSS GB": [r["all_processes_peak_pss_gb"] for r in rows],
        }
    )
    cells = [[f"{v:.3g}" if isinstance(v, float) else str(v) for v in row] for row in table.itertuples(index=False)]
    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in cells])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m study.bench", description=__doc__.split("\n")[0])
    what = p.add_mutually_exclusive_group()
    what.add_argument("--quick", action="store_true", help="a third of the images, no paper grid (< 1 min)")
    what.add_argument("--grid-only", action="store_true", help="only the paper grid, no other measurements")
    what.add_argument("--scale", action="store_true", help="one cached trial on generated datasets of --sizes")
    p.add_argument("--sizes", default="1000,10000,50000", help="--scale: images per generated dataset")
    p.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "data", "el7008"))
    p.add_argument("--seeds", type=int, help="seeds of the paper-grid run (default 1; --no-ray: 5)")
    p.add_argument("--out", help="write the figures here as JSON")
    p.add_argument("--keep", metavar="STORAGE", help="keep the paper grid's results under STORAGE/bench")
    cuda_help = "cuda: everything on the GPU, paper trials at --gpus-per-trial 0.25"
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help=cuda_help)
    p.add_argument("--no-ray", action="store_true", help="kernel figures, then the paper grid in-process (no Ray)")
    p.add_argument("--concurrent", type=int, help="--no-ray: trials at a time (default 4 on cuda, 1 on cpu)")
    args = p.parse_args(argv)
    if args.no_ray and (args.scale or args.grid_only or not args.out):
        p.error("--no-ray takes --quick, --seeds, --concurrent, --data, --device and --out DIR (required)")
    args.seeds = args.seeds or (5 if args.no_ray else 1)
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: torch sees no CUDA GPU")
    return args


def machine(device: torch.device) -> dict[str, Any]:
    """What every figure ran on, printed first."""
    threads = torch.get_num_threads()
    print(f"CPU: {describe_cpu()}; {os.cpu_count()} cores, {threads} torch threads", flush=True)
    return {
        "cpu": cpu_info(),
        "arch": platform.machine(),
        "cores": os.cpu_count(),
        "torch_threads": threads,
        "bf16_autocast": torch.cuda.is_bf16_supported() if device.type == "cuda" else cpu_has_bf16(),
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    trial_gpus = 0.25 if device.type == "cuda" else 0  # four paper trials per GPU
    results: dict[str, Any] = {"machine": machine(device)}
    if args.no_ray:
        return without_ray(args, device, results)
    if args.scale:
        results["scale"] = scale([int(n) for n in args.sizes.split(",")], args.keep)
        print(scale_table(results["scale"]))
        return finish(results, args.out)
    if not args.grid_only:
        keep = 3 if args.quick else 1  # every `keep`-th image of each split
        results.update(kernel_figures(args.data, keep, device, results["machine"]["bf16_autocast"]))
        full_epoch = results["frozen_epoch_s"]["cached"] * keep  # a cached epoch of all 360 + 120 images
        results["ray"] = ray_overhead(epochs=50, epoch_seconds=full_epoch)
    if not args.quick:
        results["paper_grid"] = paper_grid(args.data, args.seeds, args.keep, trial_gpus)
    return finish(results, args.out)


def bench_inputs(
    data_root: str, keep: int, device: torch.device, ranges: dict = DEFAULT_RANGES
) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Every `keep`-th train and val image (eval transform, channels-last), labels, and
    the train/val positions within them."""
    data = load_el7008(data_root, ranges)
    split = {s: np.arange(0, len(idx), keep) for s, idx in data.split.items()}
    images_all = apply_transform(eval_transform(mean=data.mean, std=data.std), data.images)
    order = np.concatenate([data.split[s][split[s]] for s in ("train", "val")])
    images = images_all[order].contiguous(memory_format=torch.channels_last).to(device)
    n_train = len(split["train"])
    return (
        images,
        torch.from_numpy(data.labels)[order],
        {"train": np.arange(n_train), "val": np.arange(n_train, len(order))},
    )


def forward_flops(net: torch.nn.Module, x: torch.Tensor) -> float:
    """FLOP per image of one forward pass (torch.utils.flop_counter)."""
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        net.eval()(x)
    return counter.get_total_flops() / len(x)


def kernel_figures(
    data_root: str, keep: int, device: torch.device, bf16: bool, ranges: dict = DEFAULT_RANGES
) -> dict[str, Any]:
    """Matmul peak, trunk encoding, frozen-trunk epochs cached vs naive, full fine-tuning
    and head training, at every precision this device runs natively; each rate also as a
    fraction of the matmul peak at its precision (FLOPs from torch.utils.flop_counter)."""
    images, labels, sub = bench_inputs(data_root, keep, device, ranges)
    model = build_model("none", "block8", seed=0).to(device, memory_format=torch.channels_last)
    precisions = ["fp32", "bf16"] if bf16 else ["fp32"]
    peak = {prec: matmul_peak(torch.float32 if prec == "fp32" else torch.bfloat16, device) for prec in precisions}
    results: dict[str, Any] = {"matmul_peak_gflops": {k: v / 1e9 for k, v in peak.items()}}
    encode_rate, features = {}, {}
    for prec in precisions:
        start = time.perf_counter()
        features[prec] = encode(model.trunk, images, device=device, precision=prec).to(device)
        sync()
        encode_rate[prec] = len(images) / (time.perf_counter() - start)
    results["trunk_encoding_img_per_s"] = encode_rate
    trunk_flop = forward_flops(model.trunk, images[:8])
    results["trunk_encoding_fraction_of_peak"] = {p: r * trunk_flop / peak[p] for p, r in encode_rate.items()}
    best = precisions[-1]
    naive = lambda prec: frozen_epoch(model, images, None, labels, sub, cached=False, precision=prec, device=device)  # noqa: E731
    epoch = {
        "naive fp32 (the original's way)": naive("fp32"),
        f"naive {best}": naive(best),
        "cached": frozen_epoch(model, None, features[best], labels, sub, cached=True, precision="fp32", device=device),
    }
    results["frozen_epoch_s"] = epoch
    results["frozen_epoch_images"] = len(images)
    results["cached_speedup_vs_original"] = epoch["naive fp32 (the original's way)"] / epoch["cached"]
    results["cached_speedup_vs_naive_same_precision"] = epoch[f"naive {best}"] / epoch["cached"]
    whole = build_model("none", "none", seed=0).to(device, memory_format=torch.channels_last)
    full = {prec: train_step_rate(whole, images, labels, 16, prec, device) for prec in precisions}
    results["full_finetune_img_per_s"] = {prec: rate for prec, (rate, _) in full.items()}
    results["full_finetune_fraction_of_peak"] = {p: rate * flop / peak[p] for p, (rate, flop) in full.items()}
    results["head_training"] = {}
    for batch in (32, 8):
        rate, flop = train_step_rate(model.head, features[best], labels, batch, "fp32", device)
        results["head_training"][f"batch {batch}"] = {
            "img_per_s": rate,
            "gflops": rate * flop / 1e9,
            "fraction_of_fp32_peak": rate * flop / peak["fp32"],
        }
    return results


def without_ray(args: argparse.Namespace, device: torch.device, results: dict[str, Any]) -> int:
    """The GPU check: kernel figures, then the paper grid in-process; DIR/bench.json, DIR/table.md."""
    ranges = QUICK_RANGES if args.quick else DEFAULT_RANGES
    results.update(kernel_figures(args.data, 1, device, results["machine"]["bf16_autocast"], ranges))
    concurrent = args.concurrent or (4 if device.type == "cuda" else 1)
    seeds = 1 if args.quick else args.seeds
    with tempfile.TemporaryDirectory() as cache_dir:
        grid = grid_without_ray(
            args.data, seeds, concurrent, max_epochs=1 if args.quick else None, ranges=ranges, cache_dir=cache_dir
        )
    results["paper_grid_without_ray"] = grid
    os.makedirs(args.out, exist_ok=True)
    kernels = {k: v for k, v in results.items() if k != "paper_grid_without_ray"}
    table = f"{render(kernels)}\n\n{grid_table(grid)}\n"
    print(table)
    write_text(os.path.join(args.out, "table.md"), table)
    write_json(os.path.join(args.out, "bench.json"), results, indent=1)
    print(f"wrote {os.path.join(args.out, 'bench.json')} and table.md")
    return 0


def finish(results: dict[str, Any], out: str | None) -> int:
    print(render(results))
    if out:
        write_json(out, results, indent=1)
    return 0


def render(results: dict[str, Any], prefix: str = "") -> str:
    lines = []
    for key, value in results.items():
        if isinstance(value, dict):
            lines.append(f"{prefix}{key}:")
            lines.append(render(value, prefix + "  "))
        elif isinstance(value, float):
            lines.append(f"{prefix}{key}: {value:.4g}")
        else:
            lines.append(f"{prefix}{key}: {value}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
