"""Validate a canonical dataset and print its coverage table.

    python -m data.validate DIR [--json] [--no-images]

DIR is a dataset folder holding metadata.csv (or the CSV itself). Exit codes: 0 valid (the
coverage table is printed), 1 problems found (each printed as ``file:row:column: message``,
rows are CSV line numbers with the header on line 1), 2 usage error (DIR does not exist).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from data.canonical import (
    DatasetError,
    coverage_table,
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
    coverage, splits = coverage_table(df), split_table(df)
    if args.json:
        print(
            json.dumps(
                {
                    "valid": True,
                    "path": str(path),
                    "num_rows": len(df),
                    "coverage": _frame_to_dict(coverage),
                    "splits": _frame_to_dict(splits),
                },
                indent=2,
            )
        )
    else:
        print(f"{path}: valid, {len(df)} images")
        print("\nCoverage (images, positives '+' and labelled counts per Fitzpatrick type/group):")
        print(coverage.to_string())
        print("\nImages per split and group:")
        print(splits.to_string())
    return EXIT_OK


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:  # output piped into e.g. `head`: exit like a command killed by SIGPIPE
        sys.stdout = open(os.devnull, "w")  # the interpreter flushes stdout again at exit
        sys.exit(128 + 13)
