"""Per-group thresholds: F1-optimal fit, shrinkage, JSON round trip, unknown-group fallback."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import f1_score

from core.thresholds import (
    ThresholdsError,
    apply_thresholds,
    load_severity_cutpoints,
    load_thresholds,
    save_thresholds,
)
from fairness.thresholds import GroupThresholdFitter, f1_optimal_threshold, fit_thresholds


def _validation(seed: int = 0, n: int = 900):
    rng = np.random.default_rng(seed)
    groups = rng.choice(["I-II", "III-IV", "V-VI"], size=n)
    y = (rng.random((n, 3)) < 0.3).astype(float)
    # V-VI scores are shifted down, so its F1-optimal threshold should be lower.
    shift = np.where(groups == "V-VI", -0.25, 0.0)[:, None]
    probs = np.clip(0.25 + 0.45 * y + shift + rng.normal(0, 0.12, y.shape), 0, 1)
    y[rng.random(y.shape) < 0.05] = np.nan
    return y, probs, [str(g) for g in groups]


def test_f1_optimal_threshold_is_the_brute_force_best():
    rng = np.random.default_rng(1)
    y = (rng.random(120) < 0.4).astype(int)
    p = np.round(np.clip(0.3 * y + rng.random(120) * 0.7, 0, 1), 2)  # ties included
    t, best = f1_optimal_threshold(y, p)
    brute = max(f1_score(y, p >= c) for c in np.unique(p))
    assert best == pytest.approx(brute)
    assert f1_score(y, p >= t) == pytest.approx(brute)


def test_shrinkage_rule_and_small_group_fallback():
    y, p, g = _validation()
    th = fit_thresholds(y, p, g, min_positives=5, shrinkage_k=20.0)
    for c, cond in enumerate(th.conditions):
        known = np.isfinite(y[:, c])
        t_global, _ = f1_optimal_threshold(y[known, c], p[known, c])
        assert th.global_threshold(cond) == pytest.approx(t_global)
        for name in th.groups:
            rows = known & (np.asarray(g) == name)
            t_raw, _ = f1_optimal_threshold(y[rows, c], p[rows, c])
            n_pos = int(y[rows, c].sum())
            w = n_pos / (n_pos + 20.0)
            assert th.by_group[cond][name]["positives"] == n_pos
            assert th.by_group[cond][name]["n"] == int(rows.sum())
            assert th.group_threshold(cond, name) == pytest.approx(w * t_raw + (1 - w) * t_global)
    assert th.group_threshold("acne", "V-VI") < th.group_threshold("acne", "III-IV")
    # A group below min_positives gets exactly the global threshold.
    strict = fit_thresholds(y, p, g, min_positives=10_000)
    for cond in strict.conditions:
        for name in strict.groups:
            assert strict.group_threshold(cond, name) == strict.global_threshold(cond)
            assert strict.by_group[cond][name]["raw_threshold"] is None


def test_round_trip_and_unknown_group_falls_back_to_global(tmp_path):
    y, p, g = _validation(2)
    th = fit_thresholds(y, p, g)
    path = save_thresholds(th, tmp_path / "sub" / "thresholds.json")
    loaded = load_thresholds(path)
    assert loaded.to_dict() == json.loads(path.read_text())
    groups = ["V-VI", None, "unknown", "", "III-IV"]
    probs = np.full((5, 3), 0.4)
    d1, used1 = apply_thresholds(probs, groups, th)
    d2, used2 = apply_thresholds(probs, groups, loaded)
    np.testing.assert_array_equal(d1, d2)
    np.testing.assert_allclose(used1, used2)
    for c, cond in enumerate(th.conditions):
        assert used1[0, c] == pytest.approx(th.group_threshold(cond, "V-VI"))
        for row in (1, 2, 3):
            assert used1[row, c] == pytest.approx(th.global_threshold(cond))
    np.testing.assert_array_equal(d1, probs >= used1)


def test_fitter_is_sklearn_style():
    fitter = GroupThresholdFitter(min_positives=3, shrinkage_k=5.0)
    assert fitter.min_positives == 3 and fitter.shrinkage_k == 5.0
    assert not hasattr(fitter, "thresholds_")
    y, p, g = _validation(3)
    fitter.fit(y, p, g)
    assert set(fitter.global_thresholds_) == {"acne", "hyperpigmentation", "wrinkles"}
    expected, _ = apply_thresholds(p, g, fitter.thresholds_)
    np.testing.assert_array_equal(fitter.predict(p, g), expected)
    with pytest.raises(ValueError, match="min_positives must be an integer >= 1"):
        GroupThresholdFitter(min_positives=0).fit(y, p, g)


def test_apply_rejects_bad_probabilities():
    th = fit_thresholds(*_validation(4))
    with pytest.raises(ValueError, match=r"probs\[1, 2\] = nan"):
        apply_thresholds([[0.1, 0.2, 0.3], [0.1, 0.2, float("nan")]], ["I-II", "V-VI"], th)
    with pytest.raises(ValueError, match=r"shape \[N, 3\]"):
        apply_thresholds([[0.1, 0.2]], ["I-II"], th)


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d.pop("conditions"), "'conditions': missing"),
        (
            lambda d: d["thresholds"]["acne"]["global"].update(threshold=1.7),
            "'thresholds.acne.global.threshold'",
        ),
        (
            lambda d: d["thresholds"]["wrinkles"]["groups"].pop("V-VI"),
            "'thresholds.wrinkles.groups.V-VI': missing",
        ),
        (
            lambda d: d["thresholds"]["acne"]["groups"]["I-II"].update(positives=-1),
            "'thresholds.acne.groups.I-II.positives'",
        ),
    ],
)
def test_malformed_file_names_file_and_field(tmp_path, mutate, field):
    doc = fit_thresholds(*_validation(5)).to_dict()
    mutate(doc)
    path = tmp_path / "thresholds.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ThresholdsError) as info:
        load_thresholds(path)
    assert str(path) in str(info.value) and field in str(info.value)


def test_not_json_and_missing_file(tmp_path):
    bad = tmp_path / "thresholds.json"
    bad.write_text("{not json")
    with pytest.raises(ThresholdsError, match="not valid JSON"):
        load_thresholds(bad)
    with pytest.raises(ThresholdsError, match="file not found"):
        load_thresholds(tmp_path / "missing.json")


def test_serving_side_pulls_in_numpy_only():
    """Triton's skin_analysis model loads and applies thresholds where only numpy is
    installed: `core.thresholds`, `core.severity` and the serving steps import no scikit-learn."""
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import sys, core.thresholds, core.severity, client.steps; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'sklearn', 'scipy', 'pandas', 'jax', 'matplotlib', 'fairlearn'}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parents[2],
    )
    assert out.stdout.strip() == "[]"


def test_shrinkage_keeps_a_group_threshold_equal_to_the_global_one_exact():
    # raw == global == 0.9: w * 0.9 + (1 - w) * 0.9 is 0.9000000000000001 for w = 10 / 30,
    # which would decide the positives scored exactly 0.9 as negative.
    y = np.array([[0.0]] * 10 + [[1.0]] * 10)
    p = np.where(y > 0, 0.9, 0.1)
    th = fit_thresholds(y, p, ["V-VI"] * 20, conditions=["acne"], group_names=["V-VI"])
    assert th.by_group["acne"]["V-VI"]["weight"] == pytest.approx(1 / 3)
    assert th.group_threshold("acne", "V-VI") == 0.9
    assert apply_thresholds(p, ["V-VI"] * 20, th)[0][:, 0].tolist() == [False] * 10 + [True] * 10


SEVERITY_FIT = {
    "cutpoints": [0.23, 0.06, 0.5],
    "qwk": 0.61,
    "qwk_default": 0.0,
    "n": 125,
    "method": "QWK-optimal on validation (coordinate ascent)",
}


def test_severity_cutpoints_round_trip_and_files_without_them(tmp_path):
    import dataclasses

    th = fit_thresholds(*_validation(6))
    assert th.severity_cutpoints is None and "acne_severity" not in th.to_dict()
    old = save_thresholds(th, tmp_path / "old" / "thresholds.json")
    assert load_thresholds(old).severity_cutpoints is None  # a file from before the key
    assert load_severity_cutpoints(old) is None

    with_cuts = dataclasses.replace(th, acne_severity=SEVERITY_FIT)
    path = save_thresholds(with_cuts, tmp_path / "new" / "thresholds.json")
    doc = json.loads(path.read_text())
    assert doc["acne_severity"] == SEVERITY_FIT  # a new top-level key: the fit dict
    loaded = load_thresholds(path)
    assert loaded.severity_cutpoints == (0.23, 0.06, 0.5)
    assert load_severity_cutpoints(path) == (0.23, 0.06, 0.5)
    assert loaded.to_dict() == doc
    # the condition thresholds are untouched by the key
    for cond in th.conditions:
        assert loaded.global_threshold(cond) == th.global_threshold(cond)


@pytest.mark.parametrize(
    "entry", [[0.2, 0.1, 0.5], {"cutpoints": [0.2, 0.1]}, {"cutpoints": [0.2, 1.5, 0.5]}, {}]
)
def test_malformed_severity_cutpoints_name_the_field(tmp_path, entry):
    doc = fit_thresholds(*_validation(5)).to_dict()
    doc["acne_severity"] = entry
    path = tmp_path / "thresholds.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ThresholdsError, match="acne_severity") as info:
        load_thresholds(path)
    assert str(path) in str(info.value)
