"""Load, memory, bad input, a killed python stub, retries, metrics and drift on a REAL server.

Each test states what it measures; docs/serving.md ("Load and fault behaviour") gives the numbers
measured on the 2-core development machine. The module's own server (not the session one) is
restarted by the stub test, so the other serving tests never see a degraded server.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import signal
import struct
import subprocess
import sys
import threading
import time
import urllib.request
import zlib
from pathlib import Path

import numpy as np
import pytest

from client import monitoring
from client.analyze import EXIT_OK, EXIT_UNREACHABLE, main
from client.retry import call_with_retries
from client.triton_client import ServerRequestError, ServerUnreachableError, TritonRunner
from tests.serving.conftest import serve_shipped_model
from triton_models import drift
from triton_models.server import TritonServer, child_processes, free_port

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "docs" / "examples").glob("*.jpg"))
ACNE_NEW = ROOT / "data" / "acne-new-v36"
REAL_REPORT = ROOT / "outputs" / "pipeline" / "real" / "fairness"
PIPELINE_MODEL = ROOT / "outputs" / "pipeline" / "model" / "model.onnx"  # the report's model


def _report_is_of_the_shipped_model() -> bool:
    """Whether the real-data report was made with the served model (a `dvc repro` on another
    machine trains a slightly different one)."""
    shipped = ROOT / "models" / "default" / "model.onnx"
    return PIPELINE_MODEL.is_file() and PIPELINE_MODEL.read_bytes() == shipped.read_bytes()


MAX_PIXELS = 50_000_000  # decode's max_pixels (triton_models/decode/config.pbtxt)
MEMORY_WARMUP, MEMORY_REQUESTS = 100, 1000
PROB_ATOL = 1e-3  # batch-size effects of dynamic batching (see assert_same)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A tritonserver of the shipped model for this module only (its stubs get killed)."""
    yield from serve_shipped_model(tmp_path_factory, "load")


@pytest.fixture(scope="module")
def images(synthetic_jpegs) -> list[bytes]:
    """Four synthetic faces and the example photos (one face each)."""
    return [*synthetic_jpegs, *(p.read_bytes() for p in EXAMPLES)]


@pytest.fixture(scope="module")
def references(server, images):
    """One reference result per image, from a single call each."""
    runner = TritonRunner(server.grpc_url)
    try:
        return [runner.analyze_bytes(data) for data in images]
    finally:
        runner.close()


def assert_same(raw, ref) -> None:
    """The same analysis as the reference call. Under load the ONNX models run dynamic batches,
    whose float sums differ from batch 1 (up to 1.2e-4 in probability measured here), so
    probabilities match to PROB_ATOL and decisions wherever the reference is farther than that
    from its threshold."""
    assert raw.num_faces == ref.num_faces
    np.testing.assert_allclose(raw.probs, ref.probs, atol=PROB_ATOL, rtol=0)
    np.testing.assert_allclose(raw.boxes, ref.boxes, atol=0.05, rtol=0)
    clear = np.abs(ref.probs - ref.thresholds) > PROB_ATOL
    np.testing.assert_array_equal(raw.decisions[clear], ref.decisions[clear])
    assert raw.groups == ref.groups and raw.sources == ref.sources
    assert raw.warnings == ref.warnings and raw.rejected == ref.rejected


def run_threads(num_threads: int, work) -> list[BaseException]:
    """Run work(k) in num_threads threads; the exceptions they raised."""
    failures: list[BaseException] = []

    def target(k: int) -> None:
        try:
            work(k)
        except BaseException as exc:  # collected and reported by the caller
            failures.append(exc)

    threads = [threading.Thread(target=target, args=(k,)) for k in range(num_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    return failures


def replay(url: str, payloads: list[bytes], num_threads: int = 4) -> None:
    """Send every payload once over gRPC from num_threads clients; raise the first failure."""

    def work(k: int) -> None:
        runner = TritonRunner(url)
        try:
            for data in payloads[k::num_threads]:
                runner.analyze_bytes(data)
        finally:
            runner.close()

    failures = run_threads(num_threads, work)
    assert not failures, failures[:3]


def is_ready(srv: TritonServer) -> bool:
    with urllib.request.urlopen(f"{srv.http_url}/v2/health/ready", timeout=5) as resp:
        return resp.status == 200


def metrics_url(srv: TritonServer) -> str:
    return f"http://{srv.host}:{srv.metrics_port}/metrics"


def settled_scrape(url: str, timeout_s: float = 5.0) -> str:
    """The /metrics page once its fsa_ counters stopped moving: skin_analysis sends them from a
    background thread every FLUSH_INTERVAL_S, so a scrape right after the last answer may
    miss the last requests' increments."""

    def counters(text: str) -> list[str]:
        return [line for line in text.splitlines() if line.startswith(monitoring.PREFIX)]

    last = urllib.request.urlopen(url, timeout=5).read().decode()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        time.sleep(monitoring.FLUSH_INTERVAL_S + 0.2)
        text = urllib.request.urlopen(url, timeout=5).read().decode()
        if counters(text) == counters(last):
            return text
        last = text
    raise AssertionError(f"{url}: the fsa_ counters still move after {timeout_s} s")


def huge_png(width: int, height: int) -> bytes:
    """A valid all-black greyscale PNG of width x height: over 50 M pixels in ~50 kB."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    raw = zlib.compress(b"\0" * ((width + 1) * height), 9)
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


def test_sixteen_grpc_threads_of_25_requests_match_the_reference(server, images, references):
    """16 threads x 25 requests over gRPC, each result equal to the single reference call."""
    results: list[tuple[int, object]] = []

    def work(k: int) -> None:
        runner = TritonRunner(server.grpc_url)
        try:
            for i in range(25):
                j = (k + i) % len(images)
                results.append((j, runner.analyze_bytes(images[j])))
        finally:
            runner.close()

    start = time.monotonic()
    failures = run_threads(16, work)
    elapsed = time.monotonic() - start
    assert not failures, failures[:3]
    assert len(results) == 16 * 25
    for j, raw in results:
        assert_same(raw, references[j])
    print(f"\n400 gRPC requests from 16 threads: {elapsed:.1f} s, {400 / elapsed:.1f} req/s")


def test_memory_after_1000_requests_is_within_10_percent_of_after_100(server, images):
    """RSS of tritonserver + its stubs (/proc) after MEMORY_REQUESTS (1,000) requests is within
    10% of the RSS after MEMORY_WARMUP (100). The full 1,000 requests take about 23 s over 4
    gRPC threads on the 2-core development machine, so the test runs the count the goal asks."""
    payloads = [images[i % len(images)] for i in range(MEMORY_REQUESTS)]
    start = time.monotonic()
    replay(server.grpc_url, payloads[:MEMORY_WARMUP])
    rss_warm = server.rss_bytes()
    replay(server.grpc_url, payloads[MEMORY_WARMUP:])
    rss_after = server.rss_bytes()
    elapsed = time.monotonic() - start
    print(
        f"\nRSS after {MEMORY_WARMUP}: {rss_warm / 2**20:.0f} MiB, after {MEMORY_REQUESTS}: "
        f"{rss_after / 2**20:.0f} MiB ({(rss_after / rss_warm - 1) * 100:+.1f}%), "
        f"{MEMORY_REQUESTS} requests in {elapsed:.0f} s"
    )
    assert rss_after <= 1.10 * rss_warm


def test_bad_input_under_load_fails_alone_and_the_server_stays_ready(server, images, references):
    """Corrupt bytes and a 50.4 M pixel PNG mixed into 8 threads x 12 requests: those get
    INVALID_ARG (invalid input), the others their normal result."""
    huge = huge_png(8000, MAX_PIXELS // 8000 + 100)
    assert len(huge) < 200_000
    bad = {"corrupt": b"\xff\xd8\xff\xe0 not a jpeg at all", "huge": huge}
    outcomes: list[tuple[str, object]] = []

    def work(k: int) -> None:
        runner = TritonRunner(server.grpc_url)
        try:
            for i in range(12):
                if i % 3 == 2:
                    name = "corrupt" if (k + i) % 2 else "huge"
                    with pytest.raises(ServerRequestError) as info:
                        runner.analyze_bytes(bad[name])
                    outcomes.append((name, info.value))
                else:
                    j = (k + i) % len(images)
                    outcomes.append((str(j), runner.analyze_bytes(images[j])))
        finally:
            runner.close()

    failures = run_threads(8, work)
    assert not failures, failures[:3]
    errors = [(n, e) for n, e in outcomes if n in bad]
    assert {n for n, _ in errors} == {"corrupt", "huge"} and len(errors) == 8 * 4
    for name, exc in errors:
        assert exc.invalid_input, exc
        assert "invalid image" in str(exc)
        assert name != "huge" or "too large" in str(exc) or "pixels" in str(exc), exc
    for name, raw in outcomes:
        if name not in bad:
            assert_same(raw, references[int(name)])
    assert is_ready(server)


def test_metrics_port_shows_the_per_group_families_after_traffic(server, images):
    before = drift.parse_prometheus(settled_scrape(metrics_url(server)))
    replay(server.grpc_url, images)
    samples = drift.parse_prometheus(settled_scrape(metrics_url(server)))
    # Both skin_analysis instances count into the same series: every request exactly once.
    key = (monitoring.IMAGES, (("status", "ok"),))
    assert samples[key] - before.get(key, 0.0) == len(images)
    names = {name for name, _ in samples}
    assert set(monitoring.LABELS) <= names
    faces = {dict(k)["group"]: v for (n, k), v in samples.items() if n == monitoring.FACES}
    assert set(faces) == {"I-II", "III-IV", "V-VI", "none"} and sum(faces.values()) > 0
    ok = samples[(monitoring.IMAGES, (("status", "ok"),))]
    assert ok >= len(images)
    # Every analysed image of this module had one face.
    assert sum(faces.values()) == ok


def _delta_scrape(now: dict, before: dict) -> str:
    """A scrape text of the counters since `before` (a reference period)."""
    delta, _ = drift.subtract(now, before)
    lines = []
    for (name, labels), value in sorted(delta.items()):
        if name.startswith(monitoring.PREFIX):
            text = ",".join(f'{k}="{v}"' for k, v in labels)
            lines.append(f"{name}{{{text}}} {value:g}")
    return "\n".join(lines) + "\n"


def run_drift(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = drift.main(list(args))
    return code, out.getvalue()


def test_drift_passes_on_the_same_traffic_and_fails_on_a_one_group_replay(server, images, tmp_path):
    """A reference period of mixed traffic, the same traffic again (ok), then a replay of one
    photo only (drifted), each compared with --since the scrape before it."""
    url = metrics_url(server)
    mixed = [data for data in images for _ in range(2)]
    before = drift.parse_prometheus(settled_scrape(url))
    replay(server.grpc_url, mixed)
    after_reference = drift.parse_prometheus(settled_scrape(url))
    reference = tmp_path / "reference.txt"
    reference.write_text(_delta_scrape(after_reference, before))
    since = tmp_path / "since.txt"
    since.write_text(settled_scrape(url))
    replay(server.grpc_url, mixed)
    settled_scrape(url)
    small = ["--min-faces", "10", "--min-group-faces", "3"]
    code, out = run_drift(
        "--metrics", url, "--since", str(since), "--reference", str(reference), *small
    )
    assert code == 0 and "status: ok" in out, out
    since.write_text(settled_scrape(url))
    replay(server.grpc_url, [(ROOT / "docs/examples/face.jpg").read_bytes()] * len(mixed))
    settled_scrape(url)
    code, out = run_drift(
        "--metrics", url, "--since", str(since), "--reference", str(reference), *small
    )
    assert code == 1 and "status: drifted" in out, out


def _validation_replay_skip() -> str:
    """Why the validation replay cannot run here ("" = it can)."""
    if not (ACNE_NEW / "metadata.csv").is_file() or not (REAL_REPORT / "metrics.json").is_file():
        return "acne-new v36 or its fairness report is not here (dvc pull / dvc repro)"
    if not _report_is_of_the_shipped_model():
        return "outputs/pipeline holds another model's report than models/default (dvc checkout)"
    return ""


@pytest.mark.skipif(bool(_validation_replay_skip()), reason=_validation_replay_skip())
def test_drift_passes_on_the_validation_photos_against_the_report(server, tmp_path):
    """The 318 validation photos of acne-new v36 replayed: the mix and the positive rates match
    the fairness report (default thresholds); one photo replayed instead: drifted."""
    with open(ACNE_NEW / "metadata.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == "val"]
    url = metrics_url(server)
    since = tmp_path / "since.txt"
    since.write_text(settled_scrape(url))
    replay(server.grpc_url, [(ACNE_NEW / r["image"]).read_bytes() for r in rows])
    settled_scrape(url)
    args = ["--metrics", url, "--since", str(since), "--reference", str(REAL_REPORT)]
    code, table = run_drift(*args)
    print("\n" + table)
    code, out = run_drift(*args, "--json")
    assert code == 0, out
    verdict = json.loads(out)
    assert verdict["status"] == "ok" and verdict["live"]["faces"] >= 300
    assert verdict["mix_shift"] < 0.05 and verdict["rate_shift"] < 0.05, out
    since.write_text(settled_scrape(url))
    replay(server.grpc_url, [(ACNE_NEW / rows[0]["image"]).read_bytes()] * 30)
    settled_scrape(url)
    code, out = run_drift(*args, "--min-faces", "20")
    print(out)
    assert code == 1 and "status: drifted" in out, out


def test_a_retry_succeeds_when_the_server_comes_up_late(server, tmp_path, capsys):
    """analyze.py --retries 8 started 1 s before a second server starts: refused, retried with
    backoff, then answered (exit 0)."""
    late = TritonServer(
        repo=server.repo,
        http_port=free_port(),
        grpc_port=free_port(),
        metrics_port=free_port(),
        workdir=tmp_path / "late",
    )
    timer = threading.Timer(1.0, late.start, kwargs={"timeout_s": 240})
    timer.start()
    try:
        image = str(ROOT / "docs" / "examples" / "face.jpg")
        start = time.monotonic()
        code = main(["--image", image, "--url", late.grpc_url, "--retries", "8", "--json"])
        elapsed = time.monotonic() - start
        timer.join()
        err = capsys.readouterr().err
        assert code == EXIT_OK, err
        assert "retry 1 in 0.5 s" in err
        with capsys.disabled():
            print(
                f"\nserver up late: answered after {err.count('retry ')} retries, {elapsed:.1f} s"
            )
    finally:
        timer.join()
        late.stop()


def _kill_stub_under_load(srv: TritonServer, instance: str, events: list) -> float:
    """SIGKILL the stub of `instance` of the running server; the kill's monotonic time. A stub
    already gone (with a server that aborted, `_xfail_if_tritonserver_aborted`) is no error."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(next(pid for pid, name in srv.stubs.items() if name == instance), signal.SIGKILL)
    events.append(("kill", instance, time.monotonic()))
    return time.monotonic()


TRITON_LOCK_ABORT = "boost::interprocess::lock_exception"


def _xfail_if_tritonserver_aborted(srv: TritonServer) -> None:
    """Triton 2.51's python backend can abort the whole server when a stub is SIGKILLed while it
    holds the shared-memory lock (docs/serving.md, "Load and fault behaviour"). Such a run says
    nothing about the dead-instance behaviour checked here, so it is an expected failure, after
    restarting the server for the rest of the module. Any other death of the server fails."""
    if srv.process is None or srv.process.poll() is None:
        return
    log = srv.log_tail(100_000)
    assert TRITON_LOCK_ABORT in log, f"tritonserver died:\n{log[-3000:]}"
    srv.restart(timeout_s=240)
    pytest.xfail(f"tritonserver aborted ({TRITON_LOCK_ABORT}) when a stub was killed")


def test_killed_stubs_fail_their_requests_cleanly_until_the_server_restarts(server, capsys):
    """Under load (4 gRPC threads), SIGKILL one of skin_analysis's two stubs, then the other.
    Triton 2.51 restarts neither: the dead instance keeps taking requests and failing them
    ("Stub process 'skin_analysis_0_0' is not healthy") while the other instance answers; with
    both dead every request fails (analyze.py: exit 3); /v2/health/ready says 200 throughout.
    TritonServer.restart brings the server back."""
    image = ROOT / "docs" / "examples" / "face.jpg"
    data = image.read_bytes()
    stop, events = threading.Event(), []

    def work(k: int) -> None:
        runner = TritonRunner(server.grpc_url)
        try:
            while not stop.is_set():
                try:
                    runner.analyze_bytes(data)
                    events.append(("ok", "", time.monotonic()))
                except (ServerUnreachableError, ServerRequestError) as exc:
                    events.append(("error", exc, time.monotonic()))
                    time.sleep(0.05)
        finally:
            runner.close()

    loader = threading.Thread(target=run_threads, args=(4, work))
    loader.start()
    time.sleep(1.0)
    first = _kill_stub_under_load(server, "skin_analysis_0_0", events)
    time.sleep(3.0)
    second = _kill_stub_under_load(server, "skin_analysis_1_0", events)
    time.sleep(3.0)
    stop.set()
    loader.join()
    _xfail_if_tritonserver_aborted(server)
    phase1 = [(kind, what) for kind, what, t in events if first < t <= second]
    phase2 = [(kind, what) for kind, what, t in events if t > second + 0.5]
    ok1, errors1 = [k for k, _ in phase1].count("ok"), [w for k, w in phase1 if k == "error"]
    errors2 = [w for k, w in phase2 if k == "error"]
    summary = (
        f"skin_analysis_0_0 killed: {ok1} answered, {len(errors1)} failed in 3 s; "
        f"skin_analysis_1_0 killed too: {len(phase2) - len(errors2)} answered, "
        f"{len(errors2)} failed in 2.5 s"
    )
    assert ok1 > 0 and errors1 and errors2 and len(errors2) == len(phase2)
    for exc in [*errors1, *errors2]:
        assert isinstance(exc, ServerUnreachableError) and "is not healthy" in str(exc), exc
    assert server.dead_stubs() == ["skin_analysis_0_0", "skin_analysis_1_0"] and is_ready(server)
    assert main(["--image", str(image), "--url", server.grpc_url]) == EXIT_UNREACHABLE
    assert "is not healthy" in capsys.readouterr().err
    start = time.monotonic()
    server.restart(timeout_s=240)
    restart_s = time.monotonic() - start
    assert server.dead_stubs() == []
    assert main(["--image", str(image), "--url", server.grpc_url]) == EXIT_OK
    capsys.readouterr()
    with capsys.disabled():  # the measurements, shown with -s
        print(f"\n{summary}; restart with dead stubs: {restart_s:.1f} s")


def _tritonserver_of(serve_pid: int, timeout_s: float = 60) -> int:
    """The pid of the tritonserver that `python -m triton_models.serve` runs."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for child in child_processes(serve_pid):
            if child.argv and child.argv[0].endswith("tritonserver") and child.state != "Z":
                return child.pid
        time.sleep(0.2)
    raise TimeoutError("no tritonserver under the serve process")


@contextlib.contextmanager
def _serve(tmp_path: Path):
    """`python -m triton_models.serve` on free ports, ready: yields (process, log path, gRPC URL);
    SIGTERM (then SIGKILL) at the end."""
    ports = [free_port() for _ in range(3)]
    log = tmp_path / "serve.log"
    cmd = [sys.executable, "-m", "triton_models.serve", "--http-port", str(ports[0])]
    cmd += ["--grpc-port", str(ports[1]), "--metrics-port", str(ports[2])]
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 240
        while "Ctrl-C to stop" not in log.read_text() and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()[-3000:]
            time.sleep(0.3)
        yield proc, log, f"grpc://127.0.0.1:{ports[1]}"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _answers_through_a_restart(proc, log: Path, url: str, kill) -> tuple[list[int], int, str]:
    """Three clients with retries send face.jpg until 6 answers after the launcher logged its
    first restart; `kill()` is called once the load is on. Returns (faces per answer, answers
    before the restart was logged, the log)."""
    data, answered = (ROOT / "docs" / "examples" / "face.jpg").read_bytes(), []
    stop = threading.Event()

    def work(k: int) -> None:  # until told to stop: before, during and after the restart
        runner = call_with_retries(lambda: TritonRunner(url), 8)
        while not stop.is_set():
            raw = call_with_retries(lambda: runner.analyze_bytes(data), 8)
            answered.append(raw.num_faces)
        runner.close()

    failures: list[BaseException] = []
    loader = threading.Thread(target=lambda: failures.extend(run_threads(3, work)))
    loader.start()
    while len(answered) < 6 and loader.is_alive():  # the load is on
        time.sleep(0.05)
    kill()
    deadline = time.monotonic() + 120
    while "restarted tritonserver (1)" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.2)
    restarted_at = len(answered)
    while len(answered) < restarted_at + 6 and time.monotonic() < deadline:
        time.sleep(0.05)  # answers after the restart too
    stop.set()
    loader.join(timeout=300)
    text = log.read_text()
    assert not failures, (failures[:3], text[-3000:])
    assert proc.poll() is None, text[-3000:]
    return answered, restarted_at, text


def test_serve_restarts_tritonserver_when_a_stub_dies_and_retries_succeed(tmp_path):
    """`python -m triton_models.serve`: SIGKILL a skin_analysis stub under load; the launcher
    restarts tritonserver on the same ports and clients with retries all get their answers."""
    from triton_models.server import stub_instances

    with _serve(tmp_path) as (proc, log, url):
        stubs = stub_instances(_tritonserver_of(proc.pid))
        stub = next(p for p, n in stubs.items() if n == "skin_analysis_0_0")
        answered, restarted_at, text = _answers_through_a_restart(
            proc, log, url, lambda: os.kill(stub, signal.SIGKILL)
        )
        assert len(answered) >= restarted_at + 6 and set(answered) == {1}
        assert (
            "python stub died: skin_analysis_0_0" in text and "restarted tritonserver (1)" in text
        )
        restart_line = next(line for line in text.splitlines() if "restarted" in line)
        print(f"\n{restart_line}; {len(answered)} requests answered, {restarted_at} before it")
        image = str(ROOT / "docs" / "examples" / "face.jpg")
        assert main(["--image", image, "--url", url, "--retries", "4"]) == EXIT_OK


def test_serve_starts_tritonserver_again_when_the_server_itself_dies(tmp_path):
    """`python -m triton_models.serve`: SIGKILL tritonserver itself under load (as its abort
    when a stub dies holding the shared-memory lock); the launcher starts it again on the same
    ports, leaves no stub of the dead server behind, and clients with retries get every answer."""
    from triton_models.server import stub_instances

    with _serve(tmp_path) as (proc, log, url):
        server_pid = _tritonserver_of(proc.pid)
        old_stubs = set(stub_instances(server_pid))
        assert old_stubs
        answered, restarted_at, text = _answers_through_a_restart(
            proc, log, url, lambda: os.kill(server_pid, signal.SIGKILL)
        )
        assert len(answered) >= restarted_at + 6 and set(answered) == {1}
        assert "tritonserver exited with code -9" in text, text[-3000:]
        assert "restarted tritonserver (1)" in text
        new_pid = _tritonserver_of(proc.pid)
        assert new_pid != server_pid
        assert not any(Path(f"/proc/{pid}").exists() for pid in old_stubs), "stubs left behind"
        restart_line = next(line for line in text.splitlines() if "restarted" in line)
        print(f"\n{restart_line}; {len(answered)} requests answered, {restarted_at} before it")
        image = str(ROOT / "docs" / "examples" / "face.jpg")
        assert main(["--image", image, "--url", url, "--retries", "4"]) == EXIT_OK
