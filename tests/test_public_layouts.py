"""Public face-age datasets as they are downloaded: UTKFace's variants and FG-NET's names,
detected by their files; identity-disjoint splits; ages outside the classes listed."""

import os

import numpy as np
import pytest
from PIL import Image

from trainable.data.dataset import load_dataset
from trainable.data.layouts import detect_layout
from trainable.data.problems import Kind
from trainable.errors import UserError


def face(path, group: int, seed: int) -> None:
    """A 200x200 JPEG, tinted by its class (learnable), distinct per seed."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 90, (200, 200, 3)).astype(float)
    image[..., group] += 150
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image.clip(0, 255).astype(np.uint8)).save(path)


UTK_AGES = [1, 2, 3, 4, 5, 10, 20, 27, 28, 45, 60, 80] * 2  # 8 per class


def utkface_tree(root, folders: list[str], chip: bool = True) -> None:
    """UTKFace's archives: AGE_GENDER_RACE_DATE.jpg[.chip.jpg] files in each folder."""
    for f, folder in enumerate(folders):
        for i, age in enumerate(UTK_AGES):
            name = f"{age}_{i % 2}_{i % 5}_2017011{f}{i:06d}.jpg" + (".chip.jpg" if chip else "")
            face(root / folder / name, 0 if age < 5 else 1 if age < 28 else 2, seed=100 * f + i)


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


def test_utkfaces_in_the_wild_parts_are_never_three_classes(tmp_path):
    utkface_tree(tmp_path, ["part1", "part2", "part3"], chip=False)
    assert detect_layout(str(tmp_path))[0] == "utkface"  # by its names, not as folders of classes
    with pytest.raises(UserError, match="part1/, part2/, part3/ hold UTKFace's in-the-wild photos"):
        load_dataset(str(tmp_path))


def fgnet_tree(root, subjects: int = 20, folder: str = "FGNET/images") -> None:
    """FG-NET's names: SSSAaa.JPG, a few ages per subject, some with an a/b suffix, some age 0."""
    for s in range(1, subjects + 1):
        for k, age in enumerate((0 if s % 7 == 0 else 2, 3, 8, 15, 30, 41)):
            suffix = "a" if (s + k) % 5 == 0 else ""
            face(root / folder / f"{s:03d}A{age:02d}{suffix}.JPG", 0 if age < 5 else 1 if age < 28 else 2, 10 * s + k)


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


def test_notes_are_grouped_by_kind_a_few_lines_each(tmp_path, capsys):
    from trainable.data.options import DataOptions, dataset_from_args

    utkface_tree(tmp_path, ["UTKFace"])
    original = next((tmp_path / "UTKFace").glob("45_*"))
    for i in range(12):  # twelve byte-identical copies of one face, same class: notes, kept
        (tmp_path / "UTKFace" / f"30_0_0_2017{i:08d}.jpg.chip.jpg").write_bytes(original.read_bytes())
    dataset_from_args(DataOptions(data=str(tmp_path), on_bad_image="skip"))
    out = capsys.readouterr().out
    assert out.count("Note:") == 0 and "Notes on" in out and "kept file(s) (all in" in out
    assert len([line for line in out.splitlines() if line.startswith("  ")]) <= 3 + 3 * 2  # a few per kind
