"""Analyse face photos for acne, hyperpigmentation and wrinkles (a research aid, not a diagnosis).

    python client/analyze.py --image face.jpg                    # embedded runner, models/default
    python client/analyze.py --image photos/ --json              # one JSON line per image
    python client/analyze.py --image face.jpg --url grpc://127.0.0.1:8001 --retries 4

Exit codes: 0 ok or no face found; 2 bad input (the message names the file);
3 the server is unreachable, not ready or failing (the message names the URL), after the
--retries (default 0) with exponential backoff (0.5, 1, 2, 4, 8, 8 ... s; client/retry.py).
Nothing is written to disk unless --overlay is given.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python client/analyze.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

EXIT_OK, EXIT_BAD_INPUT, EXIT_UNREACHABLE = 0, 2, 3
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")


def list_images(path: Path) -> list[Path]:
    """The image itself, or the images of a folder (sorted, by suffix)."""
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    return [path]


def _warn_retry(attempt: int, delay_s: float, exc: BaseException) -> None:
    print(f"warning: {exc}; retry {attempt} in {delay_s:g} s", file=sys.stderr, flush=True)


def make_runner(url: str | None, model_dir: Path | None, retries: int = 0):
    """The embedded runner without a URL, else a Triton client (connecting with `retries`)."""
    if url is None:
        from client.runner import DEFAULT_MODEL_DIR, EmbeddedRunner

        return EmbeddedRunner(model_dir or DEFAULT_MODEL_DIR)
    from client.retry import call_with_retries
    from client.triton_client import TritonRunner

    return call_with_retries(lambda: TritonRunner(url), retries, on_retry=_warn_retry)


def write_overlays(image_path: Path, raw, out_dir: Path) -> list[dict[str, str | None]]:
    """One heatmap overlay per face and condition, over the original photo."""
    from client.overlay import overlay_on_original, write_image
    from core.schema import CONDITIONS
    from preprocessing.image_io import load_image

    photo = load_image(image_path)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(raw.num_faces):
        face_paths: dict[str, str | None] = {}
        for c, cond in enumerate(CONDITIONS):
            target = out_dir / f"{image_path.stem}_face{i + 1}_{cond}.png"
            write_image(target, overlay_on_original(photo, raw.cam[i, c], raw.affines[i]))
            face_paths[cond] = str(target)
        paths.append(face_paths)
    return paths


def analyze_file(
    runner,
    path: Path,
    *,
    fitzpatrick: int | None,
    overlay: Path | None,
    force: bool = False,
    region: str = "face",
    retries: int = 0,
) -> dict:
    """The result dict for one file; invalid images give status invalid_image. An unavailable
    server is retried `retries` times (client/retry.py), bad input never."""
    from client.result import build_result
    from client.retry import call_with_retries
    from client.triton_client import ServerRequestError
    from preprocessing.image_io import InvalidImageError

    try:
        data = path.read_bytes()
    except OSError as exc:
        return build_result(str(path), None, runner.info, error=f"cannot read: {exc.strerror}")
    try:
        kwargs = {"region": region} if region != "face" else {}
        kwargs["heatmaps"] = overlay is not None  # the CAM only when overlays are written
        raw = call_with_retries(
            lambda: runner.analyze_bytes(data, fitzpatrick=fitzpatrick, **kwargs),
            retries,
            on_retry=_warn_retry,
        )
    except (InvalidImageError, ServerRequestError) as exc:
        if isinstance(exc, ServerRequestError) and not exc.invalid_input:
            raise
        return build_result(str(path), None, runner.info, error=str(exc))
    heatmaps = write_overlays(path, raw, overlay) if overlay is not None and raw.num_faces else None
    return build_result(str(path), raw, runner.info, heatmaps=heatmaps, force=force, region=region)


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python client/analyze.py",
        description=__doc__.split("\n\n")[0],
        epilog="Exit codes: 0 ok/no face, 2 bad input, 3 server unreachable.",
    )
    parser.add_argument(
        "--retries",
        type=_non_negative,
        default=0,
        help="retry an unreachable or unavailable server this many times, waiting 0.5, 1, 2, "
        "4, 8, 8 ... s (default 0); bad input is never retried",
    )
    parser.add_argument("--image", type=Path, required=True, help="an image file or a folder")
    parser.add_argument(
        "--url",
        default=None,
        help="Triton server, grpc://127.0.0.1:8001 or http://127.0.0.1:8000; "
        "without it the pipeline runs in this process",
    )
    parser.add_argument(
        "--fitzpatrick",
        type=int,
        choices=range(1, 7),
        metavar="1-6",
        help="use this Fitzpatrick type instead of the estimated skin tone",
    )
    parser.add_argument(
        "--overlay",
        type=Path,
        default=None,
        help="folder for heatmap overlay PNGs (nothing is written without it)",
    )
    parser.add_argument("--json", action="store_true", help="print the result JSON (one line each)")
    parser.add_argument(
        "--region",
        choices=("face", "whole"),
        default="face",
        help="face: detect and verify faces (default); whole: analyse the image as one skin "
        "region (close-ups without a face; embedded runner only)",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="report yes/no decisions even for faces with a blur, exposure or size warning "
        "(by default their conditions are reported as uncertain, present: null)",
    )
    parser.add_argument(
        "--model-dir",
        type=Path,
        default=None,
        help="embedded runner: folder with model.onnx, model_card.json, "
        "thresholds.json (default models/default)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    args = parse_args(argv)
    from client.runner import ModelDirError
    from client.triton_client import ServerRequestError, ServerUnreachableError

    if not args.image.exists():
        print(f"error: {args.image}: no such file or folder", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.region == "whole" and args.url is not None:
        print(
            "error: --region whole runs in the embedded runner only (drop --url)", file=sys.stderr
        )
        return EXIT_BAD_INPUT
    paths = list_images(args.image)
    if not paths:
        print(f"error: {args.image}: no images ({', '.join(IMAGE_SUFFIXES)})", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        runner = make_runner(args.url, args.model_dir, args.retries)
    except ServerUnreachableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except (ModelDirError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    code = EXIT_OK
    try:
        for path in paths:
            result = analyze_file(
                runner,
                path,
                fitzpatrick=args.fitzpatrick,
                overlay=args.overlay,
                force=args.force,
                region=args.region,
                retries=args.retries,
            )
            if result["status"] == "invalid_image":
                print(f"error: {path}: {result.get('error', 'invalid image')}", file=sys.stderr)
                code = EXIT_BAD_INPUT
            if args.json:
                print(json.dumps(result), flush=True)
            else:
                from client.result import summarize

                print(summarize(result), flush=True)
    except ServerUnreachableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except ServerRequestError as exc:
        print(f"error: {args.url}: request failed: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    finally:
        runner.close()
    return code


if __name__ == "__main__":
    sys.exit(main())
