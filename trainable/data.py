"""Face images on disk -> one in-memory dataset with its split.

The original layout (`ROOT/1/`, `ROOT/5/`, `ROOT/28/`, files `0.jpg`...) is
split by per-class index ranges: train 0-119, validation 120-159, test 160-199.
Images are decoded once, in the driver, and reach trials through Ray's object
store; every problem with the data is reported together, before training.
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from trainable.errors import UserError
from trainable.transforms import CROP

CLASS_DIRS = ("1", "5", "28")  # folder names of the original layout
CLASS_NAMES = ("1-4", "5-27", "28+")  # ages covered by each class
SPLITS = ("train", "val", "test")
DEFAULT_RANGES = {"train": (0, 120), "val": (120, 160), "test": (160, 200)}  # [start, stop)


@dataclass
class FaceData:
    """Decoded images, labels and the split. Images are HxWx3 uint8 arrays."""

    root: str
    paths: list[str]  # relative to root, one per image
    images: list[np.ndarray]
    labels: np.ndarray  # int64 class index per image
    split: dict[str, np.ndarray]  # split name -> indices into images
    fingerprint: str  # sha256 over every file's relative path and bytes
    classes: tuple[str, ...] = CLASS_NAMES
    mean: tuple[float, ...] = field(init=False)  # per channel, training images in [0, 1]
    std: tuple[float, ...] = field(init=False)

    def __post_init__(self) -> None:
        self.mean, self.std = channel_stats([self.images[i] for i in self.split["train"]])

    def images_of(self, split: str) -> list[np.ndarray]:
        return [self.images[i] for i in self.split[split]]

    def labels_of(self, split: str) -> torch.Tensor:
        return torch.from_numpy(self.labels[self.split[split]])

    def sizes(self) -> dict[str, int]:
        return {name: len(idx) for name, idx in self.split.items()}


def channel_stats(images: list[np.ndarray]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 HxWx3 images, as floats in [0, 1]."""
    total = np.zeros(3)
    total_sq = np.zeros(3)
    count = 0
    for img in images:
        pixels = img.reshape(-1, 3).astype(np.float64) / 255.0
        total += pixels.sum(0)
        total_sq += (pixels**2).sum(0)
        count += len(pixels)
    mean = total / count
    std = np.sqrt(total_sq / count - mean**2)
    return tuple(mean.tolist()), tuple(std.tolist())


def parse_ranges(train: str, val: str, test: str) -> dict[str, tuple[int, int]]:
    """Parse 'START-END' (inclusive) index ranges, e.g. '0-119', into [start, stop)."""
    ranges = {}
    for split, text in zip(SPLITS, (train, val, test)):
        try:
            start, end = (int(part) for part in text.split("-"))
        except ValueError:
            raise UserError(
                f"--{split}-range is {text!r}; expected 'START-END' with inclusive "
                f"integer indices, e.g. '{DEFAULT_RANGES[split][0]}-{DEFAULT_RANGES[split][1] - 1}'."
            ) from None
        if not 0 <= start <= end:
            raise UserError(f"--{split}-range {text!r} must satisfy 0 <= START <= END.")
        ranges[split] = (start, end + 1)
    ordered = sorted(ranges.values())
    for (_, stop), (start, _) in zip(ordered, ordered[1:]):
        if start < stop:
            raise UserError(f"The train/val/test index ranges overlap: {ranges}.")
    return ranges


def decode_image(data: bytes) -> np.ndarray:
    """Decode any format PIL reads into an HxWx3 uint8 RGB array (raises on a broken file)."""
    with Image.open(io.BytesIO(data)) as img:
        img.load()  # decodes fully: a truncated file fails here, not later in a trial
        return np.asarray(img.convert("RGB"))


def load_el7008(root: str, ranges: dict[str, tuple[int, int]] = DEFAULT_RANGES) -> FaceData:
    """Read the original layout ROOT/{1,5,28}/{i}.jpg and split it by index ranges.

    Raises UserError naming every missing folder, missing file and undecodable
    image at once.
    """
    root = os.path.abspath(root)
    if not os.path.isdir(root):
        raise UserError(
            f"Data directory {root} does not exist or is not a directory. Expected the "
            f"original layout: {root}/1/, {root}/5/, {root}/28/ holding 0.jpg, 1.jpg, ..."
        )
    missing_dirs = [d for d in CLASS_DIRS if not os.path.isdir(os.path.join(root, d))]
    if missing_dirs:
        raise UserError(
            f"Data directory {root} lacks the class folder(s) {missing_dirs}; the original "
            f"layout needs one folder per class named {list(CLASS_DIRS)} (ages 1-4, 5-27, 28+)."
        )

    paths, images, labels, split = [], [], [], {s: [] for s in SPLITS}
    problems: list[str] = []
    digest = hashlib.sha256()
    for label, class_dir in enumerate(CLASS_DIRS):
        for name, (start, stop) in ranges.items():
            for index in range(start, stop):
                rel = f"{class_dir}/{index}.jpg"
                path = os.path.join(root, rel)
                try:
                    with open(path, "rb") as f:
                        data = f.read()
                except FileNotFoundError:
                    problems.append(f"{path}: missing (the {name} range needs index {index})")
                    continue
                except OSError as err:
                    problems.append(f"{path}: unreadable ({err.strerror})")
                    continue
                try:
                    image = decode_image(data)
                except Exception as err:  # PIL raises many types for broken files
                    problems.append(f"{path}: cannot be decoded as an image ({err})")
                    continue
                if min(image.shape[:2]) < CROP:
                    problems.append(
                        f"{path}: {image.shape[1]}x{image.shape[0]} px is smaller than the "
                        f"{CROP}-px crop the transforms take"
                    )
                    continue
                digest.update(rel.encode() + b"\0" + hashlib.sha256(data).digest())
                split[name].append(len(images))
                paths.append(rel)
                images.append(image)
                labels.append(label)
    if problems:
        shown = "\n  ".join(problems[:50])
        more = f"\n  ... and {len(problems) - 50} more" if len(problems) > 50 else ""
        raise UserError(
            f"{len(problems)} problem(s) with the images under {root}; nothing was trained:\n"
            f"  {shown}{more}"
        )
    return FaceData(
        root=root,
        paths=paths,
        images=images,
        labels=np.asarray(labels, dtype=np.int64),
        split={name: np.asarray(idx, dtype=np.int64) for name, idx in split.items()},
        fingerprint=digest.hexdigest(),
    )
