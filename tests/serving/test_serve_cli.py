"""`python -m triton_models.serve`: prints endpoints when ready, stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

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


class _CrashingServer:
    """Stands in for a TritonServer whose process exits at once, killed (a real
    process; what `watch` decides on the way is the subject here, a real tritonserver's death is
    tested in test_load_faults.py)."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.restarts, self.stop_after = 0, stop_after
        self.process = self._crash()

    @staticmethod
    def _crash() -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"]
        )

    def dead_stubs(self) -> list[str]:
        return []

    def restart(self, *, timeout_s: float) -> None:
        if self.stop_after is not None and self.restarts == self.stop_after:
            raise KeyboardInterrupt  # ends a watch that would otherwise go on
        self.restarts += 1
        self.process = self._crash()


def test_watch_restarts_a_dead_server_and_gives_up_on_a_crash_loop(capsys):
    from triton_models.serve import watch

    server = _CrashingServer()
    reason = watch(server, restart=True, timeout_s=1, poll_s=0.05, max_restarts=3)
    assert server.restarts == 3
    assert reason.startswith("tritonserver exited with code -9") and "giving up" in reason
    out = capsys.readouterr()
    assert out.err.count("warning: tritonserver exited with code -9") == 4
    assert "restarted tritonserver (3)" in out.out


def test_watch_forgets_restarts_older_than_its_window():
    from triton_models.serve import watch

    server = _CrashingServer(stop_after=5)
    with pytest.raises(KeyboardInterrupt):  # 5 restarts although only 1 is allowed per window
        watch(server, restart=True, timeout_s=1, poll_s=0.05, max_restarts=1, window_s=0.01)
    assert server.restarts == 5


def test_watch_without_restart_reports_and_returns():
    from triton_models.serve import watch

    server = _CrashingServer()
    reason = watch(server, restart=False, timeout_s=1, poll_s=0.05)
    assert server.restarts == 0 and reason == "tritonserver exited with code -9"


def test_serve_refuses_a_negative_restart_limit(capsys):
    from triton_models.serve import main

    with pytest.raises(SystemExit) as exc:
        main(["--max-restarts", "-1"])
    assert exc.value.code == 2 and "--max-restarts must be >= 0" in capsys.readouterr().err
