"""Acne-severity metrics: QWK and MAE by hand, scikit-learn agreement, bootstrap CIs, groups."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score

from fairness.severity import (
    INSUFFICIENT,
    mean_absolute_error,
    quadratic_weighted_kappa,
    severity_grade,
    severity_metrics,
)


def _as_jax(x):
    import jax.numpy as jnp

    return jnp.asarray(np.asarray(x))


CONVERTERS = {"list": lambda x: np.asarray(x).tolist(), "ndarray": np.asarray, "jax": _as_jax}


@pytest.fixture(params=sorted(CONVERTERS))
def convert(request):
    return CONVERTERS[request.param]


def test_qwk_and_mae_by_hand(convert) -> None:
    y, g = convert([0, 1, 2, 3]), convert([0, 1, 3, 3])
    # Observed: one disagreement (2 vs 3), squared distance 1. Expected: rows (1, 1, 1, 1) x
    # columns (1, 1, 0, 2) / 4; summed squared distances per column 14, 6, 6, 14, so the
    # expected disagreement is (14 + 6 + 0 + 2 * 14) / 4 = 12 and QWK = 1 - 1 / 12.
    assert quadratic_weighted_kappa(y, g) == pytest.approx(11 / 12)
    assert mean_absolute_error(y, g) == pytest.approx(1 / 4)
    assert quadratic_weighted_kappa(y, y) == pytest.approx(1.0)
    # Reversed grades: QWK = -1 (the worst ordinal agreement), MAE (3 + 1 + 1 + 3) / 4 = 2.
    assert quadratic_weighted_kappa(y, convert([3, 2, 1, 0])) == pytest.approx(-1.0)
    assert mean_absolute_error(y, convert([3, 2, 1, 0])) == pytest.approx(2.0)


def test_qwk_matches_scikit_learn_with_fixed_labels_and_weights() -> None:
    rng = np.random.default_rng(0)
    for _ in range(5):
        y, g = rng.integers(0, 4, 40), rng.integers(0, 4, 40)
        w = rng.integers(0, 3, 40).astype(float)
        expected = cohen_kappa_score(
            y, g, labels=[0, 1, 2, 3], weights="quadratic", sample_weight=w
        )
        assert quadratic_weighted_kappa(y, g, sample_weight=w) == pytest.approx(expected, abs=1e-12)
    # Grade 2 never occurs: the distance from 1 to 3 stays 2 (scikit-learn's default labels,
    # those present, would make it 1).
    y, g = [0, 1, 3, 3, 0], [0, 3, 3, 1, 1]
    expected = cohen_kappa_score(y, g, labels=[0, 1, 2, 3], weights="quadratic")
    assert quadratic_weighted_kappa(y, g) == pytest.approx(expected)
    assert expected != pytest.approx(cohen_kappa_score(y, g, weights="quadratic"))


def test_undefined_qwk_is_nan_and_bad_grades_raise() -> None:
    assert np.isnan(quadratic_weighted_kappa([2, 2, 2], [2, 2, 2]))  # no expected disagreement
    assert np.isnan(mean_absolute_error([], []))
    with pytest.raises(ValueError, match=r"y_pred must hold grades \[0, 1, 2, 3\], got \[4.0\]"):
        quadratic_weighted_kappa([0, 1], [0, 4])


def test_numpy_grade_rejects_a_wrong_width() -> None:
    with pytest.raises(ValueError, match=r"shape \[\.\.\., 4\]"):
        severity_grade(np.ones((2, 3)) / 3)


def _data(n: int = 240, seed: int = 1):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n).astype(float)
    grade = np.clip(y + rng.choice([-1, 0, 0, 0, 1], n), 0, 3).astype(int)
    groups = np.array(["I-II", "III-IV", "V-VI", None], dtype=object)[rng.integers(0, 4, n)]
    y[rng.random(n) < 0.1] = np.nan  # unknown severity: left out
    return y, grade, list(groups)


def test_severity_metrics_overall_and_by_group_with_cis() -> None:
    y, grade, groups = _data()
    m = severity_metrics(y, grade, groups, n_boot=300, seed=0)
    json.dumps(m, allow_nan=False)  # JSON-ready, no NaN
    known = np.isfinite(y)
    assert m["n"] == m["overall"]["n"] == int(known.sum())
    assert set(m["by_group"]) == {"I-II", "III-IV", "V-VI"}
    assert m["overall"]["qwk"]["value"] == pytest.approx(
        cohen_kappa_score(y[known], grade[known], labels=[0, 1, 2, 3], weights="quadratic")
    )
    for cell in [m["overall"], *m["by_group"].values()]:
        assert cell["status"] == "ok"
        for metric in ("qwk", "mae"):
            est = cell[metric]
            assert est["ci_low"] <= est["value"] <= est["ci_high"], (metric, est)
            assert est["ci_low"] < est["ci_high"]
    g = np.asarray(groups, dtype=object)
    rows = known & (g == "V-VI")
    assert m["by_group"]["V-VI"]["n"] == int(rows.sum())
    assert m["by_group"]["V-VI"]["mae"]["value"] == pytest.approx(
        np.abs(y[rows] - grade[rows]).mean()
    )
    # Same seed, same intervals; another seed moves them.
    assert severity_metrics(y, grade, groups, n_boot=300, seed=0) == m
    other = severity_metrics(y, grade, groups, n_boot=300, seed=1)
    assert other["overall"]["qwk"]["ci_low"] != m["overall"]["qwk"]["ci_low"]


def test_small_or_empty_cells_are_insufficient_evidence() -> None:
    m = severity_metrics([0, 1, 2, 3, -1], [0, 1, 3, 1, 2], ["I-II"] * 5, n_boot=0, min_rows=4)
    assert m["overall"]["n"] == 4 and m["overall"]["mae"]["value"] == pytest.approx(0.75)
    assert m["overall"]["qwk"]["ci_low"] is None  # n_boot=0: point estimates only
    assert m["by_group"]["I-II"]["status"] == "ok"
    v = m["by_group"]["V-VI"]
    assert v["n"] == 0 and v["status"] == INSUFFICIENT and v["qwk"]["value"] is None
    assert "need at least 4" in v["qwk"]["reason"]
    undefined = severity_metrics([2, 2, 2, 2, 2], [2, 2, 2, 2, 2], ["I-II"] * 5, n_boot=10)
    assert undefined["overall"]["qwk"]["status"] == INSUFFICIENT
    assert undefined["overall"]["mae"]["value"] == 0.0
    with pytest.raises(ValueError, match="differ in length"):
        severity_metrics([0, 1], [0], ["I-II", "I-II"])


def test_read_predictions_keeps_the_severity_columns_and_does_not_need_them(tmp_path) -> None:
    from data.schema import PREDICTION_COLUMNS, PREDICTION_OPTIONAL_COLUMNS
    from fairness.io import read_predictions

    header = ",".join([*PREDICTION_COLUMNS, *PREDICTION_OPTIONAL_COLUMNS])
    rows = [
        "a.jpg,5,V-VI,test,1,0,0,0.9,0.1,0.2,labelled,2,2,0.1,0.2,0.4,0.3",
        "b.jpg,,III-IV,test,0,,1,0.2,0.3,0.8,estimated,,0,0.7,0.1,0.1,0.1",
    ]
    path = tmp_path / "predictions_test.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    df = read_predictions(path)
    assert df["tone_source"].tolist() == ["labelled", "estimated"]
    np.testing.assert_array_equal(df["acne_severity"], [2.0, np.nan])
    np.testing.assert_array_equal(df["acne_severity_grade"], [2.0, 0.0])
    np.testing.assert_allclose(df["acne_severity_prob_2"], [0.4, 0.1])
    old = tmp_path / "old.csv"  # a file from before the severity head
    old.write_text("\n".join([",".join(PREDICTION_COLUMNS), rows[0].rsplit(",", 7)[0]]) + "\n")
    assert "acne_severity" not in read_predictions(old).columns
