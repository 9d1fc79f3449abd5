"""Stratified bootstrap: resampling weights and percentile confidence intervals.

A bootstrap replicate is a vector of multinomial counts over the rows (how often each row
was drawn), so every metric in `fairness.metrics` takes it as a sample weight. Drawing
happens separately inside each stratum (skin-tone type x label pattern), which keeps the
number of positives and negatives of every group fixed, as they are in the study design.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "INSUFFICIENT",
    "estimate",
    "insufficient",
    "percentile_ci",
    "stratified_bootstrap_weights",
    "strata_codes",
]

INSUFFICIENT = "insufficient evidence"  # status of a cell that reports no number


def strata_codes(*keys: Sequence | np.ndarray) -> np.ndarray:
    """Integer stratum code per row from one or more key columns (equal rows, equal code).

    >>> strata_codes(["a", "b", "a"], [1, 1, 1]).tolist()
    [0, 1, 0]
    """
    if not keys:
        raise ValueError("strata_codes needs at least one key column")
    columns = [np.asarray([str(k) for k in key]) for key in keys]
    n = len(columns[0])
    if any(len(c) != n for c in columns):
        raise ValueError(f"key columns differ in length: {[len(c) for c in columns]}")
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    joined = np.asarray(["\x1f".join(parts) for parts in zip(*columns, strict=True)])
    _, codes = np.unique(joined, return_inverse=True)
    return codes.astype(np.int64).ravel()


def stratified_bootstrap_weights(
    strata: np.ndarray, n_boot: int, rng: np.random.Generator
) -> np.ndarray:
    """Draw `n_boot` stratified bootstrap replicates as count weights, shape [n_boot, N].

    Within each stratum of size m, m rows are drawn with replacement; row weights are the
    draw counts, so each row of the result sums to N and each stratum keeps its size.

    Parameters
    ----------
    strata : array of int, shape [N]
        Stratum code per row (see `strata_codes`).
    n_boot : int
        Number of replicates.
    rng : numpy.random.Generator
        Source of randomness (seed it for reproducible intervals).

    Returns
    -------
    numpy.ndarray of float64, shape [n_boot, N]

    >>> w = stratified_bootstrap_weights(np.array([0, 0, 1]), 4, np.random.default_rng(0))
    >>> w.shape, w[:, :2].sum(axis=1).tolist(), w[:, 2].tolist()
    ((4, 3), [2.0, 2.0, 2.0, 2.0], [1.0, 1.0, 1.0, 1.0])
    """
    strata = np.asarray(strata)
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    weights = np.zeros((n_boot, strata.shape[0]), dtype=np.float64)
    for code in np.unique(strata):
        idx = np.flatnonzero(strata == code)
        m = idx.size
        weights[:, idx] = rng.multinomial(m, np.full(m, 1.0 / m), size=n_boot)
    return weights


def percentile_ci(replicates: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of bootstrap replicates; NaN replicates are ignored.

    Returns (nan, nan) when every replicate is NaN.

    >>> percentile_ci(np.arange(5.0), level=0.5)
    (1.0, 3.0)
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    values = np.asarray(replicates, dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
    if values.size == 0:
        return float("nan"), float("nan")
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(values, [alpha, 1.0 - alpha])
    return float(low), float(high)


def insufficient(reason: str, status: str = INSUFFICIENT) -> dict:
    """A metric cell without a number: ``{"value": None, ..., "status", "reason"}``."""
    return {"value": None, "ci_low": None, "ci_high": None, "status": status, "reason": reason}


def estimate(point: float, replicates: np.ndarray | None, level: float) -> dict:
    """A metric cell: the point value and the percentile interval of its replicates.

    >>> estimate(0.5, np.array([0.4, 0.5, 0.6]), 0.5)["status"]
    'ok'
    >>> estimate(float("nan"), None, 0.95)["status"]
    'insufficient evidence'
    """
    if not np.isfinite(point):
        return insufficient("metric undefined on this data")
    low, high = percentile_ci(replicates, level) if replicates is not None else (np.nan, np.nan)
    return {
        "value": float(point),
        "ci_low": float(low) if np.isfinite(low) else None,
        "ci_high": float(high) if np.isfinite(high) else None,
        "status": "ok",
    }
