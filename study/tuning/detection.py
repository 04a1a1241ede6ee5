"""Faces found before training (--detect-faces) as Ray tasks over shards of the photos,
like the trunk encoding (study.tuning.encoding): each task runs MTCNN on its shard and writes
it to the face store under --cache-dir (trainable.data.face_detection), so every CPU of a cluster
shares the work and a shard a task finished is kept if the study stops. Ray is started
here, on first need: the data is checked before it, and only a dataset whose faces are
missing from the store needs it this early."""

from __future__ import annotations

import time

import ray
import torch

from study.spec import StudySpec
from study.terminal.console import wait_for
from study.tuning.cluster import start_ray
from study.tuning.encoding import shards
from trainable.data.face_detection import Runner, detect_shard
from trainable.data.image_store import StoredImages
from trainable.results.atomic_io import host


@ray.remote
def _detect_shard(images: StoredImages, hashes: list[str], folder: str) -> str:
    torch.set_num_threads(1)
    return detect_shard(images, hashes, folder, f"Ray task {ray.get_runtime_context().get_task_id()} on {host()}")


def ray_runner(spec: StudySpec) -> Runner:
    """A trainable.data.face_detection runner that detects on the study's Ray cluster."""

    def run(images: StoredImages, hashes: list[str], folder: str) -> None:
        if not ray.is_initialized():
            start_ray(spec)
        parts = shards(len(hashes), int(ray.cluster_resources().get("CPU", 1)))
        print(f"Finding faces in {len(hashes)} photo(s) the store lacks: {len(parts)} Ray task(s)")
        started = time.perf_counter()
        tasks = [_detect_shard.remote(images.subset(range(a, b)), hashes[a:b], folder) for a, b in parts]
        wait_for(tasks, spec.progress_every, "face-finding tasks done")
        print(f"Found in {time.perf_counter() - started:.1f} s, task start-up included")

    return run
