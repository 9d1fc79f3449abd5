"""Images per second of the synthetic generator (render + JPEG/PNG encode, single process).

    python benchmarks/synthetic_speed.py [--n 200] [--size 256] [--json]

Measures `data.synthetic.make_record` (everything but the file writes) after a warm-up, and
reports wall-clock and process CPU rates (the CPU rate is steadier on a shared machine).
Target on the 2-core dev machine: >= 50 img/s at 256x256.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402

from data.synthetic import PRESETS, make_record  # noqa: E402


def measure(n: int, size: int) -> dict[str, float]:
    """Render n images of the synthskin-v1 configuration at `size`; return rates."""
    cv2.setNumThreads(1)
    config = PRESETS["synthskin-v1"]
    config = type(config)(**{**config.__dict__, "size": size, "n": n})
    for i in range(3):  # warm-up: noise banks, imports
        make_record(config, i)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for i in range(n):
        make_record(config, i)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return {
        "n": n,
        "size": size,
        "images_per_s": n / wall,
        "images_per_cpu_s": n / cpu,
        "ms_per_image": 1000 * wall / n,
    }


def main() -> int:
    """CLI entry point."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    result = measure(args.n, args.size)
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"{result['images_per_s']:.1f} img/s wall, {result['images_per_cpu_s']:.1f} img/s CPU "
            f"({result['ms_per_image']:.1f} ms/img) at {args.size}x{args.size}, n={args.n}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
