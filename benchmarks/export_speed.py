"""onnxruntime speed of our jax2onnx EfficientNet-B0 vs timm's B0 exported by torch.onnx.export.

    python benchmarks/export_speed.py [--size 224] [--repeats 30] [--threads 0] [--json]

The torch side runs in the separate `.venv-bench/` (torch + timm, never in .venv): it writes the
reference ONNX to a temp folder. Then, in this process and interleaved, onnxruntime (CPU, default
session options) runs: timm B0 (NCHW input), our B0 as jax2onnx writes it (`jax2onnx_raw`,
`--optimize none`) and our B0 as `python -m train_jax.export` writes it (`jax2onnx_export`:
onnxruntime's offline `basic` level + `train_jax.onnx_passes`; NHWC input, as the contract says;
`jax2onnx_export_broadcast` is the same with `--se-gate broadcast`, i.e. without the pass that
lets onnxruntime run the squeeze-excite gate in its blocked NCHWc layout).
Both are plain classifiers (no CAM), random weights, 1x1 and depthwise convs as `Conv` nodes.
A second reference, `timm_torch_onnx_nhwc`, is timm's B0 wrapped to take our input contract
(RGB 0..255 NHWC, ImageNet normalisation in the graph), so both graphs start from the same tensor;
`paired_speed_vs_timm_nhwc` compares against it. The plain timm reference gets its layout change
and normalisation for free (done once, outside the timed call).

Per batch size: median and minimum ms per batch, `speed_vs_timm` = timm median / ours median, and
`paired_speed_vs_timm` = median over rounds of (timm ms / ours ms) within the same round (the
models run back to back, so load from other processes hits both alike). Goal: >= 1.0 at batch 1
and 32. The 1-minute load average before and after is in the `--json` output.
"""

from __future__ import annotations

import argparse
import json
import os
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
size, path, contract = int(sys.argv[1]), sys.argv[2], sys.argv[3] == "nhwc"
model = timm.create_model("efficientnet_b0", pretrained=False, num_classes=3).eval()
x = torch.randn(1, 3, size, size)
if contract:  # our input contract: RGB 0..255 NHWC, ImageNet normalisation inside the graph
    class Contract(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net
            mean, std = [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]
            self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
            self.register_buffer("inv_std", 1 / torch.tensor(std).view(1, 3, 1, 1))
        def forward(self, image):
            return self.net((image.permute(0, 3, 1, 2) - self.mean) * self.inv_std)
    model, x = Contract(model).eval(), torch.rand(1, size, size, 3) * 255
kw = {"dynamo": False} if "dynamo" in torch.onnx.export.__code__.co_varnames else {}
torch.onnx.export(model, x, path, input_names=["image"], output_names=["logits"],
                  dynamic_axes={"image": {0: "B"}, "logits": {0: "B"}}, opset_version=18, **kw)
"""


def export_timm(size: int, path: Path, contract: str = "nchw") -> Path:
    """timm B0 -> ONNX with torch.onnx.export, in .venv-bench.

    ``contract="nchw"``: timm as is (NCHW input, normalised outside the graph);
    ``"nhwc"``: wrapped to take our contract's input (RGB 0..255 NHWC, normalised in the graph).
    """
    if not BENCH_PYTHON.exists():
        raise SystemExit(
            f"{BENCH_PYTHON} missing: python -m venv .venv-bench && "
            ".venv-bench/bin/pip install torch timm"
        )
    subprocess.run(
        [str(BENCH_PYTHON), "-c", TORCH_EXPORT, str(size), str(path), contract], check=True
    )
    return path


def export_ours(size: int, path: Path, *, optimize: str | None, se_gate: str = "blocked") -> Path:
    """Our NNX B0 -> ONNX (NHWC) through the export pipeline (``train_jax.export.write_onnx``)."""
    from flax import nnx

    from train_jax.export import write_onnx
    from train_jax.models import create_model, set_conv_impl

    model = create_model("efficientnet_b0", rngs=nnx.Rngs(0))
    set_conv_impl(model, "conv")
    model.eval()
    write_onnx(
        model, path, input_size=size, output_names=["logits"], optimize=optimize, se_gate=se_gate
    )
    return path


def session(path: Path, threads: int = 0):
    """A CPU onnxruntime session with default options (``threads`` 0 = onnxruntime's choice)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=30, help="timed rounds per batch size")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="intra-op threads per session (0 = onnxruntime default: one per "
        "physical core); 1 is steadier on a shared machine",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    import onnxruntime as ort

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        models = {
            "timm_torch_onnx": (export_timm(args.size, tmp / "timm.onnx"), "NCHW"),
            "timm_torch_onnx_nhwc": (
                export_timm(args.size, tmp / "timm_nhwc.onnx", "nhwc"),
                "NHWC",
            ),
            "jax2onnx_raw": (export_ours(args.size, tmp / "raw.onnx", optimize=None), "NHWC"),
            "jax2onnx_export": (
                export_ours(args.size, tmp / "ours.onnx", optimize="basic"),
                "NHWC",
            ),
            "jax2onnx_export_broadcast": (
                export_ours(args.size, tmp / "ours_bc.onnx", optimize="basic", se_gate="broadcast"),
                "NHWC",
            ),
        }
        sessions = {
            name: (session(path, args.threads), layout) for name, (path, layout) in models.items()
        }
        rng = np.random.default_rng(0)
        rows = []
        for batch in args.batches:
            nhwc = rng.uniform(0, 255, (batch, args.size, args.size, 3)).astype(np.float32)
            feeds = {"NHWC": nhwc, "NCHW": np.ascontiguousarray(nhwc.transpose(0, 3, 1, 2))}
            times: dict[str, list[float]] = {name: [] for name in sessions}
            for sess, layout in sessions.values():  # warm-up
                sess.run(None, {"image": feeds[layout]})
            names = list(sessions)
            for r in range(args.repeats):  # interleaved: load noise hits every model alike
                for name in names[r % len(names) :] + names[: r % len(names)]:  # rotate order
                    sess, layout = sessions[name]
                    t0 = time.perf_counter()
                    sess.run(None, {"image": feeds[layout]})
                    times[name].append((time.perf_counter() - t0) * 1000)
            ref = np.asarray(times["timm_torch_onnx"])
            ref_nhwc = np.asarray(times["timm_torch_onnx_nhwc"])
            for name, values in times.items():
                ms = np.asarray(values)
                rows.append(
                    {
                        "model": name,
                        "batch": batch,
                        "median_ms": float(np.median(ms)),
                        "min_ms": float(ms.min()),
                        "speed_vs_timm": float(np.median(ref) / np.median(ms)),
                        "paired_speed_vs_timm": float(np.median(ref / ms)),
                        "paired_speed_vs_timm_nhwc": float(np.median(ref_nhwc / ms)),
                    }
                )
    result = {
        "size": args.size,
        "repeats": args.repeats,
        "threads": args.threads,
        "onnxruntime": ort.__version__,
        "load_avg_1m": [load_before, os.getloadavg()[0]],
        "rows": rows,
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"load average (1 min) before/after: {load_before:.2f} / {os.getloadavg()[0]:.2f}")
        for r in rows:
            print(
                f"batch {r['batch']:<3} {r['model']:<25} median {r['median_ms']:8.2f} ms  "
                f"min {r['min_ms']:8.2f} ms  {r['speed_vs_timm']:.2f}x timm "
                f"(paired {r['paired_speed_vs_timm']:.2f}x; vs timm with our NHWC contract "
                f"{r['paired_speed_vs_timm_nhwc']:.2f}x)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
