"""A folder of images + your own CSV -> canonical dataset.

    python -m data.adapters.folder --src IMAGES --csv LABELS.csv --out OUT \\
        [--image-col file] [--acne-col acne] [--fitzpatrick-col fst] [--split-col split] ...

Each ``--*-col`` names the CSV column holding that field; without the flag the canonical
name is used when the CSV has it, else the field is unknown. Accepted values: labels
0/1/true/false/yes/no (empty/unknown/NA = unknown), Fitzpatrick 1-6, I-VI or FST1-FST6,
severity 0-3, split train/val/test (rows without one get `assign_splits`). A value that
cannot be read becomes unknown and is counted as a warning.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from pathlib import Path

from core.schema import CONDITIONS, GROUPS
from data.adapters.common import (
    AdapterError,
    Record,
    Summary,
    csv_row_id,
    make_parser,
    parse_int,
    read_source_csv,
    require_columns,
    run_cli,
    valid_split,
    write_from_args,
)

TRUE_VALUES = frozenset({"1", "1.0", "true", "yes", "y", "positive", "present"})
FALSE_VALUES = frozenset({"0", "0.0", "false", "no", "n", "negative", "absent"})
UNKNOWN_VALUES = frozenset({"", "na", "n/a", "nan", "unknown", "?", "none"})
ROMAN = {"i": 1, "ii": 2, "iii": 3, "iv": 4, "v": 5, "vi": 6}
# field -> canonical CSV column name (used when its --*-col flag is not given)
FIELDS = {
    "image": "image",
    **{c: c for c in CONDITIONS},
    "acne_severity": "acne_severity",
    "fitzpatrick": "fitzpatrick",
    "fitzpatrick_group": "fitzpatrick_group",
    "subject_id": "subject_id",
    "split": "split",
}
FLAGS = {
    "image": "--image-col",
    "acne": "--acne-col",
    "hyperpigmentation": "--hyperpigmentation-col",
    "wrinkles": "--wrinkles-col",
    "acne_severity": "--severity-col",
    "fitzpatrick": "--fitzpatrick-col",
    "fitzpatrick_group": "--group-col",
    "subject_id": "--subject-col",
    "split": "--split-col",
}


def parse_label(value: str) -> float | None:
    """1.0 / 0.0 / NaN (unknown); None when the value cannot be read."""
    key = value.strip().lower()
    if key in TRUE_VALUES:
        return 1.0
    if key in FALSE_VALUES:
        return 0.0
    if key in UNKNOWN_VALUES:
        return math.nan
    return None


def parse_fitzpatrick(value: str) -> int | None | str:
    """1-6 from '3', 'III', 'FST3', 'type 3'; None when empty/unknown; 'bad' when unreadable."""
    key = value.strip().lower()
    if key in UNKNOWN_VALUES:
        return None
    key = re.sub(r"^(fst|fitzpatrick|type)\s*", "", key)
    number = ROMAN.get(key, parse_int(key))
    return number if number is not None and 1 <= number <= 6 else "bad"


def _columns(args: argparse.Namespace, header: list[str]) -> dict[str, str | None]:
    columns: dict[str, str | None] = {}
    for name, canonical in FIELDS.items():
        given = getattr(args, FLAGS[name].lstrip("-").replace("-", "_"))
        columns[name] = given if given else (canonical if canonical in header else None)
    return columns


def read_records(
    csv_path: Path, images: Path, summary: Summary, columns: dict[str, str | None]
) -> list[Record]:
    """Records of the user's CSV with `columns` mapping field -> CSV column (None = unknown)."""
    df = read_source_csv(csv_path)
    if columns["image"] is None:
        raise AdapterError(f"{csv_path}: no 'image' column; name it with --image-col")
    require_columns(df, [c for c in columns.values() if c], csv_path)
    summary.rows_in = len(df)
    records = []
    for i, row in enumerate(df.to_dict("records")):
        row_id = csv_row_id(csv_path, i)

        def cell(name: str, row: dict[str, str] = row) -> str:
            column = columns[name]
            return row[column].strip() if column else ""

        rel = cell("image").replace("\\", "/")
        if not rel:
            summary.skip(row_id, "missing image: empty image path")
            continue
        if rel.startswith("/") or ".." in Path(rel).parts:
            summary.skip(row_id, f"bad image path: {rel!r} must be relative and inside the folder")
            continue
        labels = {}
        for cond in CONDITIONS:
            value = parse_label(cell(cond))
            if value is None:
                summary.warn(f"unreadable_{cond}")
                summary.notes.append(f"{row_id}: {cond} value {cell(cond)!r} read as unknown")
                value = math.nan
            labels[cond] = value
        fitz = parse_fitzpatrick(cell("fitzpatrick"))
        if fitz == "bad":
            summary.warn("unreadable_fitzpatrick")
            summary.notes.append(f"{row_id}: fitzpatrick {cell('fitzpatrick')!r} read as unknown")
            fitz = None
        group = cell("fitzpatrick_group") or None
        if group is not None and group not in GROUPS:
            summary.warn("unreadable_group")
            group = None
        if fitz is None and group is None:
            summary.warn("unknown_tone")
        severity = parse_int(cell("acne_severity")) if cell("acne_severity") else None
        if severity is not None and not 0 <= severity <= 3:
            summary.warn("unreadable_acne_severity")
            severity = None
        split = valid_split(cell("split")) if cell("split") else None
        if cell("split") and split is None:
            summary.warn("unreadable_split")
        records.append(
            Record(
                row_id=row_id,
                image_src=images / rel,
                image_name=rel,
                labels=labels,
                fitzpatrick=fitz if isinstance(fitz, int) else None,
                fitzpatrick_group=group if fitz is None else None,
                acne_severity=severity,
                subject_id=cell("subject_id") or None,
                split=split,
            )
        )
    return records


def convert(args: argparse.Namespace, progress: bool = False) -> Summary:
    """Convert per the parsed CLI arguments; return the summary."""
    summary = Summary(args.source_name or args.src.name)
    csv_path = args.csv or args.src / "labels.csv"
    header = list(read_source_csv(csv_path).columns)
    records = read_records(csv_path, args.images or args.src, summary, _columns(args, header))
    return write_from_args(records, summary, args, progress=progress)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit code."""
    parser = make_parser(
        "python -m data.adapters.folder",
        "Convert a folder of images plus your CSV to the canonical format.",
        images_help="folder the image column is relative to (default SRC)",
    )
    parser.add_argument(
        "--csv", type=Path, default=None, help="your labels CSV (default SRC/labels.csv)"
    )
    parser.add_argument(
        "--source-name",
        default=None,
        help="value of the 'source' column (default: the SRC folder name)",
    )
    for name, flag in FLAGS.items():
        parser.add_argument(
            flag,
            default=None,
            metavar="COL",
            help=f"CSV column holding {name} (default '{FIELDS[name]}' if present)",
        )
    return run_cli(parser.parse_args(argv), convert)


if __name__ == "__main__":
    sys.exit(main())
