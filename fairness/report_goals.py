"""The AUROC goals of the report: acne and hyperpigmentation AUROC, acne AUROC per group.

Threshold-free, so every evaluated row counts (no cross-fitting). metrics.json's ``goals``
(`auroc_goals`) and their MLflow scalars (`flatten_goals`). Point values are the AUROC of
`fairness.batched.score_metrics_batched`; intervals come from one stratified bootstrap (group x
label) shared by all groups, so the gap's interval is paired.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fairness.batched import score_metrics_batched
from fairness.bootstrap import percentile_ci, strata_codes, stratified_bootstrap_weights
from fairness.flatten import flatten_report

__all__ = [
    "GOALS_CI_METHOD",
    "GOAL_CONDITIONS",
    "GOAL_MIN_FACES",
    "auroc_goals",
    "flatten_goals",
]

# The goals' per-group AUROC counts a group with at least this many labelled faces.
GOAL_MIN_FACES = 10
GOAL_CONDITIONS = ("acne", "hyperpigmentation")
GOALS_CI_METHOD = (
    "percentile bootstrap over images, stratified by skin-tone group x label; one set of "
    "replicates for all groups, so the gap's interval is paired"
)


def auroc_goals(
    y_true,
    probs,
    groups,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    ci_level: float = 0.95,
    min_faces: int = GOAL_MIN_FACES,
    face_found=None,
    chunk_size: int = 100,
) -> dict:
    """The AUROC goals: acne and hyperpigmentation AUROC, acne AUROC per group and its gap.

    Parameters
    ----------
    y_true, probs : array [N, C]
        Labels (NaN = unknown) and probabilities, columns in `CONDITIONS` order.
    groups : sequence of str or None, length N
    n_boot, seed, ci_level
        Percentile bootstrap (stratified by group x label; 0 = no intervals).
    min_faces : int
        A group enters the per-group AUROC and the gap with at least this many faces with a
        known acne label (and both labels present).
    face_found : sequence of "0" / "1" / "", optional
        Per row, whether a face was found and analysed; gives ``not_analysed`` when given.

    Returns
    -------
    dict (JSON-ready)
        ``{"<cond>_auroc": estimate + n, positives, "acne_auroc_by_group": {g: {"n",
        "positives", "auroc"}}, "acne_auroc_gap": estimate + best_group, worst_group,
        compared, "by_group" (gap of each group to the best), "min_faces", "ci_method",
        ["not_analysed": {"share", "count", "n"}]}``. Point values are the same AUROC as the
        report's tables (`fairness.metrics.auroc`, equal to scikit-learn's roc_auc_score).

    >>> nan = float("nan")
    >>> g = auroc_goals([[1, 0, nan], [0, 1, nan]], [[0.9, 0.2, 0.5], [0.1, 0.8, 0.5]],
    ...                 ["V-VI", "V-VI"], n_boot=0, min_faces=2)
    >>> g["acne_auroc"]["value"], g["acne_auroc_by_group"]["V-VI"]["auroc"]["value"]
    (1.0, 1.0)
    """
    from core.schema import CONDITIONS, GROUPS

    y = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(probs, dtype=np.float64)
    group = np.asarray([g or "" for g in groups], dtype=object)
    out: dict = {}
    for cond in GOAL_CONDITIONS:
        c = CONDITIONS.index(cond)
        known = np.isfinite(y[:, c])
        yk, pk, gk = y[known, c], p[known, c], group[known]
        cells = {"overall": np.ones(yk.size, bool), **{g: gk == g for g in GROUPS}}
        points, reps = _auroc_cells(yk, pk, gk, cells, n_boot, seed, chunk_size)
        overall = _goal_estimate(points["overall"], reps["overall"], ci_level)
        out[f"{cond}_auroc"] = {**overall, "n": int(yk.size), "positives": int(yk.sum())}
        if cond == "acne":
            out |= _acne_by_group(yk, cells, points, reps, GROUPS, min_faces, ci_level)
    out["ci_method"] = GOALS_CI_METHOD
    out["n_boot"], out["seed"], out["ci_level"] = int(n_boot), int(seed), ci_level
    not_analysed = None if face_found is None else _not_analysed(face_found)
    if not_analysed is not None:
        out["not_analysed"] = not_analysed
    return out


def _auroc_cells(
    y: np.ndarray,
    p: np.ndarray,
    group: np.ndarray,
    cells: dict[str, np.ndarray],
    n_boot: int,
    seed: int,
    chunk_size: int,
) -> tuple[dict[str, float], dict[str, np.ndarray | None]]:
    """AUROC point value and bootstrap replicates (None without) of each cell mask."""
    points = {
        name: float(score_metrics_batched(y[m], p[m], np.ones((1, int(m.sum()))))["auroc"][0])
        for name, m in cells.items()
    }
    reps: dict[str, np.ndarray | None] = dict.fromkeys(cells)
    if n_boot > 0 and y.size:
        strata = strata_codes(group, y)
        rng = np.random.default_rng(seed)
        parts: dict[str, list] = {name: [] for name in cells}
        for start in range(0, n_boot, chunk_size):
            w = stratified_bootstrap_weights(strata, min(chunk_size, n_boot - start), rng)
            for name, m in cells.items():
                parts[name].append(score_metrics_batched(y[m], p[m], w[:, m])["auroc"])
        reps = {name: np.concatenate(v) for name, v in parts.items()}
    return points, reps


def _goal_estimate(point: float, reps: np.ndarray | None, ci_level: float) -> dict:
    """An AUROC estimate with its percentile interval; no value when the AUROC is undefined."""
    if not np.isfinite(point):
        return _no_value("AUROC undefined: needs positives and negatives")
    low, high = percentile_ci(reps, ci_level) if reps is not None else (np.nan, np.nan)
    return {
        "value": float(point),
        "ci_low": float(low) if np.isfinite(low) else None,
        "ci_high": float(high) if np.isfinite(high) else None,
        "status": "ok",
    }


def _acne_by_group(
    y: np.ndarray,
    cells: dict[str, np.ndarray],
    points: dict[str, float],
    reps: dict[str, np.ndarray | None],
    groups: Sequence[str],
    min_faces: int,
    ci_level: float,
) -> dict:
    """``acne_auroc_by_group`` (groups with too few faces get no value) and ``acne_auroc_gap``."""
    by_group, eligible = {}, []
    for g in groups:
        m = cells[g]
        n_g, pos_g = int(m.sum()), int(y[m].sum())
        if n_g < min_faces:
            auc = _no_value(f"{n_g} faces with an acne label; need at least {min_faces}")
        else:
            auc = _goal_estimate(points[g], reps[g], ci_level)
            if auc["status"] == "ok":
                eligible.append(g)
        by_group[g] = {"n": n_g, "positives": pos_g, "auroc": auc}
    gap = _auroc_gap(eligible, points, reps, ci_level) | {"min_faces": int(min_faces)}
    return {"acne_auroc_by_group": by_group, "acne_auroc_gap": gap}


def _auroc_gap(
    eligible: list[str],
    points: dict[str, float],
    reps: dict[str, np.ndarray | None],
    ci_level: float,
) -> dict:
    """Best group's AUROC minus each eligible group's; the largest one (best - worst)."""
    if len(eligible) < 2:
        return _no_value(f"{len(eligible)} group(s) with enough faces and both labels; need 2")
    best = max(eligible, key=lambda g: points[g])
    worst = min(eligible, key=lambda g: points[g])

    def gap(g: str) -> dict:
        diff = None if reps[best] is None else reps[best] - reps[g]
        return _goal_estimate(points[best] - points[g], diff, ci_level)

    return {
        **gap(worst),
        "best_group": best,
        "worst_group": worst,
        "compared": eligible,
        "by_group": {g: gap(g) for g in eligible},
    }


def _not_analysed(face_found: Sequence) -> dict | None:
    """Share and count of faces not found among rows that say (face_found 0 or 1)."""
    values = [str(v).strip() for v in face_found]
    known_face = [v for v in values if v in ("0", "1")]
    if not known_face:
        return None
    missed = sum(v == "0" for v in known_face)
    return {
        "share": missed / len(known_face),
        "count": missed,
        "n": len(known_face),
        "column": "face_found",
    }


def _no_value(reason: str) -> dict:
    """An estimate without a number, and why."""
    return {
        "value": None,
        "ci_low": None,
        "ci_high": None,
        "status": "insufficient evidence",
        "reason": reason,
    }


def flatten_goals(goals: dict, prefix: str = "goals") -> dict[str, float]:
    """MLflow-ready scalars of the AUROC goals (value, ci_low, ci_high; `flatten_report`)."""
    from core.schema import GROUPS

    named = {f"{c}_auroc": goals[f"{c}_auroc"] for c in GOAL_CONDITIONS}
    named |= {f"acne_auroc/{g}": goals["acne_auroc_by_group"][g]["auroc"] for g in GROUPS}
    named["acne_auroc_gap"] = goals["acne_auroc_gap"]
    if "not_analysed" in goals:
        named["not_analysed_share"] = goals["not_analysed"]["share"]
    return flatten_report({"summary": named}, prefix, intervals=True)
