"""Quality-warning limits (preprocessing/quality.py): pass rates on real faces, degraded copies.

    python benchmarks/quality_limits.py --data data/raw/acne-new-v36/valid/images [--size 224]
        [--max-images N] [--no-degradations] [--rows faces.jsonl] [--json]

Every face serving analyses (BlazeFace candidates that pass `preprocessing.verify`) is cropped
as serving crops it (`crop_face(size=--size)` with its FaceMesh landmarks) and measured with
`quality_signals` on that crop's skin mask. Prints the percentiles of each
signal (to set DEFAULT_LIMITS near the 1st-1.5th or 98.5th-99th), the share of faces without
each warning under DEFAULT_LIMITS (overall and per estimated tone group), and, for each
degradation of the whole image (faces re-detected; the scaled original face when none
matches), the share of largest faces that raise its warning. Degradations: Gaussian blur of
3 source px, and of 3 px per 95 px of face width (the astronaut's face); -2 and +2 EV (linear
light); the image scaled so the face is 40 px wide; a warm white balance R x 1.5, B x 0.6 on
the 8-bit values, and the same gains in linear light.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from preprocessing.augment import gaussian_blur
from preprocessing.face_detect import Face
from preprocessing.image_io import InvalidImageError, load_image
from preprocessing.landmarks import landmarks_for
from preprocessing.pipeline import crop_face, default_detector
from preprocessing.quality import DEFAULT_LIMITS, WARNINGS, QualityLimits, quality_warnings
from preprocessing.quality import quality_signals as measure_signals
from preprocessing.verify import verify_faces

DEFAULT_DATA = Path("data/raw/acne-new-v36/valid/images")
IMAGE_SUFFIXES = (".bmp", ".jpeg", ".jpg", ".png", ".webp")
PERCENTILES = (1.0, 1.5, 2.0, 3.0, 50.0, 97.0, 98.0, 98.5, 99.0)
ASTRONAUT_FACE_PX = 95.0  # BlazeFace box width of skimage's astronaut.png
SMALL_FACE_PX = 40.0
MIN_MATCH_IOU = 0.3


def _linear(image: np.ndarray) -> np.ndarray:
    x = image.astype(np.float64) / 255.0
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def _srgb(linear: np.ndarray) -> np.ndarray:
    y = np.clip(linear, 0.0, 1.0)
    x = np.where(y <= 0.0031308, 12.92 * y, 1.055 * y ** (1 / 2.4) - 0.055)
    return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)


def exposure(image: np.ndarray, stops: float) -> np.ndarray:
    """The RGB uint8 image exposed `stops` EV brighter (negative: darker), in linear light."""
    return _srgb(_linear(image) * 2.0**stops)


def channel_gains(image: np.ndarray, gains, *, linear: bool = False) -> np.ndarray:
    """Multiply R, G, B by `gains`, on the 8-bit values or in linear light; clipped."""
    if linear:
        return _srgb(_linear(image) * np.asarray(gains, np.float64))
    return np.clip(np.rint(image * np.asarray(gains, np.float64)), 0, 255).astype(np.uint8)


def scale_image(image: np.ndarray, factor: float) -> np.ndarray:
    """The image resized by `factor` (area interpolation when shrinking)."""
    h, w = image.shape[:2]
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    interpolation = cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR
    return cv2.resize(image, size, interpolation=interpolation)


def scale_face(face: Face, factor: float) -> Face:
    """The face's box and keypoints in an image resized by `factor`."""
    return Face(tuple(v * factor for v in face.box), face.score, face.keypoints * factor)


# name -> (the warning it should raise, fn(image, face width px) -> (image, scale factor))
DEGRADATIONS: dict[str, tuple[str, Callable]] = {
    "blur_sigma3": ("blur", lambda im, w: (gaussian_blur(im, 3.0), 1.0)),
    "blur_3px_per_95px_face": (
        "blur",
        lambda im, w: (gaussian_blur(im, 3.0 * w / ASTRONAUT_FACE_PX), 1.0),
    ),
    "ev_minus2": ("underexposed", lambda im, w: (exposure(im, -2.0), 1.0)),
    "ev_plus2": ("overexposed", lambda im, w: (exposure(im, 2.0), 1.0)),
    "face_40px": (
        "face_too_small",
        lambda im, w: (scale_image(im, SMALL_FACE_PX / w), SMALL_FACE_PX / w),
    ),
    "warm_wb": ("colour_cast", lambda im, w: (channel_gains(im, (1.5, 1.0, 0.6)), 1.0)),
    "warm_wb_linear": (
        "colour_cast",
        lambda im, w: (channel_gains(im, (1.5, 1.0, 0.6), linear=True), 1.0),
    ),
}


def iou(a, b) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def face_signals(image: np.ndarray, face: Face, size: int) -> tuple[dict[str, float], str | None]:
    """Quality signals of one face (crop and skin mask as serving makes them: `crop_face` with
    the FaceMesh landmarks), and its tone group."""
    landmarks, _ = landmarks_for(image, [face])
    crop = crop_face(image, face, size=size, landmarks=landmarks[0])
    return measure_signals(crop.crop, crop.skin_mask, face.box[2]), crop.skin_tone.fitzpatrick_group


def verified_faces(image: np.ndarray, faces: list[Face]) -> list[Face]:
    """The faces serving analyses (`preprocessing.verify.verify_faces`)."""
    landmarks, presence = landmarks_for(image, faces)
    kept, _ = verify_faces(image, landmarks, presence)
    return [faces[i] for i in kept]


def measure_image(image: np.ndarray, name: str, size: int, degradations: bool) -> list[dict]:
    """Rows (image, face, degradation, group, fallback, signals) for one image."""
    detector = default_detector()
    faces = verified_faces(image, detector.detect(image))
    rows = []
    for k, face in enumerate(faces):
        signals, group = face_signals(image, face, size)
        rows.append(
            {
                "image": name,
                "face": k,
                "degradation": None,
                "group": group,
                "fallback": False,
                **signals,
            }
        )
    if not (faces and degradations):
        return rows
    main = faces[0]
    for deg, (_, fn) in DEGRADATIONS.items():
        degraded, factor = fn(image, main.box[2])
        expected = scale_face(main, factor)
        found = [f for f in detector.detect(degraded) if iou(f.box, expected.box) >= MIN_MATCH_IOU]
        face = found[0] if found else expected
        signals, group = face_signals(degraded, face, size)
        rows.append(
            {
                "image": name,
                "face": 0,
                "degradation": deg,
                "group": group,
                "fallback": not found,
                **signals,
            }
        )
    return rows


def summarise(rows: list[dict], limits: QualityLimits) -> dict:
    """Percentiles, pass rates (overall, per group) and degradation fire rates."""
    clean = [r for r in rows if r["degradation"] is None]
    keys = [k for k in clean[0] if k not in ("image", "face", "degradation", "group", "fallback")]
    warned = [quality_warnings(r, limits) for r in clean]
    result = {
        "images": len({r["image"] for r in rows}),
        "faces": len(clean),
        "limits": vars(limits),
        "percentiles": {
            k: {
                str(q): round(float(np.nanpercentile([r[k] for r in clean], q)), 4)
                for q in PERCENTILES
            }
            for k in keys
        },
        "pass_rate": {
            w: round(float(np.mean([w not in ws for ws in warned])), 4) for w in WARNINGS
        },
        "pass_rate_any": round(float(np.mean([not ws for ws in warned])), 4),
        "pass_rate_by_group": {},
        "degradations": {},
    }
    for group in sorted({str(r["group"]) for r in clean}):
        ws = [w for w, r in zip(warned, clean, strict=True) if str(r["group"]) == group]
        result["pass_rate_by_group"][group] = {
            "faces": len(ws),
            **{w: round(float(np.mean([w not in x for x in ws])), 4) for w in WARNINGS},
        }
    for deg, (target, _) in DEGRADATIONS.items():
        subset = [r for r in rows if r["degradation"] == deg]
        if not subset:
            continue
        ws = [quality_warnings(r, limits) for r in subset]
        result["degradations"][deg] = {
            "expected": target,
            "faces": len(subset),
            "fallback": sum(r["fallback"] for r in subset),
            "fire_rate": {w: round(float(np.mean([w in x for x in ws])), 4) for w in WARNINGS},
        }
    return result


def print_summary(result: dict) -> None:
    """The summary as text."""
    print(f"{result['images']} images, {result['faces']} faces")
    print(f"{'percentiles':28s}" + " ".join(f"{q:>8s}" for q in result["percentiles"]["sharpness"]))
    for key, values in result["percentiles"].items():
        print(f"  {key:26s}" + " ".join(f"{v:8.3f}" for v in values.values()))
    print(f"no warning (DEFAULT_LIMITS): any {result['pass_rate_any']:.3f}")
    for w, rate in result["pass_rate"].items():
        by_group = "  ".join(
            f"{g} {v[w]:.3f} (n={v['faces']})" for g, v in result["pass_rate_by_group"].items()
        )
        print(f"  {w:15s} {rate:.3f}   {by_group}")
    print("degradations: share of faces raising each warning")
    for deg, v in result["degradations"].items():
        rates = " ".join(f"{w} {r:.2f}" for w, r in v["fire_rate"].items())
        print(
            f"  {deg:24s} expect {v['expected']:15s} (n={v['faces']}, fallback "
            f"{v['fallback']}): {rates}"
        )


def main(argv: list[str] | None = None) -> int:
    """Parse flags, measure, print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of images")
    parser.add_argument("--size", type=int, default=224, help="crop side in pixels")
    parser.add_argument("--max-images", type=int, default=None, help="first N images only")
    parser.add_argument("--no-degradations", action="store_true")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--rows", type=Path, default=None, help="also write every face as JSONL")
    args = parser.parse_args(argv)
    paths = sorted(p for p in args.data.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if args.max_images is not None:
        paths = paths[: args.max_images]
    if not paths:
        print(f"error: no images in {args.data}", file=sys.stderr)
        return 2
    rows = []
    for path in paths:
        try:
            image = load_image(path)
        except InvalidImageError as err:
            print(f"skipped: {err}", file=sys.stderr)
            continue
        rows += measure_image(image, path.name, args.size, not args.no_degradations)
    if not any(r["degradation"] is None for r in rows):
        print(f"error: no faces found in {args.data}", file=sys.stderr)
        return 2
    if args.rows is not None:
        args.rows.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = {"data": str(args.data), "size": args.size, **summarise(rows, DEFAULT_LIMITS)}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_summary(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
