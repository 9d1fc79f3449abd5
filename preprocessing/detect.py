"""Debugging CLI: detect faces, align, crop and estimate skin tone for one image.

    python -m preprocessing.detect --image PATH [--json] [--save-crops DIR] [--size 224]

Exit codes: 0 = ok or no face found, 2 = invalid image (unreadable, corrupt, truncated,
empty, zero-sized, too large or unsupported), with one line on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2

from core import atomic
from preprocessing.image_io import DEFAULT_MAX_PIXELS, InvalidImageError, load_image
from preprocessing.pipeline import analyze_image, face_crop_to_dict

EXIT_OK = 0
EXIT_INVALID_IMAGE = 2


def save_png_atomic(path: Path, rgb) -> None:
    """Write an RGB image as PNG atomically (`core.atomic`)."""
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError(f"could not encode {path}")
    atomic.write_bytes(path, encoded.tobytes())


def run(
    image_path: str, *, size: int, max_pixels: int, save_crops: Path | None, illumination: str
) -> dict:
    """Analyse one image; the result dict {"image", "status", "faces"[, "error"]}."""
    try:
        image = load_image(image_path, max_pixels=max_pixels)
    except InvalidImageError as err:
        return {"image": image_path, "status": "invalid_image", "faces": [], "error": str(err)}
    crops = analyze_image(image, size=size, illumination=illumination)
    if save_crops is not None:
        save_crops.mkdir(parents=True, exist_ok=True)
        stem = Path(image_path).stem
        for i, face in enumerate(crops):
            save_png_atomic(save_crops / f"{stem}_face{i}.png", face.crop)
    return {
        "image": image_path,
        "status": "ok" if crops else "no_face",
        "faces": [face_crop_to_dict(f) for f in crops],
    }


def format_text(result: dict) -> str:
    """Human-readable lines for one result."""
    lines = [f"{result['image']}: {result['status']}, {len(result['faces'])} face(s)"]
    for i, face in enumerate(result["faces"]):
        tone = face["skin_tone"]
        group = tone["fitzpatrick_group"] or "abstain"
        lines.append(
            f"  face {i}: box {face['box']} score {face['score']:.3f} "
            f"ITA {tone['ita']} group {group} confidence {tone['confidence']:.2f}"
        )
        lines.append(f"    keypoints {face['keypoints']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Parse flags, analyse the image, print the result."""
    parser = argparse.ArgumentParser(
        description="Detect faces and estimate skin tone (research aid, not a diagnosis).",
        epilog="exit codes: 0 ok or no face, 2 invalid image",
    )
    parser.add_argument("--image", required=True, help="JPEG, PNG, WebP or BMP file")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--save-crops", type=Path, help="write the aligned crops (PNG) here")
    parser.add_argument("--size", type=int, default=224, help="crop size in pixels")
    parser.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS)
    parser.add_argument("--illumination", choices=["none", "shades_of_gray"], default="none")
    args = parser.parse_args(argv)
    result = run(
        args.image,
        size=args.size,
        max_pixels=args.max_pixels,
        save_crops=args.save_crops,
        illumination=args.illumination,
    )
    print(json.dumps(result, indent=2) if args.json else format_text(result))
    if result["status"] == "invalid_image":
        print(f"error: {result['error']}", file=sys.stderr)
        return EXIT_INVALID_IMAGE
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
