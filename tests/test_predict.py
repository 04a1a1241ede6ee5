"""A trained model used alone: predictions on new photos, export, other datasets."""

import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import REAL_DATA
from trainable.model import random_model_file
from trainable.serving.inference import Predictor

CLASSES = ["1-4", "5-27", "28+"]


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    return random_model_file(tmp_path_factory.mktemp("model") / "model.pt")


def generated(n=4, size=(160, 160)):
    return np.random.default_rng(0).integers(0, 256, (n, *size, 3), dtype=np.uint8)


def cli(module, *args):
    """`python -m MODULE ARGS` run in this process (no interpreter and torch start-up): its
    exit code and what it printed, as subprocess.run would give them."""
    import contextlib
    import importlib
    import io
    import types

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = importlib.import_module(module).main(list(args))
    return types.SimpleNamespace(returncode=code, stdout=out.getvalue(), stderr=err.getvalue())


@pytest.mark.slow
@pytest.mark.numerics
@pytest.mark.extra("export")
def test_onnx_export_matches_pytorch(model_file, tmp_path):
    import onnxruntime as ort

    from trainable.serving.export import export, exportable

    export(model_file, str(tmp_path / "model.onnx"))
    assert os.listdir(tmp_path) == ["model.onnx"]  # one self-contained file, weights inside
    images = generated()
    onnx = ort.InferenceSession(str(tmp_path / "model.onnx")).run(None, {"images": images})[0]
    with torch.no_grad():
        ours = exportable(model_file)(torch.from_numpy(images)).numpy()
    # Different runtimes, different kernels: probabilities in [0, 1] agree to fp32 rounding (measured 4e-7).
    assert np.abs(onnx - ours).max() < 1e-4
    predictor = Predictor(model_file)  # the preprocessing inside is the eval transform
    assert np.abs(predictor.probabilities(list(images)) - ours).max() < 1e-4


def test_predict_names_every_image_and_says_why_some_have_no_prediction(model_file, tmp_path):
    face = os.path.join(REAL_DATA, "28", "5.jpg")
    if not os.path.exists(face):
        pytest.skip(f"real dataset not found at {REAL_DATA}: no photo of a face to detect")
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "face.jpg").write_bytes(open(face, "rb").read())
    gradient = np.linspace(40, 220, 300 * 400 * 3).reshape(300, 400, 3).astype(np.uint8)
    Image.fromarray(gradient).save(folder / "landscape.jpg")
    (folder / "notes.jpg").write_text("this is text")
    Image.new("RGB", (1, 1)).save(folder / "dot.png")  # nothing MTCNN can search: a row, not a traceback
    (folder / "clear\x1b[2J\u2028\u202eit.jpg").write_text("a name that would drive a terminal")
    proc = cli("study.predict", "--model", model_file, str(folder), "--out", str(tmp_path / "rows.csv"))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    rows = {line.split()[0]: line for line in proc.stdout.splitlines() if line.strip().startswith(str(folder))}
    assert len(rows) == 5 and "1x1 px is smaller than the smallest face searched for" in rows[str(folder / "dot.png")]
    written = proc.stdout + open(tmp_path / "rows.csv").read()
    assert not any(c in written for c in "\x1b\u2028\u202e")  # escaped, in the lines and the CSV
    assert str(folder / "clear\\x1b[2J\\u2028\\u202eit.jpg") in rows
    assert any(c in rows[str(folder / "face.jpg")] for c in CLASSES)
    assert "no face found" in rows[str(folder / "landscape.jpg")]
    assert "cannot be decoded as an image" in rows[str(folder / "notes.jpg")]
    assert len(open(tmp_path / "rows.csv").read().splitlines()) == 6


@pytest.mark.slow
def test_all_faces_gives_a_row_per_face(model_file, tmp_path):
    if not os.path.isdir(REAL_DATA):
        pytest.skip(f"real dataset not found at {REAL_DATA}")
    faces = [Image.open(os.path.join(REAL_DATA, c, "170.jpg")).convert("RGB") for c in ("5", "28")]
    group = Image.new("RGB", (400, 260), (128, 128, 128))
    group.paste(faces[0], (20, 30))
    group.paste(faces[1], (220, 30))
    group.save(tmp_path / "two.jpg")
    proc = cli("study.predict", "--model", model_file, "--all-faces", str(tmp_path / "two.jpg"))
    assert proc.returncode == 0, proc.stderr
    assert sum(line.strip().startswith(str(tmp_path)) for line in proc.stdout.splitlines()) == 2


@pytest.mark.slow
def test_pt2_export_runs_without_the_project(model_file, tmp_path):
    from trainable.serving.export import export, exportable

    export(model_file, str(tmp_path / "model.pt2"))
    images = torch.from_numpy(generated(3))
    with torch.no_grad():
        loaded = torch.export.load(str(tmp_path / "model.pt2")).module()(images)
        assert torch.allclose(loaded, exportable(model_file)(images), atol=1e-6)  # same kernels, one graph


def test_predict_on_face_crops_without_detection(model_file, tmp_path):
    for i, image in enumerate(generated(3, (200, 160))):
        Image.fromarray(image).save(tmp_path / f"{i}.png")
    proc = cli("study.predict", "--model", model_file, "--no-detect", str(tmp_path / "*.png"))
    assert proc.returncode == 0, proc.stderr
    assert sum(line.strip().startswith(str(tmp_path)) for line in proc.stdout.splitlines()) == 3


def test_evaluate_a_folders_dataset_and_report_it(model_file, tmp_path):
    if not os.path.isdir(REAL_DATA):
        pytest.skip(f"real dataset not found at {REAL_DATA}")
    from tests.test_report import make_study, report

    data = tmp_path / "other"
    for name, source in zip(CLASSES, ("1", "5", "28"), strict=True):
        (data / name).mkdir(parents=True)
        for i in range(180, 188):
            (data / name / f"{i}.jpg").write_bytes(open(os.path.join(REAL_DATA, source, f"{i}.jpg"), "rb").read())
    out = tmp_path / "eval.json"
    proc = cli(
        "analysis.evaluate", "--model", model_file, "--data", str(data), "--layout", "folders", "--out", str(out)
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert result["images"] == 24 and result["classes"] == CLASSES
    assert 0 <= result["accuracy_interval_95"][0] <= result["accuracy"] <= result["accuracy_interval_95"][1] <= 1
    assert result["models"] == 1 and not result["detect_faces"]  # folders of crops: no detection by default
    counts = np.array(result["confusion_counts"])
    assert counts.shape == (3, 4) and counts.sum() == 24 and (counts.sum(1) == 8).all()
    assert counts[:, 3].sum() == result["faces_not_found"]  # the 'no face' column
    study = make_study(tmp_path, [(1, 0, "max_epochs", 0.8)])
    markdown, _ = report(study, external=[str(out)])
    assert "## Beyond the training data" in markdown and f"{result['accuracy']:.3f}" in markdown
    assert "### Confusion on" in markdown and "no face found" in markdown


@pytest.mark.extra("serve")
def test_the_served_metadata_names_the_study_and_why_its_model(tmp_path):
    from study.http_app import metadata
    from trainable.model import random_model_file
    from trainable.results.atomic_io import write_json

    best = tmp_path / "my-study" / "best"
    best.mkdir(parents=True)
    path = random_model_file(best / "model.pt")
    write_json(str(best / "best.json"), {"chosen_by": "mean val_acc over seeds"})
    record = torch.load(path, weights_only=True)
    meta = metadata(path, record)
    assert (meta["study"], meta["chosen_by"], meta["classes"]) == ("my-study", "mean val_acc over seeds", CLASSES)
    assert metadata(random_model_file(tmp_path / "alone.pt"), record)["study"] is None


@pytest.mark.parametrize("size", [(1, 1), (2000, 20), (19, 400)])
def test_an_image_too_small_or_too_thin_to_search_gets_its_reason_not_a_crash(size):
    """MTCNN builds no pyramid for a side under its smallest face (torch.cat of nothing): such
    images, and strips past 20:1, are not searched; the server answers 422 with the reason."""
    from trainable.data.face_detection import Detector
    from trainable.serving.face_crops import Faces

    image = np.full((*size, 3), 128, np.uint8)
    assert Detector()(image) == []
    crops, problem = Faces(detect=True, all_faces=False).crops(image)
    assert crops == [] and (f"{size[1]}x{size[0]} px is" in problem) and ("smaller" in problem or "thin" in problem)


def damaged_model(kind: str, good: str, path) -> None:
    """Plant a model file that is not one: text, a truncated file, other records."""
    if kind == "text":
        path.write_text("this is not a model\n")
    elif kind == "truncated":
        data = open(good, "rb").read()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "a dict without a model record":
        torch.save({"epoch": 3, "state": {}}, path)
    elif kind == "a list":
        torch.save([1, 2, 3], path)
    else:  # weights of another shape: a record claiming 5 classes around a 3-class head
        record = torch.load(good, weights_only=True)
        torch.save({**record, "num_classes": 5}, path)


@pytest.mark.parametrize(
    "kind, said",
    [
        ("text", "not a model file this tool can read (not a PyTorch file)"),
        ("truncated", "(a damaged or truncated PyTorch file: PytorchStreamReader failed"),
        ("empty", "not a model file this tool can read (an empty file)"),
        (
            "a dict without a model record",
            "is not a model record: it lacks weights, num_classes, freeze, trained, preprocessing",
        ),
        ("a list", "holds a list, not a model record; a study's best/model.pt (python -m analysis.best"),
        ("weights of another shape", "its trained weights do not fit the model it records (Error(s) in loading"),
    ],
)
def test_a_damaged_model_file_is_one_line_exit_2(model_file, tmp_path, kind, said):
    bad = tmp_path / "model.pt"
    damaged_model(kind, model_file, bad)
    image = tmp_path / "face.png"
    Image.fromarray(generated(1)[0]).save(image)
    result = cli("study.predict", "--model", str(bad), "--no-detect", str(image))
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert f"error: {bad}" in result.stderr and said in result.stderr, result.stderr


def test_predict_on_a_folder_without_images_says_so(model_file, tmp_path):
    deep = tmp_path / "top"
    (deep / "a" / "b").mkdir(parents=True)
    (deep / "a" / "b" / "face.jpg").write_bytes(b"")
    result = cli("study.predict", "--model", model_file, str(deep))
    assert result.returncode == 2 and result.stdout == "", result
    assert f"{deep}: a folder with no image file (" in result.stderr and "not its subfolders'" in result.stderr
