"""Ctrl-C and SIGTERM (a batch system, Kubernetes, `kill`) stop a study the same way: Tune ends
the running trials keeping their last checkpoints, and the study says how far it got and the
command that continues it, exiting 128 + the signal (130, 143) so a batch job counts it failed.
Ray's own handlers (its sys.exit during ray.init, a stack dump on SIGTERM after) are kept out of
the driver: study.tuning.ray_internals.keep_sigterm_handler, and catch_stops after ray.init."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from typing import Any

EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}  # 128 + the signal, as a shell reports it
received: list[int] = []  # the stop signals this process got


class Stopped(Exception):
    """The study stopped on a signal (or Tune ended its trials unfinished): `paragraph` says so."""

    def __init__(self, paragraph: str, code: int) -> None:
        super().__init__(paragraph)
        self.code = code


def on_stop(signum: int, frame: Any) -> None:
    received.append(signum)
    handler = signal.getsignal(signal.SIGINT)
    if callable(handler) and handler is not on_stop:  # Tune's, while trials run: it ends them, state kept
        handler(signal.SIGINT, frame)
    else:
        raise KeyboardInterrupt


def catch_stops() -> None:
    """SIGINT and SIGTERM to on_stop: at the start, and again after ray.init (which puts Ray's
    failure handler on SIGTERM)."""
    for signum in EXIT:
        signal.signal(signum, on_stop)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Stop signals inside only recorded, and raised (KeyboardInterrupt) after: Ray's start, where
    an exception raised by a handler can land in a fork callback and be lost (Python prints it as
    ignored and the study runs on)."""
    for signum in EXIT:
        signal.signal(signum, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        catch_stops()
    if received:
        raise KeyboardInterrupt


def exit_code() -> int:
    return EXIT.get(received[-1] if received else signal.SIGINT, 130)


def stopped(resume: str | None, finished: str = "") -> Stopped:
    """The paragraph for a study stopped by a signal: how far it got, and how to continue it
    (`resume`: its --resume argument, None when nothing was recorded yet)."""
    name = signal.Signals(received[-1]).name if received else "SIGINT"
    said = f"Stopped by {name}{' with ' + finished if finished else ''}; "
    if resume is None:
        said += "nothing was recorded yet: run the command again."
    else:
        said += f"nothing finished is lost. Continue it with: python -m study.run --resume {resume}"
    return Stopped(said, exit_code())
