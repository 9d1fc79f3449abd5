"""Two processes on one machine train like one process with two devices (`jax.distributed`).

`python train_jax/main.py` runs as two processes on 127.0.0.1 (JAX_COORDINATOR_ADDRESS,
JAX_NUM_PROCESSES=2, JAX_PROCESS_ID; one CPU device each; gloo CPU collectives, JAX's default
on CPU) and as one process with two forced devices, on the quick demo config. Checked:

* the same metrics (every epoch's losses and validation metrics, the test metrics);
* each process reads only its columns of every global batch (train and evaluation), and
  together they read all of them;
* only process 0 writes: no file under the output folder is opened for writing, created,
  renamed or removed by process 1 (Python's audit events; orbax writes its arrays in C++, so the
  checkpoint folders are also checked for a second process's shards), one MLflow run;
* orbax checkpoints cross over: a two-process run stopped after epoch 1 resumes in one process,
  and a one-process run resumes in two, both ending with the uninterrupted run's metrics.

Instrumentation lives in a `sitecustomize` module written to a temporary folder on PYTHONPATH,
so the processes run the real CLI unchanged.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.train_jax.conftest import quick_args

ROOT = Path(__file__).resolve().parents[2]
MAIN = str(ROOT / "train_jax" / "main.py")
BATCH, EVAL_BATCH = 8, 32  # the quick config's global batches (32 is a multiple of 2 devices)

SITECUSTOMIZE = r'''
import importlib.abc, importlib.machinery, json, os, sys

_LOG = os.environ.get("FSA_TEST_LOG")
_WATCH = os.environ.get("FSA_TEST_WATCH", "\0")
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def _record(kind, **fields):
    with open(_LOG, "a") as f:  # the log itself is outside the watched folder
        f.write(json.dumps({"kind": kind, **fields}) + "\n")


def _audit(event, args):
    if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
        path, mode, flags = os.fsdecode(args[0]), args[1] or "", args[2] or 0
        writes = any(c in mode for c in "wax+") or bool(flags & _WRITE_FLAGS)
        if writes and os.path.abspath(path).startswith(_WATCH):
            _record("write", event=event, path=path)
    elif event in ("os.mkdir", "os.rename", "os.remove", "os.rmdir", "sqlite3.connect"):
        paths = [os.fsdecode(a) for a in args[:2] if isinstance(a, (str, bytes, os.PathLike))]
        if any(os.path.abspath(path).startswith(_WATCH) for path in paths):
            _record("write", event=event, path=paths[-1])  # a rename's destination


class _PatchInput(importlib.abc.MetaPathFinder):
    """Log every example train_jax.input reads: (pipeline, global position, record)."""

    def find_spec(self, name, path, target=None):
        if name != "train_jax.input":
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            get = module._Positions.__getitem__

            def logged(self, i):
                kind = self._fn.__qualname__.split(".")[0]  # train_batches / eval_batches
                _record("read", fn=kind, pos=int(self._position[i]), index=int(self._index[i]))
                return get(self, i)

            module._Positions.__getitem__ = logged

        spec.loader.exec_module = exec_module
        return spec


if _LOG:
    sys.addaudithook(_audit)
    sys.meta_path.insert(0, _PatchInput())
'''


def _free_port() -> int:
    """A TCP port free on 127.0.0.1 for the coordinator."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(hooks: Path, log: Path, watch: Path, **extra: str) -> dict[str, str]:
    """The environment of one process: CPU, the instrumentation, no inherited cluster."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "XLA_FLAGS"))}
    # keep the session's compilation cache (tests/train_jax/conftest.py)
    for key in ("JAX_COMPILATION_CACHE_DIR", "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"):
        if key in os.environ:
            env[key] = os.environ[key]
    env.update(JAX_PLATFORMS="cpu", FSA_TEST_LOG=str(log), FSA_TEST_WATCH=str(watch), **extra)
    env["PYTHONPATH"] = os.pathsep.join([str(hooks), str(ROOT), env.get("PYTHONPATH", "")])
    return env


def _launch(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    """Start `python train_jax/main.py ARGS`."""
    return subprocess.Popen(
        [sys.executable, MAIN, *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait(procs: list[subprocess.Popen]) -> list[str]:
    """Wait for every process; their stdout."""
    outs = []
    for proc in procs:
        try:
            out, err = proc.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            raise
        assert proc.returncode == 0, err[-4000:]
        outs.append(out)
    return outs


class Cluster:
    """Launches the CLI as one process (two forced devices) or two (one device each)."""

    def __init__(self, root: Path, data: Path) -> None:
        self.root, self.data = root, data
        self.out = root / "outputs"
        self.hooks = root / "hooks"
        self.hooks.mkdir()
        (self.hooks / "sitecustomize.py").write_text(SITECUSTOMIZE)
        self.logs = root / "logs"
        self.logs.mkdir()
        self.stdout: dict[str, list[str]] = {}

    def one(self, name: str, *args: str) -> None:
        """One process, two devices."""
        env = _env(
            self.hooks,
            self.logs / f"{name}.single.jsonl",
            self.out,
            XLA_FLAGS="--xla_force_host_platform_device_count=2",
        )
        _wait([_launch(list(args), env)])

    def two(self, name: str, *args: str) -> None:
        """Two processes of one device each, coordinated over 127.0.0.1."""
        cluster = {"JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{_free_port()}", "JAX_NUM_PROCESSES": "2"}
        procs = [
            _launch(
                list(args),
                _env(
                    self.hooks,
                    self.logs / f"{name}.{rank}.jsonl",
                    self.out,
                    JAX_PROCESS_ID=str(rank),
                    **cluster,
                ),
            )
            for rank in (0, 1)
        ]
        self.stdout[name] = _wait(procs)

    def log(self, name: str) -> list[dict]:
        """The events one process of one launch recorded."""
        path = self.logs / f"{name}.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def quick(self, run: str, *extra: str) -> list[str]:
        """The quick config's flags for run `run`."""
        return quick_args(self.data, self.out, run, *extra)

    def metrics(self, run: str) -> dict:
        """metrics.json of a run."""
        return json.loads((self.out / run / "metrics.json").read_text())


@pytest.fixture(scope="module")
def cluster(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Cluster:
    """Two runs of two epochs: `two_one` in two processes to the end of epoch 1, then resumed in
    one; `one_two` the other way round (MLflow on)."""
    c = Cluster(tmp_path_factory.mktemp("multihost"), tiny_dataset)
    c.two("two_one.stop", *c.quick("two_one", "--max-steps", "4", "--no-mlflow"))
    c.one("two_one.resume", "--resume", "--run", "two_one", "--out", str(c.out), "--no-progress")
    c.one("one_two.stop", *c.quick("one_two", "--max-steps", "4"))
    resume = ["--resume", "--run", "one_two", "--out", str(c.out), "--no-progress", "--json"]
    c.two("one_two.resume", *resume)
    return c


def test_two_processes_give_the_metrics_of_one_process_with_two_devices(cluster: Cluster) -> None:
    """Epoch 1 (and its checkpoint) of `two_one` ran in two processes, of `one_two` in one;
    epoch 2 and the test predictions the other way round: every number agrees."""
    a, b = cluster.metrics("two_one"), cluster.metrics("one_two")
    assert (a["timing"]["processes"], b["timing"]["processes"]) == (1, 2)  # the last part
    assert a["timing"]["devices"] == b["timing"]["devices"] == 2
    assert len(a["history"]) == len(b["history"]) == 2
    for ea, eb in zip(a["history"], b["history"], strict=True):
        for key in ea:
            if key.startswith(("val/", "train/")) or key in ("epoch", "step"):
                assert eb[key] == pytest.approx(ea[key], abs=1e-5, nan_ok=True), key
    assert b["test"] == pytest.approx(a["test"], abs=1e-5, nan_ok=True)
    assert b["val"] == pytest.approx(a["val"], abs=1e-5, nan_ok=True)
    assert b["best"]["step"] == a["best"]["step"]
    # --json: each process's stdout is the metrics alone (gloo's native print went to stderr)
    for out in cluster.stdout["one_two.resume"]:
        assert json.loads(out)["test"] == pytest.approx(b["test"], nan_ok=True)


def test_each_process_reads_only_its_shard(cluster: Cluster) -> None:
    for launch in ("two_one.stop", "one_two.resume"):
        reads = {rank: cluster.log(f"{launch}.{rank}") for rank in (0, 1)}
        for fn, batch in (("train_batches", BATCH), ("eval_batches", EVAL_BATCH)):
            positions = {}
            for rank, events in reads.items():
                mine = [e["pos"] for e in events if e["kind"] == "read" and e["fn"] == fn]
                assert mine, (launch, rank, fn)
                # position p of a global batch belongs to process (p % batch) // (batch / 2)
                assert {(p % batch) // (batch // 2) for p in mine} == {rank}, (launch, fn)
                positions[rank] = set(mine)
            every = positions[0] | positions[1]
            # together: whole global batches, positions 0 .. n-1
            assert every == set(range(len(every))) and len(every) % batch == 0, (launch, fn)


def test_only_process_zero_writes(cluster: Cluster) -> None:
    for launch in ("two_one.stop", "one_two.resume"):
        writes = {
            rank: [e for e in cluster.log(f"{launch}.{rank}") if e["kind"] == "write"]
            for rank in (0, 1)
        }
        assert writes[1] == [], writes[1][:5]
        written = {Path(e["path"]).name for e in writes[0]}
        assert {"metrics.json", "predictions_test.csv"} <= written, sorted(written)[:20]
    mlflow_events = [
        e for e in cluster.log("one_two.resume.0") if e.get("event") == "sqlite3.connect"
    ]
    assert mlflow_events  # process 0 logged to MLflow in its two-process part
    # orbax: no array shards from a second process in any checkpoint
    for run in ("two_one", "one_two"):
        shards = list((cluster.out / run / "checkpoints").rglob("*process_1*"))
        assert shards == [], shards[:5]
    with sqlite3.connect(cluster.out / "mlflow.db") as db:
        names = [row[0] for row in db.execute("select name from runs")]
    assert names == ["one_two"]  # one MLflow run, continued by the two-process resume
