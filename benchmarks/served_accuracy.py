"""Accuracy of the served pipeline on a canonical dataset: photo in, result JSON out, then the
fairness report on those outputs.

    python benchmarks/served_accuracy.py --data data/acne-new-v36 --split val \
        [--model-dir models/default] [--url grpc://127.0.0.1:8001] --out outputs/served [--json]

Every image of the split goes through `client.analyze.analyze_file` (the embedded runner, or a
Triton server with --url): decoding, face detection, alignment, the estimated skin tone, the
ONNX classifier and the per-group thresholds. The first face of each result (the detector's
best) gives the row's probabilities and its estimated tone group; an image whose result has no
face counts as not analysed and is left out of the metrics (the count and share are printed).
The rows are written as a predictions CSV (docs/architecture.md, "Predictions") and
`python -m fairness.report` evaluates them, so the served code's accuracy is measured with the
same report as the training run's. Photos are read, never written or logged.
Exit codes: 0 ok, 2 bad arguments or dataset.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
from pathlib import Path

import pandas as pd
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from core.schema import CONDITIONS  # noqa: E402

SEVERITY_COLUMNS = [f"acne_severity_prob_{k}" for k in range(4)]


def prediction_row(row: pd.Series, result: dict, split: str) -> dict | None:
    """One predictions-CSV row from a metadata row and its result JSON; None without a face."""
    if result.get("status") != "ok" or not result.get("faces"):
        return None
    face = result["faces"][0]
    tone = face.get("skin_tone") or {}
    out = {
        "image": row["image"],
        "fitzpatrick": "",
        "group": tone.get("fitzpatrick_group") or "",
        "split": split,
        "tone_source": "estimated" if tone.get("source") == "estimated" else "labelled",
    }
    for cond in CONDITIONS:
        label = row.get(cond)
        out[cond] = "" if label is None or pd.isna(label) else int(label)
        out[f"{cond}_prob"] = face["conditions"][cond]["probability"]
    severity = face["conditions"]["acne"].get("severity")
    known = row.get("acne_severity")
    out["acne_severity"] = "" if known is None or pd.isna(known) else int(known)
    out["acne_severity_grade"] = severity["grade"] if severity else ""
    for k, col in enumerate(SEVERITY_COLUMNS):
        out[col] = severity["probabilities"][k] if severity else ""
    if "subject_id" in row and not pd.isna(row["subject_id"]):
        out["subject_id"] = row["subject_id"]
    return out


def served_predictions(
    runner, data: Path, split: str, *, progress: bool = True
) -> tuple[pd.DataFrame, list[str]]:
    """(predictions of the analysed images, paths of the images with no analysed face)."""
    from client.analyze import analyze_file
    from data.canonical import load_metadata

    meta = load_metadata(data / "metadata.csv")
    meta = meta[meta["split"] == split]
    if meta.empty:
        raise ValueError(f"{data}: no rows in split {split!r}")
    rows, missed = [], []
    for _, row in tqdm(
        meta.iterrows(), total=len(meta), desc="analyse", disable=None if progress else True
    ):
        result = analyze_file(runner, data / row["image"], fitzpatrick=None, overlay=None)
        pred = prediction_row(row, result, split)
        if pred is None:
            missed.append(str(row["image"]))
        else:
            rows.append(pred)
    return pd.DataFrame(rows), missed


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, required=True, help="canonical dataset folder")
    p.add_argument("--split", default="val", choices=["train", "val", "test"])
    p.add_argument("--model-dir", type=Path, default=None, help="embedded runner's model folder")
    p.add_argument("--url", default=None, help="Triton server URL instead of the embedded runner")
    p.add_argument("--out", type=Path, required=True, help="folder for the CSV and the report")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap replicates of the report")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = p.parse_args(argv)
    from client.analyze import make_runner
    from fairness import report

    try:
        runner = make_runner(args.url, args.model_dir)
        frame, missed = served_predictions(runner, args.data, args.split, progress=not args.json)
    except (FileNotFoundError, ValueError) as e:
        print(f"served_accuracy: {e}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    csv = args.out / f"predictions_{args.split}.csv"
    frame.to_csv(csv.with_suffix(".tmp"), index=False, float_format="%.6f")
    csv.with_suffix(".tmp").replace(csv)
    argv_report = [
        "--predictions",
        str(csv),
        "--out",
        str(args.out / "fairness"),
        "--n-boot",
        str(args.n_boot),
        "--datacard",
        str(args.data),
        "--no-progress",
    ]
    if args.split != "test":
        argv_report += ["--evaluate-on", args.split]
    with contextlib.redirect_stdout(sys.stderr):  # stdout carries this script's JSON only
        code = report.main(argv_report)  # fmt: skip
    if code != 0:
        return code
    metrics = json.loads((args.out / "fairness" / "metrics.json").read_text())
    total = len(frame) + len(missed)
    summary = {
        "data": str(args.data),
        "split": args.split,
        "backend": runner.info.backend,
        "model": runner.info.name,
        "images": total,
        "not_analysed": len(missed),
        "not_analysed_share": round(len(missed) / total, 4) if total else math.nan,
        "not_analysed_images": missed,
        "goals": metrics.get("goals"),
        "severity": (metrics.get("severity") or {}).get("overall"),
        "report": str(args.out / "fairness"),
    }
    if not args.json:  # the list of images only in --json
        summary.pop("not_analysed_images")
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
