"""SCIN (Skin Condition Image Network) -> canonical dataset.

    python -m data.adapters.scin --src DIR --out OUT [--images ROOT] [--json]

DIR holds ``scin_cases.csv`` and ``scin_labels.csv`` (joined on case_id). Each case has up to
three images (image_1_path..image_3_path, relative to ROOT, default DIR; a path's file name
alone is tried too). One canonical row per image, ``subject_id`` = case_id, so a case never
spans two splits. Tone and label precedence: data/ADAPTERS.md.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from collections import Counter
from pathlib import Path

from core.schema import CONDITIONS
from data.adapters.common import (
    Record,
    Summary,
    add_assume_negative,
    conditions_of,
    make_parser,
    parse_int,
    read_source_csv,
    require_columns,
    run_cli,
    unknown_labels,
    unmapped_note,
    write_from_args,
)

CASES_NAME, LABELS_NAME = "scin_cases.csv", "scin_labels.csv"
SOURCE = "scin"
IMAGE_COLUMNS = ("image_1_path", "image_2_path", "image_3_path")
DERM_FST_COLUMNS = tuple(f"dermatologist_fitzpatrick_skin_type_label_{k}" for k in (1, 2, 3))
# A condition is positive when dermatologists put at least this much of their weighted
# differential on it; a smaller non-zero weight is uncertain and stays unknown.
POSITIVE_WEIGHT = 0.5


def parse_fst(value: object) -> int | None:
    """'FST3' -> 3; 'NONE_SELECTED', 'NONE_IDENTIFIED', '' and anything else -> None."""
    match = re.fullmatch(r"\s*FST([1-6])\s*", str(value))
    return int(match.group(1)) if match else None


def fitzpatrick_of(row: dict[str, str]) -> tuple[int | None, str | None]:
    """Self-reported type first; else the lower median of the dermatologists' labels."""
    self_reported = parse_fst(row.get("fitzpatrick_skin_type", ""))
    if self_reported is not None:
        return self_reported, "self_reported"
    derm = sorted(t for t in (parse_fst(row.get(c, "")) for c in DERM_FST_COLUMNS) if t)
    if derm:
        return derm[(len(derm) - 1) // 2], "dermatologist"
    return None, None


def parse_weighted_label(text: str) -> dict[str, float] | None:
    """``"{'Acne': 0.5, 'Eczema': 0.5}"`` -> dict; None when empty or malformed."""
    text = str(text).strip()
    if not text:
        return None
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return None
    if not isinstance(value, dict):
        return None
    try:
        return {str(k): float(v) for k, v in value.items()}
    except (TypeError, ValueError):
        return None


def labels_of(
    row: dict[str, str], summary: Summary, unmapped: Counter, *, assume_negative: bool
) -> tuple[dict[str, float], str]:
    """(labels, label_source) of one case; see data/ADAPTERS.md for the rules."""
    raw = row.get("weighted_skin_condition_label", "")
    weighted = parse_weighted_label(raw)
    if raw.strip() and weighted is None:
        summary.warn("malformed_weighted_label")
    labels = unknown_labels()
    if weighted:
        weight = dict.fromkeys(CONDITIONS, 0.0)
        for name, w in weighted.items():
            found = conditions_of(name)
            if not found:
                unmapped[name] += 1
            for cond in found:
                weight[cond] += w
        for cond in CONDITIONS:
            if weight[cond] >= POSITIVE_WEIGHT:
                labels[cond] = 1.0
            elif weight[cond] == 0 and assume_negative and cond in ("acne", "hyperpigmentation"):
                labels[cond] = 0.0
        if all(weight[c] == 0 for c in CONDITIONS):
            summary.warn("unmapped_label")
        return labels, "dermatologist"
    if row.get("related_category", "").strip().upper() == "ACNE":
        labels["acne"] = 1.0
        return labels, "self_reported_category"
    summary.warn("no_label")
    return labels, ""


def _find_image(root: Path, rel: str) -> Path:
    path = root / rel
    flat = root / Path(rel).name
    return flat if not path.is_file() and flat.is_file() else path


def read_records(
    src: Path, images: Path | None, summary: Summary, *, assume_negative: bool = False
) -> list[Record]:
    """Records of scin_cases.csv joined with scin_labels.csv (one per image path)."""
    cases = read_source_csv(src / CASES_NAME)
    require_columns(cases, ("case_id", IMAGE_COLUMNS[0]), src / CASES_NAME)
    labels_df = read_source_csv(src / LABELS_NAME)
    require_columns(labels_df, ("case_id",), src / LABELS_NAME)
    root = images or src
    labels_by_case: dict[str, dict[str, str]] = {}
    for i, row in enumerate(labels_df.to_dict("records")):
        case = row["case_id"].strip()
        if case in labels_by_case:
            summary.warn("duplicate_label_row")
            summary.notes.append(
                f"{LABELS_NAME}:{i + 2}: second label row for case {case!r}; the first is used"
            )
            continue
        labels_by_case[case] = row
    unmapped: Counter = Counter()
    seen_cases: set[str] = set()
    records = []
    for i, case_row in enumerate(cases.to_dict("records")):
        case = case_row["case_id"].strip()
        paths = [(c, case_row.get(c, "").strip()) for c in IMAGE_COLUMNS]
        paths = [(c, p) for c, p in paths if p]
        row_id = f"{CASES_NAME}:{i + 2}"
        if not paths:
            summary.rows_in += 1
            summary.skip(row_id, "missing image: no image path in the case")
            continue
        summary.rows_in += len(paths)
        if case in seen_cases:
            for column, _ in paths:
                summary.skip(f"{row_id}:{column}", f"duplicate case_id {case!r}")
            continue
        seen_cases.add(case)
        row = {**case_row, **labels_by_case.get(case, {})}
        if case not in labels_by_case:
            summary.warn("case_without_labels")
        fitz, fitz_source = fitzpatrick_of(row)
        labels, label_source = labels_of(row, summary, unmapped, assume_negative=assume_negative)
        monk = parse_int(row.get("monk_skin_tone_label_us", ""))
        for column, rel in paths:
            if fitz is None:
                summary.warn("unknown_tone")
            records.append(
                Record(
                    row_id=f"{row_id}:{column}",
                    image_src=_find_image(root, rel),
                    image_name=Path(rel).name,
                    labels=dict(labels),
                    fitzpatrick=fitz,
                    subject_id=case,
                    extra={
                        "fitzpatrick_source": fitz_source or "",
                        "monk_skin_tone": "" if monk is None else monk,
                        "label_source": label_source,
                        "related_category": row.get("related_category", "").strip(),
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
        "python -m data.adapters.scin",
        "Convert SCIN to the canonical dataset format.",
        images_help="root the image_N_path columns are relative to (default SRC)",
    )
    add_assume_negative(parser)
    return run_cli(parser.parse_args(argv), convert)


if __name__ == "__main__":
    sys.exit(main())
