"""Depthwise-conv kernel gradient: the compiled CPU kernel against XLA's lowering, per layer shape.

    python benchmarks/depthwise_grad.py [--repeats 9] [--json]

Shapes are those of EfficientNet-B0 at 128 px and of the demo small CNN at 96 px (batch 32).
Prints the median milliseconds of `train_jax.models.kernels.depthwise_kernel_grad_rows` (built on
first use; needs a C++ compiler) and of the pure-JAX `kernels.depthwise_kernel_grad_rows_xla`,
each jit-compiled, their ratio, and whether their results are bit-identical (they must be).
Whole training steps: `benchmarks/train_throughput.py` with and without `FSA_CPU_KERNELS=0`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# (batch, side, channels, k, stride)
SHAPES = [
    (32, 48, 16, 3, 1),  # small CNN (width 0.5), 96 px
    (32, 24, 64, 3, 1),
    (32, 24, 128, 3, 1),
    (32, 64, 32, 3, 1),  # EfficientNet-B0, 128 px
    (32, 64, 96, 3, 2),
    (32, 32, 144, 5, 2),
    (32, 16, 240, 5, 1),
    (32, 8, 480, 3, 1),
    (32, 4, 1152, 3, 1),
]


def _median_ms(fn, *args, repeats: int) -> float:
    fn(*args).block_until_ready()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(*args).block_until_ready()
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1000)


def main(argv: list[str] | None = None) -> int:
    """Time both implementations on every shape; print a table or JSON."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    import jax
    import jax.numpy as jnp

    from train_jax.models import kernels

    if not kernels.available():
        print(f"error: compiled kernel unavailable: {kernels.build_error()}", file=sys.stderr)
        return 1
    rng = np.random.default_rng(0)
    rows = []
    for b, side, c, k, s in SHAPES:
        out = (side + 2 * (k // 2) - k) // s + 1
        pads = ((0, 0), (k // 2, k // 2), (k // 2, k // 2), (0, 0))  # the forward's residual
        xp = jnp.pad(jnp.asarray(rng.standard_normal((b, side, side, c)), jnp.float32), pads)
        g = jnp.asarray(rng.standard_normal((b, out, out, c)), jnp.float32)
        ffi = jax.jit(kernels.depthwise_kernel_grad_rows, static_argnums=(2, 3))
        xla = jax.jit(kernels.depthwise_kernel_grad_rows_xla, static_argnums=(2, 3))
        identical = bool(np.array_equal(ffi(xp, g, s, k), xla(xp, g, s, k)))
        ms_ffi = _median_ms(ffi, xp, g, s, k, repeats=args.repeats)
        ms_xla = _median_ms(xla, xp, g, s, k, repeats=args.repeats)
        rows.append(
            {
                "shape": [b, side, side, c],
                "k": k,
                "stride": s,
                "compiled_ms": ms_ffi,
                "xla_ms": ms_xla,
                "speedup": ms_xla / ms_ffi,
                "bit_identical": identical,
            }
        )
    if args.json:
        print(json.dumps({"rows": rows}))
    else:
        for r in rows:
            print(
                f"{str(r['shape']):22s} k{r['k']} s{r['stride']}  "
                f"compiled {r['compiled_ms']:7.2f} ms  xla {r['xla_ms']:7.2f} ms  "
                f"{r['speedup']:5.1f}x  {'identical' if r['bit_identical'] else 'DIFFERENT'}"
            )
    return 0 if all(r["bit_identical"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
