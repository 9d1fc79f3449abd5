"""fairness.crossfit: folds keep subjects whole, and no fold is decided by its own rows."""

from __future__ import annotations

import numpy as np
import pytest

from core.thresholds import Thresholds, apply_thresholds
from fairness import crossfit
from fairness.thresholds import fit_thresholds


def test_subject_keys_fall_back_to_the_image():
    keys = crossfit.subject_keys(["a.jpg", "b.jpg", "c.jpg"], ["s1", " ", "s1"])
    assert keys == ["subject:s1", "image:b.jpg", "subject:s1"]
    assert crossfit.subject_keys(["a.jpg"]) == ["image:a.jpg"]
    with pytest.raises(ValueError, match="2 subjects for 1 images"):
        crossfit.subject_keys(["a.jpg"], ["s1", "s2"])


def test_folds_keep_subjects_whole_balanced_and_seeded():
    keys = [f"s{i // 3}" for i in range(300)]  # 100 subjects, 3 rows each
    folds = crossfit.subject_folds(keys, 2, seed=0)
    for subject in set(keys):
        assert len({int(f) for f, k in zip(folds, keys, strict=True) if k == subject}) == 1
    assert np.bincount(folds).tolist() == [150, 150]
    assert np.array_equal(folds, crossfit.subject_folds(keys, 2, seed=0))
    assert not np.array_equal(folds, crossfit.subject_folds(keys, 2, seed=1))


def test_folds_deal_each_stratum_to_both_folds():
    keys = [f"r{i}" for i in range(40)]
    strata = ["V-VI|1"] * 4 + ["other"] * 36  # 4 rare rows: 2 must land in each fold
    folds = crossfit.subject_folds(keys, 2, seed=3, strata=strata)
    assert np.bincount(folds[:4], minlength=2).tolist() == [2, 2]


def test_folds_need_two_subjects():
    with pytest.raises(ValueError, match="at least 2 subjects, got 1"):
        crossfit.subject_folds(["a", "a"], 2)
    with pytest.raises(ValueError, match="num_folds must be an integer >= 2"):
        crossfit.subject_folds(["a", "b"], 1)


def _threshold_everywhere(value: float) -> Thresholds:
    entry = {"threshold": value, "n": 1, "positives": 1}
    return Thresholds(("acne",), ("V-VI",), {"acne": entry}, {"acne": {"V-VI": dict(entry)}})


def test_cross_fit_never_uses_a_folds_own_rows():
    n = 20
    probs = np.linspace(0.01, 0.99, n)[:, None]  # distinct: a probability names its row
    y = (np.arange(n) % 2).astype(float)[:, None]
    folds = crossfit.subject_folds([f"s{i // 2}" for i in range(n)], 2, seed=0)
    seen: list[set[float]] = []

    def fit_fn(y_fit, p_fit, g_fit):
        seen.append(set(p_fit[:, 0].tolist()))
        # fold 0's model decides everything positive, fold 1's nothing: shows who decided what
        return _threshold_everywhere(0.0 if len(seen) == 1 else 1.0)

    def apply_fn(th, p, g):
        return apply_thresholds(p, g, th)[0]

    decisions, fitted = crossfit.cross_fit(y, probs, ["V-VI"] * n, folds, fit_fn, apply_fn)
    assert len(seen) == 2 and len(fitted) == 2
    fold0 = set(probs[folds == 0, 0].tolist())
    fold1 = set(probs[folds == 1, 0].tolist())
    assert seen[0] == fold1 and seen[1] == fold0  # each fit saw only the other fold
    assert decisions[folds == 0, 0].all() and not decisions[folds == 1, 0].any()


def test_cross_fit_decisions_equal_thresholds_fitted_on_the_other_fold():
    rng = np.random.default_rng(0)
    n = 200
    y = (rng.random((n, 3)) < 0.4).astype(float)
    probs = np.clip(y * 0.3 + rng.random((n, 3)) * 0.7, 0, 1)
    groups = [("I-II", "III-IV", "V-VI")[i % 3] for i in range(n)]
    folds = crossfit.subject_folds([str(i) for i in range(n)], 2, seed=4)
    decisions, fitted = crossfit.cross_fit_decisions(y, probs, groups, folds, min_positives=5)
    for fold in (0, 1):
        other = np.flatnonzero(folds != fold)
        rows = np.flatnonzero(folds == fold)
        th = fit_thresholds(y[other], probs[other], [groups[i] for i in other], min_positives=5)
        expected = apply_thresholds(probs[rows], [groups[i] for i in rows], th)[0]
        assert np.array_equal(decisions[rows], expected)
        assert fitted[fold].global_threshold("acne") == th.global_threshold("acne")
    in_sample = apply_thresholds(probs, groups, fit_thresholds(y, probs, groups))[0]
    assert not np.array_equal(decisions, in_sample)  # cross-fitting changes the decisions


def test_cross_fit_severity_grades_never_fit_on_a_folds_own_rows(monkeypatch):
    from core.severity import severity_grade
    from fairness.severity import fit_severity_cutpoints

    rng = np.random.default_rng(1)
    n = 60
    y = np.array([i % 3 for i in range(n)], dtype=float)
    above0 = np.linspace(0.01, 0.45, n)  # distinct: P(grade > 0) names its row
    probs = np.stack([1 - above0, above0 * 0.6, above0 * 0.3, above0 * 0.1], axis=1)
    y[rng.random(n) < 0.1] = np.nan
    folds = crossfit.subject_folds([f"s{i // 2}" for i in range(n)], 2, seed=0)
    seen: list[set[float]] = []

    def spy(y_fit, p_fit, **options):
        seen.append(set(np.round(1 - p_fit[:, 0], 9).tolist()))
        return fit_severity_cutpoints(y_fit, p_fit, **options)

    monkeypatch.setattr(crossfit, "fit_severity_cutpoints", spy)
    grades, fits = crossfit.cross_fit_severity_grades(y, probs, folds)
    assert grades.shape == (n,) and len(fits) == len(seen) == 2
    for fold, fitted_on in zip((0, 1), seen, strict=True):
        own = set(np.round(above0[folds == fold], 9).tolist())
        assert fitted_on and not fitted_on & own  # never its own rows
        rows = folds == fold
        other = ~rows
        expected = fit_severity_cutpoints(y[other], probs[other])
        assert fits[fold] == expected
        np.testing.assert_array_equal(
            grades[rows], severity_grade(probs[rows], expected["cutpoints"])
        )
