"""The report's acne-severity section: grades, the rule that made them, QWK and MAE with CIs.

When the predictions carry ``acne_severity_prob_0..3`` the grade is recomputed with cutpoints
fitted on the validation rows (`fit_shipped_severity`, `fairness.severity.fit_severity_cutpoints`):
applied to test (`fitted_severity_grades`) or cross-fitted on the folds of the cross-fitted
thresholds (`cross_fitted_severity_grades`). Without them the predictions'
``acne_severity_grade`` (the model's default 0.5 rule) is evaluated. `severity_section` builds
metrics.json's ``severity``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from core.severity import severity_grade
from fairness import crossfit
from fairness.io import PredictionsError
from fairness.severity import (
    fit_severity_cutpoints,
    mean_absolute_error,
    quadratic_weighted_kappa,
    severity_metrics,
)

__all__ = [
    "SEVERITY_PROB_COLUMNS",
    "SEVERITY_RULE_CROSS_FITTED",
    "SEVERITY_RULE_DEFAULT",
    "SEVERITY_RULE_FITTED",
    "cross_fitted_severity_grades",
    "fit_shipped_severity",
    "fitted_severity_grades",
    "severity_probs",
    "severity_section",
]

SEVERITY_PROB_COLUMNS = tuple(f"acne_severity_prob_{k}" for k in range(4))
SEVERITY_RULE_DEFAULT = (
    "default rule: grade = number of k with P(grade > k) > 0.5 (the model's own grade)"
)
SEVERITY_RULE_FITTED = (
    "cutpoints fitted on val (QWK-optimal), applied to test: grade = number of k with "
    "P(grade > k) > cutpoint k"
)
SEVERITY_RULE_CROSS_FITTED = (
    "cutpoints cross-fitted on val (2 folds by {by}; each fold graded with cutpoints fitted on "
    "the other fold): grade = number of k with P(grade > k) > cutpoint k"
)
DEFAULT_RULE = {"name": "default", "description": SEVERITY_RULE_DEFAULT, "cutpoints": None}

if TYPE_CHECKING:
    import pandas as pd


def severity_probs(df):
    """The predictions' ``acne_severity_prob_0..3`` as float64 [N, 4], or None when absent."""
    if not all(c in df.columns for c in SEVERITY_PROB_COLUMNS):
        return None
    return df[list(SEVERITY_PROB_COLUMNS)].to_numpy(dtype=np.float64)


def _severity_labels(df: pd.DataFrame) -> np.ndarray:
    """The ``acne_severity`` labels as float64 [N] (NaN = unknown), after checking them and the
    ``acne_severity_grade`` column hold grades 0-3; a `PredictionsError` names the lines."""
    from core.schema import SEVERITY_GRADES

    label = df["acne_severity"].to_numpy(dtype=np.float64)
    bad = np.isfinite(label) & ~np.isin(label, SEVERITY_GRADES)
    if "acne_severity_grade" in df.columns:
        column = df["acne_severity_grade"].to_numpy(dtype=np.float64)
        bad |= np.isfinite(column) & ~np.isin(column, SEVERITY_GRADES)
    if bad.any():
        rows = ", ".join(str(int(i) + 2) for i in np.flatnonzero(bad)[:5])
        raise PredictionsError(
            f"{df.attrs.get('path', 'predictions')}: columns 'acne_severity'/"
            f"'acne_severity_grade', line(s) {rows}: a grade must be one of "
            f"{list(SEVERITY_GRADES)} or empty"
        )
    return label


def fit_shipped_severity(val_df) -> dict | None:
    """Cutpoints fitted on every validation row with a known severity and probabilities (the
    ``acne_severity`` entry of thresholds.json); None when there is no such row."""
    probs = severity_probs(val_df)
    if probs is None or "acne_severity" not in val_df.columns:
        return None
    label = _severity_labels(val_df)
    if not (np.isfinite(label) & np.isfinite(probs).all(axis=1)).any():
        return None
    return fit_severity_cutpoints(label, probs)


def _graded(probs: np.ndarray, grades: np.ndarray) -> np.ndarray:
    """Grades as float64 [N], NaN where the probabilities are missing."""
    return np.where(np.isfinite(probs).all(axis=1), np.asarray(grades, np.float64), np.nan)


def fitted_severity_grades(test_df, fitted: dict | None) -> tuple:
    """(grades [N] or None, rule) of the test rows with the cutpoints fitted on val.

    None (the predictions' own grade column, the default rule) when either split lacks the
    severity probabilities.
    """
    probs = severity_probs(test_df)
    if fitted is None or probs is None:
        return None, dict(DEFAULT_RULE)
    rule = {
        "name": "cutpoints fitted on val",
        "description": SEVERITY_RULE_FITTED,
        "cutpoints": fitted["cutpoints"],
        "fitted_on_rows": fitted["n"],
    }
    return _graded(probs, severity_grade(probs, fitted["cutpoints"])), rule


def cross_fitted_severity_grades(val_df, fitted: dict | None, folds, by: str) -> tuple:
    """(out-of-fold grades [N] or None, rule): each fold graded with cutpoints fitted on the
    other fold (the folds of the cross-fitted thresholds)."""
    probs = severity_probs(val_df)
    if fitted is None or probs is None:
        return None, dict(DEFAULT_RULE)
    grades, fold_fits = crossfit.cross_fit_severity_grades(_severity_labels(val_df), probs, folds)
    rule = {
        "name": "cross-fitted cutpoints",
        "description": SEVERITY_RULE_CROSS_FITTED.format(by=by),
        "cutpoints": None,
        "cutpoints_per_fold": [f["cutpoints"] for f in fold_fits],
        "fitted_on_rows_per_fold": [f["n"] for f in fold_fits],
    }
    return _graded(probs, grades), rule


def severity_section(
    df,
    groups,
    split: str,
    *,
    n_boot: int,
    seed: int,
    grade=None,
    rule: dict | None = None,
) -> dict | None:
    """QWK and MAE of the acne-severity grade with CIs, and the grade distribution.

    From the predictions' `acne_severity` (label) and the predicted grade
    (`fairness.severity.severity_metrics`): `grade` (float [N], NaN = none; computed with the
    fitted cutpoints, `rule` saying how) or, when None, the `acne_severity_grade` column (the
    model's default rule). None when the label or every grade is missing.
    """
    if "acne_severity" not in df.columns:
        return None
    label = _severity_labels(df)
    probs = severity_probs(df)
    if grade is None:
        grade, rule = _default_grades(df, probs), dict(DEFAULT_RULE)
        if grade is None:
            return None
    grade = np.asarray(grade, dtype=np.float64)
    has_grade = np.isfinite(grade)
    both = has_grade & np.isfinite(label)
    if not both.any():
        return None
    group = np.asarray([g or "" for g in groups], dtype=object)
    rows = np.flatnonzero(has_grade)
    out = {
        "split": split,
        "grade_rule": rule
        or {"name": "given", "description": "grades given by the caller", "cutpoints": None},
        **severity_metrics(
            label[rows], grade[rows].astype(np.int64), list(group[rows]), n_boot, seed
        ),
    }
    if out["grade_rule"]["name"] != "default" and probs is not None:
        # The model's default rule on the same rows, to show what the cutpoints changed.
        out["default_rule"] = _default_rule_numbers(label, probs, both)
    out |= _grade_distributions(label, grade, both, group)
    out["rows_without_grade"] = int((np.isfinite(label) & ~has_grade).sum())
    return out


def _default_grades(df: pd.DataFrame, probs: np.ndarray | None) -> np.ndarray | None:
    """The predictions' own grade column, else the default rule on the probabilities."""
    if "acne_severity_grade" in df.columns:
        return df["acne_severity_grade"].to_numpy(dtype=np.float64)
    if probs is None:
        return None
    return _graded(probs, severity_grade(probs))


def _default_rule_numbers(label: np.ndarray, probs: np.ndarray, both: np.ndarray) -> dict:
    """QWK and MAE of the default 0.5 rule on the rows `both` with a probability."""
    default = _graded(probs, severity_grade(probs))
    same = both & np.isfinite(default)
    qwk = quadratic_weighted_kappa(label[same], default[same]) if same.any() else np.nan
    mae = mean_absolute_error(label[same], default[same]) if same.any() else np.nan
    return {
        "description": SEVERITY_RULE_DEFAULT,
        "n": int(same.sum()),
        "qwk": float(qwk) if np.isfinite(qwk) else None,
        "mae": float(mae) if np.isfinite(mae) else None,
    }


def _grade_counts(values: np.ndarray) -> dict[str, int]:
    """How many of `values` are each severity grade."""
    from core.schema import SEVERITY_GRADES

    return {str(k): int((values == k).sum()) for k in SEVERITY_GRADES}


def _grade_distributions(
    label: np.ndarray, grade: np.ndarray, both: np.ndarray, group: np.ndarray
) -> dict:
    """Label and predicted grade counts of the rows `both`, overall and per group."""
    from core.schema import GROUPS

    return {
        "distribution": {
            "label": _grade_counts(label[both]),
            "predicted": _grade_counts(grade[both]),
        },
        "distribution_by_group": {
            g: {
                "label": _grade_counts(label[both & (group == g)]),
                "predicted": _grade_counts(grade[both & (group == g)]),
            }
            for g in GROUPS
        },
    }
