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
    grid_file: dict[str, str]  # {"path", "text"}: the grid file as it was (--resume refuses a changed one)
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
    # a search (study.run.search_source); None for a grid
    search: dict[str, Any] | None = None
    expansions: dict[str, Any] = field(default_factory=dict)  # a search's named values (study.grids.Grid)
    version: int = VERSION

    @property
    def select(self) -> str:
        return self.args["select"]

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


FIELDS = {f.name: f for f in dataclasses.fields(StudyRecord)}
TYPES = typing.get_type_hints(StudyRecord)


def kinds(hint: Any) -> tuple[type, ...]:
    """The JSON kinds a field's type allows: `dict[str, int] | None` -> (dict, NoneType)."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return tuple(k for arm in typing.get_args(hint) for k in kinds(arm))
    if hint is Any:
        return (object,)
    if hint is float:
        return (int, float)
    return (typing.get_origin(hint) or hint,)


def study_record(value: Any, source: str = STUDY_FILE) -> StudyRecord:
    """A parsed study.json as a StudyRecord; a UserError naming `source` and the key when it
    is not one of this version."""
    if not isinstance(value, dict):
        raise UserError(f"{source} holds {type(value).__name__}, not a study record (a JSON object).")
    if value.get("version") != VERSION:
        raise UserError(
            f"{source} is a study record of version {value.get('version')!r}; this version of the project reads "
            f"version {VERSION}. Run the study again with this version, or read it with the one that wrote it."
        )
    missing = [k for k, f in FIELDS.items() if k not in value and f.default is f.default_factory is dataclasses.MISSING]
    unknown = sorted(set(value) - set(FIELDS))
    wrong = [
        f"{k} ({type(v).__name__}, expected {TYPES[k]})"
        for k, v in value.items()
        if k in FIELDS
        and not (isinstance(v, kinds(TYPES[k])) and not (isinstance(v, bool) and bool not in kinds(TYPES[k])))
    ]
    if missing or unknown or wrong:
        said = [f"missing {', '.join(missing)}" if missing else "", f"unknown {', '.join(unknown)}" if unknown else ""]
        said.append(f"wrong type: {'; '.join(wrong)}" if wrong else "")
        raise UserError(f"{source} is not a study record: {'; '.join(s for s in said if s)}. Restore it from a copy.")
    return StudyRecord(**value)


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
