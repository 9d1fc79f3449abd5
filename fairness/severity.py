"""Acne-severity metrics: quadratic weighted kappa and MAE of the grade, with bootstrap CIs.

Grades are the ACNE04 bands 0-3 (`data.schema.SEVERITY_GRADES`). Quadratic weighted kappa (QWK)
is scikit-learn's ``cohen_kappa_score(y_true, grade, labels=[0, 1, 2, 3], weights="quadratic")``
(tested equal, sample weights included): the labels are fixed, so a grade missing from both
arrays still counts in the distances. It is computed here in a batched form over a weight matrix
``W [B, n]`` (one bootstrap replicate per row, as in `fairness.metrics`), so the point estimate
and every replicate go through the same code. QWK is NaN when the expected disagreement is 0
(true and predicted grades all one and the same value).

`severity_metrics` is the entry point: overall and per skin-tone group, with stratified
percentile bootstrap intervals (`fairness.bootstrap`). numpy only (no JAX, no scikit-learn at
import), so the Triton python models and the client can import `severity_grade`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fairness.bootstrap import percentile_ci, strata_codes, stratified_bootstrap_weights

__all__ = [
    "MIN_ROWS",
    "SEVERITY_METRICS",
    "mean_absolute_error",
    "quadratic_weighted_kappa",
    "severity_grade",
    "severity_metrics",
]

NUM_GRADES = 4  # data.schema.SEVERITY_GRADES
SEVERITY_METRICS: tuple[str, ...] = ("qwk", "mae")
MIN_ROWS = 5  # a cell with fewer rows of known severity reports "insufficient evidence"
INSUFFICIENT = "insufficient evidence"
CI_METHOD = "percentile bootstrap, stratified by tone group x true grade"


# --- grades from probabilities ---------------------------------------------------------------


def severity_grade(probs) -> np.ndarray:
    """Median grade of severity class probabilities [..., 4] -> int64 [...].

    The number of k with ``P(grade > k) = 1 - cumsum(p)_k > 0.5``, the numpy twin of
    `train_jax.models.ordinal.severity_grade` (CORAL's rule for rank-consistent outputs).

    >>> severity_grade([[0.1, 0.3, 0.4, 0.2], [0.5, 0.2, 0.2, 0.1]]).tolist()
    [2, 0]
    """
    p = np.asarray(probs, dtype=np.float32)
    if p.shape[-1:] != (NUM_GRADES,):
        raise ValueError(f"probs must have shape [..., {NUM_GRADES}], got {p.shape}")
    above = np.float32(1.0) - np.cumsum(p, axis=-1, dtype=np.float32)[..., :-1]
    return (above > 0.5).sum(axis=-1).astype(np.int64)


# --- batched cores -----------------------------------------------------------------------------


def qwk_batched(y: np.ndarray, pred: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """QWK per row of the weight matrix ``weights [B, n]`` -> [B] (NaN where undefined)."""
    cell = np.asarray(y, np.int64) * NUM_GRADES + np.asarray(pred, np.int64)
    one_hot = (cell[:, None] == np.arange(NUM_GRADES**2)[None, :]).astype(np.float64)
    observed = (weights @ one_hot).reshape(-1, NUM_GRADES, NUM_GRADES)  # [B, true, predicted]
    total = observed.sum(axis=(1, 2))
    rows, cols = observed.sum(axis=2), observed.sum(axis=1)
    expected = rows[:, :, None] * cols[:, None, :] / np.where(total > 0, total, 1.0)[:, None, None]
    k = np.arange(NUM_GRADES)
    distance = ((k[:, None] - k[None, :]) ** 2).astype(np.float64)
    disagree_obs = (observed * distance).sum(axis=(1, 2))
    disagree_exp = (expected * distance).sum(axis=(1, 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        kappa = 1.0 - disagree_obs / disagree_exp
    return np.where((disagree_exp > 0) & (total > 0), kappa, np.nan)


def mae_batched(y: np.ndarray, pred: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted mean |y - pred| per row of ``weights [B, n]`` -> [B] (NaN without weight)."""
    total = weights.sum(axis=1)
    error = weights @ np.abs(y - pred).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(total > 0, error / total, np.nan)


_BATCHED = {"qwk": qwk_batched, "mae": mae_batched}


def _prepare(y_true, y_pred, sample_weight) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y = np.asarray(y_true, dtype=np.float64).ravel()
    g = np.asarray(y_pred, dtype=np.float64).ravel()
    if y.shape != g.shape:
        raise ValueError(f"y_true and y_pred differ in length: {y.size} and {g.size}")
    for name, values in (("y_true", y), ("y_pred", g)):
        bad = ~np.isin(values, np.arange(NUM_GRADES))
        if bad.any():
            raise ValueError(
                f"{name} must hold grades {list(range(NUM_GRADES))}, got {values[bad][:5].tolist()}"
            )
    w = np.ones_like(y) if sample_weight is None else np.asarray(sample_weight, np.float64).ravel()
    if w.shape != y.shape:
        raise ValueError(f"sample_weight has {w.size} values, expected {y.size}")
    return y.astype(np.int64), g.astype(np.int64), w


def quadratic_weighted_kappa(y_true, y_pred, *, sample_weight=None) -> float:
    """Cohen's kappa with quadratic weights over the grades 0-3.

    Parameters
    ----------
    y_true, y_pred : array-like of int, shape [n]
        True and predicted grades 0-3.
    sample_weight : array-like, shape [n], optional
        Row weights (bootstrap counts).

    Returns
    -------
    float
        1 for perfect agreement, 0 for chance level; NaN when undefined.

    >>> quadratic_weighted_kappa([0, 1, 2, 3], [0, 1, 3, 3])
    0.9166666666666666
    """
    y, g, w = _prepare(y_true, y_pred, sample_weight)
    return float(qwk_batched(y, g, w[None, :])[0])


def mean_absolute_error(y_true, y_pred, *, sample_weight=None) -> float:
    """Mean absolute difference of the grades (NaN without rows).

    Parameters
    ----------
    y_true, y_pred : array-like of int, shape [n]
        True and predicted grades 0-3.
    sample_weight : array-like, shape [n], optional
        Row weights (bootstrap counts).

    Returns
    -------
    float

    >>> mean_absolute_error([0, 1, 2, 3], [0, 1, 3, 1])
    0.75
    """
    y, g, w = _prepare(y_true, y_pred, sample_weight)
    return float(mae_batched(y, g, w[None, :])[0])


# --- entry point -------------------------------------------------------------------------------


def _estimate(point: float, replicates: np.ndarray | None, level: float) -> dict:
    if not np.isfinite(point):
        return _insufficient("metric undefined on this data")
    low, high = percentile_ci(replicates, level) if replicates is not None else (np.nan, np.nan)
    return {
        "value": float(point),
        "ci_low": float(low) if np.isfinite(low) else None,
        "ci_high": float(high) if np.isfinite(high) else None,
        "status": "ok",
    }


def _float_grades(values) -> np.ndarray:
    """Grades as float64 [N]; None becomes NaN (unknown)."""
    flat = np.asarray(values, dtype=object).ravel()
    return np.asarray([np.nan if v is None else float(v) for v in flat], np.float64)


def _insufficient(reason: str) -> dict:
    return {
        "value": None,
        "ci_low": None,
        "ci_high": None,
        "status": INSUFFICIENT,
        "reason": reason,
    }


def severity_metrics(
    y_true,
    grade,
    groups: Sequence[str | None],
    n_boot: int = 1000,
    seed: int = 0,
    *,
    ci_level: float = 0.95,
    min_rows: int = MIN_ROWS,
) -> dict:
    """QWK and MAE of predicted grades, overall and per skin-tone group, with bootstrap CIs.

    Parameters
    ----------
    y_true : array-like, shape [N]
        True grade 0-3 per row; NaN, None or a negative value = unknown (the row is left out).
    grade : array-like of int, shape [N]
        Predicted grade 0-3 per row (`severity_grade` of the class probabilities).
    groups : sequence of str or None, length N
        Skin-tone group per row (`I-II`, `III-IV`, `V-VI`); others count only in the overall.
    n_boot : int
        Bootstrap replicates, stratified by group x true grade (0: point estimates, CIs null).
    seed : int
        Seed of the bootstrap; same seed, same intervals.
    ci_level : float
        Coverage of the percentile interval.
    min_rows : int
        A cell with fewer rows of known severity reports "insufficient evidence".

    Returns
    -------
    dict (JSON-ready)
        ``{"n", "n_boot", "seed", "ci_level", "ci_method", "min_rows", "overall": cell,
        "by_group": {group: cell}}``; a cell is ``{"n", "status", "qwk": estimate,
        "mae": estimate}`` and an estimate ``{"value", "ci_low", "ci_high", "status"}`` (plus
        ``"reason"`` when the status is "insufficient evidence"; values are then null).

    >>> m = severity_metrics([0, 1, 2, 3, None], [0, 1, 3, 1, 2], ["I-II"] * 5, n_boot=0,
    ...                      min_rows=1)
    >>> m["overall"]["n"], m["overall"]["mae"]["value"], m["by_group"]["V-VI"]["status"]
    (4, 0.75, 'insufficient evidence')
    """
    from data.schema import GROUPS

    y_all = _float_grades(y_true)
    pred_all = _float_grades(grade)
    group_all = np.asarray([g if isinstance(g, str) else "" for g in groups], dtype=object)
    if not (y_all.size == pred_all.size == group_all.size):
        raise ValueError(
            f"y_true, grade and groups differ in length: {y_all.size}, {pred_all.size}, "
            f"{group_all.size}"
        )
    known = np.isfinite(y_all) & (y_all >= 0)
    y, pred, _ = _prepare(y_all[known], pred_all[known], None)
    group = group_all[known]
    cells = {"overall": np.ones(y.size, bool), **{g: group == g for g in GROUPS}}
    weights = None
    if n_boot > 0 and y.size:
        strata = strata_codes(group, y)
        weights = stratified_bootstrap_weights(strata, n_boot, np.random.default_rng(seed))
    need = max(int(min_rows), 1)

    def cell(mask: np.ndarray) -> dict:
        n = int(mask.sum())
        out: dict = {"n": n}
        for metric, fn in _BATCHED.items():
            if n < need:
                out[metric] = _insufficient(f"{n} rows with a known severity; need at least {need}")
                continue
            point = float(fn(y[mask], pred[mask], np.ones((1, n)))[0])
            replicates = None if weights is None else fn(y[mask], pred[mask], weights[:, mask])
            out[metric] = _estimate(point, replicates, ci_level)
        ok = all(out[m]["status"] == "ok" for m in SEVERITY_METRICS)
        out["status"] = "ok" if ok else INSUFFICIENT
        return out

    return {
        "n": int(y.size),
        "n_boot": int(n_boot),
        "seed": int(seed),
        "ci_level": ci_level,
        "ci_method": CI_METHOD,
        "min_rows": int(min_rows),
        "overall": cell(cells["overall"]),
        "by_group": {g: cell(cells[g]) for g in GROUPS},
    }
