"""Classify new photos with a study's model.

    python -m study.predict --model RESULTS_DIR|model.pt PATH... [--out FILE.csv]
                            [--no-detect | --all-faces]

PATH: image files, folders (their images, not recursive) or globs. A RESULTS_DIR
means its best model (RESULTS_DIR/best/model.pt, written by analysis.best). Photos
go through facenet-pytorch's MTCNN (its weights ship with the package): the largest
face (every face with --all-faces) is cropped the way the training crops
were framed; --no-detect takes images that are already face crops. One row per
image (or face): the predicted age group and each class's probability. An image
with no face, or a file that is not an image, gets a row with the reason; the exit
code is 1 when any did.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
from typing import TYPE_CHECKING, Any

from trainable.cli_options import prog
from trainable.data.layouts import IMAGE_EXTENSIONS
from trainable.errors import UserError, parse_printable, printable

if TYPE_CHECKING:  # torch, OpenCV, MTCNN and pandas load after the arguments are parsed (main)
    import numpy as np
    import pandas as pd

    from trainable.serving.face_crops import Faces

EXPORTS = (".onnx", ".pt2")  # what --export writes (trainable.serving.export)
PROGRESS_FROM = 100  # images; a progress line on stderr past this many
CHUNK = 256  # crops classified per batch of work


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=prog("study.predict"), description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, help="a study's results directory (its best model) or a model.pt")
    p.add_argument("paths", nargs="*", metavar="PATH", help="image files, folders or globs")
    p.add_argument("--out", help="also write the rows to this CSV file")
    p.add_argument(
        "--export", metavar="FILE", help="write the model as one .onnx or .pt2 file (see trainable.serving.export)"
    )
    faces = p.add_mutually_exclusive_group()
    faces.add_argument("--no-detect", action="store_true", help="the images are face crops already")
    faces.add_argument("--all-faces", action="store_true", help="one row per detected face")
    args = parse_printable(p, argv, skip=("paths",))
    if not args.paths and not args.export:
        p.error("give images to classify (PATH...), or --export FILE")
    return args


def input_files(paths: list[str]) -> list[str]:
    """Files named, folders' image files, and glob matches, in the order given."""
    files = []
    for spec in paths:
        if os.path.isdir(spec):
            names = sorted(n for n in os.listdir(spec) if os.path.splitext(n)[1].lower() in IMAGE_EXTENSIONS)
            if not names:
                raise UserError(
                    f"{spec}: a folder with no image file ({', '.join(sorted(IMAGE_EXTENSIONS))}) in it; a folder's "
                    "images are read, not its subfolders' (give those, or a glob such as 'DIR/*/*.jpg')."
                )
            files += [os.path.join(spec, n) for n in names]
        elif os.path.exists(spec):
            files.append(spec)
        else:
            matches = sorted(glob.glob(spec))
            if not matches:
                raise UserError(f"{spec}: no such file or folder, and no file matches it as a glob.")
            files += matches
    return files


def predict_files(files: list[str], faces: Faces, predictor: Any) -> pd.DataFrame:
    import pandas as pd

    rows: list[dict[str, Any]] = []
    pending: list[tuple[dict[str, Any], np.ndarray]] = []

    def flush() -> None:
        probs = predictor.probabilities([crop for _, crop in pending])
        for (row, _), p in zip(pending, probs, strict=True):
            row.update(
                predicted=predictor.classes[int(p.argmax())],
                **{f"p({c})": float(v) for c, v in zip(predictor.classes, p, strict=True)},
            )
        pending.clear()

    for n, path in enumerate(files, start=1):
        crops, problem = faces(path)
        if problem:
            rows.append({"file": printable(path), "face": "", "predicted": "", "problem": problem})
        for face in crops:
            rows.append({"file": printable(path), "face": face.label, "problem": ""})
            pending.append((rows[-1], face.crop))
        if len(pending) >= CHUNK:
            flush()
        if len(files) > PROGRESS_FROM:
            print(f"\r{n}/{len(files)} images", end="" if n < len(files) else "\n", file=sys.stderr, flush=True)
    if pending:
        flush()
    columns = ["file", "face", "predicted", *(f"p({c})" for c in predictor.classes), "problem"]
    return pd.DataFrame(rows).reindex(columns=columns)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from trainable.data.limits import image_limits
    from trainable.results.layout import model_file

    try:  # what can be checked before torch loads (seconds)
        image_limits()  # FACE_AGE_MAX_* checked before any file is read
        path = model_file(args.model)
        files = input_files(args.paths)
        if args.export and not args.export.endswith(EXPORTS):
            raise UserError(f"--export {args.export}: the file's name ends in one of {', '.join(EXPORTS)}.")
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from trainable.results.atomic_io import write_csv
    from trainable.serving.face_crops import Faces
    from trainable.serving.inference import Predictor

    try:
        predictor = Predictor(path)
        if args.export:
            from trainable.serving.export import export

            print(f"wrote {export(path, args.export)}")
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not files:
        return 0
    table = predict_files(files, Faces(not args.no_detect, args.all_faces), predictor)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}", na_rep=""))
    if args.out:
        write_csv(args.out, table)
        print(f"wrote {args.out}")
    failed = int((table.problem != "").sum())
    if failed:
        print(f"{failed} of {len(files)} file(s) gave no prediction; the problem column says why.", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
