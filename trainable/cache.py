"""The frozen trunk's outputs, computed once and shared by every trial that can use them.

With the trunk frozen (eval mode, no gradients), its output for one image under
one fixed transform never changes. Files are keyed by everything the output
depends on and written atomically under a lock, so concurrent trials on a node
compute each entry once and the others wait and read it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from trainable.device import autocast


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


class TrunkCache:
    """Tensors on disk under `directory`, one file per key; None keeps nothing."""

    def __init__(self, directory: str | None) -> None:
        self.directory = directory
        self.hits = 0
        self.misses = 0

    def get(self, key: dict[str, Any], compute: Callable[[], torch.Tensor]) -> torch.Tensor:
        if self.directory is None:
            self.misses += 1
            return compute()
        os.makedirs(self.directory, exist_ok=True)
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]
        path = os.path.join(self.directory, f"{digest}.pt")
        with open(path + ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_SH)  # hits read side by side
            if os.path.exists(path):
                self.hits += 1
                return torch.load(path, weights_only=True)["features"]
            fcntl.flock(lock, fcntl.LOCK_EX)  # one writer; a second trial waits here, then reads the file
            if os.path.exists(path):  # written while this one waited (the upgrade is not atomic)
                self.hits += 1
                return torch.load(path, weights_only=True)["features"]
            self.misses += 1
            features = compute()
            fd, tmp = tempfile.mkstemp(dir=self.directory, suffix=".tmp")
            os.close(fd)
            torch.save({"key": key, "features": features}, tmp)
            os.replace(tmp, path)  # readers never see a half-written file
            return features
