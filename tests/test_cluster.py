"""Beyond one machine: per-trial requests checked against the nodes a cluster has or its
autoscaler may add; a study on a fake autoscaling cluster whose GPU node does not exist
when it starts; a token-protected two-node cluster; a study in S3 (a local S3 server)."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys

import hypothesis
import pytest
from hypothesis import strategies as st

from analysis.results import load_study
from study.spec import StudySpec
from study.tuning.cluster import check_resources
from tests.conftest import ROOT, SMOKE_SPLIT, wait_for
from trainable.errors import UserError
from trainable.results.study_record import read_study_record

HEAD = {"CPU": 2.0, "memory": 1e9}
GPU_TYPE = {"CPU": 2.0, "GPU": 1.0}


def request(gpus=0.0, cpus=None):
    return StudySpec(grid="smoke", gpus_per_trial=gpus, cpus_per_trial=cpus)


def test_a_request_a_live_node_holds_passes_quietly(capsys):
    check_resources([HEAD, GPU_TYPE], {}, request(gpus=0.5))
    assert capsys.readouterr().out == ""


def test_a_request_only_an_addable_node_type_holds_waits_for_it(capsys):
    check_resources([HEAD], {"gpu-worker": GPU_TYPE}, request(gpus=0.5))
    assert "autoscaler can add node type 'gpu-worker': waiting for it" in capsys.readouterr().out


@pytest.mark.parametrize(
    "live, addable, args",
    [
        ([HEAD], {}, request(gpus=0.5)),  # no GPU anywhere
        ([HEAD], {"gpu-worker": GPU_TYPE}, request(gpus=2)),  # more GPUs than any node type has
        ([HEAD, HEAD], {"gpu-worker": GPU_TYPE}, request(cpus=3)),  # 4 CPUs in all, never 3 on one node
    ],
)
def test_a_request_no_node_can_ever_hold_is_refused(live, addable, args):
    with pytest.raises(UserError) as err:
        check_resources(live, addable, args)
    message = str(err.value)
    assert "more than any node has or the autoscaler can add" in message
    assert "Live nodes: CPU 2, GPU 0" in message
    assert ("gpu-worker (CPU 2, GPU 1)" in message) == bool(addable)


class FakeAutoscalingCluster:
    """Ray's fake multi-node autoscaler on this machine (ray.cluster_utils.AutoscalingCluster,
    with its cluster config written here: the wheel leaves out the example it reads), with
    autoscaler v2 as `ray up` and KubeRay run it. Its nodes are local raylets; a worker
    type's GPU is a logical resource."""

    def __init__(self, head: dict, worker_types: dict, config_file: str):
        from ray.cluster_utils import FAKE_HEAD_NODE_ID, AutoscalingCluster

        config = {
            "cluster_name": "fake-autoscaling",
            "max_workers": 4,
            "provider": {
                # the fake provider by module path: as "fake_multinode", Ray would read its defaults
                # from the example file the wheel leaves out
                "type": "external",
                "module": "ray.autoscaler._private.fake_multi_node.node_provider.FakeMultiNodeProvider",
                "use_node_id_as_ip": True,
                "disable_node_updaters": True,
                "disable_launch_config_check": True,
                "launch_multiple": True,
                "head_node_id": FAKE_HEAD_NODE_ID,
            },
            "available_node_types": {
                **worker_types,
                "ray.head.default": {"resources": head, "node_config": {}, "max_workers": 0},
            },
            "head_node_type": "ray.head.default",
            "upscaling_speed": 1.0,
            "idle_timeout_minutes": 5,
            **{key: {} for key in ("auth", "docker", "file_mounts")},
            **{key: [] for key in ("initialization_commands", "setup_commands", "head_setup_commands")},
            **{key: [] for key in ("worker_setup_commands", "head_start_ray_commands", "worker_start_ray_commands")},
            **{key: [] for key in ("cluster_synced_files", "rsync_exclude", "rsync_filter")},
            "file_mounts_sync_continuously": False,
        }

        with open(config_file, "w") as f:  # what `ray up` leaves on the head: ~/ray_bootstrap_config.yaml
            json.dump(config, f)

        class Cluster(AutoscalingCluster):
            def _generate_config(self, *args, **kwargs):
                return config

        self.cluster = Cluster(head_resources=dict(head), worker_node_types=worker_types)

    def __enter__(self):
        self.cluster.start()
        return self

    def __exit__(self, *exc):
        self.cluster.shutdown()


def cli(*args, timeout=600):
    return subprocess.run(
        [sys.executable, "-m", "study.run", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.slow
@pytest.mark.exclusive
def test_a_gpu_study_starts_with_no_gpu_node_and_the_autoscaler_adds_one(tiny_root, tmp_path, monkeypatch):
    """AutoscalingCluster runs `ray start` and `ray stop --force` (every Ray on this machine)."""
    monkeypatch.setenv("PATH", os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    assert shutil.which("ray"), "the ray CLI of this environment"
    gpu_worker = {"resources": GPU_TYPE, "node_config": {}, "min_workers": 0, "max_workers": 1}
    config = str(tmp_path / "cluster.yaml")
    with FakeAutoscalingCluster({"CPU": 2}, {"gpu-worker": gpu_worker}, config):
        common = [
            "--grid",
            "smoke",
            "--confirm-top",
            "0",
            "--data",
            tiny_root,
            *SMOKE_SPLIT,
            "--address",
            "auto",
            "--storage",
            str(tmp_path),
        ]
        common += ["--cluster-config", config]
        too_big = cli(*common, "--gpus-per-trial", "2", "--name", "too-big", timeout=120)
        assert too_big.returncode == 2, too_big.stdout[-2000:] + too_big.stderr[-2000:]
        assert "node types it can add: gpu-worker (CPU 2, GPU 1)" in " ".join(too_big.stderr.split())
        study = cli(*common, "--gpus-per-trial", "0.5", "--seeds", "1", "--name", "gpu", timeout=900)
    assert study.returncode == 0, study.stdout[-3000:] + study.stderr[-3000:]
    assert "autoscaler can add node type 'gpu-worker': waiting for it" in study.stdout
    trials, _ = load_study(str(tmp_path / "gpu"))
    assert len(trials) == 2 and (trials.status == "finished").all()
    assert trials.node_id.nunique() == 1  # both on the added node: the head has no GPU


TWO_NODES = """
import sys
from ray.cluster_utils import Cluster

cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
cluster.add_node(num_cpus=1)
cluster.wait_for_nodes()
print(cluster.address, flush=True)
sys.stdin.read()
cluster.shutdown()
"""


def connects(address: str, env: dict) -> subprocess.CompletedProcess:
    code = f"import ray; ray.init(address={address!r}); print(ray.cluster_resources())"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.slow
@pytest.mark.exclusive
def test_a_token_protected_two_node_cluster_runs_the_study_and_refuses_other_clients(tmp_path, monkeypatch):
    """Every node and the study's driver share one token (as ray_config.yaml ships it);
    a client with no token, or another one, is refused. The nodes run in a process of their
    own: Ray reads RAY_AUTH_MODE once per process, and this one has imported Ray already."""
    token = secrets.token_hex(32)
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    monkeypatch.setenv("RAY_AUTH_TOKEN", token)
    host = subprocess.Popen([sys.executable, "-c", TWO_NODES], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        address = host.stdout.readline().strip()
        assert address, "the two-node cluster did not start"
        proc = cli(
            "--grid",
            "smoke",
            "--confirm-top",
            "0",
            "--seeds",
            "2",
            "--address",
            address,
            "--storage",
            str(tmp_path),
            "--name",
            "two",
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        others = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
        home = str(tmp_path / "home")  # no ~/.ray/auth_token either
        for env in ({**others, "HOME": home}, {**others, "HOME": home, **token_env("0" * 64)}):
            refused = connects(address, env)
            assert refused.returncode != 0 and "CPU" not in refused.stdout, refused.stdout
        assert connects(address, {**others, **token_env(token)}).returncode == 0
    finally:
        host.stdin.close()  # the host shuts its cluster down
        host.wait(timeout=120)
    trials, _ = load_study(str(tmp_path / "two"))
    assert len(trials) == 4 and (trials.status == "finished").all()
    assert trials.node_id.nunique() == 2
    assert read_study_record(str(tmp_path / "two")).args["address"] == address


def token_env(token: str) -> dict:
    return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}


@pytest.mark.slow
@pytest.mark.long
@pytest.mark.exclusive  # moto's server shares this process: beside other studies it ran 4x slower
def test_a_study_in_s3_is_killed_resumed_and_reported(tmp_path, monkeypatch):
    """Against moto's S3 server on 127.0.0.1: Ray writes the trials to the bucket, the study's
    own files go up from its local mirror, --resume and analysis.report take the URI."""
    import boto3
    from moto.server import ThreadedMotoServer

    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(key, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # the local mirror and trunk cache: ~/.cache/face-age
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    try:
        host, port = server.get_host_and_port()
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://{host}:{port}")
        boto3.client("s3").create_bucket(Bucket="bucket")
        log = tmp_path / "driver.log"
        proc = subprocess.Popen(
            [sys.executable, "-m", "study.run", "--grid", "smoke", "--confirm-top", "0", "--seeds", "2"]
            + ["--storage", "s3://bucket/studies", "--name", "k"],
            cwd=ROOT,
            start_new_session=True,
            stdout=open(log, "w"),
            stderr=subprocess.STDOUT,
        )
        try:
            assert wait_for(lambda: "1/4 done" in log.read_text(), 300), log.read_text()[-3000:]
        finally:
            os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray it started
            proc.wait()
        assert "4/4 done" not in log.read_text()  # killed mid-study
        resumed = cli("--resume", "s3://bucket/studies/k")
        assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
        assert "Results: s3://bucket/studies/k (local copy:" in resumed.stdout
        local = tmp_path / "downloaded"
        report = subprocess.run(
            [sys.executable, "-m", "analysis.report", "s3://bucket/studies/k", "--download", str(local)],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        assert report.returncode == 0, report.stderr[-3000:]
        stored = {o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket="bucket")["Contents"]}
    finally:
        server.stop()
    assert (local / "report" / "report.md").exists()
    assert {"studies/k/study.json", "studies/k/summary.csv", "studies/k/best/best.json"} <= stored
    trials, _ = load_study(str(local))
    assert len(trials) == 4 and (trials.status == "finished").all() and trials.trial_id.is_unique
    assert sorted(zip(trials.experiment, trials.seed, strict=True)) == [(e, s) for e in (1, 2) for s in range(2)]


def test_storage_copies_a_study_up_and_down_through_a_uri(tmp_path):
    """trainable.results.storage on a file:// URI (the same pyarrow calls as s3:// and gs://)."""
    from trainable.results import storage

    study = tmp_path / "study"
    (study / "e01-x-s0").mkdir(parents=True)
    (study / "study.json").write_text("{}")
    (study / "e01-x-s0" / "result.json").write_text('{"epoch": 1}\n')
    uri = f"file://{tmp_path}/bucket/studies/s1"
    assert not storage.exists(uri)
    storage.upload(str(study), uri)
    assert storage.exists(uri) and sorted(storage.listdir(uri)) == ["e01-x-s0", "study.json"]
    assert storage.read_bytes(storage.join(uri, "study.json")) == b"{}"
    copy = storage.download(uri, str(tmp_path / "copy"))
    assert (tmp_path / "copy" / "e01-x-s0" / "result.json").read_text() == '{"epoch": 1}\n' and copy.endswith("copy")
    flat = str(tmp_path).strip("/").replace("/", "_")
    readable, _, digest = os.path.basename(storage.mirror(uri)).rpartition("-")
    assert f"{flat}_bucket_studies_s1".endswith(readable) and len(readable) == min(80, len(flat) + 18)
    assert len(digest) == 16
    with pytest.raises(UserError, match="nothing is stored there"):
        storage.download(uri + "-missing", str(tmp_path / "none"))


def test_mirrors_are_named_by_the_whole_uri_and_never_by_its_credentials():
    from trainable.results import storage

    mirrors = {storage.mirror(u) for u in ("s3://lab/x_y", "gs://lab_x/y", "file:///lab/x/y", "s3://lab/x/y")}
    assert len(mirrors) == 4  # their readable parts are all lab_x_y
    assert storage.mirror("s3://AKIA:hunter2@lab/x_y") == storage.mirror("s3://lab/x_y")
    assert "hunter2" not in storage.mirror("s3://lab/x_y?secret_key=hunter2")


@pytest.mark.parametrize(
    "uri, shown",
    [
        ("s3://AKIA:hunter2@lab/x", "s3://REDACTED@lab/x"),
        ("http://me:hunter2@mlflow:5000", "http://REDACTED@mlflow:5000"),
        ("s3://lab/x?region=eu&session_token=hunter2", "s3://lab/x?region=eu&session_token=REDACTED"),
        ("gs://lab/x?X-Goog-Signature=hunter2&b=1", "gs://lab/x?X-Goog-Signature=REDACTED&b=1"),
        ("s3://lab/x?region=eu", "s3://lab/x?region=eu"),
        ("sqlite:///mlflow.db", "sqlite:///mlflow.db"),
        # userinfo holding what ends a URL's authority ('/', '#') unescaped (refused, hidden whole), or escaped
        ("s3://KEY:abc/def@bucket/x", "s3://REDACTED@bucket/x"),
        ("s3://K:S@bucket/dir@2024/p", "s3://REDACTED@bucket/dir@2024/p"),  # the path's '@' is the path's
        ("s3://K:a@b@bucket/p", "s3://REDACTED@bucket/p"),
        ("http://me:hun#ter2@mlflow", "http://REDACTED@mlflow"),
        ("s3://a:b%2Fc@bucket", "s3://REDACTED@bucket"),
        ("https://TOKEN@github.com/a", "https://REDACTED@github.com/a"),
        ("s3://bucket/path@v1/x", "s3://bucket/path@v1/x"),  # an '@' in a path holds no secret
        # query keys matched in any case, over the wider list
        (
            "http://h/p?pwd=1&Pass=2&SIG=3&apiKey=4&x=5",
            "http://h/p?pwd=REDACTED&Pass=REDACTED&SIG=REDACTED&apiKey=REDACTED&x=5",
        ),
    ],
)
def test_credentials_in_uris_are_redacted(uri, shown):
    from trainable.results.storage import redact

    assert redact(uri) == shown and redact(f"error: --storage {uri} refused") == f"error: --storage {shown} refused"


@pytest.mark.parametrize(
    "option, uri, clean, env",
    [
        (
            "storage",
            "s3://AKIA%3Ax:hun%2Fter%232@lab/studies",
            "s3://lab/studies",
            {"AWS_ACCESS_KEY_ID": "AKIA:x", "AWS_SECRET_ACCESS_KEY": "hun/ter#2"},
        ),
        (
            "storage",
            "s3://AKIA:hun%2Fter%232@lab/dir@2024/p",
            "s3://lab/dir@2024/p",
            {"AWS_SECRET_ACCESS_KEY": "hun/ter#2"},
        ),
        pytest.param(
            "mlflow",
            "http://me:hun%23ter2@mlflow:5000",
            "http://mlflow:5000",
            {"MLFLOW_TRACKING_USERNAME": "me", "MLFLOW_TRACKING_PASSWORD": "hun#ter2"},
            marks=pytest.mark.extra("mlflow"),
        ),
    ],
)
def test_credentials_in_a_uri_move_to_the_environment_before_anything_records_them(
    option, uri, clean, env, monkeypatch, tmp_path
):
    """A study's spec holds the URI without its credentials (so do Tune's tuner.pkl, its
    callbacks, study.json and every line printed); the libraries read them from the environment."""
    import pickle

    from study.spec import StudySpec
    from study.tuning.tracking import MLflowStudyLogger

    for name in (*env, "AWS_ACCESS_KEY_ID", "MLFLOW_TRACKING_USERNAME"):
        monkeypatch.delenv(name, raising=False)
    spec = StudySpec.from_options({"grid": "smoke", "data": str(tmp_path), option: uri})
    assert getattr(spec, option) == clean
    assert all(os.environ[name] == value for name, value in env.items())
    logger = MLflowStudyLogger(spec.mlflow, "x", str(tmp_path)) if spec.mlflow else None
    pickled = pickle.dumps((spec, spec.record(), logger))
    assert not [s for s in ("hun/ter#2", "hun#ter2", "hun%2Fter") if s.encode() in pickled]


PATH_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789._-@:"


@hypothesis.settings(max_examples=300, deadline=None, derandomize=True)  # the same 300 URIs each run: no flake
@hypothesis.given(
    user=st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=8, max_size=20),
    secret=st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=8, max_size=40),
    bucket=st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=3, max_size=20),
    path=st.lists(st.text(PATH_CHARS, min_size=1, max_size=10), max_size=4).map("/".join),
)
def test_any_secret_in_a_uri_moves_to_the_environment_and_is_never_printed(user, secret, bucket, path):
    """Generated s3:// URIs whose (percent-encoded) credentials hold any character and whose path
    may hold '@' and ':': the bucket and path come out unchanged, the environment holds the
    decoded credentials, and no form of the secret is in any redacted text."""
    from urllib.parse import quote

    from trainable.results import storage

    hypothesis.assume(any(c not in PATH_CHARS for c in secret) and any(c not in PATH_CHARS for c in user))
    # a secret spelled like the text around it (say 'REDACTED' itself) would be "found" in what is printed
    hypothesis.assume(secret not in f"error: --storage s3://{storage.SECRET}@{bucket}/{path} refused in")
    uri = f"s3://{quote(user, safe='')}:{quote(secret, safe='')}@{bucket}/{path}"
    saved = {name: os.environ.get(name) for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    known = set(storage._known)  # what this process hides: restored below, as a new process would start
    try:
        assert storage.credentials_to_environment(uri, "--storage") == f"s3://{bucket}/{path}"
        assert (os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"]) == (user, secret)
    finally:
        for name, value in saved.items():
            os.environ.pop(name, None) if value is None else os.environ.__setitem__(name, value)
    shown = [
        storage.redact_argument(uri),
        storage.redact_argument(f"--storage={uri}"),
        storage.redact(f"error: --storage {uri} refused"),
        storage.redact(f"error: {secret!r} in {user}:{secret}@{bucket}"),
        storage.mirror(uri),
    ]
    storage._known.clear()
    storage._known.update(known)
    assert shown[0] == f"s3://REDACTED@{bucket}/{path}"
    for text in shown:
        for form in (secret, quote(secret, safe=""), quote(secret)):
            assert form not in text, (form, text)


@pytest.mark.parametrize(
    "uri, expected",
    [
        ("http://mlflow:5000/?token=s3cr3t", "set MLFLOW_TRACKING_USERNAME or MLFLOW_TRACKING_PASSWORD"),
        ("s3://lab/x?Secret_Key=s3cr3t&region=eu", "a secret in the query (Secret_Key)"),
        ("gs://me:s3cr3t@lab/x", "credentials in a gs:// URI would be recorded by Ray"),
        ("s3://AKIA:s3cr3t/x@lab/x", "the credentials hold an unescaped '/', '?', '#' or '@'"),
        ("s3://AKIA:s3cr3t@x@lab/x", "percent-encode those characters in the secret (%2F, %3F, %23, %40)"),
        ("s3://AKIA:s3@cr3t/x y@lab/x", "the credentials hold an unescaped '/', '?', '#' or '@'"),
        ("http://me:s3cr3t#x@mlflow:5000", "or set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"),
    ],
)
def test_a_secret_that_cannot_move_to_the_environment_is_refused_unprinted(uri, expected, capsys):
    from study.run import main

    option = "--mlflow" if uri.startswith("http") else "--storage"
    assert main(["--grid", "smoke", option, uri, "--dry-run"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert expected in err and "s3cr3t" not in err


@pytest.mark.extra("mlflow")
def test_an_unreachable_endpoint_is_one_paragraph_and_no_secret_is_printed_or_written(tmp_path):
    """A failed run with credentials in --storage and --mlflow and an endpoint that does not
    answer: exit 2, one paragraph, and the secrets in no printed line and no file it wrote."""
    home = tmp_path / "home"
    env = {**os.environ, "HOME": str(home), "AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_DEFAULT_REGION": "us-east-1"}
    argv = ["--grid", "smoke", "--name", "y", "--storage", "s3://AKIA:hun%2Fter%232@bucket/x"]
    argv += ["--mlflow", "http://me:pa%24%24word@127.0.0.1:9"]
    proc = subprocess.run(
        [sys.executable, "-m", "study.run", *argv], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "error: s3://bucket/x/y: cannot reach this storage location" in " ".join(proc.stderr.split())
    written = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    for secret in ("hun/ter#2", "hun%2Fter%232", "pa$$word", "pa%24%24word"):
        assert secret not in proc.stdout + proc.stderr and secret.encode() not in written, secret


def test_a_study_name_joins_a_uris_path_before_its_query():
    from trainable.results import storage

    location = storage.join("s3://bucket/x?region=eu-west-1&endpoint_override=h:9000", "paper")
    assert location == "s3://bucket/x/paper?region=eu-west-1&endpoint_override=h:9000"
    assert (
        storage.join(location, "study.json")
        == "s3://bucket/x/paper/study.json?region=eu-west-1&endpoint_override=h:9000"
    )
    assert storage.split(location) == ("s3://bucket/x?region=eu-west-1&endpoint_override=h:9000", "paper")
    assert storage.split("s3://bucket/x/paper/") == ("s3://bucket/x", "paper")
    assert storage.join("/r", "paper") == "/r/paper" and storage.split("/r/paper") == ("/r", "paper")


@pytest.mark.slow
@pytest.mark.parametrize("when", ["while trials run", "before anything is recorded"])
def test_sigterm_stops_a_study_as_ctrl_c_does_and_says_how_to_continue(tmp_path, when):
    """`kill PID` (Kubernetes, a batch system) on the driver: Tune ends the trials keeping their
    state, one paragraph says how far it got and the resume command, exit 143, no stack dump of
    Ray's; resumed, the study finishes."""
    log = tmp_path / "driver.log"
    argv = ["--grid", "smoke", "--confirm-top", "0", "--seeds", "2", "--storage", str(tmp_path), "--name", "t"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "study.run", *argv],
        cwd=ROOT,
        start_new_session=True,
        stdout=open(log, "w"),
        stderr=subprocess.STDOUT,
    )
    try:
        mark = "1/4 done" if when == "while trials run" else "Images per class"
        assert wait_for(lambda: mark in log.read_text(), 300), log.read_text()[-3000:]
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=120)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # whatever Ray left
    said = " ".join(log.read_text().split())
    assert code == 143, said[-3000:]
    assert "*** SIGTERM received" not in said and "Traceback" not in said, said[-3000:]
    if when == "before anything is recorded":
        assert "Stopped by SIGTERM; nothing was recorded yet: run the command again." in said, said[-2000:]
        assert not (tmp_path / "t").exists()
        return
    assert "Stopped by SIGTERM with " in said and " of 4 trials ended; nothing finished is lost." in said
    assert f"Continue it with: python -m study.run --resume {tmp_path / 't'}" in said, said[-2000:]
    resumed = cli("--resume", str(tmp_path / "t"))
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    trials, _ = load_study(str(tmp_path / "t"))
    assert len(trials) == 4 and (trials.status == "finished").all()


@pytest.mark.parametrize("secret", ['se cret"12', "pa@ss/w#rd 9"])
def test_a_secret_with_a_space_quote_or_at_reaches_neither_the_lock_nor_study_json(tmp_path, monkeypatch, secret):
    """The argv a study records (study.lock's, study.json's command) holds each argument redacted
    whole, a secret with a space or a quote (written percent-encoded or not) included."""
    from urllib.parse import quote

    from study.bookkeeping.ownership import StudyLock, release_all
    from study.bookkeeping.provenance import write_provenance
    from tests import study_json

    for uri in (f"s3://AKIAEXAMPLE:{secret}@bucket/dir@2024/p", f"s3://AKIAEXAMPLE:{quote(secret, safe='')}@bucket/p"):
        argv = ["--grid", "smoke", "--storage", uri]
        monkeypatch.setattr(sys, "argv", ["study.run", *argv])
        (tmp_path / "s").mkdir(exist_ok=True)
        StudyLock(str(tmp_path / "s")).take()
        lock = (tmp_path / "s" / "study.lock").read_text()
        release_all()
        made = ("version", "command", "python", "platform", "packages", "git_revision")
        facts = {k: v for k, v in study_json.record().items() if k not in made}
        written = (
            (tmp_path / "s" / "study.json").read_text() if write_provenance(str(tmp_path / "s"), argv, **facts) else ""
        )
        for text in (lock, written):
            assert "s3://REDACTED@" in text  # to the bucket, or further where the secret's '@' is not escaped
            for form in (secret, quote(secret, safe=""), json.dumps(secret)[1:-1], "AKIAEXAMPLE"):
                assert form not in text, (form, text)
