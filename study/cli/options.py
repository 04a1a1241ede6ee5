"""study.run's command line: the options it parses, and the StudySpec they give. A resumed
study's spec is rebuilt from its study.json, merged field by field with the options given again
(runtime ones may change, any other must match)."""

from __future__ import annotations

import argparse
import os
from typing import Any

from study.spec import StudySpec, absolute, check_recorded, is_runtime
from trainable.cli_options import add_options, prog
from trainable.data.dataset_options import DataOptions
from trainable.errors import UserError, parse_printable
from trainable.results import storage as store
from trainable.results.atomic_io import read_json
from trainable.results.layout import STUDY_FILE
from trainable.results.study_record import study_record


def parser() -> argparse.ArgumentParser:
    """study.run's command line. An option left out is absent from what it parses (no
    defaults): vars(parse_args(argv)) is what argv sets, the defaults live in StudySpec."""
    p = argparse.ArgumentParser(prog=prog("study.run"), description="Run a face-age fine-tuning study on Ray Tune.")
    add_options(p, DataOptions, defaults=False)
    add_options(p, StudySpec, defaults=False)
    return p


def given_options(argv: list[str]) -> dict[str, Any]:
    """The options `argv` sets (argparse exits 2 with its usage on a malformed command line)."""
    return vars(parse_printable(parser(), argv))


def study_spec(given: dict[str, Any]) -> StudySpec:
    """The spec of this run: from the options given, or (--resume, --resume-existing on a
    study that exists) the recorded study's, with what this run may change."""
    if given.get("resume_existing") and not given.get("resume"):
        given = {**given, "resume": existing_study(StudySpec.from_options(given))}
    if given.get("resume"):
        return resumed_spec(given)
    return StudySpec.from_options(given)


def existing_study(spec: StudySpec) -> str | None:
    """--resume-existing: the study --name names under --storage, if it has a study.json."""
    if not spec.name:
        raise UserError("--resume-existing resumes the study --name names; give --name.")
    location = store.join(spec.storage, spec.name)
    if not store.exists(store.join(location, STUDY_FILE)):
        return None
    print(f"{store.redact(location)} exists: resuming it (--resume-existing).")
    return location


def recorded_options(resume: str) -> tuple[str, dict[str, Any]]:
    """(the study's location, the options its study.json records, at its current location)."""
    if store.is_uri(resume):  # its study.json, copied to the study's local mirror
        directory = resume.rstrip("/")
        path = store.join(directory, STUDY_FILE)  # not a local file: the error below, unless it is stored
        if store.exists(path):
            path = store.download(path, os.path.join(store.mirror(directory), STUDY_FILE))
    else:
        directory = os.path.abspath(resume)
        path = os.path.join(directory, STUDY_FILE)
    if not os.path.isfile(path):
        raise UserError(f"--resume {resume}: no {STUDY_FILE} there; is it a study's results directory?")
    recorded = dict(check_recorded(study_record(read_json(path), path).args, path))
    parent, name = store.split(directory)  # a URI's parent (with its query), or the path's
    recorded.update(storage=parent if store.is_uri(directory) else os.path.dirname(directory), name=name)
    return directory, recorded


def resumed_spec(given: dict[str, Any]) -> StudySpec:
    """The recorded study's spec with this run's runtime options. An option given that differs
    from the recorded one is refused; credentials, never recorded, must be given again."""
    directory, recorded = recorded_options(given["resume"])
    for key, value in recorded.items():
        if isinstance(value, str) and f"://{store.SECRET}@" in value and key not in given:
            option, variables = f"--{key.replace('_', '-')}", store.credentials_for(value)
            if variables and all(os.environ.get(v) for v in variables):  # given by environment this time
                recorded[key] = value.replace(f"{store.SECRET}@", "", 1)
                continue
            raise UserError(
                f"--resume {store.redact(directory)}: the study's {option} {value} held credentials, which are "
                f"not recorded; pass {option} again, or set {' and '.join(variables) or 'them in the environment'}."
            )
    fixed = {k: v for k, v in recorded.items() if not is_runtime(k)}
    study = StudySpec.from_options(fixed).record()
    differ = [
        f"--{key.replace('_', '-')} {value!r} (the study has {study[key]!r})"
        for key, value in given.items()
        if not is_runtime(key) and not same(absolute(key, value), study[key])
    ]
    if differ:
        raise UserError(
            f"--resume {directory} continues the study with the options it started with, and "
            f"these differ: {'; '.join(differ)}. Drop them, or start a new study with --name."
        )
    return StudySpec.from_options({**fixed, **given, "resume": directory})


def same(given: Any, recorded: Any) -> bool:
    """A given value is the recorded one (a recorded value's credentials are redacted)."""
    if isinstance(given, str) and isinstance(recorded, str):
        return store.redact(given) == recorded
    if isinstance(given, list | tuple) and isinstance(recorded, list | tuple):
        return list(given) == list(recorded)
    return given == recorded
