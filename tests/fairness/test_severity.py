"""Acne-severity metrics: QWK and MAE by hand, scikit-learn agreement, bootstrap CIs, groups."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score

from core.severity import exceedance_probs, severity_grade
from fairness.severity import (
    INSUFFICIENT,
    fit_severity_cutpoints,
    mean_absolute_error,
    quadratic_weighted_kappa,
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
    from core.schema import PREDICTION_COLUMNS, PREDICTION_OPTIONAL_COLUMNS
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


# --- cutpoints ---------------------------------------------------------------------------------


def _old_median_grade(probs) -> np.ndarray:
    """The grade rule before cutpoints existed: P(grade > k) > 0.5 in float32."""
    p = np.asarray(probs, dtype=np.float32)
    above = np.float32(1.0) - np.cumsum(p, axis=-1, dtype=np.float32)[..., :-1]
    return (above > 0.5).sum(axis=-1).astype(np.int64)


def test_default_cutpoints_reproduce_the_median_grade(convert) -> None:
    probs = np.random.default_rng(0).dirichlet(np.ones(4), size=500).astype(np.float32)
    expected = _old_median_grade(probs)
    assert len(set(expected.tolist())) == 4  # every grade occurs: a real check
    np.testing.assert_array_equal(severity_grade(convert(probs)), expected)
    np.testing.assert_array_equal(severity_grade(convert(probs), [0.5, 0.5, 0.5]), expected)


def test_cutpoints_count_the_exceedances_above_each_cutpoint() -> None:
    # P(grade > k) of the row: 0.9, 0.6, 0.2 (exactly, in float32 arithmetic up to an ulp)
    row = [0.1, 0.3, 0.4, 0.2]
    assert severity_grade(row).tolist() == 2
    assert severity_grade(row, [0.95, 0.95, 0.95]).tolist() == 0
    assert severity_grade(row, [0.8, 0.7, 0.1]).tolist() == 2  # k = 0 and k = 2 count
    assert severity_grade(row, [0.0, 0.0, 0.0]).tolist() == 3
    with pytest.raises(ValueError, match="cutpoints must be 3 finite numbers"):
        severity_grade(row, [0.5, 0.5])


def _planted_cutpoint_data():
    """Grade 0: P(grade > 0) in [0.05, 0.2]; grade 1: [0.3, 0.4]; grade 2: P(grade > 0) in
    [0.42, 0.48] and P(grade > 1) in [0.25, 0.3] (others <= 0.12); no grade 3. Every
    P(grade > 0) < 0.5, so the median rule grades everything 0."""
    rng = np.random.default_rng(7)
    n0, n1, n2 = 90, 25, 10
    y = np.array([0] * n0 + [1] * n1 + [2] * n2, dtype=float)
    a0 = np.concatenate(
        [rng.uniform(0.05, 0.2, n0), rng.uniform(0.3, 0.4, n1), rng.uniform(0.42, 0.48, n2)]
    )
    a1 = np.where(y == 2, rng.uniform(0.25, 0.3, y.size), rng.uniform(0.0, 0.12, y.size) * a0)
    a1 = np.minimum(a1, a0)
    a2 = a1 * 0.1
    probs = np.stack([1 - a0, a0 - a1, a1 - a2, a2], axis=1)
    return y, probs


def test_fit_finds_the_planted_cutpoints() -> None:
    y, probs = _planted_cutpoint_data()
    assert (severity_grade(probs) == 0).all()
    fit = fit_severity_cutpoints(y, probs)
    assert fit["method"] == "QWK-optimal on validation (coordinate ascent)"
    assert fit["n"] == y.size
    assert fit["qwk"] == pytest.approx(1.0) and fit["qwk_default"] == pytest.approx(0.0)
    c0, c1, c2 = fit["cutpoints"]
    above = exceedance_probs(probs)
    assert above[y == 0, 0].max() <= c0 < above[y == 1, 0].min()  # splits grade 0 from 1
    assert above[y < 2, 1].max() <= c1 < above[y == 2, 1].min()  # splits grade 1 from 2
    assert c2 == 0.5  # no grade 3 in the data: the last cutpoint keeps its default
    grade = severity_grade(probs, fit["cutpoints"])
    np.testing.assert_array_equal(grade, y.astype(int))
    assert quadratic_weighted_kappa(y, grade) == pytest.approx(fit["qwk"])
    assert fit_severity_cutpoints(y, probs) == fit  # deterministic
    json.dumps(fit, allow_nan=False)


def test_fit_ignores_unknown_rows_and_takes_explicit_candidates() -> None:
    y, probs = _planted_cutpoint_data()
    noisy_y = np.concatenate([y, [np.nan, -1, 3]])
    noisy_p = np.concatenate([probs, [[0.0, 0.0, 0.0, 1.0]] * 2, [[np.nan] * 4]])
    fit = fit_severity_cutpoints(list(noisy_y), noisy_p)
    assert fit == fit_severity_cutpoints(y, probs)  # unknown grade or no probabilities: left out
    # Only the given candidates (and 0.5) are tried.
    fit = fit_severity_cutpoints(y, probs, candidates=[[0.25, 0.45], [0.2], [0.9]])
    assert fit["cutpoints"] == [0.25, 0.2, 0.5]
    with pytest.raises(ValueError, match="must give 3 lists"):
        fit_severity_cutpoints(y, probs, candidates=[[0.2]])


def test_fit_without_known_rows_keeps_the_default() -> None:
    fit = fit_severity_cutpoints([np.nan, None], [[0.7, 0.1, 0.1, 0.1]] * 2)
    assert fit["cutpoints"] == [0.5, 0.5, 0.5] and fit["n"] == 0 and fit["qwk"] is None
    only_zero = fit_severity_cutpoints([0, 0, 0], [[0.7, 0.1, 0.1, 0.1]] * 3)
    assert only_zero["cutpoints"] == [0.5, 0.5, 0.5] and only_zero["n"] == 3
    with pytest.raises(ValueError, match="expected \\[2, 4\\]"):
        fit_severity_cutpoints([0, 1], [[0.7, 0.1, 0.1, 0.1]] * 3)
