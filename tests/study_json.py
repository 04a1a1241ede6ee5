"""A complete study.json (trainable.results.study_record) for tests that make a results directory by
hand: every field a plausible value, `fields` over them."""

from __future__ import annotations

import json

from trainable.results.layout import split_identity
from trainable.results.study_record import VERSION, StudyRecord, study_record

CLASSES = ["1-4", "5-27", "28+"]


def record(args: dict | None = None, **fields) -> dict:
    from study.grids import get_grid
    from study.spec import StudySpec

    paths = {"train": ["a.jpg"], "val": ["b.jpg"], "test": ["c.jpg"]}
    labels = {"train": [0], "val": [1], "test": [2]}
    value = {
        "version": VERSION,
        "command": ["python", "-m", "study.run", "--grid", "smoke"],
        "python": "3.11",
        "platform": "Linux",
        "packages": {"torch": "2.14.1"},
        "git_revision": None,
        "args": StudySpec.from_options({"grid": "smoke", **(args or {})}).record(),
        "grid": "smoke",
        "grid_file": {"path": "smoke", "text": get_grid("smoke").text},
        "trials": [],
        "reference_config": {},
        "weights_labels": {},
        "weights_ids": {},
        "data_root": "/data",
        "data_fingerprint": "0" * 64,
        "data_files": {},
        "data_layout": "el7008",
        "classes": CLASSES,
        "split_sizes": {s: len(p) for s, p in paths.items()},
        "class_counts": {s: {c: labels[s].count(i) for i, c in enumerate(CLASSES)} for s in paths},
        "skipped_files": [],
        "converted_files": [],
        "duplicate_files": [],
        "face_detection": None,
        "split_paths": paths,
        "split_labels": labels,
        "split_id": split_identity(paths, labels),
        **fields,
    }
    study_record(value)  # a test's record is one the project would write
    return value


def write(directory, args: dict | None = None, **fields) -> StudyRecord:
    value = record(args, **fields)
    (directory / "study.json").write_text(json.dumps(value))
    return study_record(value)
