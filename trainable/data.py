"""Face images on disk -> one in-memory dataset with its split.

Layouts:
- `el7008`, the original: `ROOT/1/`, `ROOT/5/`, `ROOT/28/` with files `0.jpg`...,
  split by per-class index ranges (train 0-119, validation 120-159, test 160-199);
- `folders`: one sub-folder per class, any file names, seeded stratified 60/20/20 split;
- `utkface`: `AGE_GENDER_RACE_DATE.jpg` names, age binned (default 1-4 / 5-27 / 28+),
  seeded stratified 60/20/20 split.
Images are decoded once, in the driver, and reach trials through Ray's object
store; every problem with the data is reported together, before training.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import re
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image
from sklearn.model_selection import train_test_split

from trainable.errors import UserError
from trainable.layout import split_identity
from trainable.transforms import CROP

CLASS_DIRS = ("1", "5", "28")  # folder names of the original layout
CLASS_NAMES = ("1-4", "5-27", "28+")  # ages covered by each class
SPLITS = ("train", "val", "test")
DEFAULT_RANGES = {"train": (0, 120), "val": (120, 160), "test": (160, 200)}  # [start, stop)
LAYOUTS = ("auto", "el7008", "folders", "utkface")
BAD_IMAGE_POLICIES = ("error", "skip")  # stop with the list of broken files, or leave them out
MAX_SIDE = 1024  # px: larger images are downscaled once on load (faces here are ~200 px)
FRACTIONS = (0.6, 0.2, 0.2)  # train/val/test of the seeded stratified split
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm", ".jp2"}
UTKFACE_NAME = re.compile(r"^(\d+)_(\d)_(\d)_(\d+)\.jpg(\.chip\.jpg)?$", re.IGNORECASE)


@dataclass
class FaceData:
    """Decoded images, labels and the split. Images are HxWx3 uint8 arrays."""

    root: str
    paths: list[str]  # relative to root, one per image
    hashes: list[str]  # sha256 of each file's bytes
    images: list[np.ndarray]
    labels: np.ndarray  # int64 class index per image
    split: dict[str, np.ndarray]  # split name -> indices into images
    fingerprint: str  # sha256 over every file's relative path and bytes
    classes: tuple[str, ...] = CLASS_NAMES
    layout: str = "el7008"
    skipped: list[str] = field(default_factory=list)  # "path: reason" of files left out
    converted: list[str] = field(default_factory=list)  # "path: what" of images converted on load
    duplicates: list[str] = field(default_factory=list)  # same bytes twice within one split: kept, noted
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

    def split_record(self) -> dict[str, dict]:
        """The split as every results file records it: paths and labels per split, and
        their identity (trainable.layout.split_identity) to tell splits apart."""
        paths = {s: [self.paths[i] for i in idx] for s, idx in self.split.items()}
        labels = {s: self.labels[idx].tolist() for s, idx in self.split.items()}
        return {"split_paths": paths, "split_labels": labels, "split_id": split_identity(paths, labels)}


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
    for split, text in zip(SPLITS, (train, val, test), strict=False):
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
    for (_, stop), (start, _) in zip(ordered, ordered[1:], strict=False):
        if start < stop:
            raise UserError(f"The train/val/test index ranges overlap: {ranges}.")
    return ranges


def decode_image(data: bytes) -> tuple[np.ndarray, str | None]:
    """Decode any format PIL reads into an HxWx3 uint8 RGB array, and say what was
    converted (grayscale, alpha, CMYK, 16-bit, very large), or None. Raises on a broken file."""
    if not data:
        raise ValueError("empty file (0 bytes)")
    with Image.open(io.BytesIO(data)) as img:
        img.load()  # decodes fully: a truncated file fails here, not later in a trial
        notes = []
        if img.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit PNG/TIFF: scale, don't clip
            wide = np.asarray(img, dtype=np.float64)
            top = 65535.0 if wide.max() > 255 else 255.0
            img = Image.fromarray((wide / top * 255).round().astype(np.uint8))
            notes.append("16-bit")
        if img.mode != "RGB":
            notes.append(f"{img.mode} -> RGB")
            img = img.convert("RGB")
        if max(img.size) > MAX_SIDE:
            notes.append(f"downscaled from {img.size[0]}x{img.size[1]}")
            img.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
        return np.asarray(img), ", ".join(notes) or None


class Entry(NamedTuple):
    rel: str  # path relative to the root
    label: int
    split: str | None  # None: assigned by the seeded stratified split
    need: str = ""  # why the file must exist, for the error when it does not


def load_dataset(
    root: str,
    *,
    layout: str = "auto",
    ranges: dict[str, tuple[int, int]] = DEFAULT_RANGES,
    age_bins: tuple[int, ...] = (5, 28),
    split_seed: int = 0,
    on_bad_image: str = "error",
) -> FaceData:
    """Read a dataset in any of LAYOUTS, scanning every file once before any training.

    Every problem (missing, empty, truncated, not an image, too small, broken
    link, unreadable, stray folder, the same bytes twice) is reported together:
    `on_bad_image='error'` raises UserError listing them all, 'skip' leaves those
    files out and lists them in `FaceData.skipped`.
    """
    root = os.path.abspath(root)
    if not os.path.isdir(root):
        raise UserError(
            f"Data directory {root} does not exist or is not a directory. Expected the "
            f"original layout ({root}/1/, {root}/5/, {root}/28/ holding 0.jpg, 1.jpg, ...), "
            "one folder per class, or UTKFace file names."
        )
    if layout not in LAYOUTS:
        raise UserError(f"--layout {layout!r}; expected one of {list(LAYOUTS)}.")
    if on_bad_image not in BAD_IMAGE_POLICIES:
        raise UserError(f"--on-bad-image {on_bad_image!r}; expected one of {list(BAD_IMAGE_POLICIES)}.")
    if layout == "auto":
        layout = detect_layout(root)
        print(f"Data layout: {layout} (detected under {root}; --layout sets it)")
    problems: list[str] = []
    if layout == "el7008":
        entries, classes, skipped = el7008_entries(root, ranges), CLASS_NAMES, []
        problems += [
            f"{os.path.join(root, n)}: folder {n!r} is not a class (expected {', '.join(CLASS_DIRS)})"
            for n in sorted(os.listdir(root))
            if os.path.isdir(os.path.join(root, n)) and n not in CLASS_DIRS and not n.startswith(".")
        ]
    elif layout == "folders":
        entries, classes, skipped = folder_entries(root)
    else:
        entries, classes, skipped = utkface_entries(root, age_bins)
    return read_entries(
        root,
        entries,
        classes,
        layout=layout,
        skipped=skipped,
        split_seed=split_seed,
        problems=problems,
        on_bad_image=on_bad_image,
    )


def load_el7008(root: str, ranges: dict[str, tuple[int, int]] = DEFAULT_RANGES) -> FaceData:
    """The original layout ROOT/{1,5,28}/{i}.jpg, split by per-class index ranges."""
    return load_dataset(root, layout="el7008", ranges=ranges)


def detect_layout(root: str) -> str:
    names = [n for n in os.listdir(root) if not n.startswith(".")]
    folders = [n for n in names if os.path.isdir(os.path.join(root, n))]
    if set(CLASS_DIRS) <= set(folders) and os.path.exists(os.path.join(root, "1", "0.jpg")):
        return "el7008"
    if any(UTKFACE_NAME.match(n) for n in names):
        return "utkface"
    if len(folders) >= 2:
        return "folders"
    raise UserError(
        f"Cannot tell the layout of {root}: it has neither the class folders 1/, 5/, 28/ "
        "(el7008), nor UTKFace file names (AGE_GENDER_RACE_DATE.jpg), nor two or more "
        "class sub-folders (folders). Pass --layout."
    )


def el7008_entries(root: str, ranges: dict[str, tuple[int, int]]) -> list[Entry]:
    missing_dirs = [d for d in CLASS_DIRS if not os.path.isdir(os.path.join(root, d))]
    if missing_dirs:
        raise UserError(
            f"Data directory {root} lacks the class folder(s) {missing_dirs}; the original "
            f"layout needs one folder per class named {list(CLASS_DIRS)} (ages 1-4, 5-27, 28+)."
        )
    return [
        Entry(f"{class_dir}/{index}.jpg", label, split, f"the {split} range needs index {index}")
        for label, class_dir in enumerate(CLASS_DIRS)
        for split, (start, stop) in ranges.items()
        for index in range(start, stop)
    ]


def _image_files(folder: str, skipped: list[str]) -> list[str]:
    """Image file names in `folder`, sorted; other visible files go to `skipped`."""
    files = []
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if name.startswith(".") or os.path.isdir(path):
            continue
        if os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
            files.append(name)
        else:
            skipped.append(f"{path}: not an image file name ({', '.join(sorted(IMAGE_EXTENSIONS))})")
    return files


def _class_order(name: str) -> tuple:
    return (0, int(name), "") if name.isdigit() else (1, 0, name)  # 1, 5, 28 before 'adult'


def folder_entries(root: str) -> tuple[list[Entry], tuple[str, ...], list[str]]:
    classes = sorted(
        (n for n in os.listdir(root) if not n.startswith(".") and os.path.isdir(os.path.join(root, n))),
        key=_class_order,
    )
    if len(classes) < 2:
        raise UserError(f"--layout folders needs two or more class sub-folders in {root}; found {classes}.")
    skipped: list[str] = []
    entries = [
        Entry(f"{name}/{file}", label, None)
        for label, name in enumerate(classes)
        for file in _image_files(os.path.join(root, name), skipped)
    ]
    return entries, tuple(classes), skipped


def age_class_names(bins: tuple[int, ...]) -> tuple[str, ...]:
    """(5, 28) -> ('1-4', '5-27', '28+'): UTKFace ages start at 1."""
    edges = (1, *bins)
    return tuple(f"{lo}-{hi - 1}" for lo, hi in zip(edges, edges[1:], strict=False)) + (f"{bins[-1]}+",)


def utkface_entries(root: str, bins: tuple[int, ...]) -> tuple[list[Entry], tuple[str, ...], list[str]]:
    if not bins or list(bins) != sorted(set(bins)) or bins[0] < 2:
        raise UserError(f"--age-bins {bins}: expected increasing ages above 1, e.g. 5,28.")
    skipped: list[str] = []
    entries = []
    for name in _image_files(root, skipped):
        match = UTKFACE_NAME.match(name)
        if match is None:
            skipped.append(f"{os.path.join(root, name)}: name is not AGE_GENDER_RACE_DATE.jpg")
            continue
        entries.append(Entry(name, int(np.searchsorted(bins, int(match[1]), side="right")), None))
    return entries, age_class_names(bins), skipped


def read_entries(
    root: str,
    entries: list[Entry],
    classes: tuple[str, ...],
    *,
    layout: str,
    skipped: list[str],
    split_seed: int,
    problems: list[str],
    on_bad_image: str,
) -> FaceData:
    """Read and decode every entry; assign the stratified split where entries have none."""
    paths, hashes, images, labels, splits, converted, duplicates = [], [], [], [], [], [], []
    first_with_hash: dict[str, tuple[str, str | None]] = {}
    digest = hashlib.sha256()
    for entry in entries:
        path = os.path.join(root, entry.rel)
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            if os.path.islink(path):
                problems.append(f"{path}: broken symbolic link to {os.readlink(path)}")
            else:
                problems.append(f"{path}: missing" + (f" ({entry.need})" if entry.need else ""))
            continue
        except OSError as err:
            problems.append(f"{path}: unreadable ({err.strerror})")
            continue
        file_hash = hashlib.sha256(data).hexdigest()
        if file_hash in first_with_hash:
            first, first_split = first_with_hash[file_hash]
            if entry.split is None or entry.split != first_split:  # would leak between splits
                where = f" in the {first_split} split" if first_split else ""
                problems.append(f"{path}: the same bytes as {first}{where} (a leak between splits)")
                continue
            duplicates.append(f"{path}: the same bytes as {first}, both in the {entry.split} split")
        try:
            image, note = decode_image(data)
        except Exception as err:  # PIL raises many types for broken files
            problems.append(f"{path}: cannot be decoded as an image ({err})")
            continue
        if min(image.shape[:2]) < CROP:
            problems.append(
                f"{path}: {image.shape[1]}x{image.shape[0]} px is smaller than the {CROP}-px crop the transforms take"
            )
            continue
        first_with_hash.setdefault(file_hash, (path, entry.split))
        if note:
            converted.append(f"{path}: {note}")
        digest.update(f"{entry.rel}\0{file_hash}\n".encode())
        paths.append(entry.rel)
        hashes.append(file_hash)
        images.append(image)
        labels.append(entry.label)
        splits.append(entry.split)
    if problems and on_bad_image == "error":
        shown = "\n  ".join(problems[:50])
        more = f"\n  ... and {len(problems) - 50} more" if len(problems) > 50 else ""
        raise UserError(
            f"{len(problems)} problem(s) with the images under {root}; nothing was trained "
            f"(--on-bad-image skip leaves these files out):\n  {shown}{more}"
        )
    skipped = skipped + problems
    labels_array = np.asarray(labels, dtype=np.int64)
    if any(s is None for s in splits):
        split = stratified_split(labels_array, classes, seed=split_seed, root=root)
    else:
        split = {name: np.flatnonzero([s == name for s in splits]) for name in SPLITS}
    return FaceData(
        root=root,
        paths=paths,
        hashes=hashes,
        images=images,
        labels=labels_array,
        split=split,
        fingerprint=digest.hexdigest(),
        classes=classes,
        layout=layout,
        skipped=skipped,
        converted=converted,
        duplicates=duplicates,
    )


def stratified_split(labels: np.ndarray, classes: tuple[str, ...], *, seed: int, root: str) -> dict[str, np.ndarray]:
    """Seeded 60/20/20 split with every class in the same proportions in each part."""
    counts = np.bincount(labels, minlength=len(classes))
    if counts.min() < 5:
        raise UserError(
            f"A stratified 60/20/20 split needs at least 5 images per class; under {root} "
            + ", ".join(f"{c}: {n}" for c, n in zip(classes, counts, strict=False))
            + "."
        )
    index = np.arange(len(labels))
    train, rest = train_test_split(index, train_size=FRACTIONS[0], stratify=labels, random_state=seed)
    val, test = train_test_split(rest, test_size=0.5, stratify=labels[rest], random_state=seed)
    return {"train": np.sort(train), "val": np.sort(val), "test": np.sort(test)}


def add_data_arguments(p: argparse.ArgumentParser) -> None:
    """The options that say where the images are and how they split (study and baselines)."""
    p.add_argument("--data", help="dataset root (see --layout)")
    p.add_argument("--layout", choices=LAYOUTS, default="auto", help="how images and classes sit under --data")
    p.add_argument("--age-bins", default="5,28", help="utkface: ages where a new class starts")
    p.add_argument("--split-seed", type=int, default=0, help="folders/utkface: seed of the 60/20/20 split")
    p.add_argument(
        "--on-bad-image",
        choices=BAD_IMAGE_POLICIES,
        default="error",
        help="broken images: stop with their list, or leave them out and record them",
    )
    for split in SPLITS:
        start, stop = DEFAULT_RANGES[split]
        p.add_argument(f"--{split}-range", default=f"{start}-{stop - 1}", help="el7008: inclusive per-class indices")


def dataset_from_args(args: argparse.Namespace) -> FaceData:
    """load_dataset with the options of add_data_arguments; skipped files are printed."""
    try:
        bins = tuple(int(b) for b in args.age_bins.split(","))
    except ValueError:
        raise UserError(f"--age-bins {args.age_bins!r}: expected comma-separated ages, e.g. 5,28.") from None
    data = load_dataset(
        args.data,
        layout=args.layout,
        ranges=parse_ranges(args.train_range, args.val_range, args.test_range),
        age_bins=bins,
        split_seed=args.split_seed,
        on_bad_image=args.on_bad_image,
    )
    if data.converted:
        print(f"Converted {len(data.converted)} image(s) on load (grayscale, alpha, CMYK, 16-bit, large).")
    for line in data.duplicates:
        print(f"Note: {line}")
    if data.skipped:
        print(f"Left out {len(data.skipped)} file(s):")
        print("  " + "\n  ".join(data.skipped[:20]) + ("\n  ..." if len(data.skipped) > 20 else ""))
    return data
