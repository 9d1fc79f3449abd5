"""Face detection speed: whole image + tiles in one onnxruntime call (target <= 150 ms, 1280x886).

    python benchmarks/detect_speed.py [--image PATH] [--repeat 20] [--threads 1] [--json]

Defaults to insightface's t1.jpg (1280x886, 6 faces). Prints the median and p90 time of
FaceDetector.detect and of its three parts (input, onnxruntime, decoding). Timings are
noisy on a shared machine: re-run on a quiet one before quoting them.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import time
from pathlib import Path

import numpy as np

from preprocessing.face_detect import FaceDetector, decode_detections, make_detector_input
from preprocessing.image_io import load_image


def default_image() -> Path:
    """insightface's t1.jpg, shipped in the insightface wheel."""
    spec = importlib.util.find_spec("insightface")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("insightface is not installed: pip install --no-deps insightface==2.1")
    return Path(list(spec.submodule_search_locations)[0]) / "data" / "images" / "t1.jpg"


def timed(fn, repeat: int) -> list[float]:
    """Wall times in ms of `repeat` calls after one warm-up call."""
    fn()
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000.0)
    return out


def main(argv: list[str] | None = None) -> int:
    """Parse flags, time, print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", type=Path, default=None)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument(
        "--threads", type=int, default=1, help="onnxruntime intra-op threads (0 = all cores)"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    path = args.image or default_image()
    image = load_image(path)
    detector = FaceDetector(num_threads=args.threads)
    tensor, meta = make_detector_input(image)
    outputs = detector.run(tensor)
    parts = {
        "detect_total": timed(lambda: detector.detect(image), args.repeat),
        "make_detector_input": timed(lambda: make_detector_input(image), args.repeat),
        "onnxruntime": timed(lambda: detector.run(tensor), args.repeat),
        "decode_detections": timed(lambda: decode_detections(*outputs, meta), args.repeat),
    }
    result = {
        "image": str(path),
        "size": [int(image.shape[1]), int(image.shape[0])],
        "batch": int(tensor.shape[0]),
        "faces": len(detector.detect(image)),
        "machine": f"{platform.processor() or platform.machine()}, threads={args.threads}",
        "median_ms": {k: round(float(np.median(v)), 1) for k, v in parts.items()},
        "p90_ms": {k: round(float(np.percentile(v, 90)), 1) for k, v in parts.items()},
        "target_ms": 150,
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"{path.name} {result['size'][0]}x{result['size'][1]}: batch {result['batch']}, "
            f"{result['faces']} faces"
        )
        for k in parts:
            print(
                f"  {k:22s} median {result['median_ms'][k]:7.1f} ms  "
                f"p90 {result['p90_ms'][k]:7.1f} ms"
            )
        print(f"  target: detect_total <= {result['target_ms']} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
