"""The mean of several runs' predictions on one split, written like a run's predictions CSV.

    python benchmarks/mean_predictions.py --split val --out outputs/NAME RUN1 RUN2 [...] [--json]

An ensemble of trained runs without training anything: every probability column of the runs'
`predictions_<split>.csv` (`<condition>_prob`, `acne_severity_prob_<k>`) is averaged row by
row, `acne_severity_grade` is the median grade of the averaged severity probabilities
(`core.severity.severity_grade`), and the other columns are the first run's; they must be the
same in every run (the same images, labels, groups and split: runs scored on the same data).
`<out>/predictions_<split>.csv` then reads like any run's (benchmarks/compare_runs.py,
`python -m fairness.by_eye`, `python -m fairness.report`). Written atomically. Exit codes: 0
ok, 2 bad arguments or files.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from core.atomic import write_text  # noqa: E402
from core.schema import CONDITIONS, SEVERITY_GRADES  # noqa: E402
from core.severity import severity_grade  # noqa: E402

SEVERITY_PROBS = [f"acne_severity_prob_{k}" for k in SEVERITY_GRADES]
PROB_COLUMNS = [*(f"{c}_prob" for c in CONDITIONS), *SEVERITY_PROBS]
DERIVED = ("acne_severity_grade",)


def read_predictions(run: Path, split: str) -> pd.DataFrame:
    """`<run>/predictions_<split>.csv`; a ValueError names the file when it is missing or has
    no image column or a repeated image."""
    path = run / f"predictions_{split}.csv"
    if not path.is_file():
        raise ValueError(f"{path}: not found")
    frame = pd.read_csv(path)
    if "image" not in frame.columns:
        raise ValueError(f"{path}: no 'image' column")
    repeated = frame["image"][frame["image"].duplicated()]
    if len(repeated):
        raise ValueError(f"{path}: image {repeated.iloc[0]!r} appears more than once")
    return frame


def mean_predictions(frames: list[pd.DataFrame], names: list[str]) -> pd.DataFrame:
    """Row-wise mean of the probability columns of `frames` (aligned on `image`, in the first
    frame's order); the other columns must agree and are taken from the first frame."""
    if len(frames) < 2:
        raise ValueError("give at least two runs to average")
    first = frames[0].set_index("image")
    probs = [c for c in PROB_COLUMNS if c in first.columns]
    keep = [c for c in first.columns if c not in probs and c not in DERIVED]
    total = first[probs].to_numpy(np.float64)
    for frame, name in zip(frames[1:], names[1:], strict=True):
        other = frame.set_index("image")
        if set(other.index) != set(first.index):
            missing = sorted(set(first.index) ^ set(other.index))[0]
            raise ValueError(f"{name}: not the same images as {names[0]} (e.g. {missing!r})")
        other = other.loc[first.index]
        if list(other.columns) != list(first.columns):
            raise ValueError(f"{name}: columns differ from {names[0]}")
        differs = [c for c in keep if not first[c].equals(other[c])]
        if differs:
            raise ValueError(f"{name}: column {differs[0]!r} differs from {names[0]}")
        total += other[probs].to_numpy(np.float64)
    out = first.copy()
    out[probs] = total / len(frames)
    if "acne_severity_grade" in out.columns and set(SEVERITY_PROBS) <= set(probs):
        sev = out[SEVERITY_PROBS].to_numpy(np.float64)
        known = ~np.isnan(sev).any(axis=1)
        grade = np.full(len(out), -1)
        if known.any():
            grade[known] = severity_grade(sev[known])
        out["acne_severity_grade"] = pd.array(
            [int(g) if g >= 0 else None for g in grade], dtype="Int64"
        )
    return out.reset_index()[list(frames[0].columns)]


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", type=Path, help="run folders with predictions_<split>.csv")
    p.add_argument("--out", type=Path, required=True, help="folder to write into (created)")
    p.add_argument("--split", default="val", choices=["train", "val", "test"])
    p.add_argument("--json", action="store_true", help="print a summary as JSON")
    args = p.parse_args(argv)
    try:
        frames = [read_predictions(run, args.split) for run in args.runs]
        out = mean_predictions(frames, [str(r) for r in args.runs])
    except ValueError as e:
        print(f"mean_predictions: {e}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"predictions_{args.split}.csv"
    write_text(path, out.to_csv(index=False, float_format="%.6f"))
    summary = {"out": str(path), "rows": len(out), "runs": [str(r) for r in args.runs]}
    print(json.dumps(summary) if args.json else f"wrote the mean of {len(frames)} runs to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
