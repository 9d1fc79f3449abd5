"""Inference throughput of a training config's network in JAX on this CPU, per chunk size.

    python benchmarks/eval_throughput.py [--config train_jax/configs/real_photos.py:] \\
        [--chunks 16 32 128] [--seconds 8] [--json]

Times `explain.evaluate.make_predict_fn` (the forward pass of the evaluation CLIs: the served
outputs, with the mirror pass when the config has `test_time_flip`) on random crops at the
config's image size, freshly initialised weights (the speed does not depend on them). Each chunk
size runs in its own process (the heap a larger chunk leaves behind changes the next one's page
faults), after two warm-up calls; it reports images/s and the minor page faults per call. Like
the evaluation CLIs it keeps freed host memory mapped (`train_jax/host_malloc.py`);
`FSA_MALLOC_TUNING=0` measures without it. docs/performance.md has the results.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = "train_jax/configs/real_photos.py:"


def measure(config_path: str, chunk: int, seconds: float) -> dict:
    """Images/s and page faults per call of one chunk size, in this process."""
    import resource

    from train_jax.host_malloc import keep_freed_memory

    tuned = keep_freed_memory()  # before the first JAX computation, as the CLIs do
    import numpy as np

    from explain.evaluate import make_predict_fn
    from train_jax import config as config_lib
    from train_jax.checkpoints import build_model

    config = config_lib.load(config_path)
    model = build_model(config)
    model.eval()
    predict = make_predict_fn(model, batch_size=chunk)
    size = config.model.image_size
    x = np.random.default_rng(0).uniform(0, 255, (chunk, size, size, 3)).astype(np.float32)
    predict(x)
    predict(x)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    start, calls = time.perf_counter(), 0
    while calls == 0 or time.perf_counter() - start < seconds:
        predict(x)
        calls += 1
    wall = time.perf_counter() - start
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    return {
        "chunk": chunk,
        "img_per_s": round(calls * chunk / wall, 1),
        "faults_per_call": round(faults / calls),
        "calls": calls,
        "malloc_tuned": tuned,
        "model": config.model.name,
        "image_size": size,
        "test_time_flip": bool(config.model.overrides.get("test_time_flip", False)),
    }


def run_all(config_path: str, chunks: list[int], seconds: float) -> list[dict]:
    """`measure` of each chunk size in a fresh process of this script."""
    out = []
    for chunk in chunks:
        cmd = [sys.executable, __file__, "--config", config_path, "--seconds", str(seconds)]
        cmd += ["--one", str(chunk)]
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=os.environ)
        if done.returncode != 0:
            raise RuntimeError(f"chunk {chunk}: {done.stderr.strip()[-2000:]}")
        out.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line flags."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default=DEFAULT_CONFIG, help=f"FILE.py:VARIANT ({DEFAULT_CONFIG})")
    p.add_argument("--chunks", type=int, nargs="+", default=[16, 32, 128], help="chunk sizes")
    p.add_argument("--seconds", type=float, default=8.0, help="timed seconds per chunk size")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--one", type=int, help=argparse.SUPPRESS)  # internal: one chunk, here
    args = p.parse_args(argv)
    if min(args.chunks) < 1 or args.seconds <= 0:
        p.error("--chunks must be >= 1 and --seconds > 0")
    return args


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    args = parse_args(argv)
    if args.one is not None:
        print(json.dumps(measure(args.config, args.one, args.seconds)))
        return 0
    results = run_all(args.config, args.chunks, args.seconds)
    if args.json:
        print(json.dumps({"config": args.config, "results": results}, indent=2))
        return 0
    print(f"{results[0]['model']} at {results[0]['image_size']} px ({args.config}):")
    for r in results:
        print(
            f"  chunk {r['chunk']:4d}: {r['img_per_s']:7.1f} img/s, "
            f"{r['faults_per_call']} page faults per call"
        )
    return 0


if __name__ == "__main__":
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    sys.exit(main())
