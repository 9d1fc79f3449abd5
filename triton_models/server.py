"""Start and stop a local tritonserver process (the wheel's binary) over a prepared repository.

Also watches its python-backend stubs (one child process per model instance): Triton 2.51 does
not restart a stub that died (its instance then fails every request it gets, "Stub process
'<instance>' is not healthy", while /v2/health/ready stays 200), so `dead_stubs` finds them
from /proc and `restart` brings the server back (`python -m triton_models.serve` does both).
"""

from __future__ import annotations

import contextlib
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
STUB_BINARY = "triton_python_backend_stub"
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class ProcInfo:
    """One process as /proc/<pid>/stat and cmdline describe it."""

    pid: int
    ppid: int
    state: str  # R, S, D, Z (zombie: exited, not reaped), ...
    rss_bytes: int
    argv: tuple[str, ...]
    cpu_s: float = 0.0  # user + system CPU seconds so far


def _proc_info(pid: int) -> ProcInfo | None:
    """The process `pid`, or None when it is gone (Linux /proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)": state ppid ... rss is 24th
    return ProcInfo(
        pid=pid,
        ppid=int(fields[1]),
        state=fields[0],
        rss_bytes=int(fields[21]) * PAGE_SIZE,
        argv=tuple(a.decode(errors="replace") for a in argv if a),
        cpu_s=(int(fields[11]) + int(fields[12])) / CLOCK_TICKS,  # utime, stime
    )


def child_processes(pid: int) -> list[ProcInfo]:
    """The direct children of `pid` (zombies included)."""
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            info = _proc_info(int(entry.name))
            if info is not None and info.ppid == pid:
                children.append(info)
    return children


def stub_instances(pid: int) -> dict[int, str]:
    """{stub pid: model instance name} of the live python-backend stubs of tritonserver `pid`
    (the instance name is the stub's second-to-last argument, e.g. `skin_analysis_1_0`)."""
    return {
        c.pid: c.argv[-2]
        for c in child_processes(pid)
        if c.state != "Z" and c.argv and c.argv[0].endswith(STUB_BINARY) and len(c.argv) > 2
    }


def tree_rss_bytes(pid: int) -> int:
    """Resident memory of `pid` and its direct children (the stubs), in bytes."""
    own = _proc_info(pid)
    return (own.rss_bytes if own else 0) + sum(c.rss_bytes for c in child_processes(pid))


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of `pid` and its live direct children (the stubs)."""
    own = _proc_info(pid)
    return (own.cpu_s if own else 0.0) + sum(c.cpu_s for c in child_processes(pid))


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
    # False: skin_analysis calls `classify` through BLS, as in the NGC container (local_repo.py)
    classifier_in_process: bool = True
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    env: TritonEnv | None = None
    workdir: Path | None = None
    log_path: Path | None = None
    process: subprocess.Popen | None = field(default=None, repr=False)
    stubs: dict[int, str] = field(default_factory=dict)  # pid -> instance, taken when ready
    _shm_prefix: str | None = field(default=None, repr=False)
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
        local_repo = prepare_local_repo(
            self.repo, self.workdir / "repo", classifier_in_process=self.classifier_in_process
        )
        self.log_path = self.workdir / "tritonserver.log"
        shm_prefix = self._shm_prefix = f"fsa{uuid.uuid4().hex[:8]}_"
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
            # Instance priorities (skin_analysis/config.pbtxt): the preferred instance answers
            # while the other is not needed, instead of the two taking turns.
            "--rate-limit=execution_count",
        ]
        with open(self.log_path, "ab") as log:  # a restart appends to the same log
            self.process = subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env.process_env(),
                start_new_session=True,
                cwd=self.workdir,
            )
        self.wait_ready(timeout_s=timeout_s)
        self.stubs = stub_instances(self.process.pid)
        return self

    def dead_stubs(self) -> list[str]:
        """Instances whose stub died since the server became ready (sorted)."""
        if self.process is None:
            return []
        alive = stub_instances(self.process.pid)
        return sorted(name for pid, name in self.stubs.items() if pid not in alive)

    def stub_cpu_seconds(self) -> dict[str, float]:
        """User + system CPU seconds so far of each live python stub, by instance name."""
        if self.process is None:
            return {}
        return {
            name: info.cpu_s
            for pid, name in stub_instances(self.process.pid).items()
            if (info := _proc_info(pid)) is not None
        }

    def cpu_seconds(self) -> float:
        """CPU seconds tritonserver and its stubs have used so far (0 when not running)."""
        return 0.0 if self.process is None else tree_cpu_seconds(self.process.pid)

    def rss_bytes(self) -> int:
        """Resident memory of tritonserver and its stubs, in bytes (0 when not running)."""
        return 0 if self.process is None else tree_rss_bytes(self.process.pid)

    def restart(self, *, timeout_s: float = 120.0, drain_s: float = 5.0) -> TritonServer:
        """Stop the process (SIGTERM, SIGKILL after `drain_s`; the work folder stays) and start
        it again on the same ports."""
        self._terminate(drain_s)
        return self.start(timeout_s=timeout_s)

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

    def _terminate(self, timeout_s: float = 15.0) -> None:
        """SIGTERM, wait, then kill whatever is left of the process group (stubs included)."""
        proc, self.process = self.process, None
        self.stubs = {}
        if proc is not None:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=timeout_s)
            # The server if it outlived the wait, and stubs left behind by a server that died.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        self._remove_shared_memory()

    def _remove_shared_memory(self) -> None:
        """Remove this run's python-backend regions that a killed stub or server left behind."""
        if self._shm_prefix is not None:
            for region in Path("/dev/shm").glob(f"{self._shm_prefix}*"):
                region.unlink(missing_ok=True)

    def stop(self, *, timeout_s: float = 15.0) -> None:
        """SIGTERM, wait, kill the process group if it is still there; remove a temp workdir."""
        self._terminate(timeout_s)
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
            self.workdir = None

    def __enter__(self) -> TritonServer:
        return self.start() if self.process is None else self

    def __exit__(self, *exc) -> None:
        self.stop()
