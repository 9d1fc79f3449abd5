"""Serving latency and throughput: embedded runner vs Triton gRPC vs Triton HTTP.

    python benchmarks/serving.py [--duration 10] [--concurrency 1 8 32] [--json]

For each backend and concurrency c, c threads send one synthetic face JPEG per request for
`--duration` seconds (after a warm-up). Prints p50/p99 latency (ms) and images/s, and the
goal ratios: gRPC p50 at c=1 minus embedded p50 (goal <= 5 ms); Triton img/s at c=8 over
embedded img/s (goal >= 1.0). The server is a local tritonserver from `.venv-triton/`.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def measure(make_runner, data: bytes, *, concurrency: int, duration_s: float) -> dict:
    """Latency percentiles and throughput of `concurrency` threads looping for `duration_s`."""
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    ready = threading.Barrier(concurrency + 1)
    window: dict[str, float] = {}

    def loop(k: int) -> None:
        runner = make_runner()  # in its own thread: the HTTP client is bound to its thread
        runner.analyze_bytes(data)  # warm-up outside the timed window
        ready.wait()
        while time.perf_counter() < window["stop"]:
            t0 = time.perf_counter()
            runner.analyze_bytes(data)
            latencies[k].append(time.perf_counter() - t0)

    threads = [threading.Thread(target=loop, args=(k,)) for k in range(concurrency)]
    for t in threads:
        t.start()
    window["stop"] = time.perf_counter() + 3600  # set properly once everyone is warm
    ready.wait()
    start = time.perf_counter()
    window["stop"] = start + duration_s
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    flat = np.array([x for per in latencies for x in per]) * 1000.0
    return {
        "concurrency": concurrency,
        "requests": int(flat.size),
        "p50_ms": float(np.percentile(flat, 50)),
        "p99_ms": float(np.percentile(flat, 99)),
        "img_per_s": float(flat.size / elapsed),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measurement")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    from client.runner import DEFAULT_MODEL_DIR, EmbeddedRunner
    from client.triton_client import TritonRunner
    from data.synthetic import SynthConfig, make_record
    from triton_models.server import TritonServer, free_port

    data = make_record(SynthConfig(n=1, seed=3), 0)[1]
    embedded = EmbeddedRunner(DEFAULT_MODEL_DIR)  # one process, one set of sessions
    rows: list[dict] = []
    with TritonServer(
        http_port=free_port(), grpc_port=free_port(), metrics_port=free_port()
    ) as server:
        backends = {
            "embedded": lambda: embedded,
            "triton-grpc": lambda: TritonRunner(server.grpc_url),
            "triton-http": lambda: TritonRunner(server.http_url),
        }
        for c in args.concurrency:  # interleaved per concurrency level: fairer under noise
            for name, make in backends.items():
                row = {
                    "backend": name,
                    **measure(make, data, concurrency=c, duration_s=args.duration),
                }
                rows.append(row)
                if not args.json:
                    print(
                        f"{name:<12} c={c:<3} p50 {row['p50_ms']:7.2f} ms  p99 "
                        f"{row['p99_ms']:7.2f} ms  {row['img_per_s']:7.1f} img/s",
                        flush=True,
                    )
    get = {(r["backend"], r["concurrency"]): r for r in rows}
    goals = {}
    if ("embedded", 1) in get:
        goals["grpc_p50_minus_embedded_p50_ms_c1"] = (
            get[("triton-grpc", 1)]["p50_ms"] - get[("embedded", 1)]["p50_ms"]
        )
    if ("embedded", 8) in get:
        for proto in ("grpc", "http"):
            goals[f"{proto}_over_embedded_img_per_s_c8"] = (
                get[(f"triton-{proto}", 8)]["img_per_s"] / get[("embedded", 8)]["img_per_s"]
            )
    report = {"rows": rows, "goals": goals, "image_bytes": len(data)}
    if args.json:
        print(json.dumps(report))
    else:
        for key, value in goals.items():
            print(f"{key}: {value:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
