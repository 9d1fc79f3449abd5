"""Combine canonical datasets into one (e.g. a real dataset plus the synthetic benchmark).

    python -m data.combine --data data/acne-new-v36 --data data/synthskin-v1 \
        --out data/acne-new-plus-synth [--unknown NAME:CONDITION ...] [--link] [--force] [--json]

Each input's files go under ``OUT/<input name>/`` (hard links where the file system allows,
else copies; ``--link`` makes symlinks instead), its image and mask paths are prefixed
accordingly, and its ``subject_id`` is prefixed with the input name so that two inputs can
never share a subject. Every input keeps its own splits, labels (empty = unknown stays
unknown: the synthetic benchmark is the only source of wrinkle labels when combined with
acne-new), ``source`` and tone columns (``tone_source`` = ``labelled`` is written where an
input has a Fitzpatrick type and no ``tone_source``). The union of the inputs' columns is
written; a column an input lacks is empty for its rows. The result is validated
(`data.canonical.validate_dataset`) before it is moved into place, so a failed run leaves
nothing behind. Each input's ``dataset.json`` and ``datacard.json`` (provenance: name, licence,
attribution) are copied into ``OUT/<input name>/``, where `fairness.report` finds the
datacards of a run trained on OUT; ``OUT/dataset.json`` lists the inputs and says whether all
of them are synthetic. ``--unknown synthskin-v1:hyperpigmentation`` makes one input's labels of
one condition unknown (empty; for acne also its ``acne_severity``), so that the condition is
learned from the other inputs alone; ``OUT/dataset.json`` then lists them under
``unknown_labels``. Exit codes: 0 written, 1 bad input dataset, 2 usage.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from core.schema import CONDITIONS
from data.canonical import METADATA_NAME, DatasetError, validate_dataset

EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE = 0, 1, 2
PATH_COLUMNS = ("image", "mask")
# Provenance files an input keeps beside its metadata.csv; they travel to OUT/<input name>/.
PROVENANCE_FILES = ("dataset.json", "datacard.json", "datacard.yaml", "datacard.yml")
DATASET_INFO = "dataset.json"
LEADING = ("image", *CONDITIONS, "acne_severity", "fitzpatrick", "fitzpatrick_group",
           "tone_source", "split", "source", "subject_id", "mask")  # fmt: skip


def read_input(path: Path) -> pd.DataFrame:
    """metadata.csv of one input as strings (empty cells stay empty strings)."""
    csv = path / METADATA_NAME
    if not csv.is_file():
        raise DatasetError([f"{csv}: file not found (not a canonical dataset)"])
    return pd.read_csv(csv, dtype=str, keep_default_na=False)


def prefixed_frame(df: pd.DataFrame, name: str) -> pd.DataFrame:
    """One input's rows with paths under ``name/`` and subjects prefixed ``name:``."""
    out = df.copy()
    for col in PATH_COLUMNS:
        if col in out:
            out[col] = [f"{name}/{v}" if v else "" for v in out[col]]
    if "subject_id" in out:
        out["subject_id"] = [f"{name}:{v}" if v else "" for v in out["subject_id"]]
    if "tone_source" not in out:
        out["tone_source"] = ["labelled" if f else "" for f in out.get("fitzpatrick", "")]
    return out


def input_is_synthetic(path: Path, df: pd.DataFrame) -> bool:
    """An input's dataset.json ``synthetic`` key when it has one, else: every row's ``source``
    names the synthetic generator (the rule of `train_jax.train`)."""
    info_file = path / DATASET_INFO
    if info_file.is_file():
        try:
            info = json.loads(info_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            info = None
        if isinstance(info, dict) and isinstance(info.get("synthetic"), bool):
            return info["synthetic"]
    sources = df["source"] if "source" in df else pd.Series([], dtype=str)
    return bool(len(sources)) and bool(sources.str.contains("synth", case=False).all())


def combined_info(
    out_name: str, inputs: dict[str, bool], unknown: dict[str, list[str]] | None = None
) -> dict:
    """OUT/dataset.json: {"name", "combined": [input names], "synthetic": all inputs synthetic,
    "inputs": {name: {"synthetic": bool}}}, plus {"unknown_labels": {name: [conditions]}} when
    labels were made unknown."""
    info = {
        "name": out_name,
        "combined": list(inputs),
        "synthetic": all(inputs.values()),
        "inputs": {name: {"synthetic": synthetic} for name, synthetic in inputs.items()},
    }
    if unknown:
        info["unknown_labels"] = unknown
    return info


def parse_unknown(values: Sequence[str], names: Sequence[str]) -> dict[str, list[str]]:
    """`NAME:CONDITION` values -> {input name: conditions}; ValueError names a bad value."""
    out: dict[str, list[str]] = {}
    for value in values:
        name, sep, condition = value.partition(":")
        if not sep or name not in names or condition not in CONDITIONS:
            raise ValueError(
                f"--unknown {value!r}: expected NAME:CONDITION with NAME one of {list(names)} "
                f"and CONDITION one of {list(CONDITIONS)}"
            )
        if condition not in out.setdefault(name, []):
            out[name].append(condition)
    return out


def mask_labels(df: pd.DataFrame, conditions: Sequence[str]) -> pd.DataFrame:
    """`df` with the labels of `conditions` unknown (empty); unknown acne also makes
    `acne_severity` unknown."""
    df = df.copy()
    for condition in conditions:
        df[condition] = ""
        if condition == "acne" and "acne_severity" in df:
            df["acne_severity"] = ""
    return df


def combine_frames(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Row-wise union of the inputs; canonical columns first, then the rest in first-seen order."""
    combined = pd.concat(frames, ignore_index=True, sort=False).fillna("")
    first = [c for c in LEADING if c in combined.columns]
    return combined[first + [c for c in combined.columns if c not in first]]


def _place_file(src: Path, dst: Path, link: bool) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    real = src.resolve()
    if link:
        os.symlink(real, dst)
        return
    try:
        os.link(real, dst)
    except OSError:  # another file system (or no hard links): copy
        shutil.copyfile(real, dst)


def write_combined(
    inputs: Sequence[Path], out: Path, *, link: bool = False, force: bool = False,
    progress: bool = False, unknown: Sequence[str] = (),
) -> dict:  # fmt: skip
    """Write the combined dataset at `out` atomically; return a summary dict. `unknown`:
    `NAME:CONDITION` values (`parse_unknown`)."""
    names = [p.resolve().name for p in inputs]
    if len(set(names)) != len(names):
        raise ValueError(f"input folders must have distinct names, got {names}")
    masked = parse_unknown(unknown, names)
    out = out.absolute()
    if out.exists() and any(out.iterdir()) and not force:
        raise FileExistsError(out)
    frames = []
    synthetic: dict[str, bool] = {}
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        for path, name in zip(inputs, names, strict=True):
            df = read_input(path)
            for col in PATH_COLUMNS:
                values = [v for v in df.get(col, []) if v]
                for rel in tqdm(
                    values, desc=f"{name}: {col}s", disable=None if progress else True, leave=False
                ):
                    _place_file(path / rel, tmp / name / rel, link)
            for info in PROVENANCE_FILES:
                if (path / info).is_file():
                    (tmp / name).mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(path / info, tmp / name / info)  # small: always a copy
            synthetic[name] = input_is_synthetic(path, df)
            frames.append(prefixed_frame(mask_labels(df, masked.get(name, ())), name))
        combined = combine_frames(frames)
        (tmp / METADATA_NAME).write_text(
            combined.to_csv(index=False, lineterminator="\n"), encoding="utf-8"
        )
        (tmp / DATASET_INFO).write_text(
            json.dumps(combined_info(out.name, synthetic, masked), indent=2) + "\n",
            encoding="utf-8",
        )
        problems = validate_dataset(tmp, check_images=True)
        if problems:
            raise DatasetError(problems)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    counts = combined.groupby(["source", "split"]).size()
    summary = {
        "out": str(out),
        "rows": len(combined),
        "inputs": names,
        "synthetic": synthetic,
        "rows_by_source_split": {f"{s}/{p}": int(n) for (s, p), n in counts.items()},
    }
    if masked:
        summary["unknown_labels"] = masked
    return summary


def make_parser() -> argparse.ArgumentParser:
    """Argument parser of the CLI."""
    parser = argparse.ArgumentParser(
        prog="python -m data.combine",
        description="Combine canonical datasets (each keeps its splits, labels and tone "
        "columns; unknown labels stay unknown). Exit 0 written, 1 bad input, 2 usage.",
    )
    parser.add_argument("--data", type=Path, action="append", required=True,
                        help="a canonical dataset folder (repeat, at least twice)")  # fmt: skip
    parser.add_argument("--out", type=Path, required=True, help="output dataset folder")
    parser.add_argument("--unknown", action="append", default=[], metavar="NAME:CONDITION",
                        help="make input NAME's CONDITION labels unknown, e.g. "
                        "synthskin-v1:hyperpigmentation (repeatable)")  # fmt: skip
    parser.add_argument("--link", action="store_true",
                        help="symlink files instead of hard-linking or copying them")  # fmt: skip
    parser.add_argument("--force", action="store_true", help="replace an existing OUT")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit code."""
    args = make_parser().parse_args(argv)
    if len(args.data) < 2:
        print("python -m data.combine: give at least two --data folders", file=sys.stderr)
        return EXIT_USAGE
    for path in args.data:
        if not path.is_dir():
            print(f"--data {path}: no such folder", file=sys.stderr)
            return EXIT_USAGE
    try:
        parse_unknown(args.unknown, [p.resolve().name for p in args.data])
    except ValueError as e:
        print(f"python -m data.combine: {e}", file=sys.stderr)
        return EXIT_USAGE
    try:
        summary = write_combined(
            args.data,
            args.out,
            link=args.link,
            force=args.force,
            progress=not args.json,
            unknown=args.unknown,
        )
    except FileExistsError as e:
        print(f"--out {e}: exists and is not empty (use --force to replace it)", file=sys.stderr)
        return EXIT_USAGE
    except ValueError as e:  # DatasetError is a ValueError
        print(f"python -m data.combine: {e}", file=sys.stderr)
        return EXIT_PROBLEMS
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"combined {summary['rows']} rows from {', '.join(summary['inputs'])} "
              f"-> {summary['out']}")  # fmt: skip
        for key, n in summary["rows_by_source_split"].items():
            print(f"  {key}: {n}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
