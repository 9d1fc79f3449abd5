"""DDI (Diverse Dermatology Images) -> canonical dataset.

    python -m data.adapters.ddi --src DIR --out OUT [--images IMAGES] [--json]

DIR holds ``ddi_metadata.csv`` (DDI_file, skin_tone in {12, 34, 56}, malignant, disease);
images are DDI_file in IMAGES (default DIR). DDI gives only a pair of Fitzpatrick types, so
``fitzpatrick`` stays empty and the group goes to ``fitzpatrick_group`` (data/ADAPTERS.md).
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

CSV_NAME = "ddi_metadata.csv"
REQUIRED = ("DDI_file", "skin_tone", "disease")
SOURCE = "ddi"
SKIN_TONE_TO_GROUP = {12: "I-II", 34: "III-IV", 56: "V-VI"}


def read_records(
    src: Path, images: Path | None, summary: Summary, *, assume_negative: bool = False
) -> list[Record]:
    """Records of ddi_metadata.csv."""
    csv_path = src / CSV_NAME
    df = read_source_csv(csv_path)
    require_columns(df, REQUIRED, csv_path)
    images = images or src
    summary.rows_in = len(df)
    unmapped: Counter = Counter()
    records = []
    for i, row in enumerate(df.to_dict("records")):
        row_id = csv_row_id(csv_path, i)
        name = row["DDI_file"].strip()
        if not name:
            summary.skip(row_id, "missing image: empty DDI_file")
            continue
        group = SKIN_TONE_TO_GROUP.get(parse_int(row["skin_tone"]) or -1)
        if group is None:
            summary.warn("unknown_tone")
        labels, mapped = labels_from_names([row["disease"]], assume_negative=assume_negative)
        if not mapped:
            summary.warn("unmapped_label")
            unmapped[row["disease"].strip()] += 1
        records.append(
            Record(
                row_id=row_id,
                image_src=images / name,
                image_name=Path(name).name,
                labels=labels,
                fitzpatrick=None,
                fitzpatrick_group=group,
                extra={
                    "diagnosis": row["disease"].strip(),
                    "malignant": row.get("malignant", "").strip(),
                },
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
        "python -m data.adapters.ddi",
        "Convert DDI to the canonical dataset format.",
        images_help="folder of the DDI_file images (default SRC)",
    )
    add_assume_negative(parser)
    return run_cli(parser.parse_args(argv), convert)


if __name__ == "__main__":
    sys.exit(main())
