"""The command-line options that select a dataset and its split, shared by every CLI
that reads images (study.run, analysis.baselines, analysis.peer) so they all get the
same split from the same options."""

from __future__ import annotations

import argparse

from trainable.data import BAD_IMAGE_POLICIES, SPLITS, FaceData, load_dataset
from trainable.errors import UserError
from trainable.layouts import DEFAULT_RANGES, LAYOUTS
from trainable.problems import grouped, save_full_list


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


def dataset_from_args(args: argparse.Namespace, store: str | None = None) -> FaceData:
    """load_dataset with the options of add_data_arguments (decoded images under `store`,
    default image_store.default_store()); skipped files are printed."""
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
        store=store,
    )
    if data.converted:
        print(f"Converted {len(data.converted)} image(s) on load (grayscale, alpha, CMYK, 16-bit, large).")
    for line in data.duplicates:
        print(f"Note: {line}")
    if data.skipped:
        full = save_full_list(data.skipped, "left-out")
        print(f"Left out {len(data.skipped)} file(s) (the whole list: {full}):\n{grouped(data.skipped, full)}")
    return data
