"""Shared fixtures: a tiny generated dataset, and the real one where it is present."""

from __future__ import annotations

import os

import pytest
import torch

from study.smoke_data import RANGES, make_smoke_data
from trainable.data import FaceData, load_el7008

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The study's real dataset: $FACE_AGE_DATA, else ../shared/data/el7008 beside the project.
REAL_DATA = os.environ.get("FACE_AGE_DATA", os.path.join(ROOT, "..", "shared", "data", "el7008"))

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory) -> str:
    """16 images per class in the original layout (8 train / 4 val / 4 test)."""
    return make_smoke_data(str(tmp_path_factory.mktemp("tiny")))


@pytest.fixture(scope="session")
def tiny_data(tiny_root) -> FaceData:
    return load_el7008(tiny_root, RANGES)


@pytest.fixture(scope="session")
def real_data() -> FaceData:
    if not os.path.isdir(REAL_DATA):
        pytest.skip(f"real dataset not found at {REAL_DATA} (set FACE_AGE_DATA)")
    return load_el7008(REAL_DATA)


@pytest.fixture(scope="session")
def utk_root(tmp_path_factory) -> str:
    """UTKFace-style names (AGE_GENDER_RACE_DATE.jpg.chip.jpg), 20 faces per age group,
    coloured by group so they are learnable, plus two files that must be listed."""
    import numpy as np
    from PIL import Image

    root = tmp_path_factory.mktemp("utk")
    rng = np.random.default_rng(0)
    ages = [1, 2, 3, 4] * 5 + [5, 10, 20, 27] * 5 + [28, 45, 60, 80] * 5
    for i, age in enumerate(ages):
        group = 0 if age < 5 else 1 if age < 28 else 2
        image = rng.integers(0, 90, (200, 200, 3)).astype(float)
        image[..., group] += 150
        name = f"{age}_{i % 2}_{i % 5}_20170109{i:06d}.jpg.chip.jpg"
        Image.fromarray(image.clip(0, 255).astype(np.uint8)).save(root / name)
    (root / "notes.txt").write_text("not an image")
    Image.new("RGB", (200, 200)).save(root / "unnamed.jpg")
    return str(root)
