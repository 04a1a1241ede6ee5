"""Quiet by default: other tools' lines a user has nothing to act on are left out of a study's
output; `-v` shows every one. What is left out, and why:

- MLflow's INFO lines (creating its database tables, validating the input example) and its
  artifact download bars: MLFLOW_LOGGING_LEVEL=WARNING, MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR=false;
- MLflow's warning that a Python object is serialized with CloudPickle: the model is logged
  so on purpose (trainable.serving.mlflow_model), and the study's own line says how to load it;
- MLflow's "Successfully registered model" and "Created version" lines: the study's own line
  names the registered model;
- Ray core's error line that W&B's logging actor has constructor arguments in the object store
  (ray-project/ray#53727): Ray's WandbLoggerCallback makes the actor so, and nothing is lost;
- the tracebacks of Ray Tune's error lines: each stays one line, with its exception's last line
  (a failed trial's traceback is in its error.txt, and its progress line says why it failed).

Ray core writes its lines to file descriptor 2 from C++, below Python's logging: those are
filtered by line, through a pipe read by a thread, for the rest of the process. A warning or an
error not listed here is shown as it is."""

from __future__ import annotations

import atexit
import logging
import os
import re
import sys
import threading

from trainable.results.storage import redact

NOISE = (
    re.compile(r"'_WandbLoggingActor' .* has constructor arguments in the object store"),
    re.compile(r"^Successfully registered model '"),
    re.compile(r"^Created version '\d+' of model '"),
)
PICKLED_MODEL = "serialized using CloudPickle"  # MLflow's warning, logged by mlflow.pyfunc


def quiet_tools(verbose: bool) -> None:
    """Before MLflow loads: its INFO lines, bars and CloudPickle warning only with -v."""
    if verbose:
        return
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    logging.getLogger("mlflow.pyfunc").addFilter(lambda record: PICKLED_MODEL not in record.getMessage())


class StderrFilter:
    """File descriptor 2 through a pipe; a thread copies each line that matches none of `noise`
    to the original standard error. Installed after Ray has started its local processes, so
    that none of them inherits the pipe; undone at exit, after the last lines are copied."""

    installed: StderrFilter | None = None

    def __init__(self, noise: tuple[re.Pattern, ...] = NOISE) -> None:
        self.noise = noise
        sys.stderr.flush()
        self.original = os.dup(2)
        read, write = os.pipe()
        os.dup2(write, 2)
        os.close(write)
        self.thread = threading.Thread(target=self.copy, args=(read,), name="stderr-filter", daemon=True)
        self.thread.start()
        atexit.register(self.stop)

    def copy(self, read: int) -> None:
        with os.fdopen(read, "rb") as pipe:
            for line in pipe:
                if not any(p.search(line.decode(errors="replace")) for p in self.noise):
                    os.write(self.original, line)

    def stop(self) -> None:
        """Standard error back to where it was; the lines still in the pipe copied first."""
        sys.stderr.flush()
        os.dup2(self.original, 2)  # the pipe's last writer closed: the thread reads to its end
        self.thread.join(timeout=5)
        StderrFilter.installed = None


def filter_stderr(verbose: bool) -> None:
    """Ray core's noise (NOISE) off standard error for the rest of the process, unless -v."""
    if not verbose and StderrFilter.installed is None:
        StderrFilter.installed = StderrFilter()


class OneLine(logging.Filter):
    """A Ray Tune error as its message and its exception's last line, without the traceback
    (a failed trial's is in its error.txt; the progress line says why it failed)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("ray.tune") and record.exc_info:
            error = record.exc_info[1]
            text = str(error).strip().splitlines()[-1:] if error is not None else []
            why = f"{type(error).__name__}: {text[0]}" if text else ""
            said = f"{record.getMessage().rstrip(': ')}: {why}".rstrip(": ")
            record.msg, record.args = redact(said), None  # a URI's credentials, should one hold any
            record.exc_info = record.exc_text = record.stack_info = None
        return True


def short_tracebacks(verbose: bool) -> None:
    """After Ray loads, unless -v: Ray Tune's errors a line each (OneLine)."""
    if not verbose:
        for handler in logging.getLogger("ray").handlers:
            handler.addFilter(OneLine())
