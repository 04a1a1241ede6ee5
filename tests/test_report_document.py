"""The report's document model: Markdown and HTML from the same blocks, HTML escaped."""

import pandas as pd

from analysis.document import Document, markdown_table
from analysis.tables import with_ci, with_range
from trainable.config import TrialConfig, differs_from


def test_file_names_are_escaped_in_html(tmp_path):
    doc = Document()
    doc.h("Files <left> out")
    doc.p("<script>alert('x')</script>.jpg: cannot be decoded")
    doc.notice("<b>random</b>")
    doc.table(pd.DataFrame({"file: reason": ["<img src=x onerror=alert(1)>.jpg: empty"]}))
    html = doc.html(str(tmp_path))
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "<img src=x" not in html and "&lt;img src=x" in html
    assert "&lt;left&gt;" in html and "&lt;b&gt;random" in html


def test_markdown_table_and_ci_formatting():
    frame = pd.DataFrame({"a": ["x|y", "z"], "b": [0.123456, float("nan")]})
    assert markdown_table(frame).splitlines() == ["| a | b |", "|---|---|", "| x\\|y | 0.1235 |", "| z | — |"]
    assert with_ci(0.8, 0.7, 0.9) == "0.800 ± 0.100"
    assert with_ci(0.8, float("nan"), float("nan")) == "0.800"
    assert with_range(0.8, 0.7, 0.85) == "0.800 [0.700, 0.850]"


def test_differs_from_experiment_one_compares_the_whole_config():
    one = TrialConfig(experiment=1, name="baseline", seed=0).to_dict()
    two = {**one, "experiment": 2, "name": "small batch", "seed": 1, "batch_size": 8}
    assert differs_from(two, one) == "batch_size=8"  # identity keys (experiment, name, seed) are not settings
    other = {**two, "weights": "none", "max_epochs": 3, "precision": "fp32", "normalization": "dataset"}
    assert differs_from(other, one) == (
        "weights=none, batch_size=8, max_epochs=3, normalization=dataset, precision=fp32"
    )
    assert differs_from(one, one) == "(same as #1)"
