"""A full disk as one paragraph: the study stops with what filled and how to go on, never a
traceback; everything finished stays where it is (study.tuning.tune_setup.repair_torn_state
mends what a full disk tore, on --resume)."""

from __future__ import annotations

import errno
import os
import shutil
import tempfile

from study.bookkeeping.plan import Plan
from trainable.errors import UserError

LOW = 16 * 2**20  # bytes free under which a disk counts as full


def no_space(err: BaseException) -> BaseException | None:
    """The ENOSPC error in the exception's chain (its causes and the exceptions it interrupted), or None."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and (err.errno == errno.ENOSPC or "No space left on device" in str(err)):
            return err
        err = err.__cause__ or err.__context__
    return None


def full_disks(folders: list[str]) -> list[tuple[str, int]]:
    """(folder, bytes free) of each existing local folder whose disk has under LOW bytes free."""
    found = []
    for folder in dict.fromkeys(folders):
        if folder and os.path.isdir(folder) and (free := shutil.disk_usage(folder).free) < LOW:
            found.append((folder, free))
    return found


def disk_full_error(err: BaseException, plan: Plan, cache_dir: str) -> UserError | None:
    """The paragraph for a study stopped by a full disk (ENOSPC in the error's chain, or a
    disk of the study's under LOW free when it stopped), or None for any other error."""
    full, cause = full_disks([plan.directory, cache_dir, tempfile.gettempdir()]), no_space(err)
    if not (cause or full):
        return None
    where = "; ".join(f"{folder} ({free:,} bytes free)" for folder, free in full) or "a disk the study writes to"
    writing = getattr(cause, "filename", None)
    return UserError(
        f"the study stopped: no space left on the disk holding {where}{f' (writing {writing})' if writing else ''}. "
        f"What finished is kept. Free some space, then run: python -m study.run --resume {plan.location}"
    )
