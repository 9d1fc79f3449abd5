"""Stratified bootstrap: stratum sizes kept, seeded, and 95% intervals cover ~95% of the time."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fairness.bootstrap import percentile_ci, strata_codes, stratified_bootstrap_weights
from fairness.metrics import batched_metrics


def test_weights_keep_each_stratum_size_and_are_seeded():
    strata = strata_codes(["a", "a", "b", "b", "b", "c"], [0, 1, 0, 0, 0, 1])
    w1 = stratified_bootstrap_weights(strata, 50, np.random.default_rng(7))
    w2 = stratified_bootstrap_weights(strata, 50, np.random.default_rng(7))
    np.testing.assert_array_equal(w1, w2)
    for code in np.unique(strata):
        members = strata == code
        np.testing.assert_array_equal(w1[:, members].sum(axis=1), members.sum())
    # Strata of size > 1 are really resampled (not all ones).
    assert np.any(w1[:, strata == strata[2]] != 1)


def test_percentile_ci_ignores_nan_and_handles_all_nan():
    assert percentile_ci(np.array([np.nan, 1.0, 2.0, 3.0]), level=0.5) == pytest.approx((1.5, 2.5))
    low, high = percentile_ci(np.array([np.nan, np.nan]))
    assert math.isnan(low) and math.isnan(high)
    with pytest.raises(ValueError, match="level must be in"):
        percentile_ci(np.arange(3.0), level=1.5)


def _normal_cdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def test_ci_coverage_on_a_known_distribution():
    """Positives' scores ~ N(1, 1), negatives' ~ N(0, 1), fixed class sizes (the stratified design).

    True AUROC = Phi(1 / sqrt(2)); true recall at threshold 0.5 = P(N(1,1) >= 0.5) = Phi(0.5).
    """
    true_auroc = _normal_cdf(1.0 / math.sqrt(2.0))
    true_recall = _normal_cdf(0.5)
    rng = np.random.default_rng(2024)
    n_pos = n_neg = 80
    reps, n_boot = 200, 300
    y = np.r_[np.ones(n_pos), np.zeros(n_neg)]
    strata = y.astype(int)
    covered = {"auroc": 0, "recall": 0}
    for _ in range(reps):
        score = np.r_[rng.normal(1.0, 1.0, n_pos), rng.normal(0.0, 1.0, n_neg)]
        pred = (score >= 0.5).astype(float)
        weights = stratified_bootstrap_weights(strata, n_boot, rng)
        m = batched_metrics(y, score, pred, weights)
        for name, truth in (("auroc", true_auroc), ("recall", true_recall)):
            low, high = percentile_ci(m[name])
            covered[name] += low <= truth <= high
    for name, hits in covered.items():
        assert 0.88 <= hits / reps <= 0.99, f"{name} coverage {hits / reps:.3f}"
