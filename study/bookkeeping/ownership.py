"""A study folder has one owner: the run that created it, or the one resume holding it.

A new study's folder is made with one `mkdir` (atomic: of two runs of one name, one makes
it and the other finds it there), and `study.lock` (host, pid, start time, command) is
linked into place whole (refused where one exists) and held until the run ends. A second run or resume exits 2
naming the holder. A lock left by a process that no longer runs on this host is taken
over, and the run says so; of two runs taking one stale lock over at once, one owns it (the
lock moved aside is checked to be the one judged stale). A run refreshes its lock's time while it holds it; a lock of
another host (a shared file system; a retried Kubernetes job on a new pod) is taken over
once it has not been refreshed for STALE_AFTER_S. A study whose run ends before anything is recorded
(bad data, say) leaves no folder behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time

from trainable.errors import UserError
from trainable.results.atomic_io import alive, host, remove_stale_temps, temp_path, write_json
from trainable.results.layout import STUDY_FILE
from trainable.results.storage import redact_argument

LOCK_FILE = "study.lock"
HEARTBEAT_S = 20  # a held lock's time is refreshed this often
STALE_AFTER_S = 120  # a lock of another host not refreshed for this long is a dead run's
PID_MAX = 2**22  # Linux's largest pid_max (kernel.pid_max); a lock's pid above it is no process's
HELD: list[StudyLock] = []  # this process's locks, released by release_all when the run ends


class StudyLock:
    """Ownership of one study folder (see the module's docstring)."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.path = os.path.join(directory, LOCK_FILE)
        self.created: list[str] = []  # folders this run made, deepest first
        self.held = False

    def create(self, resume_hint: str) -> StudyLock:
        """Make the study's folder (it must not exist yet) and take its lock."""
        missing, folder = [], os.path.abspath(self.directory)
        while not os.path.exists(folder):
            missing.append(folder)
            folder = os.path.dirname(folder)
        parent = os.path.dirname(os.path.abspath(self.directory))
        try:
            os.makedirs(parent, exist_ok=True)
        except OSError as err:
            raise UserError(
                f"{parent}: cannot hold studies ({not_made(err)}); give --storage a folder to write in."
            ) from None
        try:
            os.mkdir(self.directory)
        except FileExistsError:
            if not os.path.isdir(self.directory):
                raise UserError(f"{self.directory} is a file, not a study; pick another --name.") from None
            self.refuse_if_held()
            raise UserError(
                f"{self.directory} exists; pick another --name, or continue it with {resume_hint}."
            ) from None
        except OSError as err:
            raise UserError(f"{self.directory}: cannot make the study's folder ({not_made(err)}).") from None
        self.created = missing  # deepest first
        return self.take()

    def take(self) -> StudyLock:
        """Take the lock of an existing folder: refused while a live run holds it."""
        record = {
            "host": host(),
            "pid": os.getpid(),
            "since": time.strftime("%Y-%m-%d %H:%M:%S"),
            "argv": [redact_argument(a) for a in sys.argv],
        }
        for _ in range(3):  # a stale lock moved away by another taker meanwhile: try again
            written = temp_path(self.path)
            try:
                write_json(written, record)
            except OSError as err:
                raise UserError(f"{self.path}: cannot write the study's lock ({not_made(err)}).") from None
            try:
                os.link(written, self.path)  # atomic, and refused where the lock exists: never seen half-written
            except FileExistsError:
                self.take_over(self.refuse_if_held())
                continue
            finally:
                os.remove(written)
            self.held = True
            HELD.append(self)
            self.beating = threading.Event()
            threading.Thread(target=self.heartbeat, name="study-lock", daemon=True).start()
            for path in remove_stale_temps(self.directory):
                print(f"Removed {path}: a temporary file of a writer that no longer runs.")
            return self
        raise UserError(f"{self.path}: could not take the study's lock (other runs keep taking it over).")

    def holder(self) -> dict | None:
        """The lock's record, or None when there is no lock; a lock no run of this tool could have
        written (not JSON, no host or pid, an impossible pid, a folder) is refused as damaged."""
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return None
        except IsADirectoryError:
            self.damaged("a folder, not a file", f"rm -r {self.path}")
        try:
            record = json.loads(data)
        except ValueError:
            self.damaged(f"not a lock's JSON: {data[:40]!r}" if data.strip() else "empty")
        if not isinstance(record, dict) or not isinstance(record.get("host"), str):
            self.damaged(f"no host in {str(record)[:60]!r}")
        pid = record.get("pid")
        if type(pid) is not int or not 0 < pid <= PID_MAX:
            self.damaged(f"pid {pid!r} is no process id (1 to {PID_MAX})")
        return record

    def damaged(self, why: str, clear: str | None = None) -> None:
        raise UserError(
            f"{self.path} is damaged ({why}): no run of this tool wrote it. If no run is using "
            f"{self.directory}, remove it ({clear or f'rm {self.path}'}) and run the command again."
        )

    def refuse_if_held(self) -> dict | None:
        """Refuse while a live run holds the lock; else return the stale lock's record (None: no lock)."""
        holder = self.holder()
        if holder is None:
            return None
        if holder["host"] != host():
            try:
                silent = time.time() - os.stat(self.path).st_mtime
            except FileNotFoundError:
                return None
            if silent < -STALE_AFTER_S:  # hosts' clocks differ by seconds, not minutes
                when = time.strftime("%Y-%m-%d %H:%M", time.localtime(os.stat(self.path).st_mtime))
                self.damaged(f"refreshed at {when}, {-silent:.0f} s from now: a clock or a hand moved it")
            if silent < STALE_AFTER_S:
                raise UserError(
                    f"{self.directory} is in use by process {holder['pid']} on host {holder['host']} (since "
                    f"{holder.get('since')}; its lock was refreshed {max(silent, 0):.0f} s ago). Wait for it to end; a "
                    f"lock not refreshed for {STALE_AFTER_S} s is taken over."
                )
            return holder
        if alive(holder["pid"]):
            raise UserError(
                f"{self.directory} is in use by process {holder['pid']} on this host (since {holder.get('since')}: "
                f"{' '.join(map(str, holder.get('argv', [])))}); wait for it to end, or stop it."
            )
        return holder

    def take_over(self, judged: dict | None) -> None:
        """Move the lock judged stale away and say so. The move is a rename to a name of this
        process's own, and what was moved is then checked to be the lock judged: another taker
        may have replaced it by its own live lock meanwhile, which is put back (and then refused)."""
        if judged is None:
            return
        moved = f"{self.path}.stale.{os.getpid()}.{threading.get_ident()}"
        try:
            os.rename(self.path, moved)
        except FileNotFoundError:
            return
        try:
            with open(moved) as f:
                record = json.load(f)
        except (OSError, ValueError):
            record = None
        if record != judged:  # not the lock judged stale: another run's, taken meanwhile
            with contextlib.suppress(FileExistsError):
                os.link(moved, self.path)
            os.remove(moved)
            return
        os.remove(moved)
        print(
            f"Took over {self.path}: its process {judged.get('pid')} on {judged.get('host')} (since "
            f"{judged.get('since')}) no longer runs.",
            file=sys.stderr,
        )

    def heartbeat(self) -> None:
        """Refresh the lock's time while held: how another host tells a live run from a dead one."""
        while not self.beating.wait(HEARTBEAT_S):
            with contextlib.suppress(FileNotFoundError):
                os.utime(self.path)

    def release(self) -> None:
        """Give the lock up; a folder this run made and recorded nothing in is removed."""
        if self.held:
            self.beating.set()
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.path)
            self.held = False
        if self.created and not os.path.exists(os.path.join(self.directory, STUDY_FILE)):
            for folder in self.created:
                try:
                    os.rmdir(folder)
                except OSError:  # not empty: something else is there
                    break


def not_made(err: OSError) -> str:
    """Why a folder or file could not be made, in words: a file in the way, a read-only or full disk."""
    if isinstance(err, FileExistsError):
        return f"{err.filename} is a file, not a folder"
    if isinstance(err, NotADirectoryError):
        return "a file is in its path where a folder should be"
    return f"{err.strerror or err}{': ' + str(err.filename) if err.filename else ''}"


def release_all() -> None:
    while HELD:
        HELD.pop().release()
