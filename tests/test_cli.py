"""User mistakes end in one clear paragraph and exit code 2, before Ray starts."""

import shutil

import pytest

from study.run import main


def fails(capsys, *argv):
    code = main(list(argv))
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err and err.startswith("error: ")
    return err


def test_missing_data_directory(capsys, tmp_path):
    err = fails(capsys, "--grid", "paper", "--data", str(tmp_path / "nope"), "--weights", "none")
    assert "nope does not exist" in err


def test_paper_needs_data(capsys):
    assert "--data is required" in fails(capsys, "--grid", "paper", "--weights", "none")


def test_corrupt_jpeg_is_named(capsys, tiny_root, tmp_path):
    root = shutil.copytree(tiny_root, tmp_path / "d")
    (root / "5" / "4.jpg").write_bytes(b"\xff\xd8\xff\xe0 broken")
    err = fails(
        capsys,
        "--grid",
        "smoke",
        "--data",
        str(root),
        "--storage",
        str(tmp_path / "r"),
        "--train-range",
        "0-7",
        "--val-range",
        "8-11",
        "--test-range",
        "12-15",
    )
    assert "5/4.jpg: cannot be decoded" in err


def test_bad_options(capsys, tmp_path):
    assert "--cpus-per-trial must be > 0" in fails(capsys, "--grid", "smoke", "--cpus-per-trial", "0")
    assert "--weights" in fails(capsys, "--grid", "smoke", "--weights", str(tmp_path / "w.pt"))
    assert "--train-range" in fails(capsys, "--grid", "smoke", "--data", ".", "--train-range", "x")


def test_unknown_grid_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--grid", "nope"])
    assert exit_.value.code == 2
    assert "invalid choice: 'nope'" in capsys.readouterr().err


def test_mlflow_without_the_extra_says_how_to_install(capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "mlflow" else real(n, *a))
    assert ".[mlflow]" in fails(capsys, "--grid", "smoke", "--mlflow", "file:/tmp/mlruns")


def test_fp16_needs_a_gpu(capsys):
    assert "needs GPUs" in fails(capsys, "--grid", "smoke", "--precision", "fp16")
