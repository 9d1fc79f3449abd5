"""Serve the model repository with a local tritonserver (CPU, python backend only).

    python -m triton_models.serve [--repo DIR] [--http-port 8000] [--grpc-port 8001]
                                  [--metrics-port 8002] [--host 127.0.0.1] [--no-stub-restart]

First use creates the server environment (`.venv-triton/`, or $FSA_TRITON_ENV): nvidia-pytriton
0.7.0, numpy<2, onnxruntime and OpenCV 4.11, about 600 MB. Later runs reuse it. The repository is
copied and its ONNX models are swapped for python models that run onnxruntime. Ctrl-C or SIGTERM
stops the server cleanly. Triton 2.51 does not restart a python stub that died (its model
instance then fails every request routed to it while the server still reports ready), so this
launcher checks the stubs every second and restarts tritonserver on the same ports when one is
gone (--no-stub-restart: only report it).
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path

from triton_models.env import ensure_env, env_dir
from triton_models.server import DEFAULT_REPO, TritonServer


def _stop(signum, frame):  # turn SIGTERM into the same path as Ctrl-C
    raise KeyboardInterrupt


def watch(server: TritonServer, *, restart: bool, timeout_s: float, poll_s: float = 1.0) -> None:
    """Return when tritonserver exits; meanwhile restart it when a python stub has died."""
    restarts, reported = 0, set()
    while server.process is not None and server.process.poll() is None:
        time.sleep(poll_s)
        dead = server.dead_stubs()
        if not dead or (not restart and set(dead) <= reported):
            continue
        reported |= set(dead)
        print(
            f"warning: python stub died: {', '.join(dead)} (Triton does not restart it)",
            file=sys.stderr,
            flush=True,
        )
        if restart:
            restarts += 1
            start = time.monotonic()
            server.restart(timeout_s=timeout_s)
            print(
                f"restarted tritonserver ({restarts}), ready again in "
                f"{time.monotonic() - start:.1f} s",
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
        "--no-stub-restart",
        action="store_true",
        help="only report a dead python stub; by default tritonserver is restarted",
    )
    args = parser.parse_args(argv)
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
        watch(server, restart=not args.no_stub_restart, timeout_s=args.timeout_s)
        print(f"error: tritonserver exited:\n{server.log_tail()}", file=sys.stderr)
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
