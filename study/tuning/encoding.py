"""Trunk outputs for every cached trial, encoded before the trials start: each distinct
encoding (transform x weights x freeze point x normalization) once, split into shards
that Ray tasks encode side by side on every CPU (or GPU) the cluster has. The trials
then find complete cache entries and map them.

A shard a task finished is kept if the study stops, and a resumed study encodes only
what is missing. A trial whose entry is missing (another device type, a node that does
not share --cache-dir) still encodes it itself, so this step only ever saves time.
"""

from __future__ import annotations

import time
from typing import Any

import ray
import torch

from study.terminal.console import wait_for
from trainable.cache import TrunkCache
from trainable.config import TrialConfig
from trainable.data.dataset import FaceData
from trainable.device import resolve_precision
from trainable.inputs import Encoding, cache_key, encode_shard, encodings

MAX_SHARD = 1024  # images per task at most: ~10-20 s of one CPU core, long next to a model load
MIN_SHARD = 64  # one encoding batch


def wanted(configs: list[TrialConfig]) -> list[tuple[TrialConfig, Encoding]]:
    """One (config, encoding) per distinct trunk output the configs' trials will read."""
    seen: dict[tuple, tuple[TrialConfig, Encoding]] = {}
    for cfg in configs:
        for encoding in encodings(cfg) if cfg.uses_cache else []:
            seen.setdefault((encoding, cfg.weights, cfg.freeze, cfg.normalization, cfg.precision), (cfg, encoding))
    return list(seen.values())


def complete_here(cfg: TrialConfig, data: FaceData, encoding: Encoding, cache: TrunkCache) -> bool:
    """The encoding's cache entry is complete for a CPU task as this machine's CPU resolves the
    precision: then no task is started for it (a node that resolves it otherwise, or a GPU, has its
    trials encode what they miss themselves)."""
    device = torch.device("cpu")
    key = cache_key(cfg, data, encoding, resolve_precision(cfg.precision, device), device)
    return cache.complete(key)


def shards(n: int, slots: int) -> list[tuple[int, int]]:
    """(start, stop) ranges of n images: at least one per task slot of the cluster when the
    images allow, none above MAX_SHARD."""
    size = max(MIN_SHARD, min(MAX_SHARD, -(-n // max(1, slots))))
    return [(start, min(start + size, n)) for start in range(0, n, size)]


@ray.remote
def _encode_shard(cfg: TrialConfig, data: FaceData, encoding: Encoding, start: int, stop: int, cache_dir: str) -> Any:
    torch.set_num_threads(max(1, int(ray.get_runtime_context().get_assigned_resources().get("CPU", 1))))
    return encode_shard(cfg, data, encoding, start, stop, TrunkCache(cache_dir))


def encode_for_trials(
    configs: list[TrialConfig], data: FaceData, cache_dir: str, *, cpus: float, gpus: float, every: float = 30.0
) -> None:
    """Encode, seal and report what the trials of `configs` will read from the cache: a
    line when a shard is done, or after `every` seconds without one (--progress-every)."""
    every_set = wanted(configs)
    cache = TrunkCache(cache_dir)
    todo = [(cfg, encoding) for cfg, encoding in every_set if gpus or not complete_here(cfg, data, encoding, cache)]
    if every_set and not todo:
        print(f"Trunk outputs: all {len(every_set)} set(s) the cached trials read are in the cache already")
    if not todo:
        return
    data_ref = ray.put(data)  # paths, labels and the image file's name: a few bytes per image
    resources = ray.cluster_resources()
    slots = int(min(resources.get("CPU", 1) / cpus, resources.get("GPU", 0) / gpus if gpus else float("inf")))
    tasks = {}
    for cfg, encoding in todo:
        n = len(data.images) if encoding.subset == "all" else len(data.split[encoding.subset])
        for start, stop in shards(n, slots):
            ref = _encode_shard.options(num_cpus=cpus, num_gpus=gpus).remote(
                cfg, data_ref, encoding, start, stop, cache_dir
            )
            tasks[ref] = n
    started = time.perf_counter()
    cached = f", {len(every_set) - len(todo)} cached already" if len(todo) < len(every_set) else ""
    print(f"Encoding {len(todo)} trunk output set(s) for the cached trials{cached}: {len(tasks)} shard task(s)")
    keys: dict[str, tuple[dict, int]] = {}
    for ref, key in wait_for(list(tasks), every, "shards encoded"):
        if key is not None:
            keys[repr(sorted(key.items()))] = (key, tasks[ref])
    for key, rows in keys.values():
        try:
            cache.seal(key, rows)
        except RuntimeError as err:  # shards written on nodes whose --cache-dir this one cannot see
            print(f"Note: {err}; the trials that need it encode it themselves.")
    seconds = time.perf_counter() - started
    print(f"Encoded in {seconds:.1f} s, task start-up included ({len(keys)} new, {len(todo) - len(keys)} cached)")
