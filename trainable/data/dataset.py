"""Face images on disk -> one in-memory dataset with its split.

The layout (trainable.data.layouts) says which files and labels there are; the scan
(trainable.data.scan) reads each once; here they become a `FaceData` with its split.
Images are decoded once, into a memory-mapped file per dataset (trainable.data.image_store)
that trials map: neither the driver nor Ray's object store holds the pixels. Every
problem with the data is reported together, before training.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import torch
from sklearn.model_selection import train_test_split

from trainable.data.image_store import ImageWriter, StoredImages, default_store
from trainable.data.layouts import CLASS_NAMES, DEFAULT_RANGES, LAYOUTS, detect_layout, layout_entries
from trainable.data.problems import Kind, Problem, grouped, save_full_list
from trainable.data.scan import Scan, scan_entries
from trainable.errors import UserError
from trainable.results_files import split_identity

SPLITS = ("train", "val", "test")
BAD_IMAGE_POLICIES = ("error", "skip")  # stop with the list of broken files, or leave them out
TRAIN_FRACTION = 0.6  # of the seeded stratified split; validation and test take half the rest each


@dataclass
class FaceData:
    """Decoded images, labels and the split. Images are HxWx3 uint8 arrays, read from the
    dataset's memory-mapped image file."""

    root: str
    paths: list[str]  # relative to root, one per image
    hashes: list[str]  # sha256 of each file's bytes
    images: StoredImages
    sums: np.ndarray  # pixel_sums of each image: the training statistics without re-reading pixels
    labels: np.ndarray  # int64 class index per image
    split: dict[str, np.ndarray]  # split name -> indices into images
    fingerprint: str  # sha256 over every file's relative path and bytes
    classes: tuple[str, ...] = CLASS_NAMES
    layout: str = "el7008"
    skipped: list[Problem] = field(default_factory=list)  # files left out ("path: reason" lines)
    converted: list[str] = field(default_factory=list)  # "path: what" of images converted on load
    duplicates: list[Problem] = field(default_factory=list)  # same bytes twice within one split: kept, noted
    mean: tuple[float, ...] = field(init=False)  # per channel, training images in [0, 1]
    std: tuple[float, ...] = field(init=False)

    def __post_init__(self) -> None:
        self.mean, self.std = stats_of(self.sums[self.split["train"]])

    def images_of(self, split: str) -> StoredImages:
        return self.images.subset(self.split[split])

    def labels_of(self, split: str) -> torch.Tensor:
        return torch.from_numpy(self.labels[self.split[split]])

    def sizes(self) -> dict[str, int]:
        return {name: len(idx) for name, idx in self.split.items()}

    def class_counts(self) -> dict[str, dict[str, int]]:
        """Images per class in each split, e.g. {'train': {'1-4': 120, ...}, ...}."""
        n = len(self.classes)
        return {
            name: dict(zip(self.classes, np.bincount(self.labels[idx], minlength=n).tolist(), strict=True))
            for name, idx in self.split.items()
        }

    def split_record(self) -> dict[str, dict]:
        """The split as every results file records it: paths and labels per split, and
        their identity (trainable.results_files.split_identity) to tell splits apart."""
        paths = {s: [self.paths[i] for i in idx] for s, idx in self.split.items()}
        labels = {s: self.labels[idx].tolist() for s, idx in self.split.items()}
        return {"split_paths": paths, "split_labels": labels, "split_id": split_identity(paths, labels)}


def pixel_sums(image: np.ndarray) -> np.ndarray:
    """Per channel sum and sum of squares of a uint8 HxWx3 image in [0, 1], and its pixel
    count: 7 numbers that let any subset's statistics be added up without the pixels."""
    pixels = image.reshape(-1, 3).astype(np.float64) / 255.0
    return np.concatenate([pixels.sum(0), (pixels**2).sum(0), [len(pixels)]])


def stats_of(sums: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) per channel from rows of pixel_sums."""
    total = sums.sum(0)
    mean = total[:3] / total[6]
    std = np.sqrt(total[3:6] / total[6] - mean**2)
    return tuple(mean.tolist()), tuple(std.tolist())


def load_dataset(
    root: str,
    *,
    layout: str = "auto",
    ranges: dict[str, tuple[int, int]] = DEFAULT_RANGES,
    age_bins: tuple[int, ...] = (5, 28),
    split_seed: int = 0,
    on_bad_image: str = "error",
    store: str | None = None,
) -> FaceData:
    """Read a dataset in any of LAYOUTS, scanning every file once before any training.

    Every problem (missing, empty, truncated, not an image, too small, broken
    link, unreadable, stray folder, the same bytes twice) is reported together:
    `on_bad_image='error'` raises UserError listing them all, 'skip' leaves those
    files out and lists them in `FaceData.skipped`. The decoded images go to a file named
    by the dataset's fingerprint under `store` (default: image_store.default_store()).
    """
    root = os.path.abspath(root)
    layout = check_dataset_options(root, layout, on_bad_image)
    entries, classes, skipped, problems = layout_entries(root, layout, ranges, age_bins)
    writer = ImageWriter(store or default_store())
    try:
        scan = scan_entries(root, entries, writer, pixel_sums)
    except BaseException:
        writer.abort()
        raise
    problems += scan.problems
    if problems and on_bad_image == "error":
        writer.abort()
        raise UserError(problem_list(root, problems))
    skipped += drop_conflicts(root, scan)
    fingerprint = scan.digest.hexdigest()
    labels = np.asarray(scan.labels, dtype=np.int64)
    split = split_of(scan, labels, classes, split_seed, root)
    return FaceData(
        root=root,
        paths=scan.paths,
        hashes=scan.hashes,
        images=writer.finish(fingerprint, scan.rows),
        sums=np.asarray(scan.sums, dtype=np.float64).reshape(-1, 7),
        labels=labels,
        split=split,
        fingerprint=fingerprint,
        classes=classes,
        layout=layout,
        skipped=skipped + problems,
        converted=scan.converted,
        duplicates=scan.duplicates,
    )


def split_of(scan: Scan, labels: np.ndarray, classes: tuple[str, ...], seed: int, root: str) -> dict[str, np.ndarray]:
    """The layout's own split where every file has one, else a stratified split drawn from
    `seed` (identical images kept on one side); a training split under 2 images is refused."""
    if any(s is None for s in scan.splits):
        split = stratified_split(labels, classes, seed=seed, root=root, groups=scan.hashes)
    else:
        split = {name: np.flatnonzero([s == name for s in scan.splits]) for name in SPLITS}
    if len(split["train"]) < 2:
        raise UserError(
            f"The training split under {root} holds {len(split['train'])} usable image(s); training needs at "
            "least 2 (BatchNorm normalises over the images of a batch). Widen --train-range or fix the files listed."
        )
    return split


def check_dataset_options(root: str, layout: str, on_bad_image: str) -> str:
    """Refuse a missing root or unknown option; return the layout ('auto' resolved)."""
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
    return layout


def problem_list(root: str, problems: list[Problem]) -> str:
    """The error for files that cannot be used: a sentence naming the file with the whole
    list, then the list grouped by reason (trainable.data.problems)."""
    full = save_full_list(problems, "problems")
    return (
        f"{len(problems)} problem(s) with the images under {root}; nothing was trained "
        f"(--on-bad-image skip leaves these files out). The whole list: {full}\n{grouped(problems, full)}"
    )


def load_el7008(root: str, ranges: dict[str, tuple[int, int]] = DEFAULT_RANGES, store: str | None = None) -> FaceData:
    """The original layout ROOT/{1,5,28}/{i}.jpg, split by per-class index ranges."""
    return load_dataset(root, layout="el7008", ranges=ranges, store=store)


def drop_conflicts(root: str, scan: Scan) -> list[Problem]:
    """Identical bytes under different labels: which label is right cannot be known, so
    every copy leaves the scan; returns them as 'path: reason' lines (left out, listed)."""
    labels_of: dict[str, set[int]] = {}
    copies: dict[str, list[str]] = {}
    for path, file_hash, label in zip(scan.paths, scan.hashes, scan.labels, strict=True):
        labels_of.setdefault(file_hash, set()).add(label)
        copies.setdefault(file_hash, []).append(path)
    conflicts = {h for h, labels in labels_of.items() if len(labels) > 1}
    if not conflicts:
        return []
    dropped = [(path, h) for path, h in zip(scan.paths, scan.hashes, strict=True) if h in conflicts]
    dropped_paths = {os.path.join(root, path) for path, _ in dropped}
    scan.duplicates = [d for d in scan.duplicates if d.path not in dropped_paths]
    keep = [i for i, h in enumerate(scan.hashes) if h not in conflicts]
    for name in ("paths", "hashes", "rows", "sums", "labels", "splits"):
        setattr(scan, name, [getattr(scan, name)[i] for i in keep])
    return [
        Problem(
            Kind.CONFLICT,
            os.path.join(root, path),
            f"the same bytes as {', '.join(c for c in copies[h] if c != path)} under another label "
            "(a conflict: every copy left out)",
        )
        for path, h in dropped
    ]


def stratified_split(
    labels: np.ndarray, classes: tuple[str, ...], *, seed: int, root: str, groups: list[str] | None = None
) -> dict[str, np.ndarray]:
    """Seeded 60/20/20 split with every class in the same proportions in each part. Images
    of one group (identical bytes: the same file hash) always land in the same part."""
    groups = list(range(len(labels))) if groups is None else groups
    first: dict = {}
    for i, group in enumerate(groups):
        first.setdefault(group, i)
    reps = np.array(sorted(first.values()), dtype=np.int64)  # one image stands for its group
    members: dict[int, list[int]] = {rep: [] for rep in reps}
    for i, group in enumerate(groups):
        members[first[group]].append(i)
    parts = _stratified(labels[reps], reps, classes, seed=seed, root=root)
    return {name: np.sort(np.concatenate([members[r] for r in part]).astype(np.int64)) for name, part in parts.items()}


def _stratified(labels: np.ndarray, index: np.ndarray, classes: tuple[str, ...], *, seed: int, root: str) -> dict:
    counts = np.bincount(labels, minlength=len(classes))
    if counts.min() < 5:
        raise UserError(
            f"A stratified 60/20/20 split needs at least 5 images per class; under {root} "
            + ", ".join(f"{c}: {n}" for c, n in zip(classes, counts, strict=False))
            + "."
        )
    positions = np.arange(len(labels))
    train, rest = train_test_split(positions, train_size=TRAIN_FRACTION, stratify=labels, random_state=seed)
    val, test = train_test_split(rest, test_size=0.5, stratify=labels[rest], random_state=seed)
    return {"train": index[train], "val": index[val], "test": index[test]}
