"""Benchmark the study on this machine, in one process, against the naive way.

    python -m study.bench [--quick | --grid-only | --scale | --serve] [--seeds N] [--out FILE.json] [--data PATH]
    python -m study.bench --device cuda --no-ray [--quick] [--seeds 5] [--concurrent K] --out DIR

Prints a table and writes the figures as JSON. Everything compared is measured
in the same run; absolute times on shared machines vary, ratios much less.
`--quick` (under a minute) uses a third of the images and skips the paper grid;
`--grid-only` runs only the paper grid (with `--seeds N`); `--scale` runs one
cached trial through the CLI on generated datasets of `--sizes` images (see scale()).
`--serve`: study.serve's deployment under load (see study.bench.serving).
`--no-ray` (the GPU check, BENCHMARKS.md "GPU"; needs only torch and facenet-pytorch besides
the scientific stack): the kernel figures, every throughput also as a fraction of the matmul
peak at its precision, then the paper grid x `--seeds` through the Ray-free trial function,
`--concurrent` trials at a time, each in a worker process of its own, so its peak GPU memory is
its own; DIR gets bench.json and table.md. With `--quick`: 1 seed, 1 epoch, 8/4/4 images per
class (so it runs on the tests' generated data too).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
from typing import TYPE_CHECKING, Any

from trainable.cli_options import prog
from trainable.data.layouts import DEFAULT_RANGES
from trainable.errors import parse_printable
from trainable.results.atomic_io import write_json, write_text

if TYPE_CHECKING:  # torch and the benchmarks load after the arguments are parsed (seconds)
    import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=prog("study.bench"), description=__doc__.split("\n")[0])
    what = p.add_mutually_exclusive_group()
    what.add_argument("--quick", action="store_true", help="a third of the images, no paper grid (< 1 min)")
    what.add_argument("--grid-only", action="store_true", help="only the paper grid, no other measurements")
    what.add_argument("--scale", action="store_true", help="one cached trial on generated datasets of --sizes")
    what.add_argument("--serve", action="store_true", help="study.serve under load: 1, 8, 32 clients, batching or not")
    p.add_argument("--requests", type=int, default=192, help="--serve: requests per cell (each cell at most 60 s)")
    p.add_argument("--sizes", default="1000,10000,50000", help="--scale: images per generated dataset")
    p.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "data", "el7008"))
    p.add_argument("--seeds", type=int, help="seeds of the paper-grid run (default 1; --no-ray: 5)")
    p.add_argument("--out", help="write the figures here as JSON")
    p.add_argument("--keep", metavar="STORAGE", help="keep the paper grid's results under STORAGE/bench")
    cuda_help = "cuda: everything on the GPU, paper trials at --gpus-per-trial 0.25"
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help=cuda_help)
    p.add_argument("--no-ray", action="store_true", help="kernel figures, then the paper grid in-process (no Ray)")
    p.add_argument("--concurrent", type=int, help="--no-ray: trials at a time (default 4 on cuda, 1 on cpu)")
    args = parse_printable(p, argv)
    if args.no_ray and (args.scale or args.grid_only or not args.out):
        p.error("--no-ray takes --quick, --seeds, --concurrent, --data, --device and --out DIR (required)")
    args.seeds = args.seeds or (5 if args.no_ray else 1)
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: torch sees no CUDA GPU")
    return args


def machine(device: torch.device) -> dict[str, Any]:
    import torch

    from trainable.device import cpu_has_bf16, cpu_info, describe_cpu

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
    import torch

    from study.bench.kernels import kernel_figures, ray_overhead
    from study.bench.paper import paper_grid
    from study.bench.scale import scale, scale_table

    device = torch.device(args.device)
    trial_gpus = 0.25 if device.type == "cuda" else 0  # four paper trials per GPU
    results: dict[str, Any] = {"machine": machine(device)}
    if args.no_ray:
        return without_ray(args, device, results)
    if args.serve:
        from study.bench.serving import serve_load, serve_table

        results["serve"] = serve_load(args.data, args.requests)
        print(serve_table(results["serve"]))
        return finish(results, args.out)
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


def without_ray(args: argparse.Namespace, device: torch.device, results: dict[str, Any]) -> int:
    from study.bench.kernels import kernel_figures
    from study.bench.paper import QUICK_RANGES, grid_table, grid_without_ray

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
