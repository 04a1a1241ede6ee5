"""Where a dataset's files and labels are, for each layout.

- `el7008`, the original: `ROOT/1/`, `ROOT/5/`, `ROOT/28/` with files `0.jpg`...,
  split by per-class index ranges (train 0-119, validation 120-159, test 160-199);
- `folders`: one sub-folder per class, any file names (seeded stratified split);
- `utkface`: `AGE_GENDER_RACE_DATE.jpg` names, age binned (default 1-4 / 5-27 / 28+).

Each gives `Entry`s (file, label, split or None) without opening any image.
"""

from __future__ import annotations

import os
import re
from typing import NamedTuple

import numpy as np

from trainable.data.problems import Kind, Problem
from trainable.errors import UserError

CLASS_DIRS = ("1", "5", "28")  # folder names of the original layout
CLASS_NAMES = ("1-4", "5-27", "28+")  # ages covered by each class
DEFAULT_RANGES = {"train": (0, 120), "val": (120, 160), "test": (160, 200)}  # [start, stop)
LAYOUTS = ("auto", "el7008", "folders", "utkface")
IMAGE_EXTENSIONS = {
    ".jpg",
    ".jpeg",
    ".png",
    ".bmp",
    ".gif",
    ".tif",
    ".tiff",
    ".webp",
    ".ppm",
    ".pgm",
    ".pbm",
    ".jp2",
    ".heic",
    ".heif",
    ".avif",
}
UTKFACE_NAME = re.compile(r"^(\d+)_(\d)_(\d)_(\d+)\.jpg(\.chip\.jpg)?$", re.IGNORECASE)


class Entry(NamedTuple):
    rel: str  # path relative to the root
    label: int
    split: str | None  # None: assigned by the seeded stratified split
    need: str = ""  # why the file must exist, for the error when it does not


def layout_entries(
    root: str, layout: str, ranges: dict[str, tuple[int, int]], age_bins: tuple[int, ...]
) -> tuple[list[Entry], tuple[str, ...], list[Problem], list[Problem]]:
    """(entries, class names, files left out with the reason, problems) of `layout` under `root`."""
    if layout == "el7008":
        return el7008_entries(root, ranges), CLASS_NAMES, [], stray_folders(root)
    if layout == "folders":
        return (*folder_entries(root), [])
    return (*utkface_entries(root, age_bins), [])


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


def stray_folders(root: str) -> list[Problem]:
    """Folders beside el7008's class folders: a problem (a class the layout cannot have)."""
    return [
        Problem(
            Kind.NOT_A_CLASS, os.path.join(root, n), f"folder {n!r} is not a class (expected {', '.join(CLASS_DIRS)})"
        )
        for n in sorted(os.listdir(root))
        if os.path.isdir(os.path.join(root, n)) and n not in CLASS_DIRS and not n.startswith(".")
    ]


def _image_files(folder: str, skipped: list[Problem]) -> list[str]:
    """Image file names in `folder`, sorted; other visible files go to `skipped`, and so do
    names that no record could hold (not UTF-8, or a line break). Folders are passed over,
    unless named like an image: then the scan lists them."""
    files = []
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        is_image = os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS
        if name.startswith(".") or (os.path.isdir(path) and not is_image):
            continue
        if bad_name(name):
            skipped.append(Problem(Kind.BAD_NAME, path, bad_name(name)))
        elif is_image:
            files.append(name)
        else:
            skipped.append(
                Problem(Kind.NOT_AN_IMAGE_NAME, path, f"not an image file name ({', '.join(sorted(IMAGE_EXTENSIONS))})")
            )
    return files


def bad_name(name: str) -> str | None:
    """Why a file or folder name cannot be recorded (results are UTF-8 JSON, lists one
    line per file), or None."""
    if any(0xDC80 <= ord(c) <= 0xDCFF for c in name):
        return "file name is not valid UTF-8 (shown escaped)"
    if any(c in name for c in "\n\r"):
        return "file name holds a line break (shown escaped)"
    return None


def _class_order(name: str) -> tuple:
    return (0, int(name), "") if name.isdigit() else (1, 0, name)  # 1, 5, 28 before 'adult'


def folder_entries(root: str) -> tuple[list[Entry], tuple[str, ...], list[Problem]]:
    folders = [n for n in os.listdir(root) if not n.startswith(".") and os.path.isdir(os.path.join(root, n))]
    skipped = [
        Problem(Kind.BAD_NAME, os.path.join(root, n), f"{bad_name(n)} (a class folder)") for n in folders if bad_name(n)
    ]
    classes = sorted((n for n in folders if not bad_name(n)), key=_class_order)
    if len(classes) < 2:
        raise UserError(f"--layout folders needs two or more class sub-folders in {root}; found {classes}.")
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


def utkface_entries(root: str, bins: tuple[int, ...]) -> tuple[list[Entry], tuple[str, ...], list[Problem]]:
    if not bins or list(bins) != sorted(set(bins)) or bins[0] < 2:
        raise UserError(f"--age-bins {bins}: expected increasing ages above 1, e.g. 5,28.")
    skipped: list[Problem] = []
    entries = []
    for name in _image_files(root, skipped):
        match = UTKFACE_NAME.match(name)
        if match is None:
            skipped.append(
                Problem(Kind.NAME_UNPARSED, os.path.join(root, name), "name is not AGE_GENDER_RACE_DATE.jpg")
            )
            continue
        entries.append(Entry(name, int(np.searchsorted(bins, int(match[1]), side="right")), None))
    return entries, age_class_names(bins), skipped
