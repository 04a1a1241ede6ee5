"""How a load and a cached trial grow with the dataset: generated datasets of a given size, each
scanned, decoded and run through `study.run` for one cached epoch (scan, decode, encoding
rate, epoch time and the driver's memory per size)."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from typing import Any

import numpy as np
import pandas as pd

from study.bench.measure import final_rows, run_study_cli
from trainable.results.atomic_io import write_text

SCALE_SHARES = (0.22, 0.33, 0.45)  # UTKFace's classes: 1-4, 5-27, 28+


def generate_faces(root: str, n: int, seed: int = 0) -> str:
    """n distinct 200x200 JPEGs (face-sized, about 10 kB) in one folder per class, in
    UTKFace's class shares; a class is a tint, so a head can learn it. Reuses a folder
    that already holds n images."""
    from PIL import Image

    folder = os.path.join(root, f"faces-{n}")
    counts = [round(share * n) for share in SCALE_SHARES[:-1]]
    counts.append(n - sum(counts))
    if os.path.exists(os.path.join(folder, "done")):
        return folder
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 200, (64, 200, 200, 3)).astype(np.int16)  # textures, reused with noise
    for c, count in enumerate(counts):
        os.makedirs(os.path.join(folder, f"class{c}"), exist_ok=True)
        for i in range(count):
            image = base[rng.integers(64)] + rng.integers(-20, 21, (200, 200, 3))
            image[..., c] += 50
            Image.fromarray(image.clip(0, 255).astype(np.uint8)).save(os.path.join(folder, f"class{c}", f"{i}.jpg"))
    write_text(os.path.join(folder, "done"), "")
    return folder


def read_and_hash(root: str) -> float:
    """Seconds to read and sha256 every file under root: the scan's share of a load."""
    import hashlib

    start = time.perf_counter()
    for folder, _, files in os.walk(root):
        for name in files:
            with open(os.path.join(folder, name), "rb") as f:
                hashlib.sha256(f.read()).digest()
    return time.perf_counter() - start


def scale(sizes: list[int], keep: str | None) -> list[dict[str, Any]]:
    """Per dataset size (scale_row), in a temporary folder unless `keep` names one."""
    with tempfile.TemporaryDirectory() as scratch:
        root = os.path.abspath(keep) if keep else scratch
        rows = []
        for n in sizes:
            rows.append(scale_row(root, n))
            print(f"{n} images: {rows[-1]}", flush=True)
            if not keep:
                shutil.rmtree(os.path.join(root, f"scale-{n}"))
    return rows


def scale_row(root: str, n: int) -> dict[str, Any]:
    """Scan (read + sha256 of every file) and decode (the rest of a load, which also writes the
    image store) of n generated images, each timed in this process with a fresh store; then
    `study.run --grid paper --where experiment=3` (cached, no augmentation) for one epoch with
    random weights through the CLI: its trunk-encoding rate (the CLI's 'Encoded in' line),
    its one cached epoch (the trial's epoch_seconds) and peak PSS, of the driver alone and
    of the driver with every Ray process (sampled every 0.5 s)."""
    from trainable.data.dataset import load_dataset

    data_dir = generate_faces(os.path.join(root, "generated"), n)
    scan_s = read_and_hash(data_dir)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=root) as store:
        data = load_dataset(data_dir, layout="folders", store=store)
        load_s = time.perf_counter() - start
    storage = os.path.join(root, f"scale-{n}")
    options = ["--grid", "paper", "--where", "experiment=3", "--seeds", "1", "--max-epochs", "1", "--weights", "none"]
    options += ["--data", data_dir, "--layout", "folders", "--storage", storage, "--name", "study"]
    out, wall, memory = run_study_cli(options, f"scale run of {n} images")
    encoded = next(line for line in out.splitlines() if line.startswith("Encoded in"))
    trial = final_rows(os.path.join(storage, "study")).iloc[0]
    return {
        "images": n,
        "split": data.sizes(),
        "scan_s": scan_s,
        "decode_s": load_s - scan_s,
        "encoding_img_per_s": n / float(encoded.split()[2]),
        "cached_epoch_s": float(trial.epoch_seconds),
        "study_wall_s": wall,
        "driver_peak_pss_gb": memory.root_peak / 2**30,
        "driver_peak_uss_gb": memory.root_private_peak / 2**30,
        "all_processes_peak_pss_gb": memory.peak / 2**30,
        "largest_processes_at_peak_gb": memory.largest(),
    }


def scale_table(rows: list[dict[str, Any]]) -> str:
    """The --scale figures as a markdown table, with each time's cost per image and the
    driver's growth against the smallest size."""
    table = pd.DataFrame(
        {
            "images": [r["images"] for r in rows],
            "scan s": [r["scan_s"] for r in rows],
            "decode s": [r["decode_s"] for r in rows],
            "encoding img/s": [r["encoding_img_per_s"] for r in rows],
            "cached epoch s": [r["cached_epoch_s"] for r in rows],
            "ms/image (scan+decode+encode+epoch)": [
                1000
                * (r["scan_s"] + r["decode_s"] + r["images"] / r["encoding_img_per_s"] + r["cached_epoch_s"])
                / r["images"]
                for r in rows
            ],
            "driver peak PSS GB": [r["driver_peak_pss_gb"] for r in rows],
            "driver peak USS GB": [r["driver_peak_uss_gb"] for r in rows],
            "driver USS vs smallest": [r["driver_peak_uss_gb"] / rows[0]["driver_peak_uss_gb"] for r in rows],
            "all processes peak PSS GB": [r["all_processes_peak_pss_gb"] for r in rows],
        }
    )
    cells = [[f"{v:.3g}" if isinstance(v, float) else str(v) for v in row] for row in table.itertuples(index=False)]
    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in cells])
