"""Files written whole or not at all, and JSON any parser reads.

Every file the project writes goes to a temporary file in the same folder, is flushed to
disk (fsync) and renamed over the target (`os.replace` is atomic on one file system), and the
folder is fsynced so that the rename itself survives a power cut: a killed writer leaves the
old file or the new one, never half of either. Temporary files are
named `.NAME.HOST.PID.tmp`: `remove_stale_temps` deletes those of dead writers on this host.
JSON is strict: NaN and infinities are written as null (jq and JavaScript reject them).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import socket
from collections.abc import Callable, Iterator
from typing import IO, Any

import numpy as np

TEMP = re.compile(r"^\.(?P<name>.+)\.(?P<host>[^.]+)\.(?P<pid>\d+)\.tmp$")


def temp_path(path: str) -> str:
    folder, name = os.path.split(os.path.abspath(path))
    return os.path.join(folder, f".{name}.{host()}.{os.getpid()}.tmp")


def host() -> str:
    return socket.gethostname().split(".")[0] or "host"  # no dot: TEMP's fields are dot-separated


@contextlib.contextmanager
def replacing(path: str) -> Iterator[str]:
    """A temporary path beside `path`; what the block writes there is fsynced and replaces `path`
    when the block ends without an error, and is removed when it does not."""
    tmp = temp_path(path)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        sync_folder(path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)


@contextlib.contextmanager
def atomic(path: str, mode: str = "w") -> Iterator[IO]:
    """A file open for writing in place of `path` (replacing)."""
    with replacing(path) as tmp, open(tmp, mode) as f:
        yield f


def sha256(path: str) -> str:
    """The file's sha256, hex, read a megabyte at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def sync_folder(path: str) -> None:
    """fsync the folder holding `path`: its entries (a rename into it) reach the disk."""
    fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_with(path: str, save: Callable[[str], Any]) -> None:
    """`save(temporary path)` (torch.save, savefig, to_csv, ...), then the replacing."""
    with replacing(path) as tmp:
        save(tmp)


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # a spreadsheet runs a cell starting so as a formula


def write_csv(path: str, table) -> None:
    """A pandas table as CSV, atomically; a text cell a spreadsheet would run as a formula (a
    file or experiment name starting with = + - @) written as text, with a leading apostrophe."""

    def as_text(value):
        if not isinstance(value, str) or not value.startswith(FORMULA_START):
            return value
        try:
            float(value)  # a number written as text ("-0.5") runs nothing
        except ValueError:
            return f"'{value}"
        return value

    safe = table.copy()
    for column in safe.select_dtypes(include=["object", "string"]).columns:
        safe[column] = safe[column].map(as_text)
    write_with(path, lambda tmp: safe.to_csv(tmp, index=False))


def write_text(path: str, text: str) -> None:
    with atomic(path) as f:
        f.write(text)


def strict(value: Any) -> Any:
    """`value` with every non-finite float (Python or numpy) as None and numpy scalars and
    arrays as plain Python: what strict JSON can hold."""
    if isinstance(value, dict):
        return {k: strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict(v) for v in value]
    if isinstance(value, np.ndarray):
        return strict(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def dumps(value: Any, **kwargs: Any) -> str:
    """Strict JSON text (`allow_nan=False` proves no NaN is left)."""
    return json.dumps(strict(value), allow_nan=False, **kwargs)


def write_json(path: str, value: Any, **kwargs: Any) -> None:
    write_text(path, dumps(value, **kwargs) + "\n")


def read_json(path: str) -> Any:
    """The JSON at `path`; a file that does not parse (torn by a kill, edited by hand) is a
    UserError naming it."""
    from trainable.errors import UserError

    with open(path) as f:
        text = f.read()
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise UserError(
            f"{path} is not valid JSON ({err.msg} at line {err.lineno}, column {err.colno}; {len(text)} bytes): "
            "cut short by a kill, or edited by hand. Restore it from a copy, or start the study afresh."
        ) from None


def remove_stale_temps(folder: str) -> list[str]:
    """Delete this host's temporary files whose writer is no longer running (recursively);
    the paths removed."""
    removed = []
    for parent, _, names in os.walk(folder):
        for name in names:
            match = TEMP.match(name)
            if match and match["host"] == host() and not alive(int(match["pid"])):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(os.path.join(parent, name))
                    removed.append(os.path.join(parent, name))
    return removed


def alive(pid: int) -> bool:
    """Whether a process of this id runs on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it runs, as another user
        return True
    return True
