"""AUROC of several training runs on the same rows of one dataset, per group, with bootstrap CIs.

    python benchmarks/compare_runs.py --data data/acne-new-v36 --split val \
        outputs/runA outputs/runB ... [--n-boot 1000] [--seed 0] [--json]

Each run's `predictions_{split}.csv` is matched to the dataset's rows by image file name (a run
trained on a combined dataset has its rows under `<input>/images/...`; rows of other inputs are
left out), restricted to the rows every run has, and grouped by the dataset's own tone group
(`fitzpatrick` or `fitzpatrick_group`; for acne-new an estimated tone). AUROC uses
`fairness.metrics.score_metrics_batched` with one stratified bootstrap (tone group x label) shared
by all runs, so the intervals of different runs come from the same resamples. Beside acne and
dark spots (hyperpigmentation) it scores the severity output where the dataset has grades:
``acne grade >= 1``, the AUROC of P(grade >= 1) = 1 - `acne_severity_prob_0` against a grade of
at least 1 (acne-new valid has grades 0 and 1 only; a run without severity probabilities gets
none). Exit codes: 0 ok, 2 bad arguments or files.
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

from fairness.bootstrap import percentile_ci, strata_codes, stratified_bootstrap_weights  # noqa: E402
from fairness.metrics import score_metrics_batched  # noqa: E402

CONDITIONS = ("acne", "hyperpigmentation")
SEVERITY_TARGET = "acne grade >= 1"


def targets(meta: pd.DataFrame) -> dict[str, np.ndarray]:
    """{name: 0/1 float labels (NaN = unknown)}: the conditions, and the severity target when
    the dataset has `acne_severity`."""
    out = {cond: meta[cond].to_numpy(float) for cond in CONDITIONS}
    if "acne_severity" in meta:
        grade = pd.to_numeric(meta["acne_severity"]).to_numpy(float)
        out[SEVERITY_TARGET] = np.where(np.isnan(grade), np.nan, (grade >= 1).astype(float))
    return out


def scores(frame: pd.DataFrame, target: str) -> np.ndarray | None:
    """A run's score for `target` [rows of `frame`], or None when the run has none."""
    if target != SEVERITY_TARGET:
        return frame[f"{target}_prob"].to_numpy(float)
    if "acne_severity_prob_0" not in frame or frame["acne_severity_prob_0"].isna().all():
        return None
    return 1.0 - frame["acne_severity_prob_0"].to_numpy(float)


MIN_GROUP_ROWS = 10  # a group with fewer rows gets its count only


def run_rows(run: Path, split: str) -> pd.DataFrame:
    """A run's predictions indexed by image file name."""
    path = run / f"predictions_{split}.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found")
    frame = pd.read_csv(path)
    frame["key"] = frame["image"].map(lambda p: Path(str(p)).name)
    return frame.set_index("key")


def run_names(runs: list[Path]) -> dict[str, Path]:
    """{name: folder}: each run by its folder name, or by its path as given when two runs share
    a name (``a/face`` and ``b/face``); the same path twice is an error."""
    names = [run.name for run in runs]
    out = {}
    for run in runs:
        name = run.name if names.count(run.name) == 1 else str(run)
        if name in out:
            raise ValueError(f"{run}: given twice")
        out[name] = run
    return out


def auroc_with_ci(y: np.ndarray, score: np.ndarray, weights: np.ndarray) -> dict:
    """AUROC of one set of rows (weights[0] = the sample itself) and its percentile interval."""
    values = score_metrics_batched(y, score, weights)["auroc"]
    low, high = percentile_ci(values[1:])
    return {"n": int(y.size), "auroc": round(float(values[0]), 3),
            "ci": [round(low, 3), round(high, 3)]}  # fmt: skip


def compare(meta: pd.DataFrame, runs: dict[str, pd.DataFrame], n_boot: int, seed: int) -> dict:
    """{run: {condition: {"overall": cell, group: cell}}} on the rows all runs share."""
    keys = sorted(set(meta.index).intersection(*[set(r.index) for r in runs.values()]))
    meta = meta.loc[keys]
    groups = meta["group"].fillna("unknown").to_numpy()
    out: dict = {"rows": len(keys)}
    for cond, y in targets(meta).items():
        known = ~np.isnan(y)
        if len(set(y[known])) < 2:
            continue  # no positives or no negatives: no AUROC
        strata = strata_codes(groups[known], y[known])
        rng = np.random.default_rng(seed)
        boot = stratified_bootstrap_weights(strata, n_boot, rng)
        weights = np.vstack([np.ones((1, known.sum())), boot])
        for name, frame in runs.items():
            all_scores = scores(frame.loc[keys], cond)
            if all_scores is None:
                continue
            score = all_scores[known]
            cells = {"overall": auroc_with_ci(y[known].astype(int), score, weights)}
            for g in sorted(set(groups[known])):
                sel = groups[known] == g
                if sel.sum() < MIN_GROUP_ROWS:
                    cells[g] = {"n": int(sel.sum()), "auroc": None, "ci": None}
                    continue
                cells[g] = auroc_with_ci(y[known][sel].astype(int), score[sel], weights[:, sel])
            out.setdefault(name, {})[cond] = cells
    return out


def _cell_text(group: str, cell: dict) -> str:
    if cell.get("auroc") is None:
        return f"{group} n={cell['n']} (too few)"
    return f"{group} {cell['auroc']:.3f} [{cell['ci'][0]:.3f}, {cell['ci'][1]:.3f}] (n={cell['n']})"


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", type=Path, help="training run folders")
    p.add_argument("--data", type=Path, required=True, help="canonical dataset folder")
    p.add_argument("--split", default="val", choices=["val", "test"])
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = p.parse_args(argv)
    from data.canonical import load_metadata

    try:
        meta = load_metadata(args.data / "metadata.csv")
        runs = {name: run_rows(run, args.split) for name, run in run_names(args.runs).items()}
    except (FileNotFoundError, ValueError) as e:
        print(f"compare_runs: {e}", file=sys.stderr)
        return 2
    meta = meta[meta["split"] == args.split].copy()
    meta.index = meta["image"].map(lambda s: Path(str(s)).name)
    result = compare(meta, runs, args.n_boot, args.seed)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{result['rows']} rows of {args.data} ({args.split}) shared by every run")
    for name in runs:
        for cond, cells in result.get(name, {}).items():
            text = "  ".join(_cell_text(g, c) for g, c in cells.items())
            print(f"{name:28s} {cond:18s} {text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
