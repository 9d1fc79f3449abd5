"""Milliseconds per call of the serving steps in this process: the face stage and the classifier.

    python benchmarks/serving_steps.py [--image PATH] [--calls 60] [--json]
    .venv-triton/bin/python benchmarks/serving_steps.py      # the local server's environment

Runs `client.runner.FaceStage` and the shipped classifier (`triton_models.classifier.
OnnxClassifier`, what Triton's `skin_analysis` runs on the local server) in a loop, with the
server's onnxruntime settings (two threads, no spinning) and the embedded runner's (one thread
per core, spinning), each back to back and with a 20 ms pause before every call (at
concurrency 1 Triton alternates the two `skin_analysis` instances, so each waits between its
requests). Medians over the calls after 10 warm-up calls. JAX-free, numpy<2 compatible: run it
with either environment's python to compare them (docs/performance.md, "Serving").
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from client.runner import DEFAULT_MODEL_DIR, FaceStage
from triton_models.classifier import OnnxClassifier, output_names

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "examples" / "face.jpg"
SETTINGS = {"server": (2, False), "embedded": (0, True)}  # onnxruntime threads, spinning
PAUSES_S = (0.0, 0.02)
WARMUP = 10


def time_steps(data: bytes, *, threads: int, spinning: bool, pause_s: float, calls: int) -> dict:
    """Median ms of the face stage and the classifier over `calls` calls after a warm-up."""
    stage = FaceStage(128, num_threads=threads, spinning=spinning)
    card = json.loads((DEFAULT_MODEL_DIR / "model_card.json").read_text())
    optional = ",".join(n for n in ("severity", "features") if n in (card.get("outputs") or {}))
    classifier = OnnxClassifier(
        str(DEFAULT_MODEL_DIR / "model.onnx"),
        output_names(optional),
        threads=threads,
        spinning=spinning,
    )
    face_ms, classifier_ms = [], []
    for i in range(WARMUP + calls):
        if pause_s:
            time.sleep(pause_s)
        t0 = time.perf_counter()
        faces = stage(data)
        t1 = time.perf_counter()
        classifier(faces.crops)
        t2 = time.perf_counter()
        if i >= WARMUP:
            face_ms.append((t1 - t0) * 1e3)
            classifier_ms.append((t2 - t1) * 1e3)
    return {
        "face_stage_ms": float(np.median(face_ms)),
        "classifier_ms": float(np.median(classifier_ms)),
    }


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    parser = argparse.ArgumentParser(
        prog="python benchmarks/serving_steps.py", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--image",
        type=Path,
        default=EXAMPLE,
        help="image (default: docs/examples/face.jpg, the synthetic example)",
    )
    parser.add_argument("--calls", type=int, default=50, help="timed calls per row")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = parser.parse_args(argv)
    data = args.image.read_bytes()
    rows = []
    for name, (threads, spinning) in SETTINGS.items():
        for pause_s in PAUSES_S:
            row = {"settings": name, "pause_ms": pause_s * 1e3, "numpy": np.__version__}
            row.update(
                time_steps(
                    data, threads=threads, spinning=spinning, pause_s=pause_s, calls=args.calls
                )
            )
            rows.append(row)
            if not args.json:
                print(
                    f"{name:8s} pause {row['pause_ms']:4.0f} ms: face stage "
                    f"{row['face_stage_ms']:.2f} ms, classifier {row['classifier_ms']:.2f} ms",
                    flush=True,
                )
    if args.json:
        print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
