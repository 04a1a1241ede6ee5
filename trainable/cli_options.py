"""Command-line options declared as data: the fields of a frozen dataclass, each with its
help (and type, choices, metavar) in the field's metadata, become a parser's options. The
dataclass is then what a program passes around, validated once, instead of a Namespace."""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
from typing import Any


def option(
    default: Any = None,
    help: str = "",
    *,
    type: type | None = None,
    choices: tuple | None = None,
    metavar: str | None = None,
    flags: tuple[str, ...] = (),
    runtime: bool = False,
    path: bool = False,
) -> Any:
    """A dataclass field that is also a command-line option (--NAME, or `flags`). A bool
    default makes a switch, a tuple default a repeatable option. `runtime`: where and how this
    run happens, free to change when a study resumes (every other option is part of the study).
    `path`: recorded as an absolute path."""
    meta = dict(help=help, type=type, choices=choices, metavar=metavar, flags=flags, runtime=runtime, path=path)
    return dataclasses.field(default=default, metadata=meta)


def options(cls: type) -> list[dataclasses.Field]:
    """The fields of `cls` that are command-line options."""
    return [f for f in dataclasses.fields(cls) if "help" in f.metadata]


def flag(field: dataclasses.Field) -> str:
    return f"--{field.name.replace('_', '-')}"


def add_options(parser: argparse.ArgumentParser, cls: type, *, defaults: bool = True) -> None:
    """One option per field of `cls`, its default in its help. Without `defaults`, an option
    left out is absent from the parsed Namespace: `vars(parse_args(argv))` is then exactly what
    `argv` sets (what a resumed study compares with what it recorded)."""
    for field in options(cls):
        meta, default = field.metadata, field.default
        kwargs: dict[str, Any] = {"help": meta["help"]}
        if default is not None and default is not False and default != ():
            kwargs["help"] += f" (default {default})"
        if isinstance(default, bool):
            kwargs["action"] = "store_true"
        elif isinstance(default, tuple):
            kwargs.update(action="append", metavar=meta["metavar"])
        else:
            value_type = meta["type"] or (type(default) if default is not None else str)
            kwargs.update(type=value_type, choices=meta["choices"], metavar=meta["metavar"])
        kwargs["default"] = (
            (list(default) if isinstance(default, tuple) else default) if defaults else argparse.SUPPRESS
        )
        parser.add_argument(*(meta["flags"] or (flag(field),)), dest=field.name, **kwargs)


def prog(module: str) -> str:
    """A command's name in its usage and errors: the console script it was started as
    (face-age-study, ...: pyproject.toml's [project.scripts]), else `python -m MODULE`."""
    import sys

    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return name if name.startswith("face-age-") else f"python -m {module}"


def unset(default: Any, meaning: str) -> str:
    """The default column of an option whose value is unset (None, off, none given): what that
    means, as its help says it ("default: the grid file's"), else off or none."""
    said = re.search(r"default:? ", meaning)
    if not said:
        return "off" if default is False else "none"
    depth, text = 0, ""
    for char in meaning[said.end() :]:  # to a ';' or the ')' that closes the phrase's own bracket
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == ";" or depth < 0:
            break
        text += char
    return text.strip()


def markdown_table(*classes: type) -> str:
    """The options of `classes` as a Markdown table (option, meaning, default): the
    documentation's options page, generated so that it says what the parser does."""
    rows = ["| option | meaning | default |", "|---|---|---|"]
    for cls in classes:
        for field in options(cls):
            meta, default = field.metadata, field.default
            name = ", ".join(meta["flags"] or (flag(field),))
            if meta["choices"]:
                name += " {" + ",".join(map(str, meta["choices"])) + "}"
            elif meta["metavar"] and not isinstance(default, bool):
                name += f" {meta['metavar']}"
            meaning = meta["help"].replace("|", "\\|")
            shown = f"`{default}`" if default not in (None, False, ()) else unset(default, meaning)
            if isinstance(default, tuple) and "repeatable" not in meaning:
                meaning += " (repeatable)"
            rows.append(f"| `{name}` | {meaning} | {shown} |")
    return "\n".join(rows)
