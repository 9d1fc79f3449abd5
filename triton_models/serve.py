"""Serve the model repository with a local tritonserver (CPU, python backend only).

    python -m triton_models.serve [--repo DIR] [--http-port 8000] [--grpc-port 8001]
                                  [--metrics-port 8002] [--host 127.0.0.1] [--no-restart]
                                  [--max-restarts 5]

First use creates the server environment (`.venv-triton/`, or $FSA_TRITON_ENV): nvidia-pytriton
0.7.0, numpy<2, onnxruntime and OpenCV 4.11, about 600 MB. Later runs reuse it. The repository is
copied and its ONNX models are swapped for python models that run onnxruntime. Ctrl-C or SIGTERM
stops the server cleanly. Triton 2.51 does not restart a python stub that died (its model
instance then fails every request routed to it while the server still reports ready), so this
launcher checks the stubs every second and restarts tritonserver on the same ports when one is
gone. It also starts tritonserver again when the server itself exits (a stub killed while it
holds the python backend's shared-memory lock can abort it). More than --max-restarts restarts
within 10 minutes is a crash loop: the launcher then prints the log's tail and exits 1.
--no-restart only reports.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from collections import deque
from pathlib import Path

from triton_models.env import ensure_env, env_dir
from triton_models.server import DEFAULT_REPO, TritonServer

RESTART_WINDOW_S = 600.0  # --max-restarts counts the restarts within this many seconds


def _stop(signum, frame):  # turn SIGTERM into the same path as Ctrl-C
    raise KeyboardInterrupt


def watch(
    server: TritonServer,
    *,
    restart: bool,
    timeout_s: float,
    poll_s: float = 1.0,
    max_restarts: int = 5,
    window_s: float = RESTART_WINDOW_S,
) -> str:
    """Supervise `server` until it is down for good and return why.

    Every `poll_s` seconds: when tritonserver has exited, or a python stub has died, print a
    warning and (with `restart`) restart tritonserver on the same ports. More than
    `max_restarts` restarts within `window_s` seconds is a crash loop and ends the watch.
    Without `restart`, a dead stub is only reported and the watch ends when the server exits.
    """
    recent: deque[float] = deque()
    total, reported = 0, set()
    while True:
        time.sleep(poll_s)
        proc = server.process
        exited = proc is None or proc.poll() is not None
        if exited:
            reason = f"tritonserver exited with code {None if proc is None else proc.returncode}"
        else:
            dead = server.dead_stubs()
            if not dead or (not restart and set(dead) <= reported):
                continue
            reported |= set(dead)
            reason = f"python stub died: {', '.join(dead)} (Triton does not restart it)"
        print(f"warning: {reason}", file=sys.stderr, flush=True)
        if not restart:
            if exited:
                return reason
            continue
        now = time.monotonic()
        while recent and now - recent[0] > window_s:
            recent.popleft()
        if len(recent) >= max_restarts:
            return f"{reason}; {len(recent)} restarts in the last {window_s:.0f} s, giving up"
        recent.append(now)
        total += 1
        server.restart(timeout_s=timeout_s)
        reported = set()
        print(
            f"restarted tritonserver ({total}), ready again in {time.monotonic() - now:.1f} s",
            flush=True,
        )


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; exit 0 after a clean shutdown, 1 when the server fails to start."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", type=Path, default=DEFAULT_REPO, help="model repository")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback)")
    parser.add_argument("--http-port", type=int, default=8000)
    parser.add_argument("--grpc-port", type=int, default=8001)
    parser.add_argument("--metrics-port", type=int, default=8002)
    parser.add_argument("--timeout-s", type=float, default=180.0, help="wait this long for ready")
    parser.add_argument(
        "--no-restart",
        "--no-stub-restart",
        dest="no_restart",
        action="store_true",
        help="only report a dead python stub or server; by default tritonserver is restarted",
    )
    parser.add_argument(
        "--max-restarts",
        type=int,
        default=5,
        help=f"restarts allowed within {RESTART_WINDOW_S:.0f} s before giving up (default 5)",
    )
    args = parser.parse_args(argv)
    if args.max_restarts < 0:
        parser.error(f"--max-restarts must be >= 0, got {args.max_restarts}")
    if not (args.repo / "skin_analysis" / "config.pbtxt").is_file():
        print(
            f"error: {args.repo}: not a model repository (no skin_analysis/config.pbtxt)",
            file=sys.stderr,
        )
        return 2
    signal.signal(signal.SIGTERM, _stop)
    start = time.monotonic()
    print(f"server environment: {env_dir()} (created on first use, then reused)", flush=True)
    server = TritonServer(
        repo=args.repo,
        host=args.host,
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        metrics_port=args.metrics_port,
    )
    try:
        server.env = ensure_env(quiet=False)
        server.start(timeout_s=args.timeout_s)
        print(
            f"ready in {time.monotonic() - start:.1f} s\n"
            f"  HTTP    {server.http_url}\n  gRPC    {server.grpc_url}\n"
            f"  metrics http://{args.host}:{args.metrics_port}/metrics\n"
            "  try:    python client/analyze.py --image docs/examples/face.jpg "
            f"--url {server.grpc_url}\n"
            "Ctrl-C to stop.",
            flush=True,
        )
        reason = watch(
            server,
            restart=not args.no_restart,
            timeout_s=args.timeout_s,
            max_restarts=args.max_restarts,
        )
        print(f"error: {reason}:\n{server.log_tail()}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("stopping ...", flush=True)
        return 0
    except (RuntimeError, TimeoutError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
