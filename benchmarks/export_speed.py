"""onnxruntime speed of our jax2onnx EfficientNet-B0 vs timm's B0 exported by torch.onnx.export.

    python benchmarks/export_speed.py [--size 224] [--repeats 20] [--json]

The torch side runs in the separate `.venv-bench/` (torch + timm, never in .venv): it writes the
reference ONNX to a temp folder. Then, in this process and interleaved, onnxruntime (CPU) runs:
timm B0, jax2onnx B0 as exported, and jax2onnx B0 after onnxruntime's offline graph optimisation
(`basic`, portable; `extended`). Median ms per batch at batch 1 and 32; speed ratio =
timm ms / ours ms (goal >= 1.0 at both). Both are plain classifiers (no CAM), random weights.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

REPO_ROOT = Path(__file__).resolve().parents[1]
BENCH_PYTHON = REPO_ROOT / ".venv-bench" / "bin" / "python"
TORCH_EXPORT = """
import sys, torch, timm
size, path = int(sys.argv[1]), sys.argv[2]
model = timm.create_model("efficientnet_b0", pretrained=False, num_classes=3).eval()
x = torch.randn(1, 3, size, size)
kw = {"dynamo": False} if "dynamo" in torch.onnx.export.__code__.co_varnames else {}
torch.onnx.export(model, x, path, input_names=["image"], output_names=["logits"],
                  dynamic_axes={"image": {0: "B"}, "logits": {0: "B"}}, opset_version=18, **kw)
"""


def export_timm(size: int, path: Path) -> Path:
    """timm B0 -> ONNX (NCHW) with torch.onnx.export, in .venv-bench."""
    if not BENCH_PYTHON.exists():
        raise SystemExit(f"{BENCH_PYTHON} missing: python -m venv .venv-bench && "
                         ".venv-bench/bin/pip install torch timm")
    subprocess.run([str(BENCH_PYTHON), "-c", TORCH_EXPORT, str(size), str(path)], check=True)
    return path


def export_ours(size: int, path: Path) -> Path:
    """Our NNX B0 -> ONNX (NHWC) with jax2onnx, depthwise as standard grouped Conv."""
    from flax import nnx
    from jax2onnx import to_onnx

    from train_jax.models import create_model, set_depthwise_impl

    model = create_model("efficientnet_b0", rngs=nnx.Rngs(0))
    set_depthwise_impl(model, "conv")
    model.eval()
    to_onnx(model, [("B", size, size, 3)], opset=18, return_mode="file", output_path=str(path),
            input_names=["image"], output_names=["logits"])
    return path


def session(path: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=20, help="timed runs per batch size")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    from train_jax.export import optimize_onnx

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        models = {
            "timm_torch_onnx": (export_timm(args.size, tmp / "timm.onnx"), "NCHW"),
            "jax2onnx": (export_ours(args.size, tmp / "ours.onnx"), "NHWC"),
        }
        for level in ("basic", "extended"):
            models[f"jax2onnx_opt_{level}"] = (
                optimize_onnx(tmp / "ours.onnx", tmp / f"ours_{level}.onnx", level=level), "NHWC")
        sessions = {name: (session(path), layout) for name, (path, layout) in models.items()}
        rng = np.random.default_rng(0)
        rows = []
        for batch in args.batches:
            nhwc = rng.uniform(0, 255, (batch, args.size, args.size, 3)).astype(np.float32)
            feeds = {"NHWC": nhwc, "NCHW": np.ascontiguousarray(nhwc.transpose(0, 3, 1, 2))}
            times: dict[str, list[float]] = {name: [] for name in sessions}
            for sess, layout in sessions.values():  # warm-up
                sess.run(None, {"image": feeds[layout]})
            for _ in range(args.repeats):  # interleaved: load noise hits every model alike
                for name, (sess, layout) in sessions.items():
                    t0 = time.perf_counter()
                    sess.run(None, {"image": feeds[layout]})
                    times[name].append((time.perf_counter() - t0) * 1000)
            ref = float(np.median(times["timm_torch_onnx"]))
            for name, values in times.items():
                med = float(np.median(values))
                rows.append({"model": name, "batch": batch, "median_ms": med,
                             "speed_vs_timm": ref / med})
    if args.json:
        print(json.dumps({"size": args.size, "rows": rows}))
    else:
        for r in rows:
            print(f"batch {r['batch']:<3} {r['model']:<20} {r['median_ms']:8.2f} ms  "
                  f"{r['speed_vs_timm']:.2f}x timm")
    return 0


if __name__ == "__main__":
    sys.exit(main())
