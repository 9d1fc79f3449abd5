"""Calibration: ECE by hand, Brier and reliability vs scikit-learn, temperature recovery."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.calibration import calibration_curve
from sklearn.metrics import brier_score_loss

from fairness.calibration import (
    apply_temperature,
    brier_score,
    calibration_by_group,
    expected_calibration_error,
    fit_temperature,
    reliability_curve,
)


def test_ece_hand_computed():
    # bins of width 0.5: [0.1, 0.2] with y [0, 1] -> |0.5 - 0.15| * 2/4; [0.8, 0.9] with y [1, 1]
    # -> |1 - 0.85| * 2/4; total 0.175 + 0.075
    assert expected_calibration_error(
        [0, 1, 1, 1], [0.1, 0.2, 0.8, 0.9], n_bins=2
    ) == pytest.approx(0.25)
    assert expected_calibration_error([1, 0], [1.0, 0.0], n_bins=10) == 0.0


def test_brier_and_reliability_match_sklearn():
    rng = np.random.default_rng(0)
    p = rng.random(500)
    y = (rng.random(500) < p**1.5).astype(int)
    assert brier_score(y, p) == pytest.approx(brier_score_loss(y, p))
    curve = reliability_curve(y, p, n_bins=8)
    frac, mean = calibration_curve(y, p, n_bins=8, strategy="uniform")
    ours_frac = [v for v in curve["fraction_positive"] if v is not None]
    ours_mean = [v for v in curve["mean_predicted"] if v is not None]
    np.testing.assert_allclose(ours_frac, frac)
    np.testing.assert_allclose(ours_mean, mean)


def test_temperature_recovers_a_known_temperature():
    rng = np.random.default_rng(1)
    true_p = rng.uniform(0.02, 0.98, 20000)
    y = (rng.random(true_p.size) < true_p).astype(int)
    overconfident = apply_temperature(true_p, 1 / 2.0)  # logits doubled
    t = fit_temperature(y, overconfident)
    assert t == pytest.approx(2.0, rel=0.08)
    assert expected_calibration_error(
        y, apply_temperature(overconfident, t)
    ) < expected_calibration_error(y, overconfident)


def test_calibration_by_group_guards_small_groups():
    rng = np.random.default_rng(2)
    n = 300
    y = (rng.random((n, 3)) < 0.4).astype(float)
    p = rng.random((n, 3))
    groups = ["V-VI"] * 10 + ["III-IV"] * (n - 10)
    out = calibration_by_group(y, p, groups, min_count=20)
    assert out["conditions"]["acne"]["V-VI"]["status"] == "insufficient evidence"
    assert out["conditions"]["acne"]["V-VI"]["ece"] is None
    rows = np.asarray(groups) == "III-IV"
    assert out["conditions"]["acne"]["III-IV"]["ece"] == pytest.approx(
        expected_calibration_error(y[rows, 0], p[rows, 0])
    )
