"""A tiny generated face-free image set in the original layout, whose classes are
learnable even by a randomly initialised network: each class has its own colour
and stripe direction, under per-image noise."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

from trainable.data.layouts import CLASS_DIRS

PER_CLASS = 16
RANGES = {"train": (0, 8), "val": (8, 12), "test": (12, 16)}  # [start, stop) per class


def make_smoke_data(root: str, *, per_class: int = PER_CLASS, size=(160, 200), seed: int = 0) -> str:
    """Write ROOT/{1,5,28}/{i}.jpg (width x height = `size`) unless present; return ROOT."""
    rng = np.random.default_rng(seed)
    width, height = size
    yy, xx = np.mgrid[0:height, 0:width]
    stripes = [
        (xx // 8) % 2,  # class 0: vertical stripes
        (yy // 8) % 2,  # class 1: horizontal stripes
        ((xx + yy) // 8) % 2,  # class 2: diagonal stripes
    ]
    for label, class_dir in enumerate(CLASS_DIRS):
        folder = os.path.join(root, class_dir)
        os.makedirs(folder, exist_ok=True)
        for index in range(per_class):
            path = os.path.join(folder, f"{index}.jpg")
            if os.path.exists(path):
                continue
            image = rng.integers(0, 90, (height, width, 3)).astype(np.float64)
            image[..., label] += 120 + 40 * stripes[label]
            Image.fromarray(image.clip(0, 255).astype(np.uint8)).save(path, quality=92)
    return root
