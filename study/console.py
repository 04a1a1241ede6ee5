"""What a running study prints: one line per trial event (start, end, error) with its
name, state, epoch and validation scores, and where the study stands (trials done /
running / pending, elapsed, an estimate of what is left). On a terminal, a compact table
of the running trials is also redrawn in place, at most once a second, as epochs come
in. Tune's own output (status tables, per-trial result boxes) is off unless `-v`."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from ray import tune

from trainable.records import is_final, reported


def clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Progress(tune.Callback):
    """Tune callback that prints the study's progress (see the module docstring)."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.started = time.monotonic()
        self.last: dict[str, dict[str, Any]] = {}  # trial name -> its latest result
        self.ended: dict[str, str] = {}  # trial name -> how it ended
        self.running: set[str] = set()
        self.drawn = 0  # table lines on screen below the event lines (terminal only)
        self.redrawn_at = 0.0
        self.counted = False

    @property
    def stream(self) -> TextIO:  # looked up each time: the callback is pickled with the Tuner
        return sys.stdout

    @property
    def live(self) -> bool:
        return self.stream.isatty()

    def setup(self, **info: Any) -> None:
        self.started = time.monotonic()

    def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
        """Once, on the first step: trials a resumed study had already finished count as done."""
        if not self.counted:
            self.counted = True
            self.ended.update({str(t): "earlier" for t in trials if t.status in ("TERMINATED", "ERROR")})

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.running.add(str(trial))
        self.event(trial, "started")

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        self.last[str(trial)] = result
        if self.live and time.monotonic() - self.redrawn_at > 1:
            self.redraw()

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        result = self.last.get(str(trial), {})
        ended = result.get(reported.stopped_by) or ("finished" if is_final(result) else "asha")
        self.end(trial, ended)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.end(trial, "error")

    def end(self, trial: Any, ended: str) -> None:
        self.running.discard(str(trial))
        self.ended[str(trial)] = ended
        self.event(trial, ended)

    def event(self, trial: Any, what: str) -> None:
        self.clear()
        result = self.last.get(str(trial), {})
        scores = ""
        if reported.epoch in result:
            scores = epoch_line(result)
        print(f"[{clock(time.monotonic() - self.started)}] {str(trial):<44} {what:<14} {scores}", file=self.stream)
        print(f"    {self.summary()}", file=self.stream, flush=True)
        if self.live:
            self.redraw()

    def summary(self) -> str:
        done, running = len(self.ended), len(self.running)
        pending = self.total - done - running
        elapsed = time.monotonic() - self.started
        left = f", about {clock(elapsed / done * (self.total - done))} left" if done else ""
        return f"{done}/{self.total} done, {running} running, {pending} pending; {clock(elapsed)} elapsed{left}"

    def clear(self) -> None:
        if self.live and self.drawn:
            self.stream.write(f"\x1b[{self.drawn}F\x1b[J")  # up to the table's first line, erase below
            self.drawn = 0

    def redraw(self) -> None:
        """The running trials' latest epoch, below the event lines (terminal only)."""
        self.clear()
        lines = []
        for name in sorted(self.running):
            r = self.last.get(name, {})
            scores = epoch_line(r) if r else ""
            lines.append(f"  running {name:<44} {scores}")
        self.stream.write("".join(line + "\n" for line in lines))
        self.stream.flush()
        self.drawn = len(lines)
        self.redrawn_at = time.monotonic()


def epoch_line(record: dict) -> str:
    epoch, loss, acc = (record[k] for k in (reported.epoch, reported.val_loss, reported.val_acc))
    return f"epoch {epoch:>3}  val loss {loss:.3f}  val acc {acc:.3f}"
