"""`python -m triton_models.serve`: prints endpoints when ready, stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from triton_models.env import ensure_env
from triton_models.server import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_serve_prints_endpoints_and_exits_0_on_sigterm(tmp_path):
    ensure_env()  # shared with the other serving tests; created once
    ports = [free_port() for _ in range(3)]
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "triton_models.serve",
                "--http-port",
                str(ports[0]),
                "--grpc-port",
                str(ports[1]),
                "--metrics-port",
                str(ports[2]),
            ],
            cwd=REPO_ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 180
        while "Ctrl-C to stop" not in log.read_text() and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()[-3000:]
            time.sleep(0.3)
        text = log.read_text()
        assert f"grpc://127.0.0.1:{ports[1]}" in text and f"http://127.0.0.1:{ports[0]}" in text
        url = f"http://127.0.0.1:{ports[0]}/v2/models/skin_analysis/ready"
        with urllib.request.urlopen(url, timeout=5) as resp:
            assert resp.status == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
