"""The command-line options that select a dataset and its split, shared by every CLI
that reads images (study.run, analysis.baselines, analysis.peer) so they all get the
same split from the same options."""

from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from trainable.cli_options import add_options, option
from trainable.data.layouts import (
    BAD_IMAGE_POLICIES,
    DEFAULT_RANGES,
    DETECT,
    GROUP_BY,
    LAYOUTS,
    SEVERAL_FACES,
    SPLITS,
    detect_layout,
)
from trainable.data.problems import grouped, save_full_list
from trainable.errors import UserError

if TYPE_CHECKING:  # the dataset's modules load torch: imported where a dataset is loaded, after parsing
    from trainable.data.dataset import FaceData
    from trainable.data.face_detection import Runner


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


def default_range(split: str) -> str:
    start, stop = DEFAULT_RANGES[split]
    return f"{start}-{stop - 1}"


@dataclass(frozen=True)
class DataOptions:
    """Where the images are and how they split: the options every CLI that reads images shares."""

    data: str | None = option(None, "dataset root (see --layout)", path=True)
    layout: str = option("auto", "how images and classes sit under --data", choices=LAYOUTS)
    age_bins: str = option("5,28", "utkface: ages where a new class starts")
    split_seed: int = option(0, "folders/utkface/fgnet: seed of the 60/20/20 split")
    group_by: str = option(
        "none", "subject: every photo of one person in one split (fgnet's names say who)", choices=GROUP_BY
    )
    group_regex: str | None = option(
        None, "the group (person) of each image: the first group, or the match, of REGEX on its path", metavar="REGEX"
    )
    detect_faces: str = option(
        "auto", "find and frame faces first (MTCNN; auto: for fgnet and UTKFace's in-the-wild parts)", choices=DETECT
    )
    several_faces: str = option(
        "largest", "a photo with several faces: keep the largest, leave it out, or keep all", choices=SEVERAL_FACES
    )
    on_bad_image: str = option(
        "error", "broken images: stop with their list, or leave them out and record them", choices=BAD_IMAGE_POLICIES
    )
    train_range: str = option(default_range("train"), "el7008: inclusive per-class indices")
    val_range: str = option(default_range("val"), "el7008: inclusive per-class indices")
    test_range: str = option(default_range("test"), "el7008: inclusive per-class indices")


def add_data_arguments(p: argparse.ArgumentParser) -> None:
    """The options of DataOptions, with their defaults (baselines, peer, evaluate)."""
    add_options(p, DataOptions)


def data_target(text: str) -> tuple[str, str]:
    """--evaluate-on's 'DIR[:LAYOUT]' -> (DIR, LAYOUT or 'auto'), DIR an existing folder."""
    folder, colon, layout = text.rpartition(":")
    if not colon or layout not in LAYOUTS:  # a colon that names no layout is part of the path
        folder, layout = text, "auto"
    if not os.path.isdir(folder):
        raise UserError(
            f"--evaluate-on {text!r}: {folder} is not a folder (expected DIR or DIR:LAYOUT, LAYOUT one of "
            f"{', '.join(LAYOUTS)})."
        )
    return os.path.abspath(folder), layout


def evaluation_name(folder: str) -> str:
    """The name of a folder's evaluation file (RESULTS_DIR/evaluations/NAME.json): the folder's own name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", os.path.basename(folder.rstrip("/"))) or "data"


def check_targets(targets: tuple[str, ...] | list[str]) -> None:
    """The --evaluate-on targets are folders, each with its own evaluation file."""
    named: dict[str, str] = {}
    for target in targets:
        name = evaluation_name(data_target(target)[0])
        if name in named:
            raise UserError(
                f"--evaluate-on {named[name]!r} and {target!r} would both write evaluations/{name}.json: "
                "evaluate each folder once, under names that differ (a symlink with another name will do)."
            )
        named[name] = target


def check_root(root: str) -> None:
    if not os.path.isdir(root):
        raise UserError(
            f"Data directory {root} does not exist or is not a directory. Expected the "
            f"original layout ({root}/1/, {root}/5/, {root}/28/ holding 0.jpg, 1.jpg, ...), "
            "one folder per class, or UTKFace file names."
        )


def age_bins(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(b) for b in text.split(","))
    except ValueError:
        raise UserError(f"--age-bins {text!r}: expected comma-separated ages, e.g. 5,28.") from None


def check_data_args(args: DataOptions | argparse.Namespace) -> None:
    """The data options checked before any heavy import or file is read (--dry-run, the commands'
    first step): the folder exists, the age bins and the ranges parse."""
    if args.data is not None:
        check_root(args.data)
    age_bins(args.age_bins)
    parse_ranges(args.train_range, args.val_range, args.test_range)


def check_dataset_options(root: str, layout: str, on_bad_image: str, detect_faces: str, several_faces: str) -> str:
    """Refuse a missing root or unknown option; return the layout ('auto' resolved)."""
    check_root(root)
    if layout not in LAYOUTS:
        raise UserError(f"--layout {layout!r}; expected one of {list(LAYOUTS)}.")
    if on_bad_image not in BAD_IMAGE_POLICIES:
        raise UserError(f"--on-bad-image {on_bad_image!r}; expected one of {list(BAD_IMAGE_POLICIES)}.")
    if detect_faces not in DETECT:
        raise UserError(f"--detect-faces {detect_faces!r}; expected one of {list(DETECT)}.")
    if several_faces not in SEVERAL_FACES:
        raise UserError(f"--several-faces {several_faces!r}; expected one of {list(SEVERAL_FACES)}.")
    if layout == "auto":
        layout, why = detect_layout(root)
        print(f"Data layout: {layout} (detected under {root}: {why}; --layout sets it)")
    return layout


def dataset_from_args(
    args: DataOptions | argparse.Namespace, store: str | None = None, detect_runner: Runner | None = None
) -> FaceData:
    """load_dataset with the options of DataOptions (decoded images under `store`,
    default image_store.default_store(); faces found by `detect_runner`, default in this
    process); skipped files are printed."""
    from trainable.data.dataset import load_dataset
    from trainable.data.face_detection import Detection

    bins = age_bins(args.age_bins)
    data = load_dataset(
        args.data,
        layout=args.layout,
        ranges=parse_ranges(args.train_range, args.val_range, args.test_range),
        age_bins=bins,
        split_seed=args.split_seed,
        on_bad_image=args.on_bad_image,
        store=store,
        group_by=args.group_by,
        group_regex=args.group_regex,
        detect_faces=args.detect_faces,
        several_faces=args.several_faces,
        detect_runner=detect_runner,
    )
    if data.detection is not None:
        print(Detection(**data.detection).line())
    notes = [*data.duplicates, *data.converted]
    if data.skipped or notes:
        full = save_full_list([*data.skipped, *notes], "data")
        if data.skipped:
            print(f"Left out {len(data.skipped)} file(s) (the whole list: {full}):\n{grouped(data.skipped, full)}")
        if notes:  # kept files: a few lines per kind, the rest in the same list
            print(f"Notes on {len(notes)} kept file(s) (all in {full}):\n{grouped(notes, full, per_kind=3)}")
    if (counts := data.group_counts()) is not None:
        print(
            f"Groups per split (each in one split only): {', '.join(f'{k} {v}' for k, v in counts.items())}; "
            f"{sum(counts.values())} in all"
        )
    return data
