"""ACNE04 -> canonical dataset.

    python -m data.adapters.acne04 --src DIR --out OUT [--images IMAGES] [--fold K] [--json]

DIR holds ``ImageSets/Main/NNEW_{trainval,test}_{K}.txt`` (K = fold 0-4, five different
random splits of the same images), lines ``filename grade lesion_count``; images are in
IMAGES (default DIR/JPEGImages, else DIR). The fold's test list becomes ``test``; its
trainval list is split into train/val by `assign_splits`. Every ACNE04 image shows acne:
``acne`` = 1, ``acne_severity`` from the lesion count (<=5, 6-20, 21-50, >50); tone,
hyperpigmentation and wrinkles are unknown. Details: data/ADAPTERS.md.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from data.adapters.common import (
    TRAINVAL,
    AdapterError,
    Record,
    Summary,
    make_parser,
    parse_int,
    run_cli,
    severity_from_count,
    write_from_args,
)

SOURCE = "acne04"
LIST_DIR = Path("ImageSets") / "Main"
NUM_FOLDS = 5


def list_path(src: Path, part: str, fold: int) -> Path:
    """Path of one split list, e.g. ImageSets/Main/NNEW_test_0.txt."""
    return src / LIST_DIR / f"NNEW_{part}_{fold}.txt"


def parse_line(line: str) -> tuple[str, int, int] | str:
    """(filename, grade, lesion_count) of one list line, or an error message."""
    fields = line.split()
    if len(fields) != 3:
        return f"expected 'filename grade lesion_count', got {line.strip()!r}"
    name, grade, count = fields[0], parse_int(fields[1]), parse_int(fields[2])
    if grade is None or not 0 <= grade <= 3:
        return f"grade must be 0-3, got {fields[1]!r}"
    if count is None or count < 0:
        return f"lesion_count must be an integer >= 0, got {fields[2]!r}"
    return name, grade, count


def read_records(src: Path, images: Path | None, summary: Summary, *, fold: int) -> list[Record]:
    """Records of the fold's trainval and test lists."""
    if images is None:
        images = src / "JPEGImages" if (src / "JPEGImages").is_dir() else src
    records: list[Record] = []
    seen: dict[str, str] = {}
    for part, split in (("trainval", TRAINVAL), ("test", "test")):
        path = list_path(src, part, fold)
        if not path.is_file():
            raise AdapterError(f"{path}: file not found (fold {fold})")
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            summary.rows_in += 1
            row_id = f"{path.name}:{number}"
            parsed = parse_line(line)
            if isinstance(parsed, str):
                summary.skip(row_id, f"malformed line: {parsed}")
                continue
            name, grade, count = parsed
            if name in seen:
                summary.skip(row_id, f"duplicate image: {name} already listed at {seen[name]}")
                continue
            seen[name] = row_id
            severity = severity_from_count(count)
            if severity != grade:
                summary.warn("grade_differs_from_count")
            records.append(
                Record(
                    row_id=row_id,
                    image_src=images / name,
                    image_name=Path(name).name,
                    labels={"acne": 1.0, "hyperpigmentation": math.nan, "wrinkles": math.nan},
                    acne_severity=severity,
                    split=split,
                    extra={"acne04_grade": grade, "acne_lesion_count": count},
                )
            )
    summary.notes.append(f"fold {fold}; Fitzpatrick type unknown for every ACNE04 image")
    return records


def convert(args: argparse.Namespace, progress: bool = False) -> Summary:
    """Convert per the parsed CLI arguments; return the summary."""
    summary = Summary(SOURCE)
    records = read_records(args.src, args.images, summary, fold=args.fold)
    return write_from_args(
        records, summary, args, progress=progress, val_fraction=args.val_fraction
    )


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit code."""
    parser = make_parser(
        "python -m data.adapters.acne04",
        "Convert ACNE04 to the canonical dataset format.",
        images_help="folder of the listed images (default SRC/JPEGImages, else SRC)",
    )
    parser.add_argument(
        "--fold",
        type=int,
        default=0,
        choices=range(NUM_FOLDS),
        help="which NNEW_*_K.txt split to use (default 0)",
    )
    parser.add_argument(
        "--val-fraction",
        type=float,
        default=0.15,
        help="fraction of the trainval list that becomes val (default 0.15)",
    )
    args = parser.parse_args(argv)
    if not 0.0 < args.val_fraction < 1.0:
        parser.error(f"--val-fraction must be between 0 and 1, got {args.val_fraction}")
    return run_cli(args, convert)


if __name__ == "__main__":
    sys.exit(main())
