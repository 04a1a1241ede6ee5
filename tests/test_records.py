"""The reported records are defined once (trainable.results.records) and read through `reported`:
a key the schema lacks fails where it is read."""

import ast
import dataclasses
import pathlib
import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT
from trainable.results.records import FinalRecord, reported

PACKAGES = ("trainable", "study", "analysis", "tests")


def test_every_reported_key_the_code_names_is_in_the_schema():
    fields = {f.name for f in dataclasses.fields(FinalRecord)}
    named = {}
    for path in (pathlib.Path(ROOT) / package for package in PACKAGES):
        for file in path.rglob("*.py"):
            for node in ast.walk(ast.parse(file.read_text())):
                if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "reported":
                    named.setdefault(node.attr, str(file.relative_to(ROOT)))
    assert {"epoch", "val_acc", "best_epoch", "test_acc_best", "stopped_by"} <= set(named)  # the walk sees them
    assert not {k: f for k, f in named.items() if k not in fields}
    assert vars(reported) == {name: name for name in fields}


@pytest.mark.slow  # copies the tree and runs its consumers' tests in a new pytest
def test_a_metric_renamed_in_the_schema_fails_in_its_consumers_tests(tmp_path):
    """val_acc renamed in a copy of the code: the console's and the report's tests fail."""
    for part in ("trainable", "study", "analysis", "tests"):
        shutil.copytree(pathlib.Path(ROOT) / part, tmp_path / part, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(pathlib.Path(ROOT) / "pyproject.toml", tmp_path)
    schema = tmp_path / "trainable" / "results" / "records.py"
    text = schema.read_text()
    assert text.count("    val_acc: float\n") == 1
    schema.write_text(text.replace("    val_acc: float\n", "    val_accuracy: float\n"))
    consumers = [
        "tests/test_space.py::test_the_console_prints_one_line_per_event_and_where_the_study_stands",
        "tests/test_report.py::test_one_seed_gets_a_wilson_interval_and_comparisons_are_holm_adjusted",
    ]
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *consumers],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode != 0, run.stdout
    failures = [line for line in run.stdout.splitlines() if line.startswith("E ")]
    assert any("val_acc" in line and ("AttributeError" in line or "TypeError" in line) for line in failures), run.stdout
