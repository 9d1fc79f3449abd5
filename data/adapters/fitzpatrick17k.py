"""Fitzpatrick17k -> canonical dataset.

    python -m data.adapters.fitzpatrick17k --src DIR --out OUT [--images IMAGES] [--json]

DIR holds ``fitzpatrick17k.csv`` (md5hash, fitzpatrick_scale, fitzpatrick_centaur, label,
nine_partition_label, three_partition_label, qc, url, url_alphanum); images are
``<md5hash>.jpg`` in IMAGES (default DIR/images, else DIR). Mapping: data/ADAPTERS.md.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from data.adapters.common import (
    Record,
    Summary,
    add_assume_negative,
    csv_row_id,
    labels_from_names,
    make_parser,
    parse_int,
    read_source_csv,
    require_columns,
    run_cli,
    unmapped_note,
    write_from_args,
)

CSV_NAME = "fitzpatrick17k.csv"
REQUIRED = ("md5hash", "fitzpatrick_scale", "label")
SOURCE = "fitzpatrick17k"


def fitzpatrick_of(scale: object, centaur: object) -> tuple[int | None, str | None]:
    """(type, which column gave it): fitzpatrick_scale first, fitzpatrick_centaur if it is -1."""
    for value, column in ((scale, "fitzpatrick_scale"), (centaur, "fitzpatrick_centaur")):
        number = parse_int(value)
        if number is not None and 1 <= number <= 6:
            return number, column
    return None, None


def read_records(
    src: Path, images: Path | None, summary: Summary, *, assume_negative: bool = False
) -> list[Record]:
    """Records of fitzpatrick17k.csv (rows flagged 'wrongly labelled' by qc are skipped)."""
    csv_path = src / CSV_NAME
    df = read_source_csv(csv_path)
    require_columns(df, REQUIRED, csv_path)
    if images is None:
        images = src / "images" if (src / "images").is_dir() else src
    summary.rows_in = len(df)
    unmapped: Counter = Counter()
    records = []
    for i, row in enumerate(df.to_dict("records")):
        row_id = csv_row_id(csv_path, i)
        md5 = row["md5hash"].strip()
        if not md5:
            summary.skip(row_id, "missing image: empty md5hash")
            continue
        if row.get("qc", "").strip().startswith("3"):
            summary.skip(row_id, f"qc: {row['qc'].strip()!r} (wrongly labelled)")
            continue
        fitz, fitz_source = fitzpatrick_of(row["fitzpatrick_scale"], row.get("fitzpatrick_centaur"))
        if fitz is None:
            summary.warn("unknown_tone")
        labels, mapped = labels_from_names([row["label"]], assume_negative=assume_negative)
        if not mapped:
            summary.warn("unmapped_label")
            unmapped[row["label"].strip()] += 1
        records.append(
            Record(
                row_id=row_id,
                image_src=images / f"{md5}.jpg",
                image_name=f"{md5}.jpg",
                labels=labels,
                fitzpatrick=fitz,
                extra={"diagnosis": row["label"].strip(), "fitzpatrick_source": fitz_source or ""},
            )
        )
    if unmapped:
        summary.notes.append(unmapped_note(unmapped))
    return records


def convert(args: argparse.Namespace, progress: bool = False) -> Summary:
    """Convert per the parsed CLI arguments; return the summary."""
    summary = Summary(SOURCE)
    records = read_records(args.src, args.images, summary, assume_negative=args.assume_negative)
    return write_from_args(records, summary, args, progress=progress)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit code."""
    parser = make_parser(
        "python -m data.adapters.fitzpatrick17k",
        "Convert Fitzpatrick17k to the canonical dataset format.",
        images_help="folder of <md5hash>.jpg (default SRC/images, else SRC)",
    )
    add_assume_negative(parser)
    return run_cli(parser.parse_args(argv), convert)


if __name__ == "__main__":
    sys.exit(main())
