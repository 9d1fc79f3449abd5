"""Validate a canonical dataset and print its coverage table.

    python -m data.validate DIR [--json] [--no-images]

DIR is a dataset folder holding metadata.csv (or the CSV itself). Exit codes: 0 valid (the
coverage table is printed), 1 problems found (each printed as ``file:row:column: message``,
rows are CSV line numbers with the header on line 1), 2 usage error (DIR does not exist).

Rows whose ``tone_source`` is ``estimated`` (a group estimated from the photo, e.g. acne-new)
get their own tables labelled "estimated tone", with group columns only: an estimate is never
shown as a Fitzpatrick type nor added to the counts of labelled types.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import pandas as pd

from core.schema import GROUPS
from data.canonical import (
    DatasetError,
    coverage_table,
    estimated_tone_rows,
    load_metadata,
    silence_decoder_warnings,
    split_table,
    validate_dataset,
)

EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE = 0, 1, 2


def make_parser() -> argparse.ArgumentParser:
    """Argument parser of the CLI."""
    parser = argparse.ArgumentParser(
        prog="python -m data.validate",
        description="Check a canonical dataset (metadata.csv + images) and print its coverage. "
        "Exit 0 = valid, 1 = problems (all listed), 2 = usage error.",
    )
    parser.add_argument("path", metavar="DIR", help="dataset folder with metadata.csv, or the CSV")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")
    parser.add_argument(
        "--no-images",
        action="store_true",
        help="skip opening image and mask files (table checks only)",
    )
    return parser


def _frame_to_dict(frame) -> dict[str, dict[str, int]]:
    return {str(r): {str(c): int(frame.loc[r, c]) for c in frame.columns} for r in frame.index}


# Column names of the estimated-tone tables: never FST columns, never bare group names.
ESTIMATED_COLUMNS = {**{g: f"est {g}" for g in GROUPS}, "group?": "no estimate", "total": "total"}


def estimated_view(table: pd.DataFrame) -> pd.DataFrame:
    """The group columns of a coverage/split table, renamed as estimated-tone groups."""
    return table[list(ESTIMATED_COLUMNS)].rename(columns=ESTIMATED_COLUMNS)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the exit code."""
    args = make_parser().parse_args(argv)
    path = Path(args.path)
    if not path.exists():
        print(f"error: {path} does not exist", file=sys.stderr)
        return EXIT_USAGE
    if path.is_dir() and not (path / "metadata.csv").exists():
        print(f"error: {path} has no metadata.csv", file=sys.stderr)
        return EXIT_USAGE
    # libjpeg warnings would interleave with our report; every problem is reported by us.
    silence_decoder_warnings()
    problems = validate_dataset(
        path, check_images=not args.no_images, progress=not args.json and sys.stderr.isatty()
    )
    if problems:
        if args.json:
            print(
                json.dumps(
                    {
                        "valid": False,
                        "path": str(path),
                        "problems": [p.to_dict() for p in problems],
                    },
                    indent=2,
                )
            )
        else:
            for problem in problems:
                print(problem)
            print(f"{len(problems)} problem(s) found", file=sys.stderr)
        return EXIT_PROBLEMS
    try:
        df = load_metadata(path)
    except DatasetError as exc:  # the table changed between the two reads
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_PROBLEMS
    estimated = estimated_tone_rows(df)
    labelled, guessed = df[~estimated], df[estimated]
    report: dict[str, object] = {"valid": True, "path": str(path), "num_rows": len(df)}
    if len(guessed):
        report["estimated_tone_rows"] = len(guessed)
    tables: dict[str, pd.DataFrame] = {}
    if len(labelled):
        tables["coverage"], tables["splits"] = coverage_table(labelled), split_table(labelled)
    if len(guessed):
        tables["coverage_estimated_tone"] = estimated_view(coverage_table(guessed))
        tables["splits_estimated_tone"] = estimated_view(split_table(guessed))
    if args.json:
        report.update({name: _frame_to_dict(table) for name, table in tables.items()})
        print(json.dumps(report, indent=2))
        return EXIT_OK
    print(f"{path}: valid, {len(df)} images")
    if len(labelled):
        which = f" ({len(labelled)} rows without an estimated tone)" if len(guessed) else ""
        print(
            "\nCoverage (images, positives '+' and labelled counts per Fitzpatrick type/group)"
            f"{which}:"
        )
        print(tables["coverage"].to_string())
        print("\nImages per split and group:")
        print(tables["splits"].to_string())
    if len(guessed):
        print(
            f"\nCoverage by estimated tone ({len(guessed)} rows with tone_source=estimated: a "
            "group estimated from the photo (ITA), not a Fitzpatrick type):"
        )
        print(tables["coverage_estimated_tone"].to_string())
        print("\nImages per split and estimated tone group:")
        print(tables["splits_estimated_tone"].to_string())
    return EXIT_OK


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:  # output piped into e.g. `head`: exit like a command killed by SIGPIPE
        sys.stdout = open(os.devnull, "w")  # the interpreter flushes stdout again at exit
        sys.exit(128 + 13)
