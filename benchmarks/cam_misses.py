"""Where do the heatmaps miss? Pointing game per group, split by co-occurring condition.

    python benchmarks/cam_misses.py --run outputs/pipeline --data DIR [--tfds-dir D]
        [--split test] [--json]

For acne and hyperpigmentation (the two that share the face: post-inflammatory spots sit next to
the papules) and each Fitzpatrick group: the strict pointing game of the served CAM on images
with and without the other condition, the share of misses whose peak lies on the other
condition's mask, the lesion area (fraction of the crop) of hits and misses, and the model's
mean probability on hits and misses.

A second table splits every condition's positives by how visible the lesion is in the crop
(`lesion_visibility`: its contrast-to-noise ratio in log colour, measured on the image and its
mask, the same for any tone) into quantile bins pooled over the groups, and gives the
pointing game per group and bin, and each group's pointing game standardised to the pooled
visibility mix: if the spread across groups shrinks there, it comes from how visible the
lesions are, not from the tone as such. Numbers on synthetic data are synthetic.
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
GROUP_NAMES = ("I-II", "III-IV", "V-VI")
LOG_OFFSET = 8.0  # grey levels added before the log, as the tone-aware input does
MAD_TO_SD = 1.4826  # robust standard deviation of a normal sample from its MAD


def lesion_visibility(
    image: np.ndarray, lesion: np.ndarray, others: np.ndarray | None = None, *, ring_px: int = 4
) -> float:
    """Contrast-to-noise ratio of one lesion in a crop, in log colour (NaN if unmeasurable).

    `image` uint8 [S, S, 3], `lesion` bool [S, S]; `others` bool [S, S] (other lesions, kept out
    of the surround). Per RGB channel, in log(x + 8): the difference of the medians inside the
    lesion and in the ring of `ring_px` around it, over the ring's robust standard deviation
    (1.4826 x MAD); the ratio is the length of that 3-vector (so a red papule counts as well as
    a dark spot). Differences of logs: a lesion that scales the skin's colour by the same factors
    scores the same on any tone, apart from the noise.
    """
    import cv2

    inside = np.asarray(lesion, bool)
    if not inside.any():
        return float("nan")
    kernel = np.ones((2 * ring_px + 1, 2 * ring_px + 1), np.uint8)
    ring = cv2.dilate(inside.astype(np.uint8), kernel).astype(bool) & ~inside
    if others is not None:
        ring &= ~np.asarray(others, bool)
    if ring.sum() < 8:
        return float("nan")
    log_i = np.log(np.asarray(image, np.float64) + LOG_OFFSET)
    surround = log_i[ring]  # [n, 3]
    centre = np.median(surround, axis=0)
    noise = MAD_TO_SD * np.median(np.abs(surround - centre), axis=0)
    step = (np.median(log_i[inside], axis=0) - centre) / np.maximum(noise, 1e-3)
    return float(np.linalg.norm(step))


def visibility_table(
    hits: np.ndarray,
    visibility: np.ndarray,
    groups: np.ndarray,
    bins: int = 4,
    *,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict:
    """Pointing game per group and visibility bin (quantiles pooled over the groups).

    `hits` bool [N], `visibility` float [N] (NaN: left out), `groups` [N]. Returns the bin edges,
    per group: n and pointing game per bin, the raw pointing game, and the pointing game
    standardised to the pooled bin mix (None where a group has no image in some bin), with the
    raw and standardised spread (max - min over the groups that have images). 95% intervals of
    the standardised values: `n_boot` draws of every (group, bin) cell's rate from its Jeffreys
    posterior Beta(k + 1/2, n - k + 1/2) (so a 4-of-4 cell is not taken as certain), the bin
    edges and the pooled mix held fixed.
    """
    hits, vis, groups = np.asarray(hits, bool), np.asarray(visibility, float), np.asarray(groups)
    keep = np.isfinite(vis)
    hits, vis, groups = hits[keep], vis[keep], groups[keep]
    edges = np.quantile(vis, np.linspace(0, 1, bins + 1)) if vis.size else np.zeros(bins + 1)
    which = np.clip(np.searchsorted(edges, vis, side="right") - 1, 0, bins - 1)
    share = np.bincount(which, minlength=bins) / max(len(which), 1)
    out: dict = {"edges": edges.tolist(), "pooled_share": share.tolist(), "groups": {}}
    for g in GROUP_NAMES:
        sel = groups == g
        n = [int((sel & (which == b)).sum()) for b in range(bins)]
        pg = [_mean(hits[sel & (which == b)]) for b in range(bins)]
        std = None if any(x is None for x in pg) else float(np.dot(share, pg))
        out["groups"][g] = {
            "n": n,
            "pointing_game_by_bin": pg,
            "pointing_game": _mean(hits[sel]),
            "standardised": std,
            "median_visibility": float(np.median(vis[sel])) if sel.any() else None,
        }
    present = [v for v in out["groups"].values() if sum(v["n"])]  # groups without images: out
    for key in ("pointing_game", "standardised"):
        vals = [v[key] for v in present]
        out[f"spread_{key}"] = (
            None if any(v is None for v in vals) else float(max(vals) - min(vals))
        )
    rng = np.random.default_rng(seed)
    boots = []
    for v in present:
        if v["standardised"] is None:
            break
        n = np.array(v["n"])
        k = n * np.array(v["pointing_game_by_bin"])
        rates = rng.beta(k + 0.5, n - k + 0.5, size=(n_boot, bins))
        boots.append(rates @ share)
        v["standardised_ci"] = np.quantile(boots[-1], [0.025, 0.975]).tolist()
    if boots and len(boots) == len(present):
        spread = np.max(boots, axis=0) - np.min(boots, axis=0)
        out["spread_standardised_ci"] = np.quantile(spread, [0.025, 0.975]).tolist()
    return out


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


def visibility_by_condition(cams, ex, pointing_game, bins: int) -> dict:
    """`visibility_table` for every condition over its positive images of a known group."""
    from core.schema import CONDITIONS

    groups = np.asarray(ex.groups)
    out = {}
    for c, name in enumerate(CONDITIONS):
        sel = np.where((ex.labels[:, c] == 1) & np.isin(groups, GROUP_NAMES))[0]
        hits = [pointing_game(cams[i, c], ex.masks[i, ..., c]) for i in sel]
        lesions = ex.masks[sel]
        vis = [
            lesion_visibility(ex.images[i], m[..., c], m.any(axis=-1) & ~m[..., c])
            for i, m in zip(sel, lesions, strict=True)
        ]
        out[name] = visibility_table(np.array(hits, bool), np.array(vis), groups[sel], bins)
    return out


def print_visibility(vis: dict) -> None:
    """Markdown: pointing game per group and visibility bin, raw and standardised spread."""
    f = lambda x: "n/a" if x is None else f"{x:.2f}"  # noqa: E731
    ci = lambda x: "" if x is None else f" [{x[0]:.2f}, {x[1]:.2f}]"  # noqa: E731
    for name, t in vis.items():
        edges = t["edges"]
        heads = [f"{edges[b]:.1f}-{edges[b + 1]:.1f}" for b in range(len(edges) - 1)]
        print(
            f"\n{name}: pointing game by lesion visibility (contrast-to-noise, pooled quantiles)\n"
        )
        print("| group | median visibility | " + " | ".join(heads) + " | PG | PG standardised |")
        print("|---|---|" + "---|" * len(heads) + "---|---|")
        for g, r in t["groups"].items():
            cells = [
                f"{f(pg)} (n={n})" for pg, n in zip(r["pointing_game_by_bin"], r["n"], strict=True)
            ]
            print(
                f"| {g} | {f(r['median_visibility'])} | "
                + " | ".join(cells)
                + f" | {f(r['pointing_game'])} | {f(r['standardised'])}"
                + f"{ci(r.get('standardised_ci'))} |"
            )
        print(
            f"\nspread: {f(t['spread_pointing_game'])} raw, "
            f"{f(t['spread_standardised'])}{ci(t.get('spread_standardised_ci'))} standardised "
            "to the pooled visibility mix"
        )


def main(argv: list[str] | None = None) -> int:
    """Compute the table for one run on one split; print markdown or JSON."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", required=True, help="training run folder")
    p.add_argument("--data", required=True, help="canonical dataset folder with lesion masks")
    p.add_argument("--tfds-dir", help="crop cache (default: the run's)")
    p.add_argument("--split", default="test", choices=["val", "test"])
    p.add_argument("--bins", type=int, default=4, help="visibility quantile bins (default 4)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.bins < 1:
        p.error(f"--bins must be >= 1, got {args.bins}")
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
    vis = visibility_by_condition(cams, ex, pointing_game, args.bins)
    if args.json:
        payload = {"run": args.run, "data": args.data, "split": args.split, "rows": rows}
        print(json.dumps({**payload, "visibility": vis}))
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
    print_visibility(vis)
    print("\nSynthetic data: these numbers describe the benchmark, not real skin.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
