"""Where do the heatmaps miss? Pointing game per group, split by co-occurring condition.

    python benchmarks/cam_misses.py --run outputs/pipeline --data DIR [--tfds-dir D]
        [--split test] [--json]

For acne and hyperpigmentation (the two that share the face: post-inflammatory spots sit next to
the papules) and each Fitzpatrick group: the strict pointing game of the served CAM on images
with and without the other condition, the share of misses whose peak lies on the other
condition's mask, the lesion area (fraction of the crop) of hits and misses, and the model's
mean probability on hits and misses. Numbers on synthetic data are synthetic.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PAIR = (("acne", 0, 1), ("hyperpigmentation", 1, 0))  # (name, channel, other channel)


def _mean(x: np.ndarray) -> float | None:
    return float(x.mean()) if x.size else None


def miss_table(cams, masks, labels, groups, probs, pointing_game) -> list[dict]:
    """One row per (group, condition) with the split pointing game and miss statistics."""
    groups = np.asarray(groups)
    pixels = masks.shape[1] * masks.shape[2]
    rows = []
    for g in ("I-II", "III-IV", "V-VI"):
        for name, c, other in PAIR:
            sel = np.where((groups == g) & (labels[:, c] == 1))[0]
            hits = np.array([pointing_game(cams[i, c], masks[i, ..., c]) for i in sel], bool)
            with_other = labels[sel, other] == 1
            on_other = np.array(
                [
                    w and pointing_game(cams[i, c], masks[i, ..., other])
                    for i, w in zip(sel, with_other, strict=True)
                ],
                bool,
            )
            area = masks[sel, ..., c].reshape(len(sel), pixels).mean(axis=1)
            rows.append(
                {
                    "group": g,
                    "condition": name,
                    "n": int(len(sel)),
                    "pointing_game": _mean(hits),
                    "pg_with_other": _mean(hits[with_other]),
                    "n_with_other": int(with_other.sum()),
                    "pg_without_other": _mean(hits[~with_other]),
                    "misses_on_other_mask": _mean(on_other[~hits]),
                    "area_hit": _mean(area[hits]),
                    "area_miss": _mean(area[~hits]),
                    "prob_hit": _mean(probs[sel, c][hits]),
                    "prob_miss": _mean(probs[sel, c][~hits]),
                }
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    """Compute the table for one run on one split; print markdown or JSON."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", required=True, help="training run folder")
    p.add_argument("--data", required=True, help="canonical dataset folder with lesion masks")
    p.add_argument("--tfds-dir", help="crop cache (default: the run's)")
    p.add_argument("--split", default="test", choices=["val", "test"])
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    from explain.evaluate import EvaluationError, compute_cams, load_run_examples
    from explain.metrics import pointing_game

    try:
        model, _, ex = load_run_examples(
            args.run, args.data, split=args.split, tfds_dir=args.tfds_dir or None
        )
    except (FileNotFoundError, ValueError, EvaluationError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    probs, cams = compute_cams(model, ex.images, method="cam", layer=None, batch_size=64)
    rows = miss_table(cams, ex.masks, ex.labels, ex.groups, np.asarray(probs), pointing_game)
    if args.json:
        print(json.dumps({"run": args.run, "data": args.data, "split": args.split, "rows": rows}))
        return 0
    f = lambda x: "n/a" if x is None else f"{x:.2f}"  # noqa: E731
    g = lambda x: "n/a" if x is None else f"{x:.3f}"  # noqa: E731
    print(
        "| group | condition | n | PG | PG with / without the other | misses on the other mask "
        "| lesion area hit / miss | prob hit / miss |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['group']} | {r['condition']} | {r['n']} | {f(r['pointing_game'])} | "
            f"{f(r['pg_with_other'])} (n={r['n_with_other']}) / {f(r['pg_without_other'])} | "
            f"{f(r['misses_on_other_mask'])} | {g(r['area_hit'])} / {g(r['area_miss'])} | "
            f"{f(r['prob_hit'])} / {f(r['prob_miss'])} |"
        )
    print("\nSynthetic data: these numbers describe the benchmark, not real skin.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
