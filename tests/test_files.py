"""Whole files or none, strict JSON, one owner per study folder, and a cache that heals."""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import pathlib
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from study.bookkeeping.ownership import LOCK_FILE, STALE_AFTER_S, StudyLock, release_all
from study.run import main
from tests.conftest import ROOT, wait_for
from tests.lock_race import take_and_hold
from trainable.cache import MANIFEST, TrunkCache
from trainable.errors import UserError
from trainable.results.atomic_io import atomic, dumps, host, remove_stale_temps, temp_path, write_json


def reject_constant(name):
    raise ValueError(f"{name} in strict JSON")


def strict_load(text: str):
    return json.loads(text, parse_constant=reject_constant)


def test_json_is_strict_non_finite_numbers_become_null(tmp_path):
    value = {"a": math.nan, "b": [np.float32("inf"), -math.inf, 1.5], "c": np.array([np.nan, 2.0]), "d": np.int64(3)}
    write_json(str(tmp_path / "x.json"), value)
    assert strict_load((tmp_path / "x.json").read_text()) == {
        "a": None,
        "b": [None, None, 1.5],
        "c": [None, 2.0],
        "d": 3,
    }
    assert strict_load(dumps(value))["a"] is None
    with pytest.raises(ValueError):
        strict_load(json.dumps({"a": math.nan}))  # what the check catches


def test_a_writer_that_fails_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "summary.csv"
    path.write_text("old\n")
    with pytest.raises(RuntimeError), atomic(str(path)) as f:
        f.write("half of the new")
        raise RuntimeError("killed")
    assert path.read_text() == "old\n" and os.listdir(tmp_path) == ["summary.csv"]


def test_temporaries_of_dead_writers_are_removed_and_live_ones_kept(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = temp_path(str(tmp_path / "study.json")).replace(f".{os.getpid()}.", f".{dead.stdout.strip()}.")
    live = temp_path(str(tmp_path / "summary.csv"))
    for path in (stale, live):
        open(path, "w").close()
    assert remove_stale_temps(str(tmp_path)) == [stale]
    assert os.path.exists(live) and not os.path.exists(stale)


def test_of_two_runs_creating_one_study_one_owns_it_and_the_other_names_it(tmp_path):
    directory = str(tmp_path / "results" / "study")
    queue = multiprocessing.get_context("spawn").Queue()
    procs = [
        multiprocessing.get_context("spawn").Process(target=take_and_hold, args=(directory, queue)) for _ in range(2)
    ]
    for proc in procs:
        proc.start()
    said = sorted([queue.get(timeout=60), queue.get(timeout=60)])
    for proc in procs:
        proc.join()
    pids = {str(proc.pid) for proc in procs}
    assert said[1] == "took it", said
    assert "in use by process" in said[0] or "exists" in said[0]
    assert "in use by process" not in said[0] or any(pid in said[0] for pid in pids)


def test_a_live_lock_is_refused_a_dead_ones_taken_over_and_another_hosts_refused(tmp_path, capsys):
    directory = tmp_path / "study"
    directory.mkdir()
    lock = directory / LOCK_FILE
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock.write_text(json.dumps({"host": host(), "pid": sleeper.pid, "since": "then", "argv": ["study.run"]}))
        with pytest.raises(UserError, match=f"in use by process {sleeper.pid} on this host"):
            StudyLock(str(directory)).take()
    finally:
        sleeper.kill()
        sleeper.wait()
    taken = StudyLock(str(directory)).take()
    assert f"its process {sleeper.pid} on {host()} (since then) no longer runs" in capsys.readouterr().err
    assert json.loads(lock.read_text())["pid"] == os.getpid()
    taken.release()
    assert not lock.exists() and directory.exists()  # a resumed folder stays
    lock.write_text(json.dumps({"host": "elsewhere", "pid": 1, "since": "then"}))  # a shared file system
    with pytest.raises(UserError, match="in use by process 1 on host elsewhere .*refreshed 0 s ago"):
        StudyLock(str(directory)).take()
    silent = time.time() - STALE_AFTER_S - 1
    os.utime(lock, (silent, silent))  # its host stopped refreshing it: that run is dead
    StudyLock(str(directory)).take()
    assert "its process 1 on elsewhere (since then) no longer runs" in capsys.readouterr().err
    release_all()


@pytest.mark.parametrize(
    "content, said",
    [
        ("not json{", "not a lock's JSON: b'not json{'"),
        ("", "(empty)"),
        ('{"pid": "abc"}', "no host in"),
        ("[1, 2]", "no host in '[1, 2]'"),
        ('{"host": "h", "pid": 1000000000000000000000000000000}', "is no process id (1 to 4194304)"),
        ('{"host": "h", "pid": 0}', "pid 0 is no process id"),
        ('{"host": "h", "pid": -1}', "pid -1 is no process id"),
        ('{"host": "h", "pid": 1.5}', "pid 1.5 is no process id"),
        ('{"host": "h", "pid": true}', "pid True is no process id"),
        ("FOLDER", "a folder, not a file): no run of this tool wrote it. If no run is using"),
        ("FUTURE", "s from now: a clock or a hand moved it"),
    ],
)
def test_a_damaged_lock_is_one_paragraph_saying_how_to_clear_it(tmp_path, content, said):
    directory = tmp_path / "study"
    directory.mkdir()
    lock = directory / LOCK_FILE
    if content == "FOLDER":
        lock.mkdir()
    else:
        lock.write_text('{"host": "elsewhere", "pid": 12, "since": "then"}' if content == "FUTURE" else content)
    if content == "FUTURE":
        future = time.time() + 10 * STALE_AFTER_S  # another host's lock, time-stamped in 2100 say
        os.utime(lock, (future, future))
    with pytest.raises(UserError) as refused:
        StudyLock(str(directory)).take()
    text = " ".join(str(refused.value).split())
    assert said in text and "is damaged" in text and ("rm -r " if content == "FOLDER" else "rm ") + str(lock) in text
    assert lock.is_dir() if content == "FOLDER" else lock.exists()  # nothing removed on the user's behalf


def test_a_damaged_lock_stops_a_run_before_any_work(tmp_path, tiny_root, capsys):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / LOCK_FILE).write_text('{"host": "h", "pid": -1}')
    argv = ["--grid", "smoke", "--data", tiny_root, "--storage", str(tmp_path), "--name", "x"]
    assert main(argv) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "Traceback" not in err and "study.lock is damaged (pid -1 is no process id" in err


@pytest.mark.parametrize("where", ["a file", "below a file", "read-only", "the study's name a file"])
def test_storage_that_cannot_hold_a_study_is_one_paragraph(tmp_path, tiny_root, capsys, monkeypatch, where):
    (tmp_path / "file").write_text("x")
    storage = {"a file": tmp_path / "file", "below a file": tmp_path / "file" / "results"}.get(where, tmp_path)
    if where == "read-only":
        real_mkdir = os.mkdir

        def read_only(path, *args, **kwargs):
            if str(path).startswith(str(tmp_path)):
                raise OSError(30, "Read-only file system", str(path))
            return real_mkdir(path, *args, **kwargs)

        monkeypatch.setattr(os, "mkdir", read_only)
    name = "file" if where == "the study's name a file" else "x"
    argv = ["--grid", "smoke", "--data", tiny_root, "--storage", str(storage), "--name", name]
    assert main(argv) == 2
    err = " ".join(capsys.readouterr().err.split())
    said = {
        "a file": f"{storage}: cannot hold studies ({storage} is a file, not a folder)",
        "below a file": "cannot hold studies (a file is in its path where a folder should be)",
        "read-only": "(Read-only file system:",
        "the study's name a file": f"{tmp_path / 'file'} is a file, not a study; pick another --name.",
    }[where]
    assert "Traceback" not in err and said in err, err


def test_a_study_that_records_nothing_leaves_no_folder(tmp_path):
    StudyLock(str(tmp_path / "results" / "new")).create("--resume it")
    assert (tmp_path / "results" / "new" / LOCK_FILE).exists()
    release_all()
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize(
    "args, said",
    [
        ({"seeds": "abc"}, "args holds seeds 'abc' (expected int)"),
        ({"seeds": True}, "args holds seeds True (expected int)"),
        ({"colour": "red"}, "args holds colour (no such option)"),
        ({"select": "val_f1"}, "args holds select 'val_f1' (expected one of val_loss, val_acc, val_bacc)"),
        ({"settings": "lr=1"}, "args holds settings 'lr=1' (expected a list of str)"),
        ({"dry_run": 1}, "args holds dry_run 1 (expected bool)"),
        ({"gpus_per_trial": "0.5"}, "args holds gpus_per_trial '0.5' (expected float)"),
    ],
)
def test_resume_of_a_study_json_with_wrong_args_names_each_key(tmp_path, capsys, args, said):
    from tests import study_json

    study = tmp_path / "study"
    study.mkdir()
    value = study_json.record()
    value["args"].update(args)
    (study / "study.json").write_text(json.dumps(value))
    assert main(["--resume", str(study), "--dry-run"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "Traceback" not in err and f"study.json: {said}" in err.replace(f"{study}/", ""), err


def test_resume_of_a_torn_study_json_is_one_clear_error(tmp_path, capsys):
    study = tmp_path / "torn"
    study.mkdir()
    (study / "study.json").write_text('{"args": {"grid": "smoke", "se')
    assert main(["--resume", str(study)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "study.json is not valid JSON" in " ".join(err.split())


@pytest.mark.parametrize("damage", ["truncate a part", "flip a byte", "tear the manifest", "delete a part"])
def test_a_damaged_cache_entry_is_recomputed(tmp_path, capsys, damage):
    cache, key, calls = TrunkCache(str(tmp_path)), {"k": 1}, []

    def compute():
        calls.append(1)
        return torch.arange(12, dtype=torch.float32).reshape(6, 2)

    first = cache.get(key, compute)
    folder = cache.folder(key)
    (part,) = [os.path.join(folder, n) for n in os.listdir(folder) if n.startswith("part-")]
    if damage == "truncate a part":
        os.truncate(part, os.path.getsize(part) - 8)
    elif damage == "flip a byte":
        data = bytearray(open(part, "rb").read())
        data[-1] ^= 0xFF
        open(part, "wb").write(bytes(data))
    elif damage == "tear the manifest":
        manifest = os.path.join(folder, MANIFEST)
        os.truncate(manifest, os.path.getsize(manifest) // 2)
    else:
        os.remove(part)
    fresh = TrunkCache(str(tmp_path))  # another process would see the same files
    from trainable import cache as cache_module

    cache_module.VERIFIED.clear()  # as in that other process: no checksum checked yet
    assert torch.equal(fresh.get(key, compute), first) and len(calls) == 2
    assert "computed again" in capsys.readouterr().err
    assert torch.equal(TrunkCache(str(tmp_path)).get(key, compute), first) and len(calls) == 2  # healed


def test_every_json_the_project_writes_is_strict():
    """No writer of the project's own files calls json.dump directly (trainable.results.atomic_io does)."""
    offenders = []
    for package in ("study", "trainable", "analysis"):
        for path in pathlib.Path(ROOT, package).rglob("*.py"):
            if path.name != "atomic_io.py":
                text = path.read_text()
                if "json.dump(" in text or "open(" in text and '"w")' in text:
                    offenders.append(path.relative_to(ROOT).as_posix())
    assert not offenders, offenders


def test_two_takers_of_one_stale_lock_leave_one_owner(tmp_path, monkeypatch):
    """The race: A judges the lock stale and pauses; B takes the stale lock over and holds it live;
    A goes on. A moves B's live lock aside, sees it is not the lock it judged, puts it back and
    is refused: one owner, B."""
    directory = tmp_path / "study"
    directory.mkdir()
    lock = directory / LOCK_FILE
    dead = subprocess.Popen(["true"])
    dead.wait()
    write_json(str(lock), {"host": host(), "pid": dead.pid, "since": "then", "argv": []})
    b = {"host": host(), "pid": os.getppid(), "since": "now", "argv": ["B"]}  # a live process: the test's parent
    judge = StudyLock.refuse_if_held

    def judge_then_b_takes_over(self):
        judged = judge(self)
        if judged is not None and judged["pid"] == dead.pid:  # A's pause: B moves the stale lock, links its own
            os.remove(lock)
            (directory / "b").write_text(json.dumps(b))
            os.rename(directory / "b", lock)
        return judged

    monkeypatch.setattr(StudyLock, "refuse_if_held", judge_then_b_takes_over)
    with pytest.raises(UserError, match=f"in use by process {os.getppid()}"):
        StudyLock(str(directory)).take()
    assert json.loads(lock.read_text()) == b and os.listdir(directory) == [LOCK_FILE]


def test_a_held_lock_is_refreshed(tmp_path, monkeypatch):
    from study.bookkeeping import ownership

    monkeypatch.setattr(ownership, "HEARTBEAT_S", 0.1)
    (tmp_path / "s").mkdir()
    lock = StudyLock(str(tmp_path / "s")).take()
    os.utime(lock.path, (0, 0))
    assert wait_for(lambda: os.stat(lock.path).st_mtime > 0, 5)
    release_all()


def test_a_csv_cell_a_spreadsheet_would_run_is_written_as_text(tmp_path):
    import pandas as pd

    from trainable.results.atomic_io import write_csv

    names = ['=HYPERLINK("http://x")', "+1+1", "-2+3", "@SUM(A1)", "plain", "-0.5"]
    write_csv(str(tmp_path / "t.csv"), pd.DataFrame({"path": names, "p": [0.1] * 6}))
    read = pd.read_csv(tmp_path / "t.csv")
    assert read.path.tolist() == ['\'=HYPERLINK("http://x")', "'+1+1", "'-2+3", "'@SUM(A1)", "plain", "-0.5"]
    assert read.p.tolist() == [0.1] * 6


def test_every_writer_fsyncs_the_file_and_then_its_folder(tmp_path, monkeypatch):
    """A rename survives a power cut only once the folder holding it is on disk too."""
    import pandas as pd

    from trainable.results.atomic_io import write_csv, write_json, write_text, write_with

    synced = []
    real = os.fsync

    def record(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fsync", record)
    writers = {
        "a.txt": lambda p: write_text(p, "text"),
        "b.json": lambda p: write_json(p, {"a": 1}),
        "c.csv": lambda p: write_csv(p, pd.DataFrame({"a": [1]})),
        "d.bin": lambda p: write_with(p, lambda tmp: open(tmp, "wb").write(b"bytes")),
    }
    for name, write in writers.items():
        synced.clear()
        write(str(tmp_path / name))
        assert len(synced) == 2 and f".{name}." in synced[0] and synced[1] == str(tmp_path), (name, synced)


def test_a_whole_study_json_round_trips_through_its_typed_record(tmp_path):
    """Every field of study.json, nested records included (grid_file, search), written and read back
    equal, typed to the leaves; a nested key missing or of the wrong type is refused by name."""
    import dataclasses
    import json

    import pytest

    from tests import study_json
    from trainable.results.study_record import (
        GridFile,
        SearchRecord,
        StudyRecord,
        read_study_record,
        write_study_record,
    )

    search = {"kind": "optuna", "num_samples": 4, "searched": ["lr", "dropout"], "warm_starts": 2}
    groups = {"train": ["p1"], "val": ["p2"], "test": ["p3"]}
    value = study_json.record(
        search=search, expansions={"optimizer": {"sgd-m0.9": {"optimizer": "sgd"}}}, split_groups=groups
    )
    written = study_json.study_record(value)
    assert isinstance(written.grid_file, GridFile) and isinstance(written.search, SearchRecord)
    assert set(value) == {f.name for f in dataclasses.fields(StudyRecord)}  # the test writes every field
    write_study_record(str(tmp_path), written)
    read = read_study_record(str(tmp_path))
    assert read == written and dataclasses.asdict(read) == value
    assert read.search.searched == ["lr", "dropout"] and read.grid_file.path == "smoke"
    for broken, said in (
        ({**value, "search": {**search, "kind": 3}}, "search.kind (int"),
        ({**value, "grid_file": {"path": "smoke"}}, "missing grid_file.text"),
        ({**value, "search": {**search, "extra": 1}}, "unknown search.extra"),
    ):
        (tmp_path / "study.json").write_text(json.dumps(broken))
        with pytest.raises(UserError, match=said.replace("(", r"\(")):
            read_study_record(str(tmp_path))
