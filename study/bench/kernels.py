"""The kernel figures, each against the naive way in the same run: matmul peak, trunk encoding,
frozen-trunk epochs cached vs naive, full fine-tuning and head training (each also as a
fraction of the matmul peak), head training with each layout choice undone, and what Ray adds
per trial and per epoch."""

from __future__ import annotations

import copy
import math
import tempfile
import time
from typing import Any

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from study.bench.measure import sync, timed
from trainable.cache import encode
from trainable.data.dataset import DEFAULT_RANGES, load_el7008
from trainable.loop import EarlyStopping, Examples, Recipe, TrainState, fit
from trainable.model import build_model
from trainable.transforms import apply_transform, eval_transform


def matmul_peak(dtype: torch.dtype, device: torch.device) -> float:
    """FLOP/s of a square matmul with the current thread count (or on the GPU)."""
    n = 8192 if device.type == "cuda" else 1024
    a, b = (torch.randn(n, n, dtype=dtype, device=device) for _ in range(2))
    return 2 * n**3 / timed(lambda: torch.mm(a, b), repeat=5)


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


def train_step_rate(
    net, inputs, labels, batch: int, precision: str, device, *, channels_last: bool = True, fused: bool = True
) -> tuple[float, float]:
    """(images/s, FLOP per image) of training steps of `net` at `batch`; `channels_last` and
    `fused` (Adam's fused kernel, else its foreach one) as the trials run, unless turned off."""
    optimizer = torch.optim.Adam(
        [p for p in net.parameters() if p.requires_grad], lr=1e-4, fused=fused, foreach=None if fused else True
    )
    layout = torch.channels_last if channels_last else torch.contiguous_format
    x, y = inputs[:batch].contiguous(memory_format=layout), labels[:batch].to(device)
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
    results["head_batch8_img_per_s"] = layout_choices(model.head, features[best], labels, device)
    return results


def layout_choices(head, features, labels, device) -> dict[str, float]:
    """Head training at batch 8 (the cached trials' smallest paper batch), images/s, as the
    trials run it (channels-last, fused Adam) and with each choice undone, in one run."""
    contiguous = copy.deepcopy(head).to(memory_format=torch.contiguous_format)
    rate = lambda net, **way: train_step_rate(net, features, labels, 8, "fp32", device, **way)[0]  # noqa: E731
    return {
        "channels-last, fused Adam (as trials run)": rate(head),
        "contiguous memory format": rate(contiguous, channels_last=False),
        "foreach Adam instead of fused": rate(head, fused=False),
    }


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
