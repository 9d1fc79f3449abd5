"""Serving latency, throughput and CPU cost: embedded runner vs Triton gRPC vs Triton HTTP.

    python benchmarks/serving.py [--rounds 3] [--duration 5] [--concurrency 1 8] [--photo JPG]
                                 [--heatmaps] [--also-repo NAME=DIR ...] [--json]

Two images: the small synthetic example (a 96 px synthskin-v1 face, about 6 kB) and a real-size
photo (by default the first acne-new v36 `valid` photo, resized in memory to 1024 px on its long
side and encoded as JPEG quality 90; nothing is written). For each round, image, concurrency c
and backend in turn (interleaved, so a change of machine load hits all backends alike), c
threads send the image for `--duration` seconds after a warm-up. Each row reports p50/p99
latency (ms), images/s and CPU seconds per image: this process's CPU time (client threads, and
the whole pipeline for the embedded runner) plus, for Triton, the CPU time of tritonserver and
its python stubs (/proc), over the same window; Triton rows also carry Triton's own statistics
per model (`models_ms`: queue and compute milliseconds per request). The summary is the median
over rounds, and the goals: gRPC p50 at c=1 minus embedded p50 (goal <= 3 ms); Triton img/s at
c=8 over embedded (goal >= 1.2), per image; `goals_by_round` gives each goal within each
round (the run-to-run spread). The 1-minute load average before the first round is printed: the
wall-clock goals mean something only on a quiet machine; CPU seconds per image much less.

Each request asks for what `python client/analyze.py --image X` asks for: the result without the
class-activation maps. `--heatmaps` asks for them too, as `--overlay DIR` does (Triton then sends
196 kB more per face of a 128 px model).

`--also-repo NAME=DIR` serves another model repository (another layout of the same model, e.g.
an older revision's `triton_models/` from `git archive`) with its own tritonserver and measures
it over gRPC in the same rounds, as backend `triton-grpc:NAME` (goals `grpc:NAME_...`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

REPO_ROOT = Path(__file__).resolve().parents[1]
VALID_PHOTOS = REPO_ROOT / "data" / "raw" / "acne-new-v36" / "valid" / "images"
PHOTO_SIDE = 1024


def measure(
    make_runner,
    data: bytes,
    *,
    concurrency: int,
    duration_s: float,
    server_cpu,
    heatmaps: bool = False,
) -> dict:
    """Latency percentiles, throughput and CPU seconds per image of `concurrency` threads
    looping for `duration_s`; `server_cpu()` gives the server's CPU seconds so far (0 for the
    embedded runner); `heatmaps` asks for the class-activation maps too."""
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    ready = threading.Barrier(concurrency + 1)
    window: dict[str, float] = {"stop": float("inf")}  # set once every thread is warm

    def loop(k: int) -> None:
        runner = make_runner()  # in its own thread: the HTTP client is bound to its thread
        runner.analyze_bytes(data, heatmaps=heatmaps)  # warm-up outside the timed window
        ready.wait()
        while time.perf_counter() < window["stop"]:
            t0 = time.perf_counter()
            runner.analyze_bytes(data, heatmaps=heatmaps)
            latencies[k].append(time.perf_counter() - t0)

    threads = [threading.Thread(target=loop, args=(k,)) for k in range(concurrency)]
    for t in threads:
        t.start()
    ready.wait()
    cpu0, server0, start = time.process_time(), server_cpu(), time.perf_counter()
    window["stop"] = start + duration_s
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu0 + server_cpu() - server0
    flat = np.array([x for per in latencies for x in per]) * 1000.0
    return {
        "concurrency": concurrency,
        "requests": int(flat.size),
        "p50_ms": float(np.percentile(flat, 50)),
        "p99_ms": float(np.percentile(flat, 99)),
        "img_per_s": float(flat.size / elapsed),
        "cpu_s_per_img": float(cpu / max(flat.size, 1)),
    }


STAT_FIELDS = ("queue", "compute_input", "compute_infer", "compute_output")


def model_stats(url: str) -> dict[str, dict[str, float]]:
    """Triton's cumulative statistics per model: request count and nanoseconds per phase."""
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(url.split("://", 1)[-1])
    stats = client.get_inference_statistics(as_json=True)
    client.close()
    out = {}
    for model in stats.get("model_stats", []):
        phases = model.get("inference_stats", {})
        row = {"count": float(phases.get("success", {}).get("count", 0))}
        for phase in ("success", *STAT_FIELDS):
            row[phase] = float(phases.get(phase, {}).get("ns", 0))
        out[model["name"]] = row
    return out


def per_model_ms(before: dict, after: dict) -> dict[str, dict[str, float]]:
    """Mean milliseconds per request of each model and phase between two `model_stats`."""
    out = {}
    for name, row in after.items():
        count = row["count"] - before.get(name, {}).get("count", 0.0)
        if count <= 0:
            continue
        out[name] = {
            phase: (row[phase] - before.get(name, {}).get(phase, 0.0)) / count / 1e6
            for phase in ("success", *STAT_FIELDS)
        }
    return out


def real_size_photo(path: Path | None) -> tuple[str, bytes]:
    """(name, JPEG bytes) of a photo resized to PHOTO_SIDE px on its long side, in memory."""
    import cv2

    if path is None:
        photos = sorted(VALID_PHOTOS.glob("*.jpg")) if VALID_PHOTOS.is_dir() else []
        if not photos:
            raise SystemExit(
                f"error: no photo in {VALID_PHOTOS} (the acne-new v36 data, see "
                "data/ADAPTERS.md); pass --photo JPG"
            )
        path = photos[0]
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise SystemExit(f"error: {path}: not a readable image")
    scale = PHOTO_SIDE / max(image.shape[:2])
    size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
    image = cv2.resize(image, size, interpolation=cv2.INTER_CUBIC)
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:
        raise SystemExit(f"error: {path}: JPEG encoding failed")
    return f"photo_{PHOTO_SIDE}px", encoded.tobytes()


def summarize(rows: list[dict]) -> tuple[list[dict], dict]:
    """Median over rounds of each (image, backend, concurrency), and the goal ratios."""
    keys = sorted({(r["image"], r["backend"], r["concurrency"]) for r in rows})
    medians = []
    for image, backend, c in keys:
        same = [
            r for r in rows if (r["image"], r["backend"], r["concurrency"]) == (image, backend, c)
        ]
        row = {"image": image, "backend": backend, "concurrency": c, "rounds": len(same)}
        for field in ("p50_ms", "p99_ms", "img_per_s", "cpu_s_per_img"):
            row[field] = statistics.median(r[field] for r in same)
        medians.append(row)
    return medians, goal_values(medians)


def goal_values(rows: list[dict]) -> dict[str, float]:
    """The goals from one row per (image, backend, concurrency): gRPC p50 minus embedded p50 at
    c=1 (ms) and Triton over embedded images/s at c=8, per image."""
    get = {(r["image"], r["backend"], r["concurrency"]): r for r in rows}
    goals: dict[str, float] = {}
    tritons = sorted({r["backend"] for r in rows if r["backend"].startswith("triton-")})
    for image in sorted({r["image"] for r in rows}):
        for backend in tritons:
            label = backend.removeprefix("triton-")  # grpc, http, grpc:NAME
            triton, embedded = get.get((image, backend, 1)), get.get((image, "embedded", 1))
            if label.startswith("grpc") and triton and embedded:
                goals[f"{image}/{label}_p50_minus_embedded_p50_ms_c1"] = (
                    triton["p50_ms"] - embedded["p50_ms"]
                )
        for backend in tritons:
            label = backend.removeprefix("triton-")
            triton, embedded = get.get((image, backend, 8)), get.get((image, "embedded", 8))
            if triton and embedded:
                goals[f"{image}/{label}_over_embedded_img_per_s_c8"] = (
                    triton["img_per_s"] / embedded["img_per_s"]
                )
    return goals


def goals_by_round(rows: list[dict]) -> dict[str, list[float]]:
    """Each goal within each round, in round order: the spread that the medians hide."""
    out: dict[str, list[float]] = {}
    for index in sorted({r["round"] for r in rows}):
        for name, value in goal_values([r for r in rows if r["round"] == index]).items():
            out.setdefault(name, []).append(value)
    return out


def _print_row(row: dict, label: str) -> None:
    print(
        f"{label:<8} {row['image']:<14} {row['backend']:<20} c={row['concurrency']:<3} "
        f"p50 {row['p50_ms']:7.2f} ms  p99 {row['p99_ms']:7.2f} ms  "
        f"{row['img_per_s']:6.1f} img/s  {row['cpu_s_per_img'] * 1000:6.1f} CPU ms/img",
        flush=True,
    )


def run_rounds(factories: dict, images: dict[str, bytes], args) -> list[dict]:
    """Every round, image, concurrency and backend in turn (interleaved); one row each.
    factories: backend -> (runner factory, server CPU seconds, server or None)."""
    rows: list[dict] = []
    for round_index in range(args.rounds):
        for image, data in images.items():
            for c in args.concurrency:
                for name, (make, server_cpu, server) in factories.items():
                    row = {"round": round_index, "image": image, "backend": name}
                    before = model_stats(server.grpc_url) if server is not None else {}
                    row.update(
                        measure(
                            make,
                            data,
                            concurrency=c,
                            duration_s=args.duration,
                            server_cpu=server_cpu,
                            heatmaps=args.heatmaps,
                        )
                    )
                    if server is not None:  # where the server's time went, per model (ms/request)
                        row["models_ms"] = per_model_ms(before, model_stats(server.grpc_url))
                    rows.append(row)
                    if not args.json:
                        _print_row(row, f"round {round_index}")
    return rows


def _named_repo(text: str) -> tuple[str, Path]:
    """`NAME=DIR` of --also-repo."""
    name, sep, folder = text.partition("=")
    if not sep or not name or not folder:
        raise argparse.ArgumentTypeError(f"expected NAME=DIR, got {text!r}")
    if not (Path(folder) / "skin_analysis" / "config.pbtxt").is_file():
        raise argparse.ArgumentTypeError(f"{folder}: no skin_analysis/config.pbtxt")
    return name, Path(folder)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    parser = argparse.ArgumentParser(
        prog="python benchmarks/serving.py", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median)")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measurement")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--photo", type=Path, help="real photo (default: acne-new v36 valid)")
    parser.add_argument(
        "--heatmaps",
        action="store_true",
        help="ask for the class-activation maps too, as analyze.py --overlay does",
    )
    parser.add_argument(
        "--also-repo",
        type=_named_repo,
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="another model repository, measured over gRPC in the same rounds (repeatable)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)

    from client.runner import DEFAULT_MODEL_DIR, EmbeddedRunner
    from client.triton_client import TritonRunner
    from data.synthetic import SynthConfig, make_record
    from triton_models.server import TritonServer, free_port

    images = dict([("synthetic_96px", make_record(SynthConfig(n=1, seed=3), 0)[1])])
    images.update([real_size_photo(args.photo)])
    load = os.getloadavg()[0]
    if not args.json:
        print(f"load average (1 min) before the first round: {load:.2f}", flush=True)
    embedded = EmbeddedRunner(DEFAULT_MODEL_DIR)  # one process, one set of sessions
    with contextlib.ExitStack() as stack:

        def start(repo: Path | None = None) -> TritonServer:
            kwargs = {"repo": repo} if repo is not None else {}
            ports = {"http_port": free_port(), "grpc_port": free_port()}
            return stack.enter_context(TritonServer(metrics_port=free_port(), **ports, **kwargs))

        server = start()
        factories = {
            "embedded": (lambda: embedded, lambda: 0.0, None),
            "triton-grpc": (lambda: TritonRunner(server.grpc_url), server.cpu_seconds, server),
            "triton-http": (lambda: TritonRunner(server.http_url), server.cpu_seconds, server),
        }
        for name, repo in args.also_repo:
            other = start(repo)
            runner = (lambda o=other: TritonRunner(o.grpc_url), other.cpu_seconds, other)
            factories[f"triton-grpc:{name}"] = runner
        rows = run_rounds(factories, images, args)
    medians, goals = summarize(rows)
    report = {
        "load_average_1min_before": load,
        "heatmaps": args.heatmaps,
        "cpu_count": os.cpu_count(),
        "image_bytes": {name: len(data) for name, data in images.items()},
        "rounds": rows,
        "medians": medians,
        "goals": goals,
        "goals_by_round": goals_by_round(rows),
    }
    if args.json:
        print(json.dumps(report))
    else:
        for row in medians:
            _print_row(row, "median")
        spread = report["goals_by_round"]
        for key, value in goals.items():
            rounds = ", ".join(f"{v:.2f}" for v in spread.get(key, []))
            print(f"{key}: {value:.2f} (rounds: {rounds})")
        for row in rows:  # the last round's server-side split at c=1, gRPC
            if row["round"] == args.rounds - 1 and row["backend"] == "triton-grpc":
                if row["concurrency"] == 1:
                    split = ", ".join(
                        f"{m} {v['success']:.2f}" for m, v in sorted(row["models_ms"].items())
                    )
                    print(f"server ms/request, {row['image']}, gRPC c=1: {split}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
