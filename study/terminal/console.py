"""What a running study prints: one line per trial event (start, end, error) with its
name, state, epoch k/max and validation scores, and where the study stands (trials done /
running / pending, elapsed, an estimate of what is left), and why a trial failed. On a
terminal, rich draws below those lines the study's trials and epochs done of the known
maximum with the time left, and a bar per running trial (epoch k/max, its last validation
scores); anywhere else (a log file, a batch job) each running trial gets a plain line at
least every `every` seconds (--progress-every), saying how long its epoch has been under way
(the first too), never an escape code. Tune's own output
(status tables, per-trial result boxes) is off unless `-v`.

The time left is counted in epochs: each trial not ended has its max_epochs left, times
the share of max_epochs the ended trials ran (early stopping and ASHA end most trials
early), minus the epochs it has run. Until a trial ends nothing says how early they stop, and
the line gives a range: from each trial stopping its patience after its best epoch so far (a
trial not started after its first patience + 1) to each at its max_epochs. A running trial's
epoch counts down from its last report; each epoch takes what the epochs of its kind took so far (the same freezing,
augmentation, batch size and precisions); each trial not started adds the ended trials' mean
time outside epochs (start-up, loading its inputs, scoring); and the trials share the most
slots seen running at once. A trial of a kind no epoch has timed yet is not counted, and the
line says how many there are: kinds differ a hundredfold (a cached trunk against the whole
network), so no other kind's pace stands in for theirs. Trials Tune has not made yet (a
search's) take all trials' mean pace."""

from __future__ import annotations

import contextlib
import sys
import time
from statistics import fmean
from typing import Any, TextIO

from ray import tune

from trainable.results.records import is_final, reported

now = time.monotonic  # the clock, one name for tests to set
PACE_KEYS = ("freeze", "augmentation", "augment_views", "batch_size", "precision", "train_precision")  # a kind


def clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Progress(tune.Callback):
    """Tune callback that prints the study's progress (see the module docstring)."""

    def __init__(self, total: int, every: float = 30.0) -> None:
        self.total, self.every = total, every
        self.started = now()
        self.said_at: dict[str, float] = {}  # running trial's name -> when its last line was printed
        self.last: dict[str, dict[str, Any]] = {}  # trial name -> its latest result
        self.ended: dict[str, str] = {}  # trial name -> how it ended
        self.running: set[str] = set()
        self.max_epochs: dict[str, int] = {}  # trial name -> its max_epochs, for every trial Tune has made
        self.kind: dict[str, str] = {}  # trial name -> its kind (PACE_KEYS)
        self.patience: dict[str, int] = {}  # trial name -> its patience (the patience stop rule), else 0
        self.best_epoch: dict[str, int] = {}  # running trial -> its best epoch so far (lowest val loss)
        self.heard: dict[str, float] = {}  # running trial -> when its last epoch ended (or it started)
        self.paces: dict[str, list[float]] = {}  # kind -> its epochs' seconds
        self.shares: list[float] = []  # ended trials: epochs run / max_epochs
        self.began: dict[str, float] = {}  # running trial -> when it started
        self.trained: dict[str, float] = {}  # trial -> its epochs' seconds so far
        self.overheads: list[float] = []  # ended trials: wall time not spent in epochs (start-up, scoring)
        self.slots = 1  # the most trials seen running at once
        self.display: Display | None = None  # on a terminal, from the first event on
        self.counted = False

    def __getstate__(self) -> dict[str, Any]:  # pickled with the Tuner: rich's display stays here
        return {**self.__dict__, "display": None}

    @property
    def stream(self) -> TextIO:  # looked up each time: the callback is pickled with the Tuner
        return sys.stdout

    @property
    def live(self) -> bool:
        return self.stream.isatty()

    def setup(self, **info: Any) -> None:
        self.started = now()

    def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
        """Trials Tune has made, each with its max_epochs; on the first step, trials a resumed
        study had already finished count as done. Off a terminal, the running trials' lines."""
        if not self.counted:
            self.counted = True
            self.ended.update({str(t): "earlier" for t in trials if t.status in ("TERMINATED", "ERROR")})
        if len(trials) != len(self.max_epochs):
            for t in trials:
                if str(t) not in self.max_epochs:
                    self.learn(t)
        self.heartbeat()

    def learn(self, trial: Any) -> None:
        """A trial's max_epochs and kind, from its config (0 and a guess while unresolved)."""
        config = getattr(trial, "config", None) or {}
        most = config.get("max_epochs")  # an int once Tune has resolved the trial's config
        self.max_epochs[str(trial)] = most if isinstance(most, int) else 0
        self.kind[str(trial)] = "/".join(str(config.get(k)) for k in PACE_KEYS)
        patience = config.get("patience") if config.get("stop_rule", "patience") == "patience" else 0
        self.patience[str(trial)] = patience if isinstance(patience, int) else 0

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.learn(trial)  # resolved by now
        self.running.add(str(trial))
        self.began[str(trial)] = self.heard[str(trial)] = now()
        self.slots = max(self.slots, len(self.running))
        self.event(trial, "started")

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        name = str(trial)
        if reported.epoch_seconds in result and result.get(reported.epoch) != self.last.get(name, {}).get(
            reported.epoch
        ):  # a trial's final report repeats its last epoch
            self.paces.setdefault(self.kind.get(name, ""), []).append(float(result[reported.epoch_seconds]))
            self.trained[name] = self.trained.get(name, 0.0) + float(result[reported.epoch_seconds])
            self.heard[name] = now()
            if result.get(reported.val_loss) == result.get(reported.best_val_loss):  # this epoch is the best
                self.best_epoch[name] = int(result[reported.epoch])
        self.last[name] = result
        self.heartbeat()

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        result = self.last.get(str(trial), {})
        ended = result.get(reported.stopped_by) or ("finished" if is_final(result) else "asha")
        self.end(trial, ended)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.end(trial, "error")
        if why := error_reason(trial):
            self.say_plain(f"    {trial} failed: {why} (its error.txt holds the traceback)")

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        if self.display:
            self.display.stop()
            self.display = None

    def end(self, trial: Any, ended: str) -> None:
        name = str(trial)
        self.running.discard(name)
        self.said_at.pop(name, None)
        self.ended[name] = ended
        if self.max_epochs.get(name):
            self.shares.append(min(1.0, self.epochs_of(name) / self.max_epochs[name]))
        if name in self.began:
            self.overheads.append(max(0.0, now() - self.began.pop(name) - self.trained.get(name, 0.0)))
        self.event(trial, ended)

    def epochs_of(self, name: str) -> int:
        return int(self.last.get(name, {}).get(reported.epoch) or 0)

    def event(self, trial: Any, what: str) -> None:
        self.say([str(trial)], what)

    def heartbeat(self) -> None:
        """Off a terminal: a plain line for each running trial not heard of for `every` seconds;
        on one, the display brought up to date."""
        if self.live:
            self.show()
        else:
            due = self.every - min(1.0, self.every / 10)  # Tune's loop steps about once a second
            quiet = sorted(n for n in self.running if now() - self.said_at.get(n, self.started) >= due)
            if quiet:
                self.say(quiet, "running")

    def say(self, names: list[str], what: str) -> None:
        """A line per trial, then where the study stands."""
        lines = [f"[{clock(now() - self.started)}] {self.line(name, what)}" for name in names]
        self.said_at.update({name: now() for name in names if name in self.running})
        if self.live:
            self.show(lines)
        else:
            print("\n".join(lines), file=self.stream)
            print(f"    {self.summary()}", file=self.stream, flush=True)

    def say_plain(self, line: str) -> None:
        if self.display:
            self.display.print(line)
        else:
            print(line, file=self.stream, flush=True)

    def show(self, lines: list[str] = ()) -> None:
        """On a terminal: the lines printed above rich's display, the display brought up to date."""
        if self.display is None:
            self.display = Display(self.stream)
        epochs = sum(self.epochs_of(name) for name in self.last)
        known = sum(self.max_epochs.values()) + max(0, self.total - len(self.max_epochs)) * self.typical_max()
        running = {
            name: (self.epochs_of(name), self.max_epochs.get(name) or None, scores(self.last.get(name, {})))
            for name in sorted(self.running)
        }
        self.display.update(lines, (len(self.ended), self.total), (epochs, known), self.summary(), running)

    def line(self, name: str, what: str) -> str:
        """A trial's line; a running one's says how long its epoch has been under way (its first
        included: a whole-network epoch on a CPU takes minutes)."""
        said = epoch_line(self.last.get(name, {}), self.max_epochs.get(name))
        if what == "running" and name in self.heard:
            under_way = f"epoch {self.epochs_of(name) + 1} under way for {clock(now() - self.heard[name])}"
            said = f"{said}; {under_way}" if said else under_way
        return f"{name:<44} {what:<14} {said}".rstrip()

    def seconds_left(self, soonest: bool = False) -> float | None:
        """The estimate of the module docstring, counting down within an epoch; None before any
        epoch was timed. `soonest`: each trial with the patience rule stopping `patience` epochs
        after its best so far (a trial not started, after its first `patience` + 1)."""
        timed = [s for paces in self.paces.values() for s in paces]
        if not timed:
            return None
        overall, share = fmean(timed), fmean(self.shares) if self.shares else 1.0
        overhead = fmean(self.overheads) if self.overheads else 0.0
        seconds = 0.0
        for name, most in self.max_epochs.items():
            if name in self.ended or self.kind.get(name, "") not in self.paces:
                continue
            pace = fmean(self.paces[self.kind.get(name, "")])
            if name in self.running:  # its epoch under way counts down from its last report
                epochs = max(self.epochs_left(name, most * share, soonest), 1.0)
                seconds += max(0.0, epochs * pace - (now() - self.heard.get(name, now())))
            else:
                seconds += self.epochs_left(name, most * share, soonest) * pace + overhead
        unmade = max(0, self.total - len(self.max_epochs))  # trials Tune has not made yet
        fresh = [self.epochs_left(n, m, soonest=True) for n, m in self.max_epochs.items() if n not in self.running]
        typical = min(self.typical_max(), fmean(fresh)) if soonest and fresh else self.typical_max()
        seconds += unmade * (typical * (1.0 if soonest else share) * overall + overhead)
        return seconds / self.slots

    def epochs_left(self, name: str, expected: float, soonest: bool) -> float:
        """Epochs a trial not ended has left: `expected` of them in all, less those it ran; `soonest`,
        no more than its patience after its best epoch so far allows (patience rule only)."""
        if soonest and self.patience.get(name):
            expected = min(expected, self.best_epoch.get(name, 0) + self.patience[name] + (name not in self.best_epoch))
        return max(0.0, expected - self.epochs_of(name))

    def untimed(self) -> int:
        """Trials not ended whose kind no epoch has timed yet (not counted in seconds_left)."""
        return sum(n not in self.ended and self.kind.get(n, "") not in self.paces for n in self.max_epochs)

    def typical_max(self) -> float:
        """The mean max_epochs of the trials Tune has made (0 before any)."""
        known = [m for m in self.max_epochs.values() if m]
        return fmean(known) if known else 0.0

    def summary(self) -> str:
        done, running = len(self.ended), len(self.running)
        pending = self.total - done - running
        left = self.seconds_left() if done < self.total else 0.0
        if left is None:
            estimate = ""
        elif (self.shares or done == self.total) and left < 1 and running:  # the pace so far says it is done
            estimate = ", the running trial(s) past the pace so far: time left not known"
        elif self.shares or done == self.total:
            estimate = f", about {clock(left)} left"
        elif (soonest := self.seconds_left(soonest=True)) is not None and soonest < left:  # nothing ended yet
            estimate = (
                f", {clock(soonest)} to {clock(left)} left (from each trial stopping its patience after its best "
                "epoch so far, to each at its max_epochs, until a trial ends)"
            )
        else:  # nothing yet says how early trials stop
            estimate = f", up to {clock(left)} left (each trial at its max_epochs until one ends)"
        if estimate and (untimed := self.untimed()):
            kinds = f"{untimed} trial(s) of a kind not yet timed"
            estimate = f", {kinds}: time left not known yet" if left < 1 else f"{estimate}, and {kinds}"
        where = f"{done}/{self.total} done, {running} running, {pending} pending"
        return f"{where}; {clock(now() - self.started)} elapsed{estimate}"


class Display:
    """A study on a terminal, drawn by rich below the lines printed: where it stands (the line
    printed off a terminal after each event), its trials done, its epochs done of the known
    maximum (every trial at its max_epochs), and a bar per running trial, epoch k/max with its
    last validation scores. Redrawn twice a second."""

    def __init__(self, stream: TextIO) -> None:
        self.bars = bars(stream)
        self.bars.start()
        self.trials = self.bars.add_task("trials", total=None, note="")
        self.epochs = self.bars.add_task("epochs", total=None, note="of the most the trials may run")
        self.rows: dict[str, Any] = {}  # running trial -> its task

    def print(self, line: str) -> None:
        """A line above the display, as it is (no markup, no highlighting)."""
        self.bars.console.print(line, markup=False, highlight=False, soft_wrap=True)

    def update(self, lines: list[str], trials: tuple, epochs: tuple, summary: str, running: dict) -> None:
        for line in lines:
            self.print(line)
        self.bars.header = summary
        self.bars.update(self.trials, completed=trials[0], total=trials[1])
        self.bars.update(self.epochs, completed=epochs[0], total=max(epochs[1], epochs[0]) or None)
        for name in set(self.rows) - set(running):
            self.bars.remove_task(self.rows.pop(name))
        for name, (epoch, most, note) in running.items():
            if name not in self.rows:
                self.rows[name] = self.bars.add_task(name, total=most, note=note)
            self.bars.update(self.rows[name], completed=epoch, total=most, note=note)

    def stop(self) -> None:
        self.bars.stop()


def bars(stream: TextIO) -> Any:
    """rich's progress bars on `stream` (a terminal): a header line, then per task what, the bar,
    k/n, the time since it began and a note."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.text import Text

    class Bars(Progress):
        header = ""

        def get_renderables(self):  # rich's documented way to add lines to its display
            if self.header:
                yield Text(self.header, no_wrap=True, overflow="ellipsis")
            yield self.make_tasks_table(self.tasks)

    columns = [TextColumn("{task.description}"), BarColumn(bar_width=12), MofNCompleteColumn()]
    columns += [TimeElapsedColumn(), TextColumn("{task.fields[note]}")]
    return Bars(*columns, console=Console(file=stream), refresh_per_second=2, transient=True)


def error_reason(trial: Any) -> str:
    """The last line of a failed trial's error (its exception), credentials redacted and escaped, or ''."""
    from trainable.errors import printable
    from trainable.results.storage import redact

    try:  # Tune's error file for the trial, on the driver's side
        with open(trial.error_file) as f:
            text = f.read().strip().splitlines()
    except (OSError, TypeError, AttributeError):  # none, or lost to a full disk
        return ""
    return printable(redact(text[-1]))[:300] if text else ""


def wait_for(refs: list, every: float, what: str) -> list[tuple[Any, Any]]:
    """(ref, result) of Ray tasks in the order they finish: on a terminal, a bar of those done;
    anywhere else a line as each finishes or after `every` seconds without one:
    '  3/8 shards encoded, 41 s'."""
    import ray

    started, pending, finished = now(), list(refs), []
    shown = bars(sys.stdout) if sys.stdout.isatty() else None
    with shown or contextlib.nullcontext():
        task = shown.add_task(what, total=len(refs), note="") if shown else None
        while pending:
            done, pending = ray.wait(pending, num_returns=1, timeout=0.5 if shown else every)
            finished += [(ref, ray.get(ref)) for ref in done]
            if shown:
                shown.update(task, completed=len(finished))
            else:
                print(f"  {len(finished)}/{len(refs)} {what}, {now() - started:.0f} s", flush=True)
    if shown:  # what the bar said, kept in the scrollback
        print(f"  {len(finished)}/{len(refs)} {what}, {now() - started:.0f} s", flush=True)
    return finished


def epoch_line(record: dict, max_epochs: int | None = None) -> str:
    """'epoch  6/40  val loss 0.812  val acc 0.700', or '' before the first epoch's report."""
    if reported.epoch not in record:
        return ""
    of = f"/{max_epochs}" if max_epochs else ""
    return f"epoch {record[reported.epoch]:>3}{of}  {scores(record)}"


def scores(record: dict) -> str:
    """'val loss 0.812  val acc 0.700', or '' before the first epoch's report."""
    if reported.epoch not in record:
        return ""
    return f"val loss {record[reported.val_loss]:.3f}  val acc {record[reported.val_acc]:.3f}"
