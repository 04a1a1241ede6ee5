"""The report's document model: headings, paragraphs, tables and figures, written as
Markdown and as one self-contained HTML file (figures inlined, text escaped); every table
also as CSV and as a LaTeX booktabs tabular (tables/NN-heading.csv, .tex) for a paper's
appendix, each linked under its table."""

from __future__ import annotations

import base64
import html
import os
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from trainable.results.atomic_io import write_csv, write_text

STYLE = (
    "body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
    "table{border-collapse:collapse;font-size:13px;margin:1em 0}"
    "td,th{border-bottom:1px solid #ddd;padding:3px 8px;text-align:left}"
    "img{max-width:100%}figcaption{font-size:12px;color:#555}"
    ".notice{border:2px solid #c60;background:#fff4e5;padding:.6em 1em}"
)


SLUG = 48  # characters of a heading in a table's file name, whole words
NUMBER = r"([+\-−]?(?:\d+\.?\d*|\.\d+)(?:e[+\-]?\d+)?)"
# A cell as the report prints it, and the numbers a CSV holds instead: a value and its interval
# ("0.525 [0.436, 0.612]"), a mean and its half-width ("0.61 ± 0.04"), an interval ("-5.0 to +3.0 (95%...)").
CELLS = (
    (re.compile(rf"^{NUMBER} \[{NUMBER}, {NUMBER}\]$"), ("", " lo", " hi")),
    (re.compile(rf"^{NUMBER} ± {NUMBER}$"), ("", " ±")),
    (re.compile(rf"^{NUMBER} to {NUMBER}(?: \(.*\))?$"), (" lo", " hi")),
)
MISSING = ("", "—", "-", "n/a", "nan")


def as_data(frame: pd.DataFrame) -> pd.DataFrame:
    """The table as a CSV holds it, so that it loads as numbers: a column whose every cell is a value
    with its interval (or a mean ± its half-width, or an interval) becomes one column per number
    (NAME, NAME lo, NAME hi; NAME, NAME ±); an unnamed column is named `row`."""
    out = {}
    for column in frame.columns:
        cells = frame[column]
        texts = cells.astype(str).str.strip()
        present = ~texts.isin(MISSING) & cells.notna()
        split = None
        for pattern, suffixes in CELLS:
            found = texts[present].str.extract(pattern)
            if present.any() and cells.map(type).eq(str)[present].all() and found.notna().all().all():
                split = {f"{column}{suffix}": found[i] for i, suffix in enumerate(suffixes)}
                break
        if split is None:
            out[str(column) or "row"] = cells
            continue
        for name, numbers in split.items():
            out[name] = pd.to_numeric(numbers.str.replace("−", "-"), errors="coerce").reindex(frame.index)
    return pd.DataFrame(out, index=frame.index)


@dataclass
class Document:
    blocks: list[tuple] = field(default_factory=list)

    def h(self, text: str, level: int = 2) -> None:
        self.blocks.append(("h", level, text))

    def p(self, text: str) -> None:
        self.blocks.append(("p", text))

    def notice(self, text: str) -> None:
        """A paragraph no reader can miss (boxed in HTML, bold in Markdown)."""
        self.blocks.append(("notice", text))

    def table(self, frame: pd.DataFrame, name: str | None = None) -> None:
        """A table, named by its number and `name` (else its section's heading): tables/03-summary.csv
        and .tex. Two tables of one section are told apart by their names."""
        heading = name or next((block[2] for block in reversed(self.blocks) if block[0] == "h"), "table")
        number = 1 + sum(block[0] == "table" for block in self.blocks)
        words = re.sub(r"[^a-z0-9]+", " ", heading.lower()).split()
        slug = "-".join(w for i, w in enumerate(words) if len("-".join(words[: i + 1])) <= SLUG) or "table"
        self.blocks.append(("table", frame, f"tables/{number:02d}-{slug}"))

    def write_tables(self, out_dir: str) -> None:
        """Each table as CSV and as LaTeX, under out_dir/tables/ (emptied first)."""
        folder = os.path.join(out_dir, "tables")
        os.makedirs(folder, exist_ok=True)
        for name in os.listdir(folder):
            os.remove(os.path.join(folder, name))
        for block in self.blocks:
            if block[0] == "table":
                write_csv(os.path.join(out_dir, block[2] + ".csv"), as_data(block[1]))
                write_text(os.path.join(out_dir, block[2] + ".tex"), latex_table(block[1]))

    def figure(self, name: str, caption: str) -> None:
        self.blocks.append(("img", name, caption))

    def markdown(self) -> str:
        out = []
        for block in self.blocks:
            kind = block[0]
            if kind == "h":
                out.append("#" * block[1] + " " + block[2])
            elif kind == "p":
                out.append(block[1])
            elif kind == "notice":
                out.append(f"> **{block[1]}**")
            elif kind == "table":
                out.append(
                    markdown_table(block[1]) + f"\n\nThis table as [CSV]({block[2]}.csv), [LaTeX]({block[2]}.tex)."
                )
            else:
                out.append(f"![{block[2]}]({block[1]})")
        return "\n\n".join(out) + "\n"

    def html(self, figures_dir: str) -> str:
        body = [self._html_block(block, figures_dir) for block in self.blocks]
        return (
            "<!DOCTYPE html><html><head><meta charset='utf-8'><title>Face-age study report</title>"
            f"<style>{STYLE}</style></head><body>{''.join(body)}</body></html>\n"
        )

    @staticmethod
    def _html_block(block: tuple, figures_dir: str) -> str:
        kind = block[0]
        if kind == "h":
            return f"<h{block[1]}>{html.escape(block[2])}</h{block[1]}>"
        if kind == "p":
            return f"<p>{html.escape(block[1])}</p>"
        if kind == "notice":
            return f"<p class='notice'><strong>{html.escape(block[1])}</strong></p>"
        if kind == "table":
            csv, tex = (f"<a href='{block[2]}.{ext}'>{what}</a>" for ext, what in (("csv", "CSV"), ("tex", "LaTeX")))
            links = f"<p><small>This table as {csv}, {tex}.</small></p>"
            return block[1].to_html(index=False, escape=True, na_rep="—", border=0) + links
        with open(os.path.join(figures_dir, block[1]), "rb") as f:
            data = base64.b64encode(f.read()).decode()
        caption = html.escape(block[2])
        image = f'<img alt="{caption}" src="data:image/png;base64,{data}">'
        return f"<figure>{image}<figcaption>{caption}</figcaption></figure>"


def number_text(v: Any) -> str | None:
    """A float as the tables show it (4 significant digits, "—" for none); None if not a float."""
    if isinstance(v, float):
        return "—" if np.isnan(v) else f"{v:.4g}"
    return None


LATEX_SPECIAL = {c: "\\" + c for c in "&%$#_{}"} | {
    "\\": r"\textbackslash{}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def latex_table(frame: pd.DataFrame) -> str:
    """A booktabs tabular (\\usepackage{booktabs}): numbers right-aligned, text escaped."""

    def cell(v: Any) -> str:
        text = number_text(v)
        return "--" if text == "—" else text if text is not None else "".join(LATEX_SPECIAL.get(c, c) for c in str(v))

    numeric = [pd.api.types.is_numeric_dtype(frame[c]) for c in frame.columns]
    lines = [
        "\\begin{tabular}{" + "".join("r" if n else "l" for n in numeric) + "}",
        "\\toprule",
        " & ".join(cell(str(c)) for c in frame.columns) + " \\\\",
        "\\midrule",
        *(" & ".join(cell(v) for v in row) + " \\\\" for row in frame.itertuples(index=False)),
        "\\bottomrule",
        "\\end{tabular}",
    ]
    return "\n".join(lines) + "\n"


def markdown_table(frame: pd.DataFrame) -> str:
    def cell(v: Any) -> str:
        text = number_text(v)
        return text if text is not None else str(v).replace("|", "\\|")

    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)
