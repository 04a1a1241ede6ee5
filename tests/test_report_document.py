"""The report's document model: Markdown and HTML from the same blocks, HTML escaped."""

import pandas as pd

from analysis.report import Document, differs_from_baseline, markdown_table, with_ci


def test_file_names_are_escaped_in_html(tmp_path):
    doc = Document()
    doc.h("Files <left> out")
    doc.p("<script>alert('x')</script>.jpg: cannot be decoded")
    doc.table(pd.DataFrame({"file: reason": ["<img src=x onerror=alert(1)>.jpg: empty"]}))
    html = doc.html(str(tmp_path))
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "<img src=x" not in html and "&lt;img src=x" in html
    assert "&lt;left&gt;" in html


def test_markdown_table_and_ci_formatting():
    frame = pd.DataFrame({"a": ["x|y", "z"], "b": [0.123456, float("nan")]})
    assert markdown_table(frame).splitlines() == ["| a | b |", "|---|---|", "| x\\|y | 0.1235 |", "| z | — |"]
    assert with_ci(0.8, 0.7, 0.9) == "0.800 ± 0.100"
    assert with_ci(0.8, float("nan"), float("nan")) == "0.800"


def test_settings_that_differ_from_experiment_one():
    row = pd.Series({"freeze": "block8", "batch_size": 8, "augmentation": "static", "optimizer": "sgd",
                     "lr": 1e-4, "momentum": 0.0})  # fmt: skip
    assert differs_from_baseline(row) == "batch_size=8, optimizer=sgd"
