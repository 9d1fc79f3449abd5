"""The AUROC goals per by-eye skin-tone group instead of per estimated group.

On real photos the report's groups are the project's tone estimate (`fairness.tone_basis`),
which can be wrong (docs/preprocessing.md, section 6). Where a dataset ships by-eye tone labels
(`data/tone_labels/PROTOCOL.md`: an AI assistant's look at each face crop, not Fitzpatrick
types), this scores the same predictions per by-eye group with the same function and bootstrap
as the report (`fairness.report_goals.auroc_goals`): photos labelled `between` or `unusable`,
and photos without a label, count only in "all"; labels of photos the predictions do not hold
(another split) are counted and left out.

    python -m fairness.by_eye --predictions outputs/pipeline/real/predictions_val.csv \\
        --labels data/acne-new-v36/tone_labels.csv --json

Exit codes: 0 ok, 2 a bad predictions or labels file (the message names it).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from core.schema import GROUPS
from fairness.report_goals import GOAL_MIN_FACES

GROUP_BASIS = (
    "by-eye tone group (one rater's look at the face crop; not a Fitzpatrick type and not the "
    "estimate)"
)


def label_keys(images: Sequence[str], labels: Mapping[str, str]) -> list[str | None]:
    """The labelled path each image is, or None: its own path, else the longest tail of it that
    names a labelled image (a combined dataset's `acne-new-v36/images/x.jpg` is the labels'
    `images/x.jpg`).

    >>> label_keys(["images/a.jpg", "acne-new-v36/images/a.jpg", "b.jpg"], {"images/a.jpg": "I-II"})
    ['images/a.jpg', 'images/a.jpg', None]
    """
    out = []
    for image in images:
        parts = image.split("/")
        tails = ("/".join(parts[i:]) for i in range(len(parts)))
        out.append(next((tail for tail in tails if tail in labels), None))
    return out


def by_eye_groups(images: Sequence[str], labels: Mapping[str, str]) -> list[str | None]:
    """The by-eye group of each image: its label when it is a clear group, else None.

    >>> by_eye_groups(["a", "b", "c"], {"a": "V-VI", "b": "between"})
    ['V-VI', None, None]
    """
    keys = label_keys(images, labels)
    return [labels[k] if k is not None and labels[k] in GROUPS else None for k in keys]


def by_eye_goals(
    predictions: Path, labels_path: Path, *, n_boot: int, seed: int, min_faces: int
) -> dict:
    """`auroc_goals` of the predictions grouped by their by-eye tone labels, with counts."""
    from core.tone_labels import read_tone_labels
    from fairness.io import read_predictions, to_arrays
    from fairness.report_goals import auroc_goals

    df = read_predictions(predictions)
    images = df["image"].tolist()
    _, labels = read_tone_labels(labels_path)
    arrays = to_arrays(df)
    groups = by_eye_groups(images, labels)
    goals = auroc_goals(
        arrays.y_true, arrays.probs, groups, n_boot=n_boot, seed=seed, min_faces=min_faces
    )
    keys = [k for k in label_keys(images, labels) if k is not None]
    return {
        "predictions": str(predictions),
        "labels": str(labels_path),
        "group_basis": GROUP_BASIS,
        "photos": len(images),
        "labelled": len(keys),
        "labels_of_other_photos": len(set(labels) - set(keys)),
        "clear_group": {g: groups.count(g) for g in GROUPS},
        **goals,
    }


def main(argv: list[str] | None = None) -> int:
    """Parse flags, score, print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--predictions", type=Path, required=True, help="a predictions CSV")
    parser.add_argument(
        "--labels", type=Path, required=True, help="by-eye tone labels CSV (image, tone_by_eye)"
    )
    parser.add_argument("--n-boot", type=int, default=1000, help="bootstrap replicates")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    parser.add_argument(
        "--min-faces",
        type=int,
        default=GOAL_MIN_FACES,
        help=f"faces a group needs to enter the gap (default {GOAL_MIN_FACES}, as the report)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON (default: a table)")
    args = parser.parse_args(argv)
    try:
        report = by_eye_goals(
            args.predictions,
            args.labels,
            n_boot=args.n_boot,
            seed=args.seed,
            min_faces=args.min_faces,
        )
    except ValueError as exc:  # PredictionsError, ToneLabelError, unreadable labels
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"acne AUROC per {GROUP_BASIS} ({report['labelled']} of {report['photos']} labelled)")
    for group, cell in report["acne_auroc_by_group"].items():
        auc = cell["auroc"]
        value = (
            f"{auc['value']:.3f} [{auc['ci_low']:.3f}, {auc['ci_high']:.3f}]"
            if auc.get("value") is not None and auc.get("ci_low") is not None
            else auc.get("reason", auc.get("status"))
        )
        print(f"  {group:7s} n={cell['n']:4d} positives={cell['positives']:4d}  {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
