"""Face detection rate on a dataset with a `face_box` column (e.g. the synthetic benchmark).

    python -m preprocessing.detect_eval --data /tmp/synth [--json]

A face counts as found when a detected box's centre lies inside `face_box`. Exit codes:
0 ok, 2 the folder has no metadata.csv.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from preprocessing.evaluation import NO_FACE, evaluate


def main(argv: list[str] | None = None) -> int:
    """Parse flags, evaluate, print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="folder with metadata.csv")
    parser.add_argument("--limit", type=int, help="only the first N rows")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if not (args.data / "metadata.csv").is_file():
        print(f"error: {args.data / 'metadata.csv'} not found", file=sys.stderr)
        return 2
    (result,) = evaluate(args.data, limit=args.limit, progress=not args.json)
    summary = result.summary()
    missed = {g: row[NO_FACE] for g, row in summary["confusion"].items()}
    out = {
        "data": str(args.data),
        "images": summary["images"],
        "invalid_images": summary["invalid_images"],
        "detection_rate": summary["detection_rate"],
        "missed_by_group": missed,
        "false_positive_faces": summary["false_positive_faces"],
    }
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(
            f"detection on {args.data}: rate {out['detection_rate']} over {out['images']} "
            f"images, missed by group {missed}, false-positive faces "
            f"{out['false_positive_faces']}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
