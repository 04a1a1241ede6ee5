"""--wandb PROJECT: Ray's WandbLoggerCallback, one run per trial grouped by study, read back
from the offline run files (WANDB_MODE=offline); clear errors when W&B cannot log."""

import json
import struct
import subprocess
import sys

import pytest

from study.run import main

pytestmark = pytest.mark.extra("wandb")


def run_records(path) -> list:
    """The protobuf records of an offline run's .wandb file: W&B's LevelDB-style log, a 7-byte
    file header (':W&B', magic, version), then 32 KiB blocks of records, each with a 7-byte
    header (crc32, length, type: 1 full, 2 first, 3 middle, 4 last; 0 is block padding)."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, pending, records = 7, 32768, b"", []
    while pos + 7 <= len(data):
        space = block - pos % block
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7]) if space >= 7 else (0, 0, 0)
        if kind == 0:
            pos += space
            continue
        pending += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def items(update) -> dict:
    return {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in update}


def test_not_logged_in_is_one_clear_error_before_any_work(capsys, tmp_path, monkeypatch):
    for key in ("WANDB_MODE", "WANDB_API_KEY"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc, no settings: never logged in
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    code = main(
        [
            "--grid",
            "smoke",
            "--confirm-top",
            "0",
            "--wandb",
            "face-age",
            "--storage",
            str(tmp_path / "r"),
            "--name",
            "x",
        ]
    )
    err = " ".join(capsys.readouterr().err.split())
    assert code == 2 and "--wandb: not logged in to Weights & Biases" in err and "WANDB_MODE=offline" in err
    assert not (tmp_path / "r" / "x" / "summary.csv").exists()


@pytest.mark.long
@pytest.mark.slow
def test_each_trial_is_a_run_of_the_study_group_with_its_config_epochs_and_final_record(tmp_path):
    command = [
        sys.executable,
        "-m",
        "study.run",
        "--grid",
        "smoke",
        "--confirm-top",
        "0",
        "--seeds",
        "1",
        "--wandb",
        "face-age",
    ]
    command += ["--storage", str(tmp_path), "--name", "tracked"]
    env = {"WANDB_MODE": "offline", "WANDB_CONFIG_DIR": str(tmp_path / "wandb-config"), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    files = sorted((tmp_path / "tracked" / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(files) == 2  # one run per trial
    runs = {}
    for path in files:
        records = run_records(path)
        (run,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
        history = [items(r.history.item) for r in records if r.WhichOneof("record_type") == "history"]
        runs[run.display_name] = (run, history)
    assert sorted(runs) == ["e01-smoke-cached-s0", "e02-smoke-online-s0"]  # named as the trials
    for name, (run, history) in runs.items():
        assert (run.project, run.run_group) == ("face-age", "tracked")
        config = items(run.config.update)
        assert config["name"] == name[4:-3].replace("-", " ") and config["seed"] == 0 and config["lr"] == 0.001
        assert [h["epoch"] for h in history] == list(range(1, len(history) + 1))  # every epoch, in order
        final = history[-1]  # the final record's numbers (Ray logs numbers; stopped_by stays in result.json)
        assert {"test_acc_best", "test_bacc_best", "best_epoch", "seconds_to_best"} <= set(final)
        assert "test_pred" not in final and 0 <= final["test_acc_best"] <= 1
