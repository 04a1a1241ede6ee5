"""The bad-input corpus (tests/bad_corpus.py): every file gets its outcome, nothing hangs,
nothing raises, memory stays bounded, and the documentation's table is the corpus's."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np

from tests.bad_corpus import CASES, face, plant, table
from tests.conftest import ROOT

# Scans the corpus in a child process: a hang is a timeout, and the child's peak memory is
# the scan's alone. Prints what the load gave, as JSON.
SCAN = """
import json, resource, sys
from trainable.data.dataset import load_dataset
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
data = load_dataset(sys.argv[1], layout="folders", on_bad_image="skip", store=sys.argv[2])
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
shapes = {p: list(data.images[i].shape) for i, p in enumerate(data.paths)}
means = {p: float(data.images[i].mean()) for i, p in enumerate(data.paths)}
print(json.dumps({"skipped": data.skipped, "converted": data.converted, "paths": data.paths,
                  "shapes": shapes, "means": means, "grew_kib": after - before}))
"""
TIMEOUT_S = 120  # the scan takes a few seconds; a FIFO opened for reading would block forever
GROWTH_CAP_KIB = 150 * 1024  # one decoded bomb alone is 169 MB grey, 507 MB as RGB


def test_every_bad_file_gets_its_outcome_without_hanging_raising_or_exhausting_memory(tmp_path):
    root = tmp_path / "corpus"
    planted = plant(str(root / "odd"))
    for seed in range(6):  # a second class of good faces, and good ones beside the corpus
        os.makedirs(root / "fine", exist_ok=True)
        face(100 + seed).save(root / "fine" / f"{seed}.jpg")
        face(200 + seed).save(root / "odd" / f"good{seed}.jpg")
    run = subprocess.run(
        [sys.executable, "-c", SCAN, str(root), str(tmp_path / "store")],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        cwd=ROOT,
    )
    assert run.returncode == 0 and "Traceback" not in run.stderr, run.stderr[-3000:]
    got = json.loads(run.stdout.splitlines()[-1])
    skipped, converted = got["skipped"], got["converted"]
    assert got["grew_kib"] < GROWTH_CAP_KIB, f"the scan's peak memory grew {got['grew_kib'] / 1024:.0f} MiB"
    for kind, path, outcome in planted:
        shown = path.replace("\n", "\\n").encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        lines = [line for line in skipped + converted if line.startswith(shown + ": ")]
        rel = os.path.relpath(path, root)
        if outcome == "kept":
            assert rel in got["paths"] and not lines, (kind, lines)
            continue
        verdict, text = outcome.split(": ", 1)
        assert len(lines) == 1 and text in lines[0], (kind, outcome, lines)
        assert (lines[0] in skipped) == (verdict == "listed"), (kind, lines)
        assert (rel in got["paths"]) == (verdict == "converted"), kind
    assert len(skipped) + len(got["paths"]) == len(planted) + 12 + 1  # + the good faces + the empty link's target
    shapes, means = got["shapes"], got["means"]
    assert shapes["odd/phone.jpg"] == [200, 160, 3]  # stored 160 tall and 200 wide, shown upright
    assert shapes["odd/strip.png"] == [1400, 140, 3]  # downscaled, never below the crop
    assert 100 < means["odd/float.tif"] < 155 and 100 < means["odd/signed.tif"] < 155  # a ramp, not black
    assert all(shape[2] == 3 for shape in shapes.values())


def test_the_exif_rotation_is_applied_where_prediction_decodes(tmp_path):
    from tests.bad_corpus import rotated_phone_photo
    from trainable.serving.face_crops import Faces

    rotated_phone_photo(str(tmp_path / "phone.jpg"))
    (crop,), problem = Faces(detect=False, all_faces=False)(str(tmp_path / "phone.jpg"))
    assert problem is None and crop[1].shape == (200, 160, 3)


def test_prediction_lists_a_fifo_instead_of_hanging(tmp_path):
    from trainable.serving.face_crops import Faces

    os.mkfifo(tmp_path / "fifo.jpg")
    assert Faces(detect=False, all_faces=False)(str(tmp_path / "fifo.jpg")) == ([], "not a regular file (a FIFO)")


def test_the_readme_shows_the_corpus_table():
    with open(os.path.join(ROOT, "docs", "guide", "bad-input.md")) as f:
        assert table() in f.read(), "docs/guide/bad-input.md's table differs from `python -m tests.bad_corpus`"
    assert len(CASES) >= 25 and np.unique([kind for kind, *_ in CASES]).size == len(CASES)
