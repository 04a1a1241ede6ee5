"""The grids as Tune search spaces: the same trials, Tune's order, readable names,
and the compact console (no Ray cluster needed)."""

import io

import pytest

from study.grids import expand
from study.terminal.console import Progress, clock
from study.tuning.space import param_space, trial_name, trials_of
from tests.conftest import epoch_row, final_row


@pytest.mark.parametrize("grid, seeds", [("paper", 3), ("extended", 2), ("smoke", 1)])
def test_the_search_space_generates_exactly_the_expanded_trials(grid, seeds):
    configs = expand(grid, seeds=seeds, overrides={"weights": "none"})
    space = param_space(configs)
    trials = trials_of(space)
    key = lambda c: (c["experiment"], c["seed"])  # noqa: E731
    assert sorted(trials, key=key) == sorted((c.to_dict() for c in configs), key=key)
    assert space["weights"] == "none"  # the same in every trial: a constant, not a column


def test_full_network_trials_start_first_at_each_seed_and_where_takes_any_key():
    trials = trials_of(param_space(expand("paper", seeds=2, overrides={})))
    assert [c["experiment"] for c in trials[:7]] == [4, 1, 2, 3, 5, 6, 7]
    assert [c["seed"] for c in trials] == [0] * 7 + [1] * 7
    alone = trials_of(param_space(expand("paper", seeds=2, overrides={}, where={"experiment": 4})))
    assert [(c["experiment"], c["seed"], c["freeze"]) for c in alone] == [(4, 0, "none"), (4, 1, "none")]


def test_trial_names_say_what_the_trial_is():
    assert trial_name({"experiment": 4, "name": "no freezing", "seed": 1}) == "e04-no-freezing-s1"
    extended = {"experiment": 55, "name": "adam lr0.01 b8 freeze-block8 aug-none", "seed": 0}
    assert trial_name(extended, 3) == "e055-adam-lr0.01-b8-freeze-block8-aug-none-s0"


class FakeTrial:
    def __init__(self, name, status="RUNNING"):
        self.name, self.status = name, status

    def __str__(self):
        return self.name


def test_the_console_prints_one_line_per_event_and_where_the_study_stands(monkeypatch):
    out = io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    progress = Progress(total=3)
    progress.on_step_begin(0, [FakeTrial("e01-a-s0", "TERMINATED")])  # a resumed study's finished trial
    trial = FakeTrial("e02-b-s0")
    progress.on_trial_start(0, [], trial)
    for epoch in (1, 2):
        progress.on_trial_result(0, [], trial, epoch_row(epoch=epoch, val_loss=0.5, val_acc=0.75))
    final = final_row(
        epoch=2, val_loss=0.5, val_acc=0.75, best_epoch=2, stopped_by="early_stopping", val_pred=[0, 1, 2]
    )
    progress.on_trial_result(0, [], trial, final)
    progress.on_trial_complete(0, [], trial)
    lines = out.getvalue().splitlines()
    assert len(lines) == 4 and "val_pred" not in out.getvalue()  # start and end, each with the totals
    assert "e02-b-s0" in lines[2] and "early_stopping" in lines[2]
    assert "epoch   2  val loss 0.500  val acc 0.750" in lines[2]
    assert lines[3].strip().startswith("2/3 done, 0 running, 1 pending") and "left" in lines[3]
    assert clock(3725) == "1:02:05"


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def made(name, max_epochs, kind, status="PENDING"):
    trial = FakeTrial(name, status)
    trial.config = {"max_epochs": max_epochs, "freeze": "block8", "augmentation": kind, "batch_size": 8}
    return trial


def test_off_a_terminal_each_running_trial_gets_a_plain_line_every_progress_every_seconds(monkeypatch):
    out, clock_ = io.StringIO(), Clock()
    monkeypatch.setattr("sys.stdout", out)
    monkeypatch.setattr("study.terminal.console.now", clock_)
    progress = Progress(total=2, every=30)
    a, b = made("e01-a-s0", 40, "none"), made("e02-b-s0", 40, "online")
    progress.on_step_begin(0, [a, b])
    progress.on_trial_start(0, [], a)
    progress.on_trial_start(0, [], b)
    clock_.t = 12
    progress.on_trial_result(0, [], a, epoch_row(epoch=6, val_loss=0.8125, val_acc=0.7, epoch_seconds=2.0))
    before = len(out.getvalue().splitlines())
    clock_.t = 28.5
    progress.on_step_begin(0, [a, b])
    assert len(out.getvalue().splitlines()) == before  # not yet due (30 s, less Tune's step of about 1 s)
    clock_.t = 31
    progress.on_step_begin(0, [a, b])
    lines = out.getvalue().splitlines()[before:]
    assert lines[0].startswith("[0:00:31] e01-a-s0") and "running" in lines[0]
    assert lines[0].endswith("epoch   6/40  val loss 0.812  val acc 0.700; epoch 7 under way for 0:00:19")
    assert lines[1].startswith("[0:00:31] e02-b-s0") and lines[1].endswith("epoch 1 under way for 0:00:31")
    assert lines[2].strip().startswith("0/2 done, 2 running, 0 pending; 0:00:31 elapsed, up to")
    # no trial ended yet; b's kind has no timed epoch: not counted, and said so
    assert lines[2].endswith(
        "left (each trial at its max_epochs until one ends), and 1 trial(s) of a kind not yet timed"
    )
    # a's epochs left at its pace, less the 19 s its seventh epoch has run since its report, over two slots
    assert progress.seconds_left() == ((40 - 6) * 2.0 - (31 - 12)) / 2
    assert "\x1b" not in out.getvalue()
    clock_.t = 50
    progress.on_step_begin(0, [a, b])
    assert len(out.getvalue().splitlines()) == before + 3
    clock_.t = 61
    progress.on_trial_result(0, [], b, epoch_row(epoch=1, epoch_seconds=30.0))
    assert len(out.getvalue().splitlines()) == before + 6


def test_the_time_left_counts_epochs_at_each_configurations_pace(monkeypatch):
    """Four trials of 10 epochs, two at a time; one kind's epochs take 1 s, the other's 3 s
    (augmentation none and online). Halfway through the first two, what is left is known
    exactly: (5 + 5x3 + 10 + 10x3) / 2."""
    out, clock_ = io.StringIO(), Clock()
    monkeypatch.setattr("sys.stdout", out)
    monkeypatch.setattr("study.terminal.console.now", clock_)
    progress = Progress(total=4)
    kinds = ("none", "online", "none", "online")
    trials = [made(f"e0{i % 2 + 1}-s{i // 2}", 10, kind) for i, kind in enumerate(kinds)]
    progress.on_step_begin(0, trials)
    for trial in trials[:2]:
        progress.on_trial_start(0, trials, trial)
    for epoch in range(1, 6):
        progress.on_trial_result(0, trials, trials[0], epoch_row(epoch=epoch, epoch_seconds=1.0))
        progress.on_trial_result(0, trials, trials[1], epoch_row(epoch=epoch, epoch_seconds=3.0))
    assert progress.seconds_left() == (5 * 1 + 5 * 3 + 10 * 1 + 10 * 3) / 2
    # The first ends by early stopping at epoch 5, 8 s after it started (3 s outside its 5 one-second
    # epochs): the others are expected to run half their epochs too, those not started 3 s more.
    clock_.t = 8
    progress.on_trial_result(0, trials, trials[0], final_row(epoch=5, stopped_by="early_stopping"))
    progress.on_trial_complete(0, trials, trials[0])
    # the running one has one more epoch, which has run 8 s since its last report (its 3 s are spent)
    assert progress.seconds_left() == (0 + (5 * 1 + 3) + (5 * 3 + 3)) / 2
    assert "about 0:00:13 left" in out.getvalue().splitlines()[-1]


def test_a_running_trial_past_the_pace_so_far_reads_not_known_not_zero(monkeypatch):
    """Two 10-epoch trials at 4 s an epoch, two at a time; the first stopped at its fifth: the second,
    at its fifth too, is expected to run one more epoch (2 s over two slots). A minute later it still
    runs: the time left is not known, not zero."""
    clock_ = Clock()
    monkeypatch.setattr("sys.stdout", io.StringIO())
    monkeypatch.setattr("study.terminal.console.now", clock_)
    progress = Progress(total=2)
    trials = [made(f"e01-a-s{i}", 10, "none") for i in range(2)]
    progress.on_step_begin(0, trials)
    for trial in trials:
        progress.on_trial_start(0, trials, trial)
        for epoch in range(1, 6):
            progress.on_trial_result(0, trials, trial, epoch_row(epoch=epoch, epoch_seconds=4.0))
    progress.on_trial_result(0, trials, trials[0], final_row(epoch=5, stopped_by="early_stopping"))
    progress.on_trial_complete(0, trials, trials[0])
    assert progress.summary().endswith("about 0:00:02 left")
    clock_.t = 60
    assert progress.summary().endswith("the running trial(s) past the pace so far: time left not known")


def test_trial_directories_are_named_before_tune_resolves_sample_from():
    """Tune names a trial while its sample_from values are still placeholders: the name
    comes from the experiment number, which a grid_search resolves first."""
    from study.tuning.space import TrialNames

    configs = expand("paper", seeds=2, overrides={})
    names = TrialNames.of(configs)
    trial = FakeTrial("x")
    trial.config = {"experiment": 4, "seed": 1, "name": "fn_ph_2da2578b", "config_id": "fn_ph_1"}
    assert names(trial) == "e04-no-freezing-s1"


def test_searched_trials_are_numbered_from_tunes_counter_and_named_by_their_values():
    from study.tuning.space import TrialNames

    names = TrialNames(searched=("lr", "optimizer", "batch_size"))
    config = {"config_id": "search", "lr": 3.2e-4, "optimizer": "sgd-m0.9", "batch_size": 16}
    optuna_trial = FakeTrial("x")
    optuna_trial.trial_id, optuna_trial.experiment_tag, optuna_trial.config = "1307f144", "7_lr=0.0003", config
    assert names(optuna_trial) == "t007-lr0.00032-sgd-m0.9-b16"
    random_trial = FakeTrial("y")  # BasicVariantGenerator: counts from 0, its ids end in the count
    random_trial.trial_id, random_trial.experiment_tag, random_trial.config = "3f1c2_00006", "6_lr=0.0003", config
    assert names(random_trial) == "t007-lr0.00032-sgd-m0.9-b16"


def test_a_log_read_back_gives_the_longest_silence_and_the_estimates_error():
    from study.bench.progress_log import read_log, table

    log = """Images per class ...
[0:00:00] e01-a-s0                                     started
    0/2 done, 1 running, 1 pending; 0:00:00 elapsed
[0:00:30] e01-a-s0                                     running        epoch   3/10  val loss 0.900  val acc 0.500
    0/2 done, 1 running, 1 pending; 0:00:30 elapsed, about 0:02:00 left
[0:01:00] e01-a-s0                                     max_epochs     epoch  10/10  val loss 0.700  val acc 0.600
    1/2 done, 0 running, 1 pending; 0:01:00 elapsed, about 0:01:00 left, and 1 trial(s) of a kind not yet timed
[0:01:00] e01-a-s1                                     started
    1/2 done, 1 running, 0 pending; 0:01:00 elapsed, about 0:01:00 left, and 1 trial(s) of a kind not yet timed
[0:01:40] e01-a-s1                                     max_epochs     epoch  10/10  val loss 0.700  val acc 0.600
    2/2 done, 0 running, 0 pending; 0:01:40 elapsed, about 0:00:00 left
Confirming ...
    1/1 done, 0 running, 0 pending; 0:09:00 elapsed
"""
    read = read_log(log)
    assert read["duration_s"] == 100 and (read["max_gap_s"], read["max_gap_trial"]) == (40, "e01-a-s1")
    assert [(r["elapsed_s"], r["estimate_s"], r["truth_s"], r["error_s"]) for r in read["estimates"]] == [
        (None, None, None, None),
        (30, 120, 70, 50),
        (60, 60, 40, 20),
    ]
    assert "| 50% | 30 | 120 | 70 | +50 | 0 |" in table(read) and "| 75% | 60 | 60 | 40 | +20 | 1 |" in table(read)
    with pytest.raises(ValueError, match="no study that ended"):
        read_log(log.split("[0:01:40]")[0])


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_on_a_terminal_rich_draws_the_study_and_each_running_trials_epoch_k_of_max(monkeypatch):
    """rich's display: the trials done, the epochs done of the known maximum and the time left,
    and a bar per running trial with its epoch k/max and last scores, gone when the trial ends;
    the event lines print above it."""
    import re

    out, clock_ = Terminal(), Clock()
    monkeypatch.setattr("sys.stdout", out)
    monkeypatch.setattr("study.terminal.console.now", clock_)
    monkeypatch.setenv("COLUMNS", "120")
    progress = Progress(total=2)
    a, b = made("e01-a-s0", 40, "none"), made("e02-b-s0", 10, "online")
    progress.on_step_begin(0, [a, b])
    progress.on_trial_start(0, [], a)
    clock_.t = 12
    progress.on_trial_result(0, [], a, epoch_row(epoch=6, val_loss=0.8125, val_acc=0.7, epoch_seconds=2.0))
    progress.display.bars.refresh()
    screen = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.getvalue())
    assert "[0:00:00] e01-a-s0" in screen and "started" in screen  # the event line
    assert "0/2 done, 1 running, 1 pending; 0:00:12 elapsed, up to" in screen
    assert re.search(r"trials\s.*0/2", screen)
    assert re.search(r"epochs\s.*6/50", screen)  # 40 + 10 epochs at most
    assert re.search(r"e01-a-s0\s.*6/40\s.*val loss 0\.812  val acc 0\.700", screen)
    progress.on_trial_result(0, [], a, final_row(epoch=6, stopped_by="early_stopping"))
    progress.on_trial_complete(0, [], a)
    assert list(progress.display.rows) == []  # its bar is gone
    progress.on_experiment_end([a, b])
    assert progress.display is None
    import pickle

    assert pickle.loads(pickle.dumps(progress)).total == 2  # pickled with the Tuner, without rich


def test_a_failed_trials_line_says_why_in_one_line_redacted(monkeypatch, tmp_path):
    out = io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    progress = Progress(total=1)
    trial = made("e01-a-s0", 4, "none")
    (error := tmp_path / "error.txt").write_text(
        "Traceback (most recent call last):\n  File ...\n"
        "OSError: [Errno 28] cannot write s3://KEY:hun/ter2@lab/x: No space left on device\n"
    )
    trial.error_file = str(error)
    progress.on_trial_start(0, [], trial)
    progress.on_trial_error(0, [], trial)
    last = out.getvalue().splitlines()[-1]
    assert last == (
        "    e01-a-s0 failed: OSError: [Errno 28] cannot write s3://REDACTED@lab/x: No space left on device "
        "(its error.txt holds the traceback)"
    )
    assert "Traceback" not in out.getvalue()


def test_with_only_untimed_kinds_left_the_time_left_is_not_known_yet(monkeypatch):
    out, clock_ = io.StringIO(), Clock()
    monkeypatch.setattr("sys.stdout", out)
    monkeypatch.setattr("study.terminal.console.now", clock_)
    progress = Progress(total=2)
    a, b = made("e04-a-s0", 2, "online"), made("e01-b-s0", 2, "none")
    progress.on_step_begin(0, [a, b])
    progress.on_trial_start(0, [], a)
    for epoch in (1, 2):
        progress.on_trial_result(0, [], a, epoch_row(epoch=epoch, epoch_seconds=40.0))
    progress.on_trial_result(0, [], a, final_row(epoch=2, stopped_by="max_epochs"))
    progress.on_trial_complete(0, [], a)
    assert out.getvalue().splitlines()[-1].endswith("1 trial(s) of a kind not yet timed: time left not known yet")


def test_before_a_trial_ends_the_time_left_is_a_range_from_patience_and_counts_down(monkeypatch):
    """Two 400-epoch trials with patience 10, one at a time, 2 s an epoch. After five epochs of the
    first (its best the third), the soonest it can stop is epoch 13 (8 epochs more), the second's
    epoch 11; the latest, each at its max_epochs. Between reports the estimate counts down."""
    out, clock_ = io.StringIO(), Clock()
    monkeypatch.setattr("sys.stdout", out)
    monkeypatch.setattr("study.terminal.console.now", clock_)
    progress = Progress(total=2, every=30)
    a, b = made("e01-a-s0", 400, "none"), made("e01-a-s1", 400, "none")
    for trial in (a, b):
        trial.config.update(stop_rule="patience", patience=10)
    progress.on_step_begin(0, [a, b])
    progress.on_trial_start(0, [], a)
    for epoch, loss in enumerate((1.0, 0.9, 0.8, 0.85, 0.82), start=1):
        clock_.t = 2.0 * epoch
        best = min((1.0, 0.9, 0.8, 0.85, 0.82)[:epoch])
        progress.on_trial_result(0, [], a, epoch_row(epoch=epoch, val_loss=loss, best_val_loss=best, epoch_seconds=2))
    assert progress.seconds_left(soonest=True) == 8 * 2 + 11 * 2
    assert progress.seconds_left() == 395 * 2 + 400 * 2
    said = "0:00:38 to 0:26:30 left (from each trial stopping its patience after its best epoch so far, to each at "
    assert progress.summary().endswith(said + "its max_epochs, until a trial ends)")
    clock_.t = 13.0  # three seconds into its sixth epoch, no report since
    assert progress.seconds_left(soonest=True) == 8 * 2 - 3 + 11 * 2 and progress.seconds_left() == 1590 - 3
