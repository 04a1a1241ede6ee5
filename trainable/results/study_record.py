"""study.json's schema: what a study records once, before its first trial, about how it was
made (study.bookkeeping.provenance writes it) and what every reader of a results directory needs of it
(the report, analysis.results, --resume). Typed and versioned; read only through
`read_study_record`, which refuses a file of another version, a missing or unknown key, or a
value of the wrong type, naming the file and the key. Standard library only: the report reads
it without torch or Ray.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from trainable.errors import UserError
from trainable.results.atomic_io import read_json, write_json
from trainable.results.layout import STUDY_FILE

VERSION = 1  # raised when a field changes meaning or type; a reader refuses any other


@dataclass(frozen=True)
class GridFile:
    """The grid file as it was when the study started (--resume refuses a changed one)."""

    path: str  # a named grid's name, or the file's path
    text: str


@dataclass(frozen=True)
class SearchRecord:
    """A search (study.sources.SearchSource): what searched it, how many trials, over which keys."""

    kind: str  # random | optuna
    num_samples: int
    searched: list[str]  # the keys searched (the rest fixed)
    warm_starts: int  # the paper's configurations tried first


@dataclass(frozen=True, kw_only=True)
class StudyRecord:
    # how it was made
    command: list[str]  # argv as run, credentials redacted
    python: str
    platform: str
    packages: dict[str, str | None]  # name -> version installed (None: not installed)
    git_revision: str | None  # the project's commit, '+dirty' with local changes
    args: dict[str, Any]  # the options, flat, credentials redacted (study.spec.StudySpec.record)
    grid: str  # the grid's label: a built-in name or the grid file's path
    grid_file: GridFile
    trials: list[dict[str, Any]]  # a grid's planned trial configs; a search's fixed settings
    reference_config: dict[str, Any]  # the paper's experiment 1 at this study's settings
    weights_labels: dict[str, str]  # --weights value -> what the report calls it
    weights_ids: dict[str, str]  # --weights value -> its identity (trainable.model.weights_id)
    # the data
    data_root: str
    data_fingerprint: str  # the images' content (--resume refuses changed images)
    data_files: dict[str, str]  # path under data_root -> sha256
    data_layout: str
    classes: list[str]
    split_sizes: dict[str, int]
    class_counts: dict[str, dict[str, int]]
    skipped_files: list[str]
    converted_files: list[str]
    duplicate_files: list[Any]
    face_detection: dict[str, Any] | None  # trainable.data.face_detection's record; None without detection
    split_paths: dict[str, list[str]]
    split_labels: dict[str, list[int]]
    split_id: dict[str, str]  # trainable.results.layout.split_identity
    split_groups: dict[str, list[str]] | None = None  # who each image shows, with --group-by
    search: SearchRecord | None = None  # None for a grid
    expansions: dict[str, Any] = field(default_factory=dict)  # a search's named values (study.grids.Grid)
    version: int = VERSION

    @property
    def select(self) -> str:
        return self.args["select"]

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def kinds(hint: Any) -> tuple[type, ...]:
    """The JSON kinds a field's type allows: `dict[str, int] | None` -> (dict, NoneType); a record
    (GridFile, SearchRecord) is a JSON object."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return tuple(k for arm in typing.get_args(hint) for k in kinds(arm))
    if hint is Any:
        return (object,)
    if hint is float:
        return (int, float)
    if dataclasses.is_dataclass(hint):
        return (dict,)
    return (typing.get_origin(hint) or hint,)


def record_of(hint: Any) -> type | None:
    """The record class a field holds (GridFile for `GridFile | None`), None for plain JSON."""
    arms = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    return next((arm for arm in arms if dataclasses.is_dataclass(arm)), None)


def typed(cls: type, value: Any, source: str, where: str = "") -> Any:
    """`value` (parsed JSON) as a `cls`, its nested records too; a UserError naming `source` and every
    key missing, unknown or of the wrong type (at `where`, for a nested record)."""
    if not isinstance(value, dict):
        raise UserError(f"{source} holds {type(value).__name__}, not a study record (a JSON object).")
    fields, hints = {f.name: f for f in dataclasses.fields(cls)}, typing.get_type_hints(cls)
    missing = [k for k, f in fields.items() if k not in value and f.default is f.default_factory is dataclasses.MISSING]
    unknown = sorted(set(value) - set(fields))
    wrong = [
        f"{where}{k} ({type(v).__name__}, expected {hints[k]})"
        for k, v in value.items()
        if k in fields
        and not (isinstance(v, kinds(hints[k])) and not (isinstance(v, bool) and bool not in kinds(hints[k])))
    ]
    if missing or unknown or wrong:
        said = [f"missing {', '.join(where + k for k in missing)}" if missing else ""]
        said += [
            f"unknown {', '.join(where + k for k in unknown)}" if unknown else "",
            f"wrong type: {'; '.join(wrong)}" if wrong else "",
        ]
        raise UserError(f"{source} is not a study record: {'; '.join(s for s in said if s)}. Restore it from a copy.")
    nested = {
        k: typed(inner, v, source, f"{where}{k}.")
        for k, v in value.items()
        if (inner := record_of(hints[k])) is not None and v is not None
    }
    return cls(**{**value, **nested})


def study_record(value: Any, source: str = STUDY_FILE) -> StudyRecord:
    """A parsed study.json as a StudyRecord, typed to its leaves; a UserError naming `source` and the
    key when it is not one of this version."""
    if isinstance(value, dict) and value.get("version") != VERSION:
        raise UserError(
            f"{source} is a study record of version {value.get('version')!r}; this version of the project reads "
            f"version {VERSION}. Run the study again with this version, or read it with the one that wrote it."
        )
    return typed(StudyRecord, value, source)


def read_study_record(directory: str) -> StudyRecord | None:
    """A results directory's study.json, checked; None where there is none (Ray's trials alone)."""
    path = os.path.join(directory, STUDY_FILE)
    if not os.path.exists(path):
        return None
    return study_record(read_json(path), path)


def write_study_record(directory: str, record: StudyRecord) -> str:
    path = os.path.join(directory, STUDY_FILE)
    write_json(path, record.to_json(), indent=1)
    return path
