"""/healthz while slow clients hold uploads open: `study.serve` (of this checkout, or of another
`--tree`, to compare a commit before) with a random-weights model; 20 uploads declare 100,000 bytes,
send 2 and hold on; /healthz is asked every 0.5 s for 30 s (a 5 s timeout counts as no answer);
then what each slow upload was answered.

    python -m study.bench.slow_bodies [--tree DIR] [--port 8123]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

from trainable.cli_options import prog

SLOW, SECONDS, EVERY, TIMEOUT = 20, 30, 0.5, 5


def healthz_s(url: str) -> float | None:
    import requests

    began = time.monotonic()
    try:
        ok = requests.get(url + "/healthz", timeout=TIMEOUT).status_code == 200
    except requests.RequestException:
        return None
    return time.monotonic() - began if ok else None


def measure(tree: str, port: int) -> str:
    from trainable.model import random_model_file

    model = random_model_file(os.path.join(tempfile.mkdtemp(), "model.pt"))
    command = [sys.executable, "-m", "study.serve", model, "--no-detect", "--port", str(port)]
    server = subprocess.Popen(command, cwd=tree, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        while healthz_s(url) is None:
            time.sleep(EVERY)
        time.sleep(3)  # every route up
        slow = [socket.create_connection(("127.0.0.1", port), timeout=60) for _ in range(SLOW)]
        for s in slow:
            s.sendall(
                b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: 100000\r\n\r\nab"
            )
        seen, began = [], time.monotonic()
        while time.monotonic() - began < SECONDS:
            seen.append(healthz_s(url))
            time.sleep(EVERY)
        answers = []
        for s in slow:
            s.settimeout(EVERY)
            try:
                answers.append(s.recv(100).split(b" ")[1].decode())
            except (OSError, IndexError):
                answers.append("none")
            s.close()
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(120)
    answered = sorted(v for v in seen if v is not None)
    times = f", median {answered[len(answered) // 2] * 1e3:.0f} ms, max {answered[-1] * 1e3:.0f} ms" if answered else ""
    counts = ", ".join(f"{answers.count(a)} x {a}" for a in sorted(set(answers)))
    unanswered = len(seen) - len(answered)
    return f"{tree}: /healthz {len(seen)} checks, {unanswered} unanswered in {TIMEOUT} s{times}; slow uploads: {counts}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog=prog("study.bench.slow_bodies"), description=__doc__.split("\n")[0])
    p.add_argument("--tree", default=os.getcwd(), help="the checkout whose study.serve runs (default: this one)")
    p.add_argument("--port", type=int, default=8123)
    args = p.parse_args(argv)
    print(measure(os.path.abspath(args.tree), args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
