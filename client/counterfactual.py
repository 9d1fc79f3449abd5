"""Counterfactual robustness of the served pipeline: run it on each photo and its changed copies.

    python -m client.counterfactual --model-dir models/default --data DATA --split val \\
        --out FILE.csv [--limit N] [--json] [--no-progress]

Runs the embedded runner (`client.runner.EmbeddedRunner`, the served pipeline) on each photo of
DATA/metadata.csv's split and on its changed copies (`fairness.counterfactual.CHANGES`: +-0.5 EV,
warm and cool white balance, JPEG q60, a 5 degree rotation), which live in memory only (photos
are biometric data: nothing but the CSV is written). A row with a Fitzpatrick type is decided
with that type's group (as a served request giving the type); any other row with the estimate.
The rates, their Wilson intervals and the CSV format are `fairness.counterfactual`'s. Exit codes:
0 ok, 2 bad input (the message names the file and the CSV line).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from client.runner import EmbeddedRunner
from fairness.counterfactual import (
    ALL_PHOTOS,
    ANY_CONDITION,
    CHANGES,
    CounterfactualError,
    counterfactual_summary,
    read_counterfactual,
    write_counterfactual,
)

JPEG_QUALITY = 60
ROTATION_DEG = 5.0
EXIT_BAD_INPUT = 2


@dataclass(frozen=True)
class Photo:
    """One photo of the dataset: its path, the CSV line and its labelled type (None: estimate)."""

    path: Path
    image: str  # as in metadata.csv
    line: int
    fitzpatrick: int | None


@dataclass(frozen=True)
class Outcome:
    """The largest analysed face of one image as the served pipeline decides it."""

    estimated_group: str | None
    probs: np.ndarray  # [C]
    thresholds: np.ndarray  # [C]
    decisions: np.ndarray  # bool [C]
    uncertain: bool


def dataset_photos(data_dir: Path, split: str, limit: int | None = None) -> list[Photo]:
    """The photos of `split` in DATA/metadata.csv (with their labelled type, if any)."""
    from core.schema import FITZPATRICK_TYPES

    meta = Path(data_dir) / "metadata.csv"
    if not meta.is_file():
        raise CounterfactualError(f"{meta}: not found (expected a canonical dataset folder)")
    photos = []
    with meta.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = sorted({"image", "split"} - set(reader.fieldnames or []))
        if missing:
            raise CounterfactualError(f"{meta}: missing column(s) {', '.join(missing)}")
        for line, row in enumerate(reader, start=2):
            if (row.get("split") or "").strip() != split:
                continue
            image = (row.get("image") or "").strip()
            if not image:
                raise CounterfactualError(f"{meta}: line {line}, column 'image': empty")
            raw = (row.get("fitzpatrick") or "").strip()
            if raw and raw not in {str(t) for t in FITZPATRICK_TYPES}:
                raise CounterfactualError(
                    f"{meta}: line {line}, column 'fitzpatrick': {raw!r} is not a type 1-6"
                )
            photos.append(Photo(meta.parent / image, image, line, int(raw) if raw else None))
    if not photos:
        raise CounterfactualError(f"{meta}: no rows with split == {split!r}")
    return photos[:limit] if limit is not None else photos


def changed_copies(image: np.ndarray) -> Iterator[tuple[str, bytes]]:
    """(name, encoded bytes) of each change of `CHANGES`, made in memory."""
    import cv2

    from preprocessing.augment import rotate
    from preprocessing.colour import LIGHTING_CHANGES, relight

    def encode(rgb: np.ndarray, ext: str = ".bmp", params: Sequence[int] = ()) -> bytes:
        """The RGB image encoded by OpenCV (lossless BMP, the quickest to write and read back,
        unless `ext` says otherwise)."""
        ok, buf = cv2.imencode(ext, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), list(params))
        if not ok:
            raise ValueError(f"cannot encode an image of shape {rgb.shape} as {ext}")
        return buf.tobytes()

    for name in CHANGES[:4]:
        ev, gains = LIGHTING_CHANGES[name]
        yield name, encode(relight(image, ev, gains))
    yield CHANGES[4], encode(image, ".jpg", (cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY))
    yield CHANGES[5], encode(rotate(image, ROTATION_DEG))


def served_outcome(runner: EmbeddedRunner, data: bytes, fitzpatrick: int | None) -> Outcome | None:
    """Face 0 of the served analysis (None: no face); a given type decides with its group."""
    from client.result import UNCERTAIN_WARNINGS
    from client.steps import threshold_step

    raw = runner.analyze_bytes(data)
    if raw.num_faces == 0:
        return None
    decisions, thresholds = raw.decisions[0], raw.thresholds[0]
    if fitzpatrick is not None:  # the served result of a request that gives the type
        given = threshold_step(raw.probs[:1], raw.groups[:1], fitzpatrick, runner.thresholds)
        decisions, thresholds = given.decisions[0], given.thresholds[0]
    warnings = raw.warnings[0] if raw.warnings else ()
    return Outcome(
        raw.groups[0],
        np.asarray(raw.probs[0], np.float64),
        np.asarray(thresholds, np.float64),
        np.asarray(decisions, bool),
        bool(UNCERTAIN_WARNINGS.intersection(warnings)),
    )


def photo_rows(runner: EmbeddedRunner, photo: Photo, meta: Path) -> list[dict] | None:
    """The CSV rows of one photo (None: no face as taken); bad files name the CSV line."""
    from core.schema import CONDITIONS, fitzpatrick_to_group
    from preprocessing.image_io import InvalidImageError, load_image

    where = f"{meta}: line {photo.line}, image {photo.image!r}"
    try:
        data = photo.path.read_bytes()
        image = load_image(data, name=str(photo.path))
        base = served_outcome(runner, data, photo.fitzpatrick)
    except OSError as err:
        raise CounterfactualError(f"{where}: cannot read ({err.strerror or err})") from None
    except InvalidImageError as err:
        raise CounterfactualError(f"{where}: {err}") from None
    if base is None:
        return None
    labelled = photo.fitzpatrick is not None
    group = fitzpatrick_to_group(photo.fitzpatrick) if labelled else base.estimated_group
    rows = []
    for change, data_changed in changed_copies(image):
        other = served_outcome(runner, data_changed, photo.fitzpatrick)
        for c, cond in enumerate(CONDITIONS):
            rows.append(_row(photo, (group, labelled), change, (c, cond), base, other))
    return rows


def _row(
    photo: Photo,
    grouping: tuple[str | None, bool],
    change: str,
    condition: tuple[int, str],
    base: Outcome,
    other: Outcome | None,
) -> dict:
    """One CSV row: photo x change x condition; `grouping` = (group, labelled)."""
    group, labelled = grouping
    c, cond = condition
    return {
        "image": photo.image,
        "group": group or "",
        "tone_source": "labelled" if labelled else "estimated",
        "estimated_group": base.estimated_group or "",
        "change": change,
        "condition": cond,
        "prob": float(base.probs[c]),
        "prob_changed": None if other is None else float(other.probs[c]),
        "threshold": float(base.thresholds[c]),
        "threshold_changed": None if other is None else float(other.thresholds[c]),
        "decision": bool(base.decisions[c]),
        "decision_changed": None if other is None else bool(other.decisions[c]),
        "group_changed": "" if other is None else other.estimated_group or "",
        "face_changed": other is not None,
        "uncertain": base.uncertain,
        "uncertain_changed": None if other is None else other.uncertain,
    }


def run_counterfactual(
    runner: EmbeddedRunner,
    data_dir: Path,
    split: str,
    out: Path,
    *,
    limit: int | None,
    progress: bool,
) -> dict:
    """Analyse every photo and its changed copies, write the CSV; the run's summary dict."""
    from tqdm import tqdm

    start = time.perf_counter()
    meta = Path(data_dir) / "metadata.csv"
    photos = dataset_photos(Path(data_dir), split, limit)
    rows: list[dict] = []
    no_face: list[str] = []
    for photo in tqdm(photos, desc="counterfactual", disable=None if progress else True):
        found = photo_rows(runner, photo, meta)
        if found is None:
            no_face.append(photo.image)
        else:
            rows += found
    if not rows:
        raise CounterfactualError(f"{meta}: no face analysed in any of {len(photos)} photos")
    write_counterfactual(out, rows)
    summary = counterfactual_summary(read_counterfactual(out))
    return {
        "out": str(out),
        "data": str(data_dir),
        "split": split,
        "photos": len(photos),
        "analysed": len(photos) - len(no_face),
        "no_face_as_taken": no_face,
        "rows": len(rows),
        "changes": list(CHANGES),
        "model": {"name": runner.info.name, "version": runner.info.version},
        "seconds": round(time.perf_counter() - start, 1),
        "any_flip_rate": {
            ch: summary["flip_rate"][ALL_PHOTOS][ch][ANY_CONDITION]["rate"]
            for ch in summary["changes"]
        },
        "tone_change_rate": {
            ch: summary["tone_change"][ALL_PHOTOS][ch]["rate"] for ch in summary["changes"]
        },
    }


def _parser() -> argparse.ArgumentParser:
    """The driver's command line."""
    p = argparse.ArgumentParser(
        prog="python -m client.counterfactual",
        description="Counterfactual robustness: the served pipeline on each photo and on its "
        "changed copies (in memory); writes one CSV row per photo x change x condition. "
        "Exit codes: 0 ok, 2 bad input.",
    )
    p.add_argument("--model-dir", type=Path, default=None, help="model folder (default: shipped)")
    p.add_argument("--data", type=Path, required=True, help="canonical dataset folder")
    p.add_argument("--split", default="val", help="split of metadata.csv (default val)")
    p.add_argument("--out", type=Path, required=True, help="counterfactual CSV to write")
    p.add_argument("--limit", type=int, default=None, help="first N photos of the split only")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit code."""
    args = _parser().parse_args(argv)
    if args.limit is not None and args.limit < 1:
        print(f"error: --limit must be >= 1, got {args.limit}", file=sys.stderr)
        return EXIT_BAD_INPUT
    from client.runner import DEFAULT_MODEL_DIR, EmbeddedRunner, ModelDirError

    try:
        runner = EmbeddedRunner(args.model_dir or DEFAULT_MODEL_DIR)
        summary = run_counterfactual(
            runner,
            args.data,
            args.split,
            args.out,
            limit=args.limit,
            progress=not args.no_progress,
        )
    except (CounterfactualError, ModelDirError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(
            f"wrote {summary['out']}: {summary['rows']} rows, {summary['analysed']} of "
            f"{summary['photos']} photos analysed ({summary['seconds']} s)"
        )
        for change, rate in summary["any_flip_rate"].items():
            tone = summary["tone_change_rate"][change]
            print(
                f"  {change:20s} any decision flipped {_pct(rate)}, tone group changed {_pct(tone)}"
            )
    return 0


def _pct(value: float | None) -> str:
    """A share as a percentage with one decimal, or n/a."""
    return "n/a" if value is None else f"{100 * value:.1f}%"


if __name__ == "__main__":
    sys.exit(main())
