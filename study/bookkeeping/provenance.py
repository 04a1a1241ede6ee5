"""What a results directory records once about how it was made."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
from typing import Any

from trainable.results.storage import redact_argument
from trainable.results.study_record import VERSION, study_record, write_study_record

PACKAGES = (
    "torch",
    "torchvision",
    "facenet-pytorch",
    "ray",
    "numpy",
    "pillow",
    "scikit-learn",
    "pandas",
    "opencv-python-headless",
    "matplotlib",
)


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_revision() -> str | None:
    """The project's commit, with '+dirty' when the work tree has changes."""
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], cwd=here, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return rev + ("+dirty" if dirty else "")


def write_provenance(directory: str, argv: list[str], **facts: Any) -> str:
    """Write study.json (trainable.results.study_record): the command with the arguments `study.run.main`
    received, versions, git revision and `facts`, checked against its schema; return its path."""
    os.makedirs(directory, exist_ok=True)
    record = {
        "version": VERSION,
        "command": [sys.executable, "-m", "study.run", *map(redact_argument, argv)],
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": package_versions(),
        "git_revision": git_revision(),
        **facts,
    }
    plain = lambda value: dataclasses.asdict(value) if dataclasses.is_dataclass(value) else str(value)  # noqa: E731
    return write_study_record(directory, study_record(json.loads(json.dumps(record, default=plain))))
