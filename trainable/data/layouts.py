"""Where a dataset's files and labels are, for each layout.

- `el7008`, the original: `ROOT/1/`, `ROOT/5/`, `ROOT/28/` with files `0.jpg`...,
  split by per-class index ranges (train 0-119, validation 120-159, test 160-199);
- `folders`: one sub-folder per class, any file names (seeded stratified split);
- `utkface`: `AGE_GENDER_RACE_DATE.jpg[.chip.jpg]` names, age binned (default 1-4 / 5-27 /
  28+), in the root or in the folders of a download (`UTKFace/`, `crop_part1/`, ...) read
  together; the in-the-wild photos (`part1/`...) go through face detection (trainable.data.face_detection);
- `fgnet`: FG-NET's `SSSAaa[x].JPG` names (subject SSS at age aa; a/b suffixes are more
  photos), age binned the same way, the subject kept as the photo's group.

Each gives `Entry`s (file, label, split or None, group) without opening any image. An age
below the first class (FG-NET has age-0 photos) is listed with its reason, never binned.
"""

from __future__ import annotations

import os
import re
from typing import NamedTuple

import numpy as np

from trainable.data.problems import Kind, Problem
from trainable.errors import UserError

# The data options' choices (trainable.data.dataset_options), kept where no torch is imported: a CLI
# parses its arguments before the heavy modules load.
SPLITS = ("train", "val", "test")
GROUP_BY = ("none", "subject")  # --group-by: who is in a photo, from the layout's names
BAD_IMAGE_POLICIES = ("error", "skip")  # stop with the list of broken files, or leave them out
DETECT = ("auto", "on", "off")  # --detect-faces; auto: on for the layouts of uncropped photos
SEVERAL_FACES = ("largest", "skip", "all")  # --several-faces: what a photo with more than one face gives

CLASS_DIRS = ("1", "5", "28")  # folder names of the original layout
CLASS_NAMES = ("1-4", "5-27", "28+")  # ages covered by each class
DEFAULT_RANGES = {"train": (0, 120), "val": (120, 160), "test": (160, 200)}  # [start, stop)
LAYOUTS = ("auto", "el7008", "folders", "utkface", "fgnet")
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
FGNET_NAME = re.compile(r"^(\d{3})A(\d{2})([a-z])?\.jpe?g$", re.IGNORECASE)  # 001A02.JPG, 001A43a.JPG
UTKFACE_WILD = re.compile(r"^part\d$")  # the in-the-wild download's folders (whole photos)


class Entry(NamedTuple):
    rel: str  # path relative to the root
    label: int
    split: str | None  # None: assigned by the seeded stratified split
    need: str = ""  # why the file must exist, for the error when it does not
    group: str | None = None  # who is in it (FG-NET's subject): --group-by subject keeps a group in one split


def layout_entries(
    root: str, layout: str, ranges: dict[str, tuple[int, int]], age_bins: tuple[int, ...]
) -> tuple[list[Entry], tuple[str, ...], list[Problem], list[Problem]]:
    """(entries, class names, files left out with the reason, problems) of `layout` under `root`."""
    if layout == "el7008":
        return el7008_entries(root, ranges), CLASS_NAMES, [], stray_folders(root)
    if layout == "folders":
        return (*folder_entries(root), [])
    if layout == "fgnet":
        return (*fgnet_entries(root, age_bins), [])
    return (*utkface_entries(root, age_bins), [])


def named_files(root: str, pattern: re.Pattern) -> dict[str, int]:
    """Folder (relative, '.' for the root itself) -> how many files there match `pattern`: the
    root and its sub-folders, two levels down (a download's archive folder and its parts).
    A folder that cannot be listed is passed over (the scan reports what it cannot read)."""
    found = {}
    levels = [(".", 0)] + [(n, 1) for n in visible_folders(root)]
    for folder, depth in levels:
        path = os.path.join(root, folder)
        if count := sum(bool(pattern.match(n)) for n in listing(path)):
            found[folder] = count
        for sub in visible_folders(path) if depth == 1 else []:
            if count := sum(bool(pattern.match(n)) for n in listing(os.path.join(path, sub))):
                found[f"{folder}/{sub}"] = count
    return found


def listing(folder: str) -> list[str]:
    try:
        return os.listdir(folder)
    except OSError:
        return []


def visible_folders(folder: str) -> list[str]:
    return sorted(n for n in listing(folder) if not n.startswith(".") and os.path.isdir(os.path.join(folder, n)))


def detect_layout(root: str) -> tuple[str, str]:
    """(the layout, why): file names first (el7008's class folders with 0.jpg, UTKFace's and
    FG-NET's names, in the root or the folders of a download), class folders last."""
    names = [n for n in os.listdir(root) if not n.startswith(".")]
    folders = [n for n in names if os.path.isdir(os.path.join(root, n))]
    if set(CLASS_DIRS) <= set(folders) and os.path.exists(os.path.join(root, "1", "0.jpg")):
        return "el7008", "class folders 1/, 5/, 28/ holding 0.jpg, ..."
    for layout, pattern, what in (
        ("utkface", UTKFACE_NAME, "UTKFace names (AGE_GENDER_RACE_DATE.jpg)"),
        ("fgnet", FGNET_NAME, "FG-NET names (SSSAaa.JPG)"),
    ):
        if found := named_files(root, pattern):
            where = ", ".join(f"{folder}/ ({n} files)" for folder, n in found.items())
            return layout, f"{what} in {where}"
    if len(folders) >= 2:
        return "folders", f"{len(folders)} sub-folders taken as classes: {', '.join(sorted(folders)[:8])}"
    raise UserError(
        f"Cannot tell the layout of {root}: it has neither the class folders 1/, 5/, 28/ "
        "(el7008), nor UTKFace file names (AGE_GENDER_RACE_DATE.jpg) nor FG-NET ones (001A02.JPG) "
        "in it or its folders, nor two or more class sub-folders (folders); it holds "
        f"{len(names)} entries ({', '.join(sorted(names)[:8]) or 'none'}). Pass --layout."
    )


def uncropped(root: str, layout: str) -> bool:
    """Whether the layout's photos are whole pictures, not face crops: FG-NET's, and
    UTKFace's in-the-wild parts (--detect-faces auto finds their faces first)."""
    if layout == "fgnet":
        return True
    return layout == "utkface" and any(UTKFACE_WILD.match(os.path.basename(f)) for f in named_files(root, UTKFACE_NAME))


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


def age_class(age: int, bins: tuple[int, ...], path: str, skipped: list[Problem]) -> int | None:
    """The class of `age`, or None with the reason in `skipped` (an age below the first class)."""
    if age < 1:
        first = age_class_names(bins)[0]
        skipped.append(Problem(Kind.AGE_OUT_OF_RANGE, path, f"age {age} is below the first class ({first})"))
        return None
    return int(np.searchsorted(bins, age, side="right"))


def check_bins(bins: tuple[int, ...]) -> None:
    if not bins or list(bins) != sorted(set(bins)) or bins[0] < 2:
        raise UserError(f"--age-bins {bins}: expected increasing ages above 1, e.g. 5,28.")


def utkface_entries(root: str, bins: tuple[int, ...]) -> tuple[list[Entry], tuple[str, ...], list[Problem]]:
    """Every UTKFace-named file in the root and in the folders that hold such names (all
    parts of one download, read together). The in-the-wild parts and the crops of the same
    photos are never read together: one face would be in both."""
    check_bins(bins)
    folders = sorted(named_files(root, UTKFACE_NAME)) or ["."]
    wild = [f for f in folders if UTKFACE_WILD.match(os.path.basename(f))]
    if wild and len(wild) < len(folders):
        crops = [f for f in folders if f not in wild]
        raise UserError(
            f"{root} holds both UTKFace's in-the-wild photos ({', '.join(f + '/' for f in wild)}) and its crops "
            f"({', '.join(f + '/' for f in crops)}): the same faces twice, which a split would put on both sides. "
            "Point --data at the folder of one of them."
        )
    skipped: list[Problem] = []
    entries = []
    for folder in folders:
        for name in _image_files(os.path.join(root, folder), skipped):
            rel, path = os.path.normpath(os.path.join(folder, name)), os.path.join(root, folder, name)
            match = UTKFACE_NAME.match(name)
            if match is None:
                skipped.append(Problem(Kind.NAME_UNPARSED, path, "name is not AGE_GENDER_RACE_DATE.jpg"))
            elif (label := age_class(int(match[1]), bins, path, skipped)) is not None:
                entries.append(Entry(rel, label, None))
    return entries, age_class_names(bins), skipped


def fgnet_entries(root: str, bins: tuple[int, ...]) -> tuple[list[Entry], tuple[str, ...], list[Problem]]:
    """FG-NET's photos (in the root or the folder that holds its names), labelled by the age
    in the name, grouped by subject."""
    check_bins(bins)
    found = named_files(root, FGNET_NAME)
    folder = max(found, key=found.get) if found else "."
    skipped: list[Problem] = []
    entries = []
    for name in _image_files(os.path.join(root, folder), skipped):
        path = os.path.join(root, folder, name)
        match = FGNET_NAME.match(name)
        if match is None:
            skipped.append(Problem(Kind.NAME_UNPARSED, path, "name is not FG-NET's SSSAaa.JPG (subject, A, age)"))
        elif (label := age_class(int(match[2]), bins, path, skipped)) is not None:
            entries.append(
                Entry(os.path.normpath(os.path.join(folder, name)), label, None, group=f"subject {match[1]}")
            )
    return entries, age_class_names(bins), skipped
