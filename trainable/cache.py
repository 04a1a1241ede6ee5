"""The frozen trunk's outputs, computed once and shared by every trial that can use them.

With the trunk frozen (eval mode, no gradients), its output for one image under
one fixed transform never changes. Entries are keyed by everything the output
depends on and written atomically: either by encoding tasks before the trials
start (study.tuning.encoding, one shard each), or by the first trial that needs one,
under a lock, while concurrent trials on the node wait and read it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torchvision.transforms import v2

from trainable.device import autocast
from trainable.results.atomic_io import atomic, remove_stale_temps, sha256, write_json
from trainable.transforms import apply_transform

MANIFEST = "manifest.json"  # written last: an entry without it is incomplete


@torch.no_grad()
def encode(
    trunk: nn.Module, images: torch.Tensor, *, device: torch.device, precision: str, batch_size: int = 64
) -> torch.Tensor:
    """N x 3 x 160 x 160 images -> trunk outputs (N x C x H x W float32, on the CPU)."""
    trunk.eval().to(device)
    out = []
    for batch in images.split(batch_size):
        with autocast(device, precision):
            out.append(trunk(batch.to(device, memory_format=torch.channels_last)).float().cpu())
    return torch.cat(out).contiguous()  # one layout on disk, whatever the trunk produced


@torch.no_grad()
def encode_images(
    trunk: nn.Module,
    images: Sequence[np.ndarray],
    transform: v2.Compose,
    *,
    seed: int,
    offset: int = 0,
    device: torch.device,
    precision: str,
    batch_size: int = 64,
) -> torch.Tensor:
    """Transform and encode HxWx3 images a batch at a time (apply_transform's draws, so the
    rows equal encode(apply_transform(...)) of the whole): memory holds the features and one
    batch of transformed images, never the whole transformed set."""
    parts = [
        encode(
            trunk,
            apply_transform(transform, images[i : i + batch_size], seed=seed, offset=offset + i),
            device=device,
            precision=precision,
            batch_size=batch_size,
        )
        for i in range(0, len(images), batch_size)
    ]
    return torch.cat(parts)


class TrunkCache:
    """Trunk outputs on disk under `directory`, one folder per key holding .npy parts (rows
    start..stop of the entry, memory-mapped when read) and, once every row is there, a
    manifest; None keeps nothing. A part may come from a trial or from an encoding task
    (study.tuning.encoding) that wrote one shard of many."""

    def __init__(self, directory: str | None) -> None:
        self.directory = directory
        self.hits = 0
        self.misses = 0

    def folder(self, key: dict[str, Any]) -> str:
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]
        return os.path.join(self.directory, digest)

    def get(
        self, key: dict[str, Any], compute: Callable[[], torch.Tensor], rows: np.ndarray | None = None
    ) -> torch.Tensor:
        """The entry's rows (all by default), computed and stored first if it is missing."""
        if self.directory is None:
            self.misses += 1
            return compute() if rows is None else compute()[rows]
        folder = self.folder(key)
        os.makedirs(folder, exist_ok=True)
        with open(folder + ".lock", "a") as lock:  # only flock'ed: it stays empty
            fcntl.flock(lock, fcntl.LOCK_SH)  # hits read side by side
            with contextlib.suppress(Damaged):  # repaired below, by the one writer
                if (features := self.load(key, rows)) is not None:
                    self.hits += 1
                    return features
            fcntl.flock(lock, fcntl.LOCK_EX)  # one writer; a second trial waits here, then reads the entry
            try:
                if (features := self.load(key, rows)) is not None:  # written while this one waited
                    self.hits += 1
                    return features
            except Damaged as err:
                print(f"{err}; it is removed and computed again.", file=sys.stderr)
            self.misses += 1
            remove_stale_temps(folder)
            features = compute()
            for name in os.listdir(folder):  # shards an interrupted or damaged encoding left
                if name.startswith("part-") or name == MANIFEST:
                    os.remove(os.path.join(folder, name))
            self.write_part(key, 0, features)
            self.seal(key, len(features))
            return features if rows is None else features[rows]

    def complete(self, key: dict[str, Any]) -> bool:
        """The entry is sealed: its manifest, written last, is there."""
        return os.path.exists(os.path.join(self.folder(key), MANIFEST))

    def load(self, key: dict[str, Any], rows: np.ndarray | None = None) -> torch.Tensor | None:
        """The entry's rows (all by default) gathered from its memory-mapped parts, or None
        while it is incomplete. Only the rows asked for are copied into memory. Each part's
        size and sha256 are checked against the manifest (the checksum once per process and
        file); a part that fails, or a torn manifest, raises Damaged."""
        folder = self.folder(key)
        manifest = os.path.join(folder, MANIFEST)
        if not self.complete(key):
            return None
        try:
            with open(manifest) as f:
                record = json.load(f)
            parts = [(part["name"], part["bytes"], part["sha256"]) for part in record["parts"]]
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise Damaged(f"trunk cache {folder}: its {MANIFEST} cannot be read ({err})") from None
        rows = np.arange(record["rows"]) if rows is None else np.asarray(rows, dtype=np.int64)
        out = None
        for name, size, digest in parts:
            path = os.path.join(folder, name)
            verify(path, size, digest)
            start, stop = (int(v) for v in name[5:-4].split("-"))
            part = np.load(path, mmap_mode="r")
            if out is None:
                out = np.empty((len(rows), *part.shape[1:]), dtype=part.dtype)
            inside = (rows >= start) & (rows < stop)
            out[inside] = part[rows[inside] - start]
        return torch.from_numpy(out)

    def write_part(self, key: dict[str, Any], start: int, features: torch.Tensor) -> None:
        """Rows start..start+len(features) of the entry, written atomically."""
        folder = self.folder(key)
        os.makedirs(folder, exist_ok=True)
        with atomic(os.path.join(folder, f"part-{start:09d}-{start + len(features):09d}.npy"), "wb") as f:
            np.save(f, features.numpy())

    def seal(self, key: dict[str, Any], rows: int) -> None:
        """Write the manifest once parts cover rows 0..rows exactly; raise if they do not."""
        folder = self.folder(key)
        parts = sorted(name for name in os.listdir(folder) if name.startswith("part-") and name.endswith(".npy"))
        spans = [tuple(int(v) for v in name[5:-4].split("-")) for name in parts]
        ends = [0] + [stop for _, stop in spans]
        if [start for start, _ in spans] != ends[:-1] or ends[-1] != rows:
            raise RuntimeError(f"trunk cache {folder}: parts {spans} do not cover rows 0..{rows}")
        files = [os.path.join(folder, name) for name in parts]
        checked = [
            {"name": n, "bytes": os.path.getsize(f), "sha256": sha256(f)} for n, f in zip(parts, files, strict=True)
        ]
        write_json(os.path.join(folder, MANIFEST), {"key": key, "rows": rows, "parts": checked})


class Damaged(Exception):
    """A cache entry whose files do not match its manifest."""


VERIFIED: set[tuple[str, int, int]] = set()  # (path, size, mtime) of parts whose checksum matched


def verify(path: str, size: int, digest: str) -> None:
    """Raise Damaged unless the file at `path` has `size` bytes and sha256 `digest`."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise Damaged(f"trunk cache part {path} is missing") from None
    if info.st_size != size:
        raise Damaged(f"trunk cache part {path} has {info.st_size} bytes, its manifest says {size}")
    seen = (path, info.st_size, info.st_mtime_ns)
    if seen not in VERIFIED:
        if sha256(path) != digest:
            raise Damaged(f"trunk cache part {path} does not match its checksum")
        VERIFIED.add(seen)
