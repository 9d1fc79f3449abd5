"""Acne-severity metrics: quadratic weighted kappa and MAE of the grade, with bootstrap CIs.

Grades are the ACNE04 bands 0-3 (`core.schema.SEVERITY_GRADES`). Quadratic weighted kappa (QWK)
is scikit-learn's ``cohen_kappa_score(y_true, grade, labels=[0, 1, 2, 3], weights="quadratic")``
(tested equal, sample weights included): the labels are fixed, so a grade missing from both
arrays still counts in the distances. It is computed here in a batched form over a weight matrix
``W [B, n]`` (one bootstrap replicate per row, as in `fairness.batched`), so the point estimate
and every replicate go through the same code. QWK is NaN when the expected disagreement is 0
(true and predicted grades all one and the same value).

`severity_metrics` is the entry point: overall and per skin-tone group, with stratified
percentile bootstrap intervals (`fairness.bootstrap`). numpy only (no JAX, no scikit-learn).

Cutpoints: the grade (`core.severity.severity_grade`, the serving rule) counts the k with
``P(grade > k) > cutpoints[k]``. The default 0.5 for every k is CORAL's median rule; on data where
grade 0 dominates (acne-new: 91%) P(grade > 0) never reaches 0.5 and every grade is 0.
`fit_severity_cutpoints` picks the cutpoints that maximise QWK on validation rows; they are
shipped in thresholds.json (key ``acne_severity``, `core.thresholds`) and applied by the serving
step (`client.steps.severity_step`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

from core.severity import (
    DEFAULT_CUTPOINT,
    NUM_GRADES,
    exceedance_probs,
    severity_grade_from_above,
)
from fairness.bootstrap import (
    INSUFFICIENT,
    estimate,
    insufficient,
    strata_codes,
    stratified_bootstrap_weights,
)

__all__ = [
    "CUTPOINT_METHOD",
    "MIN_ROWS",
    "SEVERITY_METRICS",
    "fit_severity_cutpoints",
    "mean_absolute_error",
    "quadratic_weighted_kappa",
    "severity_metrics",
]

SEVERITY_METRICS: tuple[str, ...] = ("qwk", "mae")
MIN_ROWS = 5  # a cell with fewer rows of known severity reports "insufficient evidence"
CI_METHOD = "percentile bootstrap, stratified by tone group x true grade"
CUTPOINT_METHOD = "QWK-optimal on validation (coordinate ascent)"
NUM_QUANTILES = 100  # default candidates per cutpoint: the 0, 1, ..., 100th percentiles
MAX_ROUNDS = 20  # coordinate-ascent sweeps over k (each move strictly raises QWK; it stops early)


# --- cutpoints fitted on validation ---------------------------------------------------------


def fit_severity_cutpoints(
    y_true, probs, *, candidates=NUM_QUANTILES, max_rounds: int = MAX_ROUNDS
) -> dict:
    """Cutpoints for `core.severity.severity_grade` that maximise QWK on the given rows.

    Coordinate ascent from 0.5 each: for k = 0, 1, 2 in turn, try every candidate cutpoint of
    ``P(grade > k)`` with the other two fixed and move only when QWK strictly rises; sweep again
    until no k moves. Deterministic (no randomness; ties keep the current value). A k with no
    known row of grade > k keeps 0.5 (nothing to separate), so rows of unseen grades are not
    invented. Rows with an unknown grade or non-finite probabilities are left out.

    Parameters
    ----------
    y_true : array-like, shape [N]
        True grade 0-3; NaN, None or a negative value = unknown.
    probs : array-like, shape [N, 4]
        Severity class probabilities.
    candidates : int or sequence of 3 sequences of float
        An int q: the 0, 1/q, ..., 1 quantiles of each ``P(grade > k)`` on the rows; or the
        candidate cutpoints of each k. 0.5 is always a candidate.
    max_rounds : int
        At most this many sweeps over k.

    Returns
    -------
    dict (JSON-ready)
        ``{"cutpoints": [c0, c1, c2], "qwk": QWK with them (None when undefined),
        "qwk_default": QWK with 0.5 each, "n": rows used, "method": CUTPOINT_METHOD}``.

    >>> probs = [[0.7, 0.2, 0.05, 0.05]] * 3 + [[0.55, 0.3, 0.1, 0.05]] * 2
    >>> fit = fit_severity_cutpoints([0, 0, 0, 1, 1], probs)
    >>> fit["cutpoints"][1:], fit["qwk"], fit["qwk_default"]
    ([0.5, 0.5], 1.0, 0.0)
    """
    y_all = _float_grades(y_true)
    above_all = exceedance_probs(probs).astype(np.float64)
    if above_all.ndim != 2 or above_all.shape[0] != y_all.size:
        raise ValueError(
            f"y_true has {y_all.size} rows but probs has shape {np.shape(probs)}; "
            f"expected [{y_all.size}, {NUM_GRADES}]"
        )
    keep = np.isfinite(y_all) & (y_all >= 0) & np.isfinite(above_all).all(axis=1)
    y, _, _ = _prepare(y_all[keep], np.zeros(int(keep.sum())), None)
    above = above_all[keep]
    cut = np.full(NUM_GRADES - 1, DEFAULT_CUTPOINT)
    grid = _candidate_grid(above, candidates)

    def qwk_of(grades: np.ndarray) -> np.ndarray:  # grades [C, n] -> QWK [C], NaN -> -inf
        q = _kappa(_confusions(y, grades))
        return np.where(np.isfinite(q), q, -np.inf)

    best = float(qwk_of(severity_grade_from_above(above, cut)[None, :])[0])
    default = best
    active = [k for k in range(NUM_GRADES - 1) if y.size and (y > k).any()]
    for _ in range(max(int(max_rounds), 0)):
        moved = False
        for k in active:
            others = (above > cut)[:, np.arange(NUM_GRADES - 1) != k].sum(axis=1)
            grades = others[None, :] + (above[None, :, k] > grid[k][:, None])
            scores = qwk_of(grades)
            j = int(np.argmax(scores))  # the first (lowest) candidate among equals
            if scores[j] > best + 1e-12:
                cut[k], best, moved = grid[k][j], float(scores[j]), True
        if not moved:
            break
    return {
        "cutpoints": [float(c) for c in cut],
        "qwk": best if np.isfinite(best) else None,
        "qwk_default": default if np.isfinite(default) else None,
        "n": int(y.size),
        "method": CUTPOINT_METHOD,
    }


def _candidate_grid(above: np.ndarray, candidates) -> list[np.ndarray]:
    """Sorted unique candidate cutpoints per k, 0.5 included."""
    if isinstance(candidates, int | np.integer) and not isinstance(candidates, bool):
        if candidates < 1:
            raise ValueError(f"candidates must be >= 1 quantiles, got {candidates}")
        levels = np.linspace(0.0, 1.0, int(candidates) + 1)
        per_k = [
            np.quantile(above[:, k], levels) if above.shape[0] else np.empty(0)
            for k in range(NUM_GRADES - 1)
        ]
    else:
        per_k = [np.asarray(c, np.float64).ravel() for c in candidates]
        if len(per_k) != NUM_GRADES - 1:
            raise ValueError(f"candidates must give {NUM_GRADES - 1} lists, got {len(per_k)}")
    return [np.unique(np.append(c[np.isfinite(c)], DEFAULT_CUTPOINT)) for c in per_k]


# --- batched cores -----------------------------------------------------------------------------


def _confusions(y: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Confusion counts [C, true, predicted] of grades ``pred [C, n]`` against ``y [n]``."""
    num_cells = NUM_GRADES**2
    cell = y[None, :] * NUM_GRADES + pred + num_cells * np.arange(pred.shape[0])[:, None]
    counts = np.bincount(cell.ravel(), minlength=num_cells * pred.shape[0])
    return counts.reshape(-1, NUM_GRADES, NUM_GRADES).astype(np.float64)


def _kappa(observed: np.ndarray) -> np.ndarray:
    """Quadratic weighted kappa of confusion matrices [B, true, predicted] -> [B] (NaN where
    undefined)."""
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


def qwk_batched(y: np.ndarray, pred: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """QWK per row of the weight matrix ``weights [B, n]`` -> [B] (NaN where undefined)."""
    cell = np.asarray(y, np.int64) * NUM_GRADES + np.asarray(pred, np.int64)
    one_hot = (cell[:, None] == np.arange(NUM_GRADES**2)[None, :]).astype(np.float64)
    observed = (weights @ one_hot).reshape(-1, NUM_GRADES, NUM_GRADES)  # [B, true, predicted]
    return _kappa(observed)


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


def _float_grades(values) -> np.ndarray:
    """Grades as float64 [N]; None becomes NaN (unknown)."""
    flat = np.asarray(values, dtype=object).ravel()
    return np.asarray([np.nan if v is None else float(v) for v in flat], np.float64)


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
        Predicted grade 0-3 per row (`core.severity.severity_grade` of the class probabilities).
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
    from core.schema import GROUPS

    y, pred, group = _known_grades(y_true, grade, groups)
    weights = _bootstrap_weights(y, group, n_boot, seed)
    need = max(int(min_rows), 1)
    cells = {"overall": np.ones(y.size, bool), **{g: group == g for g in GROUPS}}
    return {
        "n": int(y.size),
        "n_boot": int(n_boot),
        "seed": int(seed),
        "ci_level": ci_level,
        "ci_method": CI_METHOD,
        "min_rows": int(min_rows),
        "overall": _severity_cell(y, pred, cells["overall"], weights, need, ci_level),
        "by_group": {g: _severity_cell(y, pred, cells[g], weights, need, ci_level) for g in GROUPS},
    }


def _known_grades(
    y_true: ArrayLike, grade: ArrayLike, groups: Sequence[str | None]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(true grades, predicted grades, group names) of the rows with a known true grade."""
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
    return y, pred, group_all[known]


def _bootstrap_weights(
    y: np.ndarray, group: np.ndarray, n_boot: int, seed: int
) -> np.ndarray | None:
    """Bootstrap weights [n_boot, n] stratified by group x true grade; None without any."""
    if n_boot > 0 and y.size:
        strata = strata_codes(group, y)
        return stratified_bootstrap_weights(strata, n_boot, np.random.default_rng(seed))
    return None


def _severity_cell(
    y: np.ndarray,
    pred: np.ndarray,
    mask: np.ndarray,
    weights: np.ndarray | None,
    need: int,
    ci_level: float,
) -> dict:
    """QWK and MAE estimates of the rows in `mask`; insufficient below `need` rows."""
    n = int(mask.sum())
    out: dict = {"n": n}
    for metric, fn in _BATCHED.items():
        if n < need:
            out[metric] = insufficient(f"{n} rows with a known severity; need at least {need}")
            continue
        point = float(fn(y[mask], pred[mask], np.ones((1, n)))[0])
        replicates = None if weights is None else fn(y[mask], pred[mask], weights[:, mask])
        out[metric] = estimate(point, replicates, ci_level)
    ok = all(out[m]["status"] == "ok" for m in SEVERITY_METRICS)
    out["status"] = "ok" if ok else INSUFFICIENT
    return out
