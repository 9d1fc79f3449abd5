"""Calibration per group: ECE, Brier score, reliability curves, per-group temperature scaling.

ECE uses equal-width bins on [0, 1]: bin k holds probabilities in [k/B, (k+1)/B) (the last
bin also holds 1.0), and ECE = sum_k (n_k / n) |mean(y)_k - mean(p)_k| over non-empty bins.
Temperature scaling divides the logit by T (T > 1 softens overconfident probabilities); it
is fitted by minimising the validation log-loss over log T in [-3, 3].
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "apply_group_temperatures",
    "apply_temperature",
    "brier_score",
    "calibration_by_group",
    "expected_calibration_error",
    "fit_group_temperatures",
    "fit_temperature",
    "reliability_curve",
]

DEFAULT_BINS = 10
_EPS = 1e-7


def _prepare(y_true, y_prob, sample_weight):
    y = np.asarray(y_true, dtype=np.float64).ravel()
    p = np.asarray(y_prob, dtype=np.float64).ravel()
    if y.shape != p.shape:
        raise ValueError(f"y_true has {y.size} values but y_prob has {p.size}")
    if not np.all(np.isin(y, (0.0, 1.0))):
        raise ValueError("y_true must be 0/1")
    if not np.all(np.isfinite(p) & (p >= 0) & (p <= 1)):
        raise ValueError("y_prob must be probabilities in [0, 1]")
    w = np.ones_like(y) if sample_weight is None else np.asarray(sample_weight, float).ravel()
    if w.shape != y.shape:
        raise ValueError(f"sample_weight has {w.size} values, expected {y.size}")
    return y, p, w


def _bin_index(p: np.ndarray, n_bins: int) -> np.ndarray:
    return np.clip(np.floor(p * n_bins).astype(np.int64), 0, n_bins - 1)


def reliability_curve(y_true, y_prob, *, n_bins: int = DEFAULT_BINS, sample_weight=None) -> dict:
    """Per equal-width bin: edges, count, mean predicted probability and observed frequency.

    Empty bins have count 0 and None for the two means.

    >>> r = reliability_curve([0, 1, 1, 1], [0.1, 0.2, 0.8, 0.9], n_bins=2)
    >>> r["count"], r["mean_predicted"], r["fraction_positive"]
    ([2.0, 2.0], [0.15, 0.85], [0.5, 1.0])
    """
    y, p, w = _prepare(y_true, y_prob, sample_weight)
    idx = _bin_index(p, n_bins)
    count = np.bincount(idx, weights=w, minlength=n_bins)
    sum_p = np.bincount(idx, weights=w * p, minlength=n_bins)
    sum_y = np.bincount(idx, weights=w * y, minlength=n_bins)
    mean_p = [round(float(s / c), 12) if c > 0 else None for s, c in zip(sum_p, count, strict=True)]
    frac = [round(float(s / c), 12) if c > 0 else None for s, c in zip(sum_y, count, strict=True)]
    return {
        "bin_edges": np.linspace(0.0, 1.0, n_bins + 1).tolist(),
        "count": count.tolist(),
        "mean_predicted": mean_p,
        "fraction_positive": frac,
    }


def expected_calibration_error(
    y_true, y_prob, *, n_bins: int = DEFAULT_BINS, sample_weight=None
) -> float:
    """ECE over equal-width bins: sum_k (n_k/n) |observed_k - predicted_k|; NaN if empty.

    Parameters
    ----------
    y_true : array-like of 0/1, shape [n]
    y_prob : array-like of float in [0, 1], shape [n]
    n_bins : int
    sample_weight : array-like, optional

    Returns
    -------
    float

    >>> round(expected_calibration_error([0, 1, 1, 1], [0.1, 0.2, 0.8, 0.9], n_bins=2), 4)
    0.25
    """
    y, p, w = _prepare(y_true, y_prob, sample_weight)
    if w.sum() <= 0:
        return float("nan")
    idx = _bin_index(p, n_bins)
    count = np.bincount(idx, weights=w, minlength=n_bins)
    gap = np.abs(np.bincount(idx, weights=w * (y - p), minlength=n_bins))
    return float(gap.sum() / count.sum())


def brier_score(y_true, y_prob, *, sample_weight=None) -> float:
    """Mean squared error of the probabilities; NaN if empty.

    Parameters
    ----------
    y_true : array-like of 0/1, shape [n]
    y_prob : array-like of float in [0, 1], shape [n]
    sample_weight : array-like, optional

    Returns
    -------
    float

    >>> brier_score([0, 1], [0.5, 1.0])
    0.125
    """
    y, p, w = _prepare(y_true, y_prob, sample_weight)
    return float(np.sum(w * (p - y) ** 2) / w.sum()) if w.sum() > 0 else float("nan")


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, _EPS, 1 - _EPS)
    return np.log(p) - np.log1p(-p)


def apply_temperature(probs, temperature: float) -> np.ndarray:
    """sigmoid(logit(p) / T).

    >>> apply_temperature([0.5, 0.8807970779778823], 2.0).round(4).tolist()
    [0.5, 0.7311]
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    z = _logit(np.asarray(probs, dtype=np.float64)) / temperature
    return 1.0 / (1.0 + np.exp(-z))


def fit_temperature(y_true, y_prob) -> float:
    """Temperature minimising the log-loss of sigmoid(logit(p)/T) (bounded, log T in [-3, 3])."""
    from scipy.optimize import minimize_scalar

    y, p, _ = _prepare(y_true, y_prob, None)
    z = _logit(p)

    def nll(log_t: float) -> float:
        q = np.clip(1.0 / (1.0 + np.exp(-z / np.exp(log_t))), _EPS, 1 - _EPS)
        return float(-np.mean(y * np.log(q) + (1 - y) * np.log1p(-q)))

    res = minimize_scalar(nll, bounds=(-3.0, 3.0), method="bounded")
    return float(np.exp(res.x))


def fit_group_temperatures(
    y_true, probs, groups: Sequence[str | None], *, min_count: int = 50
) -> dict[str, dict[str, float]]:
    """Per condition, a global temperature and one per group with >= `min_count` known labels.

    Returns ``{cond: {"global": T, "<group>": T, ...}}``; a smaller group is left out and
    falls back to the global temperature in `apply_group_temperatures`.
    """
    from core.schema import CONDITIONS, GROUPS

    y = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(probs, dtype=np.float64)
    g = np.asarray([x or "" for x in groups], dtype=object)
    out: dict[str, dict[str, float]] = {}
    for c, cond in enumerate(CONDITIONS):
        known = np.isfinite(y[:, c])
        out[cond] = {"global": fit_temperature(y[known, c], p[known, c]) if known.any() else 1.0}
        for name in GROUPS:
            rows = known & (g == name)
            if rows.sum() >= min_count and 0 < y[rows, c].sum() < rows.sum():
                out[cond][name] = fit_temperature(y[rows, c], p[rows, c])
    return out


def apply_group_temperatures(probs, groups: Sequence[str | None], temperatures: dict) -> np.ndarray:
    """Rescale probabilities [N, C] with each row's group temperature (global if absent)."""
    from core.schema import CONDITIONS

    p = np.asarray(probs, dtype=np.float64).copy()
    g = [x or "" for x in groups]
    for c, cond in enumerate(CONDITIONS):
        table = temperatures[cond]
        t = np.asarray([table.get(x, table["global"]) for x in g], dtype=np.float64)
        p[:, c] = 1.0 / (1.0 + np.exp(-_logit(p[:, c]) / t))
    return p


def calibration_by_group(
    y_true,
    probs,
    groups: Sequence[str | None],
    *,
    n_bins: int = DEFAULT_BINS,
    min_count: int = 20,
) -> dict:
    """ECE, Brier and reliability curve per condition for the overall set and each group.

    A subset with fewer than `min_count` known labels reports "insufficient evidence".
    """
    from core.schema import CONDITIONS, GROUPS
    from fairness.evaluate import INSUFFICIENT

    y = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(probs, dtype=np.float64)
    g = np.asarray([x or "" for x in groups], dtype=object)
    out: dict = {
        "n_bins": n_bins,
        "binning": "equal-width on [0, 1]",
        "min_count": min_count,
        "conditions": {},
    }
    for c, cond in enumerate(CONDITIONS):
        known = np.isfinite(y[:, c])
        entry = {}
        for name, mask in [("overall", known), *[(x, known & (g == x)) for x in GROUPS]]:
            n = int(mask.sum())
            if n < min_count:
                entry[name] = {
                    "n": n,
                    "status": INSUFFICIENT,
                    "reason": f"{n} labelled images < {min_count}",
                    "ece": None,
                    "brier": None,
                    "reliability": None,
                }
                continue
            yc, pc = y[mask, c], p[mask, c]
            entry[name] = {
                "n": n,
                "status": "ok",
                "ece": expected_calibration_error(yc, pc, n_bins=n_bins),
                "brier": brier_score(yc, pc),
                "reliability": reliability_curve(yc, pc, n_bins=n_bins),
            }
        out["conditions"][cond] = entry
    return out
