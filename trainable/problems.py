"""Lists of files that cannot be used, readable at any length: one line per file
(`path: reason`, never wrapped), grouped by reason with a count, at most LIMIT lines
on the console, and the whole list in a file whose path is printed."""

from __future__ import annotations

import tempfile
from collections import defaultdict

LIMIT = 20  # file lines shown on the console
KINDS = (  # (text in the reason, group title), first match wins
    ("file name ", "file name cannot be recorded"),
    ("the same bytes as", "the same bytes in two splits"),
    ("not a regular file", "not a regular file"),
    ("too large", "too large"),
    ("broken symbolic link", "broken symbolic link"),
    ("empty file", "empty file"),
    ("cannot be decoded", "cannot be decoded"),
    ("smaller than", "smaller than the crop"),
    ("missing", "missing"),
    ("unreadable", "unreadable"),
    ("is not a class", "not a class folder"),
    ("not an image file name", "not an image file name"),
    ("name is not", "name does not parse"),
)


def printable(text: str) -> str:
    """`text` safe to print, write and record on one line: bytes that are not UTF-8 (a
    file name's, kept by Python as surrogates) escaped as \\xNN, line breaks as \\n."""
    try:
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a lone surrogate that no byte made
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text.replace("\n", "\\n").replace("\r", "\\r")


def kind(problem: str) -> str:
    """The group of a 'path: reason' line (paths may hold ': ' too; reasons start after the first)."""
    reason = problem.split(": ", 1)[1] if ": " in problem else problem
    return next((title for text, title in KINDS if text in reason), "other")


def save_full_list(problems: list[str], what: str) -> str:
    """Every line in a new file under the system's temporary directory; its path."""
    with tempfile.NamedTemporaryFile("w", prefix=f"face-age-{what}-", suffix=".txt", delete=False) as f:
        f.write("\n".join(problems) + "\n")
        return f.name


def grouped(problems: list[str], full_list: str, limit: int = LIMIT) -> str:
    """The groups, largest first, as 'reason (count):' headings over indented file lines,
    stopping after `limit` file lines with how many more are in `full_list`."""
    groups: dict[str, list[str]] = defaultdict(list)
    for problem in problems:
        groups[kind(problem)].append(problem)
    lines, shown = [], 0
    for title, members in sorted(groups.items(), key=lambda item: -len(item[1])):
        lines.append(f"{title} ({len(members)}):")
        for problem in members[: max(0, limit - shown)]:
            lines.append(f"  {problem}")
            shown += 1
    if shown < len(problems):
        lines.append(f"... {len(problems) - shown} more; all {len(problems)} are listed in {full_list}")
    return "\n".join(lines)
