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
