"""analysis.studies: the studies under a results folder, and two studies compared configuration by
configuration, paired on shared test images and unpaired on different ones."""

import json

from analysis.studies import main
from tests.test_report import make_study


def studies(tmp_path, b_accuracy: float, same_data: bool = True):
    """A (exp1, exp2 at 0.9, three seeds) and B (the same grid; exp1 at `b_accuracy`, exp2 at 0.9)."""
    a = make_study(tmp_path, [(e, s, "max_epochs", 0.9) for e in (1, 2) for s in range(3)], name="A")
    b = make_study(
        tmp_path, [(e, s, "max_epochs", b_accuracy if e == 1 else 0.9) for e in (1, 2) for s in range(3)], name="B"
    )
    if not same_data:  # B on other images: another dataset of the same layout
        record = json.loads((b / "study.json").read_text())
        record.update(data_root="/data/other", data_fingerprint="f" * 64)
        (b / "study.json").write_text(json.dumps(record))
    return a, b


def test_the_studies_under_a_folder_are_listed_one_line_each(tmp_path, capsys):
    studies(tmp_path, 0.5)
    (tmp_path / "not-a-study").mkdir()
    assert main([str(tmp_path), "--csv", str(tmp_path / "list.csv")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["study", "grid", "data"] and [line.split()[0] for line in lines[1:]] == ["A", "B"]
    assert all(" 6/6 " in line for line in lines[1:])
    assert (tmp_path / "list.csv").read_text().startswith("study,grid,data,")


def test_two_studies_on_the_same_images_are_compared_image_by_image(tmp_path, capsys):
    a, b = studies(tmp_path, 0.4)
    assert main([str(a), str(b), "--csv", str(tmp_path / "ab.csv")]) == 0
    out = capsys.readouterr().out
    assert "the same test images: compared image by image" in out
    exp1 = next(line for line in out.splitlines() if line.strip().startswith("exp1"))
    exp2 = next(line for line in out.splitlines() if line.strip().startswith("exp2"))
    assert exp1.endswith("A better") and "50.000" in exp1  # 90% against 40% of the 30 test images
    assert "no test (zero variance)" in exp2 or "not distinguishable" in exp2  # the same answers on both sides
    header = (tmp_path / "ab.csv").read_text().splitlines()[0]
    assert header.startswith("configuration,A test acc,A lo,A hi,B test acc,B lo,B hi,A - B (points)")


def test_two_studies_on_different_images_are_compared_unpaired_and_say_what_differs(tmp_path, capsys):
    a, b = studies(tmp_path, 0.8, same_data=False)
    assert main([str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "different test images: unpaired" in out and "data: " in out and "/data/other (other images)" in out
    exp1 = next(line for line in out.splitlines() if line.strip().startswith("exp1"))
    assert exp1.endswith("not distinguishable from noise")  # 10 points on 30 images each: within the noise


def test_a_folder_that_is_no_study_is_refused(tmp_path, capsys):
    assert main([str(tmp_path / "missing")]) == 2
    assert main([str(tmp_path)]) == 2 and "holds no study" in capsys.readouterr().err
    a, _ = studies(tmp_path, 0.5)
    assert main([str(a), str(tmp_path)]) == 2 and "holds no study.json" in capsys.readouterr().err
    assert main([str(a), str(a), str(a)]) == 2
