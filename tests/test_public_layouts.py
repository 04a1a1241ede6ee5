"""Public face-age datasets as they are downloaded: UTKFace's variants and FG-NET's names,
detected by their files; faces found before training in the uncropped ones; identity-disjoint
splits; ages outside the classes listed.

The fast tests detect with `FakeDetector` (the faces a photo's marker says it has); the slow
one runs MTCNN, as Ray tasks, on el7008 faces pasted into larger photos."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from trainable.data import face_detection
from trainable.data.dataset import load_dataset
from trainable.data.layouts import detect_layout
from trainable.data.problems import Kind
from trainable.errors import UserError
from trainable.results.study_record import read_study_record
from trainable.serving import face_crops


def face(path, group: int, seed: int, faces: int = 1) -> None:
    """A 200x200 JPEG, tinted by its class (learnable), distinct per seed; its top-left
    corner is the marker FakeDetector reads: black for no face, white for two, else one."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 90, (200, 200, 3)).astype(float)
    image[..., group] += 150
    image[:16, :16] = {0: 0, 1: 128, 2: 255}[faces]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image.clip(0, 255).astype(np.uint8)).save(path, quality=95)


class FakeDetector:
    """trainable.data.face_detection.Detector's interface: the faces the photo's marker says, the
    more confident but smaller one first (the largest is kept); counts its photos."""

    photos = 0

    def __call__(self, image):
        FakeDetector.photos += 1
        marker = image[:16, :16].mean()
        big, small = ((30.0, 40.0, 170.0, 190.0), 0.9), ((150.0, 10.0, 190.0, 50.0), 0.99)
        return [] if marker < 40 else [small, big] if marker > 215 else [big]


@pytest.fixture(autouse=True)
def fake_detector(monkeypatch, request):
    if "slow" not in request.keywords:
        monkeypatch.setattr("trainable.data.face_detection.Detector", FakeDetector)
    FakeDetector.photos = 0


UTK_AGES = [1, 2, 3, 4, 5, 10, 20, 27, 28, 45, 60, 80] * 2  # 8 per class


def utkface_tree(root, folders: list[str], chip: bool = True) -> None:
    """UTKFace's archives: AGE_GENDER_RACE_DATE.jpg[.chip.jpg] files in each folder; in the
    in-the-wild ones (no .chip.jpg) the second photo of each folder has two faces."""
    for f, folder in enumerate(folders):
        for i, age in enumerate(UTK_AGES):
            name = f"{age}_{i % 2}_{i % 5}_2017011{f}{i:06d}.jpg" + (".chip.jpg" if chip else "")
            faces = 2 if not chip and i == 1 else 1
            face(root / folder / name, 0 if age < 5 else 1 if age < 28 else 2, seed=100 * f + i, faces=faces)


@pytest.mark.parametrize(
    "folders",
    [["UTKFace"], ["crop_part1", "crop_part2", "crop_part3"], ["utkface_aligned_cropped/UTKFace"]],
    ids=["aligned", "crop parts", "nested"],
)
def test_utkface_downloads_are_detected_and_read_together(tmp_path, folders, capsys):
    utkface_tree(tmp_path, folders)
    layout, why = detect_layout(str(tmp_path))
    assert layout == "utkface" and all(f in why for f in folders)
    data = load_dataset(str(tmp_path))
    assert data.layout == "utkface" and data.classes == ("1-4", "5-27", "28+")
    assert np.bincount(data.labels).tolist() == [8 * len(folders)] * 3  # every part, every class
    assert "Data layout: utkface (detected under" in capsys.readouterr().out
    assert data.detection is None and FakeDetector.photos == 0  # crops: no detection by default


def test_utkfaces_in_the_wild_parts_are_one_dataset_of_detected_faces(tmp_path):
    utkface_tree(tmp_path, ["part1", "part2", "part3"], chip=False)
    assert detect_layout(str(tmp_path))[0] == "utkface"  # by its names, not as folders of classes
    data = load_dataset(str(tmp_path), store=str(tmp_path / "store"))
    assert data.layout == "utkface" and np.bincount(data.labels).tolist() == [24, 24, 24]
    assert data.detection["detected"] == 72 and FakeDetector.photos == 72
    assert {img.shape for img in data.images} == {(200, 160, 3)}  # framed like the training crops
    several = [p for p in data.converted if p.kind is Kind.SEVERAL_FACES]
    assert len(several) == 3 and all("2 faces found, the largest kept" in p for p in several)
    (tmp_path / "crop_part1").mkdir()
    (tmp_path / "part1" / next(iter(os.listdir(tmp_path / "part1")))).rename(tmp_path / "crop_part1" / "1_0_0_1.jpg")
    with pytest.raises(UserError, match=r"both UTKFace's in-the-wild photos .* and its crops \(crop_part1/\)"):
        load_dataset(str(tmp_path))


def test_faces_are_detected_once_whatever_the_dataset_and_the_store_is_keyed_by_the_detector(tmp_path, monkeypatch):
    fgnet_tree(tmp_path / "a", subjects=6)
    store = str(tmp_path / "store")
    first = load_dataset(str(tmp_path / "a"), store=store, on_bad_image="skip")
    assert first.detection["detected"] == first.detection["photos"] == FakeDetector.photos == 36
    again = load_dataset(str(tmp_path / "a"), store=store, on_bad_image="skip")
    assert again.detection["detected"] == 0 and again.detection["from_store"] == 36 and FakeDetector.photos == 36
    assert again.fingerprint == first.fingerprint and np.array_equal(again.images[5], first.images[5])
    fgnet_tree(tmp_path / "b", subjects=7)  # subjects 1-6 again (the same bytes), and subject 7
    seen = []
    runner = lambda photos, hashes, folder: (seen.extend(hashes), face_detection.detect_here(photos, hashes, folder))  # noqa: E731
    load_dataset(str(tmp_path / "b"), store=store, on_bad_image="skip", detect_runner=runner)
    assert len(seen) == 5  # subject 7's photos only (its age-0 one is left out before)
    off = load_dataset(str(tmp_path / "a"), store=store, on_bad_image="skip", detect_faces="off")
    assert off.detection is None and off.fingerprint != first.fingerprint  # whole photos: another dataset
    monkeypatch.setitem(face_detection.MTCNN_SETTINGS, "min_face_size", 40)
    assert load_dataset(str(tmp_path / "a"), store=store, on_bad_image="skip").detection["detected"] == 36


@pytest.mark.parametrize("policy", ["largest", "skip", "all"])
def test_several_faces_and_no_face_are_listed_with_their_reason(tmp_path, policy):
    fgnet_tree(tmp_path, subjects=9)  # the fewest whose grouped test split holds two people
    images = tmp_path / "FGNET" / "images"
    face(images / "001A15.JPG", 1, 1, faces=0)
    face(images / "003A15.JPG", 1, 2, faces=2)
    data = load_dataset(str(tmp_path), on_bad_image="skip", several_faces=policy, group_by="subject")
    reasons = {p.kind: p.reason for p in data.skipped if p.kind in (Kind.NO_FACE, Kind.SEVERAL_FACES)}
    assert reasons[Kind.NO_FACE] == "no face found" and data.faceless_labels.tolist() == [1] + [1] * (policy == "skip")
    several = "FGNET/images/003A15.JPG"
    if policy == "skip":
        assert reasons[Kind.SEVERAL_FACES] == "2 faces found (--several-faces skip)"
        assert not any(p.endswith(several) for p in data.paths)
    elif policy == "largest":
        big = face_detection.frame(Image.open(tmp_path / several).convert("RGB"), (30.0, 40.0, 170.0, 190.0))
        assert np.array_equal(data.images[data.paths.index(several)], big)  # not the more confident small face
    else:
        rows = [data.paths.index(f"{several}#{k}") for k in (1, 2)]
        assert len({next(s for s, idx in data.split.items() if r in idx) for r in rows}) == 1  # one split
        assert any("each kept as PATH#k" in p for p in data.converted)
    assert data.detection["no_face"] == 1 and data.detection["several"] == 1


def fgnet_tree(root, subjects: int = 20, folder: str = "FGNET/images") -> None:
    """FG-NET's names: SSSAaa.JPG, a few ages per subject, some with an a/b suffix, some age 0."""
    for s in range(1, subjects + 1):
        for k, age in enumerate((0 if s % 7 == 0 else 2, 3, 8, 15, 30, 41)):
            suffix = "a" if (s + k) % 5 == 0 else ""
            face(root / folder / f"{s:03d}A{age:02d}{suffix}.JPG", 0 if age < 5 else 1 if age < 28 else 2, 10 * s + k)


def test_predict_classifies_the_face_training_keeps(tmp_path, monkeypatch):
    monkeypatch.setattr(face_crops, "Detector", FakeDetector)
    face(tmp_path / "two.jpg", 1, 1, faces=2)
    crops, problem = face_crops.Faces(detect=True, all_faces=False)(str(tmp_path / "two.jpg"))
    assert problem is None and [c.box for c in crops] == [(30.0, 40.0, 170.0, 190.0)]  # the larger, as training


def test_fgnet_is_detected_grouped_by_subject_and_age_zero_listed(tmp_path):
    fgnet_tree(tmp_path)
    assert detect_layout(str(tmp_path))[0] == "fgnet"
    data = load_dataset(str(tmp_path), group_by="subject", on_bad_image="skip")
    assert data.layout == "fgnet"
    zero = [p for p in data.skipped if p.kind is Kind.AGE_OUT_OF_RANGE]
    assert len(zero) == 2 and all("age 0 is below the first class (1-4)" in p for p in zero)  # subjects 7, 14
    assert len(data.paths) == 20 * 6 - 2 and any(p.endswith("a.JPG") for p in data.paths)  # suffixes kept
    assert sum(data.group_counts().values()) == 20


@pytest.mark.parametrize("seed", range(5))
def test_no_subject_is_in_two_splits_whatever_the_seed(tmp_path, seed):
    fgnet_tree(tmp_path)
    data = load_dataset(str(tmp_path), group_by="subject", split_seed=seed, on_bad_image="skip")
    subjects = {name: {os.path.basename(data.paths[i])[:3] for i in idx} for name, idx in data.split.items()}
    assert not (
        subjects["train"] & subjects["val"]
        or subjects["train"] & subjects["test"]
        or subjects["val"] & subjects["test"]
    )
    assert all(subjects.values())
    ungrouped = load_dataset(str(tmp_path), split_seed=seed, on_bad_image="skip")
    mixed = {name: {os.path.basename(ungrouped.paths[i])[:3] for i in idx} for name, idx in ungrouped.split.items()}
    assert mixed["train"] & mixed["test"]  # without grouping a person lands on both sides


def test_group_regex_groups_any_layout_and_names_a_path_it_misses(tmp_path):
    for c, cls in enumerate(("child", "adult")):
        for person in range(8):
            for k in range(3):
                face(tmp_path / cls / f"person{c}{person}_{k}.jpg", c, 100 * c + 10 * person + k)
    data = load_dataset(str(tmp_path), group_regex=r"person(\d+)_")
    people = {name: {data.paths[i].split("_")[0] for i in idx} for name, idx in data.split.items()}
    assert not (people["train"] & people["test"]) and data.group_counts()["train"] == len(people["train"])
    face(tmp_path / "child" / "stranger.jpg", 0, 999)
    with pytest.raises(UserError, match=r"--group-regex .* matches none of 1 of the 49 paths, e.g. child/stranger.jpg"):
        load_dataset(str(tmp_path), group_regex=r"person(\d+)_")
    with pytest.raises(UserError, match="--group-by subject: the folders layout names no subjects"):
        load_dataset(str(tmp_path), group_by="subject")


def test_a_grouped_test_split_of_one_person_is_refused_before_training(tmp_path):
    fgnet_tree(tmp_path, subjects=8)  # 60/20/20 of 8 people: one in the test split, no interval over people
    with pytest.raises(UserError, match=r"the test split under .* holds photos of 1 person\(s\) \(8 in the data\)"):
        load_dataset(str(tmp_path), group_by="subject", on_bad_image="skip")
    fgnet_tree(tmp_path, subjects=9)
    data = load_dataset(str(tmp_path), group_by="subject", on_bad_image="skip")
    assert len({os.path.basename(data.paths[i])[:3] for i in data.split["test"]}) == 2


def test_notes_are_grouped_by_kind_a_few_lines_each(tmp_path, capsys):
    from trainable.data.dataset_options import DataOptions, dataset_from_args

    utkface_tree(tmp_path, ["UTKFace"])
    original = next((tmp_path / "UTKFace").glob("45_*"))
    for i in range(12):  # twelve byte-identical copies of one face, same class: notes, kept
        (tmp_path / "UTKFace" / f"30_0_0_2017{i:08d}.jpg.chip.jpg").write_bytes(original.read_bytes())
    dataset_from_args(DataOptions(data=str(tmp_path), on_bad_image="skip"))
    out = capsys.readouterr().out
    assert out.count("Note:") == 0 and "Notes on" in out and "kept file(s) (all in" in out
    assert len([line for line in out.splitlines() if line.startswith("  ")]) <= 3 + 3 * 2  # a few per kind


def test_an_evaluation_counts_a_photo_without_a_face_as_a_wrong_answer(tmp_path):
    from analysis.evaluate import evaluate
    from analysis.stats import accuracy_ci

    class Always:  # a model that answers 5-27 for every crop
        classes = ["1-4", "5-27", "28+"]

        def probabilities(self, crops):
            return np.tile([0.1, 0.8, 0.1], (len(crops), 1))

    fgnet_tree(tmp_path, subjects=6)
    face(tmp_path / "FGNET" / "images" / "001A15.JPG", 1, 1, faces=0)
    result = evaluate(load_dataset(str(tmp_path), on_bad_image="skip"), [Always()])
    assert result["images"] == 36 and result["faces_not_found"] == 1 and result["detect_faces"]
    assert result["accuracy"] == pytest.approx(11 / 36)  # 12 photos aged 5-27, one without a face
    assert result["recall"] == pytest.approx([0, 11 / 12, 0])
    # FG-NET names who each photo shows: the intervals are over the 6 people, the faceless photo's included
    assert (
        result["people"] == 6 and result["interval"] == "95%, over the 6 people (photos of one person counted together)"
    )
    lo, hi = result["accuracy_interval_95"]
    w_lo, w_hi = accuracy_ci(11, 36)  # photos as independent
    # every person is right on 2 of 6 (one on 1): little varies between people (0.51 of it, the logit ends included)
    assert hi - lo < 0.6 * (w_hi - w_lo)


def pasted_fgnet(root, real: str) -> None:
    """FG-NET-named photos of real faces: el7008 crops pasted at seeded places into larger
    noisy pictures, 9 subjects (the fewest whose grouped test split holds two) x 6 ages (two per class)."""
    rng = np.random.default_rng(0)
    for s in range(1, 10):
        for k, (folder, age) in enumerate([("1", 2), ("1", 3), ("5", 8), ("5", 15), ("28", 30), ("28", 41)]):
            canvas = Image.fromarray(rng.integers(60, 200, (420, 360, 3)).astype(np.uint8))
            canvas.paste(Image.open(os.path.join(real, folder, f"{6 * s + k}.jpg")), tuple(rng.integers(0, 200, 2)))
            root.mkdir(parents=True, exist_ok=True)
            canvas.save(root / f"{s:03d}A{age:02d}.JPG")


@pytest.mark.long
@pytest.mark.slow
def test_a_study_on_uncropped_photos_finds_the_faces_as_ray_tasks_once(tmp_path):
    from tests.conftest import REAL_DATA, ROOT

    if not os.path.isdir(REAL_DATA):
        pytest.skip(f"the el7008 faces are not at {REAL_DATA}")
    pasted_fgnet(tmp_path / "FGNET" / "images", REAL_DATA)
    cache = tmp_path / "cache"
    runs = []
    for name in ("first", "second"):
        args = [
            "--grid",
            "smoke",
            "--confirm-top",
            "0",
            "--data",
            str(tmp_path / "FGNET"),
            "--group-by",
            "subject",
            "--seeds",
            "1",
            *("--where", "experiment=1", "--max-epochs", "2"),  # what is tested is finding the faces
        ]
        args += ["--storage", str(tmp_path / "studies"), "--cache-dir", str(cache), "--name", name]
        run = subprocess.run([sys.executable, "-m", "study.run", *args], cwd=ROOT, capture_output=True, text=True)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        runs.append(run.stdout)
    assert "Data layout: fgnet" in runs[0] and "Ray task(s)" in runs[0]
    assert "54 from the store, 0 detected now" in runs[1] and "Ray task(s)" not in runs[1]
    record = read_study_record(str(tmp_path / "studies" / "second"))
    assert record.face_detection["from_store"] == 54 and record.data_layout == "fgnet"
    found = record.face_detection["faces"]
    assert found >= 45, "MTCNN should find most pasted el7008 faces"
    assert sum(record.split_sizes.values()) == found
    shards = list((cache / "images" / "faces").glob("*/shard-*.json"))
    assert shards and all(json.loads(p.read_text())["ran_by"].startswith("Ray task ") for p in shards)
