"""A spawned process that tries to create a study folder and holds it a while: kept apart
from the test module so the child imports the lock alone (not torch), and starts fast."""

import time

from study.bookkeeping.ownership import StudyLock
from trainable.errors import UserError


def take_and_hold(directory: str, queue) -> None:
    try:
        StudyLock(directory).create("--resume it")
        queue.put("took it")
        time.sleep(3)  # held while the other one tries
    except UserError as err:
        queue.put(str(err))
