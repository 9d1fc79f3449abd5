"""Start and stop a local tritonserver process (the wheel's binary) over a prepared repository."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from triton_models.env import TritonEnv, ensure_env
from triton_models.local_repo import prepare_local_repo

DEFAULT_REPO = Path(__file__).resolve().parent


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now on `host`."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


@dataclass
class TritonServer:
    """A tritonserver process serving a local copy of `repo` (context manager)."""

    repo: Path = DEFAULT_REPO
    host: str = "127.0.0.1"
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    env: TritonEnv | None = None
    workdir: Path | None = None
    log_path: Path | None = None
    process: subprocess.Popen | None = field(default=None, repr=False)
    _tmp: tempfile.TemporaryDirectory | None = field(default=None, repr=False)

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"grpc://{self.host}:{self.grpc_port}"

    def start(self, *, timeout_s: float = 120.0) -> TritonServer:
        """Prepare the local repository, launch tritonserver, and wait until it is ready."""
        self.env = self.env or ensure_env()
        if self.workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="fsa-triton-")
            self.workdir = Path(self._tmp.name)
        local_repo = prepare_local_repo(self.repo, self.workdir / "repo")
        self.log_path = self.workdir / "tritonserver.log"
        shm_prefix = f"fsa{uuid.uuid4().hex[:8]}_"
        cmd = [
            str(self.env.tritonserver),
            f"--model-repository={local_repo}",
            f"--backend-directory={self.env.backends}",
            f"--http-address={self.host}",
            f"--grpc-address={self.host}",
            f"--http-port={self.http_port}",
            f"--grpc-port={self.grpc_port}",
            f"--metrics-port={self.metrics_port}",
            "--backend-config=python,shm-default-byte-size=4194304",
            "--backend-config=python,shm-growth-byte-size=4194304",
            f"--backend-config=python,shm-region-prefix-name={shm_prefix}",
            "--pinned-memory-pool-byte-size=0",
            "--cuda-memory-pool-byte-size=0:0",
            "--allow-gpu-metrics=false",
            "--exit-timeout-secs=10",
            "--log-verbose=0",
        ]
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env.process_env(),
                start_new_session=True,
                cwd=self.workdir,
            )
        self.wait_ready(timeout_s=timeout_s)
        return self

    def log_tail(self, num_chars: int = 4000) -> str:
        """The end of the server log."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-num_chars:]

    def wait_ready(self, *, timeout_s: float) -> None:
        """Poll /v2/health/ready; raise with the log tail if the process dies or times out."""
        deadline = time.monotonic() + timeout_s
        url = f"{self.http_url}/v2/health/ready"
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(
                    f"tritonserver exited with code {self.process.returncode}:\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(url, timeout=1.0) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"tritonserver not ready after {timeout_s:.0f} s:\n{self.log_tail()}")

    def stop(self, *, timeout_s: float = 15.0) -> None:
        """SIGTERM, wait, then kill the process group if it is still there."""
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
            self.workdir = None

    def __enter__(self) -> TritonServer:
        return self.start() if self.process is None else self

    def __exit__(self, *exc) -> None:
        self.stop()
