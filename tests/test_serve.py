"""The best model served with Ray Serve, tested as a client would: real faces and bad input
posted over HTTP to a local deployment, the answers compared with study.predict's."""

import base64
import concurrent.futures
import contextlib
import io
import json
import os
import re
import shlex
import socket

import numpy as np
import pytest
from PIL import Image

from tests.conftest import REAL_DATA

pytestmark = [pytest.mark.slow, pytest.mark.extra("serve")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory, request):
    """(base URL, model file, the image files posted): the deployment on a local Ray."""
    if not os.path.isdir(REAL_DATA):
        pytest.skip(f"real dataset not found at {REAL_DATA}")
    import ray
    from ray import serve

    from study.serve import application
    from trainable.model import random_model_file

    path = random_model_file(tmp_path_factory.mktemp("model") / "model.pt")
    images = sorted(os.path.join(d, n) for d, _, names in os.walk(REAL_DATA) for n in names if n.endswith(".jpg"))
    images = images[::100][:6]  # a few of each class
    port = free_port()
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(application(path, max_batch_size=4), name="face-age", route_prefix="/")
    yield f"http://127.0.0.1:{port}", path, images
    serve.shutdown()
    ray.shutdown()


def post(url: str, data: bytes, **kwargs):
    import requests

    return requests.post(url + "/predict", data=data, timeout=60, **kwargs)


def test_served_answers_equal_predicts_for_the_same_files(served, tmp_path):
    import pandas as pd

    from study.predict import main as predict_main

    url, path, images = served
    assert len(images) == 6
    answers = {}
    for image in images:
        with open(image, "rb") as f:
            reply = post(url, f.read())
        assert reply.status_code in (200, 422), reply.text
        answers[image] = reply.json()
    assert predict_main(["--model", path, *images, "--out", str(tmp_path / "p.csv")]) in (0, 1)
    rows = pd.read_csv(tmp_path / "p.csv", keep_default_na=False)
    assert len(rows) == len(images)
    found = 0
    for image, row in zip(images, rows.itertuples(index=False), strict=True):
        answer = answers[image]
        if "detail" in answer:  # no face: predict says so too
            assert answer["detail"] == row.problem == "no face found"
            continue
        (face,) = answer["faces"]
        assert face["index"] == 0 and face["predicted"] == row.predicted and row.problem == ""
        # Same kernels on the same crops; only the batch they ran in differs (oneDNN may block
        # a batch of 4 otherwise than one of 6): fp32 sums reordered, ~1e-7 relative in the
        # logits; 1e-5 on probabilities is 100x that and far below any difference of models.
        assert np.allclose(list(face["probabilities"].values()), list(row)[3:6], atol=1e-5)
        x0, y0, x1, y1 = face["box"]  # MTCNN's box, clipped to the image
        width, height = Image.open(image).size
        assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
        found += 1
    assert found >= 3, "MTCNN should find most el7008 faces"


def test_a_multipart_upload_gets_the_raw_bodys_answer(served):
    import requests

    url, _, images = served
    with open(images[0], "rb") as f:
        data = f.read()
    raw = post(url, data).json()
    form = requests.post(url + "/predict", files={"image": ("face.jpg", data, "image/jpeg")}, timeout=60)
    assert form.status_code == 200 or form.status_code == 422
    assert form.json() == raw
    encoded = requests.post(url + "/predict", json={"image_base64": base64.b64encode(data).decode()}, timeout=60)
    assert encoded.json() == raw


def test_bad_input_gets_a_status_and_a_json_reason(served):
    url, _, _ = served
    reply = post(url, b"this is not an image")
    assert reply.status_code == 400 and reply.json() == {
        "detail": "cannot be decoded as an image (not one of the formats read: AVIF, BMP, GIF, HEIF, JPEG, JPEG2000, "
        "MPO, PNG, PPM, TIFF, WEBP)"
    }
    assert post(url, b"").status_code == 400 and "empty body" in post(url, b"").json()["detail"]
    noise = Image.fromarray(np.full((300, 300, 3), 128, dtype=np.uint8))  # an image, but no face in it
    buffer = io.BytesIO()
    noise.save(buffer, format="PNG")
    reply = post(url, buffer.getvalue())
    assert reply.status_code == 422 and reply.json() == {"detail": "no face found"}
    for size, why in (((2000, 20), "sides over 20:1"), ((1, 1), "smaller than the smallest face")):
        buffer = io.BytesIO()
        Image.new("RGB", size).save(buffer, format="PNG")
        reply = post(url, buffer.getvalue())  # an image, too thin or too small to search: never a 500
        assert reply.status_code == 422 and why in reply.json()["detail"], reply.text
    import requests

    from trainable.data.limits import image_limits

    MAX_BYTES = image_limits().bytes
    huge = post(url, b"\xff" * (MAX_BYTES + 1))  # read no further than the cap
    assert huge.status_code == 413 and huge.json() == {"detail": f"over {MAX_BYTES:,} bytes"}
    big_form = requests.post(url + "/predict", files={"image": ("a.jpg", b"\xff" * (MAX_BYTES + 1))}, timeout=60)
    assert big_form.status_code == 413 and big_form.json() == {"detail": f"over {MAX_BYTES:,} bytes"}
    no_file = requests.post(url + "/predict", data={"note": "no file here"}, files={}, timeout=60)
    assert no_file.status_code == 415 and "detail" in no_file.json()  # a urlencoded form: no file in it
    no_file = requests.post(url + "/predict", files={"note": (None, "no file here")}, timeout=60)
    assert no_file.status_code == 400 and no_file.json() == {"detail": "a multipart body needs exactly one file"}
    form = requests.post(url + "/predict", files={"a": ("a.txt", b"x"), "b": ("b.txt", b"y")}, timeout=60)
    assert form.status_code == 400 and "detail" in form.json()
    bad_json = requests.post(url + "/predict", json={"image_base64": "not base64!"}, timeout=60)
    assert bad_json.status_code == 400 and "image_base64" in bad_json.json()["detail"]
    wrong_key = requests.post(url + "/predict", json={"image": "aGk="}, timeout=60).json()["detail"]
    assert wrong_key == 'a JSON body is {"image_base64": "<the file in base64>"} (image_base64: field required)'
    text = post(url, b"hello", headers={"Content-Type": "text/plain"})
    assert text.status_code == 415 and "text/plain" in text.json()["detail"]
    assert requests.get(url + "/predict", timeout=30).status_code == 405


def replica_rss() -> dict[int, int]:
    """pid -> resident bytes of each Ray Serve replica process on this machine (from /proc)."""
    found = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"ServeReplica" not in f.read():
                    continue
            with open(f"/proc/{pid}/status") as f:
                found[int(pid)] = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))
        except (OSError, StopIteration):
            continue
    return found


@contextlib.contextmanager
def replica_growth():
    """The largest growth of any Serve replica's resident memory over its level on entry, sampled every
    20 ms while inside: a one-item list, filled on exit."""
    import threading
    import time

    before = replica_rss()
    assert before, "no replica process found"
    peak, done, grew = dict(before), threading.Event(), []

    def sample():
        while not done.is_set():
            for pid, rss in replica_rss().items():
                peak[pid] = max(peak.get(pid, 0), rss)
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        yield grew
    finally:
        done.set()
        sampler.join()
        grew.append(max(peak[pid] - rss for pid, rss in before.items()))


@pytest.mark.parametrize("declared", [True, False])
def test_a_2_gib_multipart_upload_is_refused_with_the_replicas_memory_bounded(served, declared):
    """A 2 GiB multipart form, streamed with its Content-Length (413 before a byte is read) or
    chunked (411: a chunked upload is not read); the replica's resident memory at most 100 MB
    above its level before, at its peak (sampled every 20 ms)."""
    import http.client
    import time

    url, _, images = served
    with open(images[0], "rb") as f:
        assert post(url, f.read()).status_code in (200, 422)  # warm: a first request's one-time costs
    head, tail = b'--b\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"\r\n\r\n', b"\r\n--b--\r\n"

    def form():
        yield head
        chunk = b"\xff" * 2**20
        for _ in range(2048):  # 2 GiB
            yield chunk
        yield tail

    began = time.monotonic()
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=120)
    # http.client: a streamed body with its Content-Length, or chunked (requests sends a generator chunked)
    with replica_growth() as grew, contextlib.closing(connection):
        connection.putrequest("POST", "/predict")
        connection.putheader("Content-Type", "multipart/form-data; boundary=b")
        if declared:
            connection.putheader("Content-Length", str(len(head) + 2**31 + len(tail)))
        else:
            connection.putheader("Transfer-Encoding", "chunked")
        connection.endheaders()
        try:
            for part in form():
                connection.send(part if declared else b"%x\r\n%s\r\n" % (len(part), part))
        except OSError:  # the server answered and closed while the client still sent
            pass
        status = connection.getresponse().status
    print(
        f"2 GiB multipart: {status} after {time.monotonic() - began:.1f} s; replica RSS grew {grew[0] / 2**20:.0f} MiB"
    )
    assert status == (413 if declared else 411) and grew[0] < 100 * 2**20


def test_three_wide_images_at_once_keep_the_replica_within_one_decodes_bytes(served):
    """Three 6,300 x 6,300 16-bit PNGs (375 KB each, 119 MB of 16-bit pixels) posted at once: the
    replica decodes one at a time, so its peak resident memory (sampled every 20 ms) grows by less
    than FACE_AGE_MAX_DECODED_BYTES, one decode's budget."""
    from trainable.data.limits import image_limits

    url, _, images = served
    with open(images[0], "rb") as f:
        assert post(url, f.read()).status_code in (200, 422)  # warm
    ramp = np.add.outer(np.arange(6300, dtype=np.uint32), np.arange(6300, dtype=np.uint32))
    buffer = io.BytesIO()
    Image.fromarray((ramp % 65536).astype(np.uint16)).save(buffer, format="PNG")
    with replica_growth() as grew, concurrent.futures.ThreadPoolExecutor(3) as pool:
        codes = list(pool.map(lambda _: post(url, buffer.getvalue()).status_code, range(3)))
    print(f"three 16-bit 6300x6300 PNGs at once: {codes}; replica RSS grew {grew[0] / 2**20:.0f} MiB")
    assert set(codes) <= {200, 422} and grew[0] < image_limits().decoded_bytes, (codes, grew)


def test_health_and_metadata(served):
    import requests

    url, path, _ = served
    assert requests.get(url + "/healthz", timeout=30).json() == {"status": "ok"}
    meta = requests.get(url + "/", timeout=30).json()
    assert meta["classes"] == ["1-4", "5-27", "28+"] and meta["model_file"] == os.path.basename(path)
    assert os.path.dirname(path) not in json.dumps(meta)  # no server path in an answer
    assert meta["preprocessing"]["crop"] == 140
    assert requests.get(url + "/nowhere", timeout=30).json() == {"detail": "Not Found"}
    schema = requests.get(url + "/openapi.json", timeout=30).json()
    predict = schema["paths"]["/predict"]["post"]
    assert set(predict["requestBody"]["content"]) >= {"image/*", "multipart/form-data", "application/json"}
    assert {"200", "400", "413", "415", "422"} <= set(predict["responses"])
    face = schema["components"]["schemas"]["FaceAnswer"]["properties"]
    assert "clipped to the image" in face["box"]["description"] and "index" in face
    assert "swagger" in requests.get(url + "/docs", timeout=30).text.lower()


@pytest.mark.exclusive  # its own Ray, started by the command: nothing beside it
def test_the_command_serves_and_stops_cleanly_on_sigterm(tmp_path):
    import signal
    import subprocess
    import sys

    import requests

    from tests.conftest import ROOT, wait_for
    from trainable.model import random_model_file

    path, port = random_model_file(tmp_path / "model.pt"), free_port()
    command = [sys.executable, "-m", "study.serve", str(path), "--no-detect", "--port", str(port)]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def healthy() -> bool:
        try:
            return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
        except requests.RequestException:  # not up yet: refused, or accepted and not answered yet
            return False

    photo = tmp_path / "photo.jpg"
    Image.new("RGB", (160, 160), (120, 90, 60)).save(photo)
    try:
        assert wait_for(healthy, 240), "the server never answered /healthz"
        for documented in documented_curls():  # as the docs write them, on this server and photo
            argv = shlex.split(
                re.sub(r"@\S+\.jpg", f"@{photo}", documented.replace("127.0.0.1:8000", f"127.0.0.1:{port}"))
            )
            reply = subprocess.run([*argv, "-s", "-w", "\n%{http_code}"], capture_output=True, text=True, timeout=60)
            body, code = reply.stdout.rsplit("\n", 1)
            assert code == "200" and "faces" in json.loads(body), (documented, code, body)
        plain = ["curl", "-s", "-w", "\n%{http_code}", f"http://127.0.0.1:{port}/predict"]  # no Content-Type given
        sniffed = subprocess.run([*plain, "--data-binary", f"@{photo}"], capture_output=True, text=True, timeout=60)
        assert sniffed.stdout.endswith("\n200"), sniffed.stdout  # curl's form type, an image's bytes: taken
        text = subprocess.run([*plain, "--data-binary", "not an image"], capture_output=True, text=True, timeout=60)
        assert text.stdout.endswith("\n415") and "-H 'Content-Type: image/jpeg'" in text.stdout, text.stdout
        with concurrent.futures.ThreadPoolExecutor(32) as pool:  # a burst: batches fill, nothing is warned of
            codes = list(
                pool.map(lambda _: post(f"http://127.0.0.1:{port}", photo.read_bytes()).status_code, range(64))
            )
        assert codes == [200] * 64
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0 and "Stopped." in out and "Traceback" not in out, out[-3000:]
    warned = [line for line in out.splitlines() if "WARN" in line and ("serve" in line.lower() or "Replica" in line)]
    assert not warned and "max_ongoing_requests" not in out, warned
    # without -v the log is the command's own lines: no colour codes, no INFO or access line of Serve's
    lines = [line for line in out.splitlines() if line.strip()]
    assert "\x1b" not in out and not [line for line in lines if " INFO " in line or "/predict" in line.split()[:3]]
    assert lines[0].startswith("Serving ") and lines[-1] == "Stopped." and len(lines) <= 4, lines


def documented_curls() -> list[str]:
    """Every curl that posts to /predict in the README, the docs (tests/test_readme.py's reading of
    their shell blocks) and the manifests' comments, as written."""
    import glob

    from tests.conftest import ROOT
    from tests.test_readme import documented_commands

    found = [line for _, line, _ in documented_commands() if line.startswith("curl ") and "/predict" in line]
    for path in glob.glob(os.path.join(ROOT, "kubernetes", "*.yaml")):
        found += re.findall(r"^#\s+(curl [^\n]*?/predict)", open(path).read(), re.M)
    assert len(found) >= 3, found  # docs/model.md's two, the RayService's one
    return found


def test_slow_bodies_are_cut_and_healthz_answers_throughout(tmp_path):
    """20 uploads that declare 100,000 bytes, send 2 and hold on: each is answered 408 (its body
    past FACE_AGE_BODY_SECONDS) or 503 (past FACE_AGE_UPLOADS_PER_CLIENT arriving at once), and
    /healthz answers in under 1 s throughout; a JSON body nested 100,000 deep is a 400."""
    import signal
    import socket
    import subprocess
    import sys
    import time

    import requests

    from tests.conftest import ROOT, wait_for
    from trainable.model import random_model_file

    path, port = random_model_file(tmp_path / "model.pt"), free_port()
    env = {**os.environ, "FACE_AGE_BODY_SECONDS": "4"}
    command = [sys.executable, "-m", "study.serve", str(path), "--no-detect", "--port", str(port)]
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:  # the health application routed (Serve's /-/routes), and answering
        try:
            routed = "/healthz" in requests.get(url + "/-/routes", timeout=5).json()
            return routed and requests.get(url + "/healthz", timeout=5).status_code == 200
        except requests.RequestException:
            return False

    try:
        assert wait_for(healthy, 240), "the server never answered /healthz"
        time.sleep(2)  # the proxy's routes settle
        slow = []
        for _ in range(20):
            s = socket.create_connection(("127.0.0.1", port), timeout=30)
            s.sendall(
                b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: 100000\r\n\r\nab"
            )
            slow.append(s)
        began, latencies = time.monotonic(), []
        while time.monotonic() - began < 8:
            start = time.monotonic()
            assert requests.get(url + "/healthz", timeout=5).json() == {"status": "ok"}
            latencies.append(time.monotonic() - start)
            time.sleep(0.2)
        statuses = [s.recv(200).split(b" ", 2)[1].decode() for s in slow]  # answered by now (4 s deadline)
        for s in slow:
            s.close()
        deep = requests.post(url + "/predict", data=b"[" * 100_000, headers={"Content-Type": "application/json"})
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=120)
    latencies.sort()
    median, worst = latencies[len(latencies) // 2] * 1000, latencies[-1] * 1000
    print(f"/healthz under 20 slow bodies: {len(latencies)} checks, median {median:.0f} ms, max {worst:.0f} ms")
    print(f"the slow bodies' answers: {sorted(statuses)}")
    assert latencies[-1] < 1.0 and set(statuses) <= {"408", "503"} and "408" in statuses, (latencies, statuses)
    assert deep.status_code == 400 and "not nested 8 levels deep" in deep.json()["detail"], deep.text
    assert "Traceback" not in out, out[-3000:]
