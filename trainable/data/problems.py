"""Files that cannot be used, as `Problem`s: a kind (set where the problem is found) and
a path, read as one `path: reason` line. Lists of them are readable at any length: one
line per file, never wrapped, grouped by kind with a count, at most LIMIT lines on the
console, and the whole list in a file whose path is printed."""

from __future__ import annotations

import enum
import tempfile
from collections import defaultdict

from trainable.errors import printable

LIMIT = 20  # file lines shown on the console


class Kind(enum.Enum):
    """What is wrong with a file, set where it is found; the value is the group's title."""

    BAD_NAME = "file name cannot be recorded"
    LEAK = "the same bytes in two splits"
    CONFLICT = "the same bytes under two labels"
    NOT_REGULAR = "not a regular file"
    TOO_LARGE = "too large"
    BROKEN_LINK = "broken symbolic link"
    EMPTY = "empty file"
    UNDECODABLE = "cannot be decoded"
    TOO_SMALL = "smaller than the crop"
    TOO_THIN = "sides too unequal"
    MISSING = "missing"
    UNREADABLE = "unreadable"
    NOT_A_CLASS = "not a class folder"
    NOT_AN_IMAGE_NAME = "not an image file name"
    NAME_UNPARSED = "name does not parse"
    AGE_OUT_OF_RANGE = "age outside the classes"
    NO_FACE = "no face found"  # --detect-faces
    SEVERAL_FACES = "several faces in one photo"  # left out (--several-faces skip), else a note
    DUPLICATE = "the same bytes twice in one split, both kept"  # a note
    CONVERTED = "converted on load"  # a note: grayscale, alpha, CMYK, 16-bit, large


class Problem(str):
    """One 'path: reason' line (a str: printed, listed and recorded as it reads) that also
    carries its kind and its path as data."""

    kind: Kind
    path: str
    reason: str

    def __new__(cls, kind: Kind, path: str, reason: str) -> Problem:
        line = super().__new__(cls, f"{printable(path)}: {reason}")
        line.kind, line.path, line.reason = kind, path, reason
        return line

    def __getnewargs__(self) -> tuple[Kind, str, str]:  # pickles (to Ray's workers) with its kind
        return self.kind, self.path, self.reason


def save_full_list(problems: list[str], what: str) -> str:
    """Every line in a new file under the system's temporary directory; its path."""
    with tempfile.NamedTemporaryFile("w", prefix=f"face-age-{what}-", suffix=".txt", delete=False) as f:
        f.write("\n".join(problems) + "\n")
        return f.name


def grouped(problems: list[str], full_list: str, limit: int = LIMIT, per_kind: int | None = None) -> str:
    """The groups, largest first, as 'reason (count):' headings over indented file lines,
    at most `per_kind` lines a group, stopping after `limit` file lines, with how many more
    are in `full_list`."""
    groups: dict[str, list[str]] = defaultdict(list)
    for problem in problems:
        groups[problem.kind.value if isinstance(problem, Problem) else "other"].append(problem)
    lines, shown = [], 0
    for title, members in sorted(groups.items(), key=lambda item: -len(item[1])):
        lines.append(f"{title} ({len(members)}):")
        for problem in members[: max(0, min(limit - shown, per_kind or limit))]:
            lines.append(f"  {problem}")
            shown += 1
    if shown < len(problems):
        lines.append(f"... {len(problems) - shown} more; all {len(problems)} are listed in {full_list}")
    return "\n".join(lines)
