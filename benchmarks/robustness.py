"""Trust and stability of the served pipeline on real photos: face recall, non-face acceptance,
tone groups under lighting changes, and decision flips under benign changes.

    python benchmarks/robustness.py --faces data/acne-new-v36 [--limit N] [--model-dir DIR]
        [--seed 0] [--json]

One `client.runner.EmbeddedRunner` analyses every image from its encoded bytes, as a served
request would. Everything is measured on the largest analysed face (index 0).

- Face set: the rows of `<faces>/metadata.csv` with split == "val". Face recall is the share
  of these photos with at least one analysed face.
- Non-face set: the scikit-image data images without a human face (not astronaut.png or
  camera.png; lfw_subset.npy and images under 32 px are skipped), any images the installed
  OpenCV wheel ships (the headless wheel ships none), and deterministic drawings (dice, words,
  smiley logos, a test chart). Acceptance rate is the share with at least one analysed face.
- Lighting: the tone group under `preprocessing.colour.LIGHTING_CHANGES` (relit, sent as PNG)
  against the as-taken photo: per change the share of faces whose group changed (both
  estimated, different), that abstain (face found, group None) and that are lost (no face).
- Benign changes: re-encodes (JPEG q60, WebP q80, PNG), a 5 degree rotation about the centre
  (border replicate), a 0.8x scale (area), +-0.2 EV, and the pixels turned 90 degrees with
  EXIF orientation 6 or 8 (alternating by photo) in JPEG q95, PNG and lossless WebP so that
  the upright image is restored on load. A flip is a decision that differs from the as-taken
  photo's, counted over (photo, change, condition) where both have a face.
- Mirror image (`mirror_image`, apart from the benign changes above and their total): the photo
  mirrored left to right, as many front cameras save a selfie; the same face, so the same
  answer is expected.

Photos are only read; changed copies live in memory and are never written. Nothing is random:
--seed only draws the speckled backdrop of some drawings. Exit codes: 0 ok, 2 bad input.
"""

from __future__ import annotations

import argparse
import csv
import io
import itertools
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from client.runner import DEFAULT_MODEL_DIR, ModelDirError  # noqa: E402
from core.schema import CONDITIONS  # noqa: E402
from data.canonical import DatasetError  # noqa: E402
from preprocessing.colour import LIGHTING_CHANGES, relight  # noqa: E402
from preprocessing.image_io import InvalidImageError, load_image  # noqa: E402

MEASURED_ON = (
    "real photos: acne-new v36 valid (CC BY 4.0); non-faces: images shipped in scikit-image "
    "and drawn ones"
)
NO_METADATA = "{path}: no metadata.csv (expected a converted dataset with columns image, split)"
SPLIT = "val"
IMAGE_SUFFIXES = (".jpg", ".png")
MIN_SIDE_PX = 32
# Shipped images that show a real human face, so they are not non-faces.
SKIMAGE_FACES = ("astronaut.png", "camera.png")  # camera.png: the cameraman
OPENCV_FACES = ("lena.jpg", "lena_tmpl.jpg", "messi5.jpg")  # in opencv/samples/data
PIPS = {
    1: [(0, 0)],
    2: [(-1, -1), (1, 1)],
    3: [(-1, -1), (0, 0), (1, 1)],
    4: [(-1, -1), (1, -1), (-1, 1), (1, 1)],
    5: [(-1, -1), (1, -1), (0, 0), (-1, 1), (1, 1)],
    6: [(-1, -1), (1, -1), (-1, 0), (1, 0), (-1, 1), (1, 1)],
}
WORDS = ("HELLO", "skin care", "Open 24h", "face", "The quick brown fox")
EXIF_JPEG_QUALITY = 95
ORIENTATION_TAG = 0x0112


class BenchmarkError(ValueError):
    """Bad input to the benchmark (the message names the file)."""


# --- encoding and changes


def encode(image: np.ndarray, ext: str = ".png", quality: int | None = None) -> bytes:
    """An RGB uint8 image encoded by OpenCV (".png", ".jpg", ".webp") at `quality`."""
    params = []
    if quality is not None:
        flag = {".jpg": cv2.IMWRITE_JPEG_QUALITY, ".webp": cv2.IMWRITE_WEBP_QUALITY}[ext]
        params = [flag, quality]
    ok, buf = cv2.imencode(ext, cv2.cvtColor(image, cv2.COLOR_RGB2BGR), params)
    assert ok, ext
    return buf.tobytes()


def encode_with_orientation(image: np.ndarray, fmt: str, orientation: int) -> bytes:
    """The upright RGB image stored turned 90 degrees with EXIF `orientation` 6 or 8 (Pillow),
    so that a reader applying the orientation gets `image` back."""
    from PIL import Image

    # 6 = shown rotated 90 clockwise, so store it turned counter-clockwise; 8 the reverse.
    stored = np.rot90(image, {6: 1, 8: -1}[orientation])
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = orientation
    options = {  # fast settings: PNG and lossless WebP restore the pixels whatever the effort
        "JPEG": {"quality": EXIF_JPEG_QUALITY},
        "PNG": {"compress_level": 1},
        "WEBP": {"lossless": True, "method": 0},
    }[fmt]
    out = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(stored)).save(
        out, format=fmt, exif=exif.tobytes(), **options
    )
    return out.getvalue()


def rotate(image: np.ndarray, degrees: float) -> np.ndarray:
    """The image rotated about its centre (counter-clockwise), same size, border replicated."""
    h, w = image.shape[:2]
    matrix = cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), degrees, 1.0)
    return cv2.warpAffine(image, matrix, (w, h), borderMode=cv2.BORDER_REPLICATE)


def scale(image: np.ndarray, factor: float) -> np.ndarray:
    """The image shrunk by `factor` with area interpolation."""
    h, w = image.shape[:2]
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def _orientation(index: int) -> int:
    return 6 if index % 2 == 0 else 8


# name -> fn(upright RGB image, photo index) -> encoded bytes
BENIGN_CHANGES: dict[str, Callable[[np.ndarray, int], bytes]] = {
    "JPEG q60": lambda im, k: encode(im, ".jpg", 60),
    "WebP q80": lambda im, k: encode(im, ".webp", 80),
    "PNG": lambda im, k: encode(im),
    "rotate 5 deg": lambda im, k: encode(rotate(im, 5.0)),
    "scale 0.8x": lambda im, k: encode(scale(im, 0.8)),
    "+0.2 EV": lambda im, k: encode(relight(im, 0.2)),
    "-0.2 EV": lambda im, k: encode(relight(im, -0.2)),
    "EXIF orientation JPEG": lambda im, k: encode_with_orientation(im, "JPEG", _orientation(k)),
    "EXIF orientation PNG": lambda im, k: encode_with_orientation(im, "PNG", _orientation(k)),
    "EXIF orientation WebP": lambda im, k: encode_with_orientation(im, "WEBP", _orientation(k)),
}
# Measured and reported apart from BENIGN_CHANGES (not in their total).
MIRROR_CHANGES: dict[str, Callable[[np.ndarray, int], bytes]] = {
    "mirror image": lambda im, k: encode(np.ascontiguousarray(im[:, ::-1])),
}


# --- drawn non-faces


def draw_die(value: int, background: np.ndarray, side: int = 160) -> np.ndarray:
    """A white rounded die showing `value` black pips, centred on `background`."""
    img = background.copy()
    c, h, r = img.shape[0] // 2, side // 2, side // 6
    white = (245, 245, 245)
    cv2.rectangle(img, (c - h + r, c - h), (c + h - r, c + h), white, -1)
    cv2.rectangle(img, (c - h, c - h + r), (c + h, c + h - r), white, -1)
    for sx, sy in itertools.product((-1, 1), repeat=2):
        cv2.circle(img, (c + sx * (h - r), c + sy * (h - r)), r, white, -1, cv2.LINE_AA)
    for dx, dy in PIPS[value]:
        centre = (c + dx * side // 4, c + dy * side // 4)
        cv2.circle(img, centre, side // 10, (15, 15, 15), -1, cv2.LINE_AA)
    return img


def draw_smiley(size: int = 160, colour=(255, 215, 0)) -> np.ndarray:
    """A smiley logo with dot eyes on white."""
    img = np.full((size, size, 3), 255, np.uint8)
    c, r = size // 2, int(size * 0.38)
    cv2.circle(img, (c, c), r, colour, -1, cv2.LINE_AA)
    cv2.circle(img, (c, c), r, (0, 0, 0), 2, cv2.LINE_AA)
    for ex in (c - r // 3, c + r // 3):
        cv2.circle(img, (ex, c - r // 4), max(3, r // 9), (0, 0, 0), -1, cv2.LINE_AA)
    cv2.ellipse(img, (c, c + r // 10), (r // 2, r // 2), 0, 20, 160, (0, 0, 0), 3, cv2.LINE_AA)
    return img


def draw_words(text: str, width: int = 640, height: int = 200) -> np.ndarray:
    """`text` in black type on white."""
    img = np.full((height, width, 3), 255, np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    scale_ = min(3.0, (width - 40) / cv2.getTextSize(text, font, 1.0, 3)[0][0])
    cv2.putText(img, text, (20, height // 2 + 20), font, scale_, (0, 0, 0), 3, cv2.LINE_AA)
    return img


def draw_test_chart(kind: str, width: int = 512, height: int = 384) -> np.ndarray:
    """A colour-bar chart, a checkerboard or a grey ramp."""
    if kind == "colour bars":
        bars = [(192, 192, 192), (192, 192, 0), (0, 192, 192), (0, 192, 0),
                (192, 0, 192), (192, 0, 0), (0, 0, 192), (16, 16, 16)]  # fmt: skip
        cols = np.repeat(np.asarray(bars, np.uint8), -(-width // len(bars)), axis=0)[:width]
        return np.ascontiguousarray(np.broadcast_to(cols, (height, width, 3)))
    if kind == "checkerboard":
        cells = (np.add.outer(np.arange(height) // 48, np.arange(width) // 48) % 2).astype(bool)
        return np.where(cells[..., None], 235, 20).astype(np.uint8).repeat(3, axis=2)
    ramp = np.linspace(0, 255, width).astype(np.uint8)
    return np.ascontiguousarray(np.broadcast_to(ramp[None, :, None], (height, width, 3)))


def drawn_images(seed: int = 0) -> Iterator[tuple[str, np.ndarray]]:
    """(name, RGB image) of the deterministic drawings."""
    rng = np.random.default_rng(seed)
    size = 320
    backgrounds = {
        "grey": np.full((size, size, 3), 200, np.uint8),
        "green felt": np.full((size, size, 3), (30, 110, 50), np.uint8),
        "speckled": rng.integers(90, 170, (size, size, 1), np.uint8).repeat(3, axis=2),
    }
    for (bg_name, bg), value in itertools.product(backgrounds.items(), PIPS):
        yield f"drawn: die {value} on {bg_name}", draw_die(value, bg)
    for text in WORDS:
        yield f"drawn: words '{text}'", draw_words(text)
    yield "drawn: smiley 160 px", draw_smiley(160)
    yield "drawn: smiley 320 px", draw_smiley(320)
    yield "drawn: blue smiley 320 px", draw_smiley(320, (70, 130, 230))
    for kind in ("colour bars", "checkerboard", "grey ramp"):
        yield f"drawn: test chart {kind}", draw_test_chart(kind)


# --- shipped non-faces


def shipped_images() -> Iterator[tuple[str, str, bytes]]:
    """(source, name, file bytes) of the scikit-image and OpenCV images without a human face."""
    import skimage

    roots = [
        ("scikit-image", Path(skimage.__file__).parent / "data", SKIMAGE_FACES),
        ("opencv", Path(cv2.__file__).parent, OPENCV_FACES),
    ]
    for source, root, faces in roots:
        paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        for path in paths:
            if path.name in faces:
                continue
            data = path.read_bytes()
            try:
                h, w = load_image(data, name=str(path)).shape[:2]
            except InvalidImageError:
                continue
            if min(h, w) >= MIN_SIDE_PX:
                yield source, path.name, data


def non_face_images(seed: int = 0) -> list[tuple[str, str, bytes]]:
    """(source, name, encoded bytes) of the whole non-face set."""
    drawn = [("drawn", name, encode(image)) for name, image in drawn_images(seed)]
    return list(shipped_images()) + drawn


def non_face_summary(runner, images: list[tuple[str, str, bytes]], progress: bool) -> dict:
    """Acceptance rate (>= 1 analysed face) of the non-face set, per source, and the rejects."""
    accepted, rejected = [], 0
    sources = {s: {"images": 0, "accepted": 0} for s in ("scikit-image", "opencv", "drawn")}
    for source, name, data in tqdm(images, desc="non-faces", disable=None if progress else True):
        raw = runner.analyze_bytes(data, heatmaps=False)
        sources[source]["images"] += 1
        rejected += len(raw.rejected or [])
        if raw.num_faces:
            sources[source]["accepted"] += 1
            accepted.append(name)
    return {
        "images": len(images),
        "accepted": len(accepted),
        "acceptance_rate": rate(len(accepted), len(images)),
        "accepted_images": accepted,
        "rejected_candidates": rejected,
        "by_source": sources,
    }


# --- the face set


@dataclass(frozen=True)
class Outcome:
    """The largest analysed face of one image."""

    group: str | None
    probs: np.ndarray  # float32 [3]
    decisions: np.ndarray  # bool [3]


def largest_face(raw) -> Outcome | None:
    """Face 0 (the largest) of a RawAnalysis, or None when no face was analysed."""
    if raw.num_faces == 0:
        return None
    return Outcome(raw.groups[0], np.asarray(raw.probs[0]), np.asarray(raw.decisions[0], bool))


def face_photos(faces_dir: Path, limit: int | None = None, split: str = SPLIT) -> list[Path]:
    """Paths of the first `limit` photos of `split` listed in `faces_dir`/metadata.csv."""
    meta = faces_dir / "metadata.csv"
    if not meta.is_file():
        raise BenchmarkError(NO_METADATA.format(path=meta))
    with meta.open(newline="") as f:
        reader = csv.DictReader(f)
        missing = sorted({"image", "split"} - set(reader.fieldnames or []))
        if missing:
            raise BenchmarkError(f"{meta}: missing column(s) {', '.join(missing)}")
        paths = [faces_dir / row["image"] for row in reader if row["split"] == split]
    if not paths:
        raise BenchmarkError(f"{meta}: no rows with split == {split!r}")
    return paths[:limit] if limit is not None else paths


def measure_photo(runner, path: Path, index: int) -> dict[str, Outcome | None]:
    """The largest face as taken ("as taken"), under each lighting and each benign change."""
    try:
        data = path.read_bytes()
        image = load_image(data, name=str(path))
        out = {"as taken": largest_face(runner.analyze_bytes(data, heatmaps=False))}
    except OSError as err:
        raise BenchmarkError(f"{path}: cannot read file ({err.strerror})") from None
    except InvalidImageError as err:
        raise BenchmarkError(str(err)) from None
    if out["as taken"] is None:
        return out
    for name, (ev, gains) in LIGHTING_CHANGES.items():
        out[name] = largest_face(
            runner.analyze_bytes(encode(relight(image, ev, gains)), heatmaps=False)
        )
    for name, change_fn in {**BENIGN_CHANGES, **MIRROR_CHANGES}.items():
        out[name] = largest_face(runner.analyze_bytes(change_fn(image, index), heatmaps=False))
    return out


# --- summaries (pure)


def rate(count: int, total: int) -> float | None:
    """count / total rounded to 4 places; None when total is 0."""
    return None if total == 0 else round(count / total, 4)


def lighting_summary(results: list[dict[str, Outcome | None]], changes=tuple(LIGHTING_CHANGES)):
    """Per lighting change, over the photos with a face as taken: the share whose group changed
    (both estimated, different), that abstain (face found, group None) and that lost the face.

    >>> a, b = Outcome("I-II", None, None), Outcome("III-IV", None, None)
    >>> lighting_summary([{"as taken": a, "x": b}, {"as taken": a, "x": a}], ("x",))["x"]
    {'group_changed': 0.5, 'abstain': 0.0, 'no_face': 0.0}
    """
    results = [r for r in results if r.get("as taken") is not None]
    n = len(results)
    out: dict = {
        "faces": n,
        "abstain_as_taken": rate(sum(r["as taken"].group is None for r in results), n),
    }
    for name in changes:
        base = [(r["as taken"].group, r.get(name)) for r in results]
        changed = sum(
            g is not None and o is not None and o.group is not None and o.group != g
            for g, o in base
        )
        abstain = sum(o is not None and o.group is None for _, o in base)
        lost = sum(o is None for _, o in base)
        out[name] = {
            "group_changed": rate(changed, n),
            "abstain": rate(abstain, n),
            "no_face": rate(lost, n),
        }
    return out


def flip_summary(results: list[dict[str, Outcome | None]], changes=tuple(BENIGN_CHANGES)) -> dict:
    """Decision flips against the as-taken face over (photo, change, condition) triples where
    both images have a face: overall, per change and per condition; mean |delta probability|
    per change; the faces lost per change; the flips where the tone group changed too.

    >>> base = Outcome("I-II", np.array([0.2, 0.6, 0.1]), np.array([False, True, False]))
    >>> moved = Outcome("I-II", np.array([0.3, 0.4, 0.1]), np.array([False, False, False]))
    >>> out = flip_summary([{"as taken": base, "x": moved}, {"as taken": base, "x": None}], ("x",))
    >>> out["triples"], out["flips"], out["flip_rate"], out["mean_abs_delta_prob_by_change"]["x"]
    (3, 1, 0.3333, 0.1)
    """
    num_conditions = len(CONDITIONS)
    flips = {name: np.zeros(num_conditions, int) for name in changes}
    compared = dict.fromkeys(changes, 0)
    lost = dict.fromkeys(changes, 0)
    delta = {name: [] for name in changes}
    with_group_change = 0
    for r in results:
        base = r.get("as taken")
        if base is None:
            continue
        for name in changes:
            other = r.get(name)
            if other is None:
                lost[name] += 1
                continue
            flipped = np.asarray(other.decisions) != np.asarray(base.decisions)
            flips[name] += flipped
            compared[name] += 1
            delta[name].append(np.abs(np.asarray(other.probs, float) - np.asarray(base.probs)))
            with_group_change += int(flipped.sum()) * (other.group != base.group)
    total_flips = int(sum(f.sum() for f in flips.values()))
    triples = sum(compared.values()) * num_conditions
    by_condition = sum(flips.values(), np.zeros(num_conditions, int))
    return {
        "photos": sum(r.get("as taken") is not None for r in results),
        "triples": triples,
        "flips": total_flips,
        "flip_rate": rate(total_flips, triples),
        "flip_rate_by_change": {
            n: rate(int(flips[n].sum()), compared[n] * num_conditions) for n in changes
        },
        "flip_rate_by_condition": {
            c: rate(int(by_condition[k]), sum(compared.values())) for k, c in enumerate(CONDITIONS)
        },
        "mean_abs_delta_prob_by_change": {
            n: round(float(np.mean(delta[n])), 4) if delta[n] else None for n in changes
        },
        "faces_lost_by_change": lost,
        "flips_with_group_change": with_group_change,
    }


# --- the run


def run_benchmark(
    runner, faces_dir: Path, *, limit: int | None = None, seed: int = 0, progress: bool = True
) -> dict:
    """Measure the face set and the non-face set with one runner; the summary dict."""
    start = time.perf_counter()
    paths = face_photos(faces_dir, limit)
    results = [
        measure_photo(runner, path, k)
        for k, path in enumerate(tqdm(paths, desc="faces", disable=None if progress else True))
    ]
    found = [r["as taken"] is not None for r in results]
    non_faces = non_face_summary(runner, non_face_images(seed), progress)
    return {
        "measured_on": MEASURED_ON,
        "model": {
            "name": runner.info.name,
            "version": runner.info.version,
            "backend": runner.info.backend,
        },
        "seed": seed,
        "faces": {
            "data": str(faces_dir),
            "split": SPLIT,
            "photos": len(paths),
            "analysed": sum(found),
            "face_recall": rate(sum(found), len(paths)),
            "missed": [
                os.path.relpath(p, faces_dir) for p, f in zip(paths, found, strict=True) if not f
            ],
        },
        "non_faces": non_faces,
        "lighting": lighting_summary(results),
        "benign_changes": flip_summary(results),
        "mirror_image": flip_summary(results, tuple(MIRROR_CHANGES)),
        "seconds": round(time.perf_counter() - start, 1),
    }


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def print_summary(result: dict) -> None:
    """The summary as readable text."""
    faces, non, light, flips = (
        result[k] for k in ("faces", "non_faces", "lighting", "benign_changes")
    )
    model = result["model"]
    print(f"measured on {result['measured_on']}")
    print(f"model {model['name']} {model['version']} ({model['backend']})")
    print(f"face recall {_pct(faces['face_recall'])} ({faces['analysed']}/{faces['photos']})")
    print(
        f"non-face acceptance {_pct(non['acceptance_rate'])} ({non['accepted']}/{non['images']}"
        f"), {non['rejected_candidates']} candidates rejected"
    )
    for name in non["accepted_images"]:
        print(f"  accepted: {name}")
    print(f"lighting ({light['faces']} faces, abstain as taken {_pct(light['abstain_as_taken'])})")
    for name in LIGHTING_CHANGES:
        v = light[name]
        print(
            f"  {name:20s} group changed {_pct(v['group_changed'])}, abstain "
            f"{_pct(v['abstain'])}, no face {_pct(v['no_face'])}"
        )
    print(
        f"decision flips {_pct(flips['flip_rate'])} ({flips['flips']}/{flips['triples']}; "
        f"{flips['flips_with_group_change']} with a group change)"
    )
    for name, value in flips["flip_rate_by_change"].items():
        delta = flips["mean_abs_delta_prob_by_change"][name]
        print(
            f"  {name:22s} {_pct(value):>6s}  mean |dp| "
            f"{'n/a' if delta is None else f'{delta:.4f}'}  faces lost "
            f"{flips['faces_lost_by_change'][name]}"
        )
    for cond, value in flips["flip_rate_by_condition"].items():
        print(f"  {cond:22s} {_pct(value):>6s}")
    mirror = result["mirror_image"]
    by_condition = ", ".join(f"{c} {_pct(v)}" for c, v in mirror["flip_rate_by_condition"].items())
    print(
        f"mirror image: decision flips {_pct(mirror['flip_rate'])} ({mirror['flips']}/"
        f"{mirror['triples']}; {by_condition})"
    )
    print(f"{result['seconds']} s")


def main(argv: list[str] | None = None) -> int:
    """Parse flags, run the benchmark, print the summary."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--faces", type=Path, required=True, help="converted face dataset folder")
    p.add_argument("--limit", type=int, default=None, help="first N valid photos only")
    p.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL_DIR, help="model folder")
    p.add_argument("--seed", type=int, default=0, help="seed of the speckled drawn backdrop")
    p.add_argument("--json", action="store_true", help="print one JSON object, no progress bar")
    args = p.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        p.error(f"--limit must be >= 1, got {args.limit}")
    from client.runner import EmbeddedRunner

    try:
        runner = EmbeddedRunner(args.model_dir)
        result = run_benchmark(
            runner, args.faces, limit=args.limit, seed=args.seed, progress=not args.json
        )
    except (BenchmarkError, DatasetError, ModelDirError) as err:
        print(f"robustness: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_summary(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
