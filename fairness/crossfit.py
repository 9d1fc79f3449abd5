"""Cross-fitted thresholds: evaluate on a validation split when there is no test split.

Fitting thresholds on the validation rows and scoring those same rows flatters every
threshold-dependent metric. Cross-fitting avoids that: the rows are split into K folds by
subject (`subject_folds`; one subject's rows stay in one fold), and each fold is decided with
thresholds fitted on the other folds only (`cross_fit`). F1, precision, recall etc. are then
measured on the union of these out-of-fold decisions; threshold-free metrics (AUROC, AP) use
every row as they are. The acne-severity cutpoints are cross-fitted the same way
(`cross_fit_severity_grades`). The thresholds shipped for serving are still fitted on all rows.

The validation split also chose the training checkpoint, which cross-fitting cannot undo: the
report says so. numpy only at import (scikit-learn through `fairness.thresholds` when fitting).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from core.severity import severity_grade
from core.thresholds import apply_thresholds
from fairness.severity import fit_severity_cutpoints
from fairness.thresholds import fit_thresholds

__all__ = [
    "EVALUATION_CROSS_FITTED",
    "EVALUATION_TEST",
    "NUM_FOLDS",
    "cross_fit",
    "cross_fit_decisions",
    "cross_fit_severity_grades",
    "subject_folds",
    "subject_keys",
]

NUM_FOLDS = 2
EVALUATION_CROSS_FITTED = f"val, {NUM_FOLDS}-fold cross-fitted thresholds (no test split)"
EVALUATION_TEST = "test, thresholds fitted on val"


def subject_keys(images: Sequence[str], subjects: Sequence[str] | None = None) -> list[str]:
    """The unit a fold keeps whole, per row: its subject, or its image where none is given.

    >>> subject_keys(["a.jpg", "b.jpg", "c.jpg"], ["s1", "", "s1"])
    ['subject:s1', 'image:b.jpg', 'subject:s1']
    """
    if subjects is None:
        return [f"image:{i}" for i in images]
    if len(subjects) != len(images):
        raise ValueError(f"{len(subjects)} subjects for {len(images)} images")
    return [
        f"subject:{s.strip()}" if isinstance(s, str) and s.strip() else f"image:{i}"
        for i, s in zip(images, subjects, strict=True)
    ]


def subject_folds(
    keys: Sequence[str],
    num_folds: int = NUM_FOLDS,
    seed: int = 0,
    *,
    strata: Sequence[str] | None = None,
) -> np.ndarray:
    """Fold index per row (int [N], 0..num_folds-1) such that equal keys share a fold.

    Parameters
    ----------
    keys : sequence of str, length N
        The subject of each row (`subject_keys`).
    num_folds : int
        Number of folds, >= 2.
    seed : int
        Seed of the shuffle; same seed, same folds.
    strata : sequence of str, length N, optional
        A label per row (e.g. group x label pattern); subjects are dealt to the folds in turn
        within each stratum (that of their first row), so each fold gets a like share of each.

    Returns
    -------
    numpy.ndarray of int64, shape [N]

    >>> folds = subject_folds(["a", "a", "b", "c"], seed=0)
    >>> bool(folds[0] == folds[1]), sorted(np.bincount(folds, minlength=2).tolist())
    (True, [1, 3])
    """
    if isinstance(num_folds, bool) or not isinstance(num_folds, int) or num_folds < 2:
        raise ValueError(f"num_folds must be an integer >= 2, got {num_folds!r}")
    keys = [str(k) for k in keys]
    if strata is not None and len(strata) != len(keys):
        raise ValueError(f"strata has {len(strata)} entries, expected {len(keys)}")
    first_stratum: dict[str, str] = {}
    for i, key in enumerate(keys):
        first_stratum.setdefault(key, "" if strata is None else str(strata[i]))
    subjects = sorted(first_stratum)
    if len(subjects) < num_folds:
        raise ValueError(f"cross-fitting needs at least {num_folds} subjects, got {len(subjects)}")
    shuffle = np.random.default_rng(seed).permutation(len(subjects))
    order = sorted(range(len(subjects)), key=lambda j: (first_stratum[subjects[j]], shuffle[j]))
    fold_of = {subjects[j]: rank % num_folds for rank, j in enumerate(order)}
    return np.asarray([fold_of[k] for k in keys], dtype=np.int64)


def cross_fit(
    y_true,
    probs,
    groups: Sequence[str | None],
    folds: np.ndarray,
    fit_fn: Callable,
    apply_fn: Callable,
) -> tuple[np.ndarray, list]:
    """Out-of-fold outputs: rows of fold f get ``apply_fn(fit_fn(rows not in f), rows in f)``.

    Parameters
    ----------
    y_true, probs : array [N, ...]
        Labels (NaN = unknown) and probabilities, one row per image (e.g. [N, C] and [N, C]).
    groups : sequence of str or None, length N
    folds : int array [N]
        Fold per row (`subject_folds`).
    fit_fn : callable
        ``fit_fn(y_true, probs, groups) -> fitted`` on the other folds' rows.
    apply_fn : callable
        ``apply_fn(fitted, probs, groups) -> array [n_f, C]`` on the fold's rows.

    Returns
    -------
    (array [N, C] in row order, list of the fitted objects, one per fold)
    """
    y = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(probs, dtype=np.float64)
    g = list(groups)
    folds = np.asarray(folds)
    if folds.shape != (y.shape[0],) or len(g) != y.shape[0] or p.shape[:1] != y.shape[:1]:
        raise ValueError("y_true, probs, groups and folds must have one entry per row")
    out: np.ndarray | None = None
    fitted = []
    for fold in np.unique(folds):
        inside = folds == fold
        rest = np.flatnonzero(~inside)
        rows = np.flatnonzero(inside)
        model = fit_fn(y[rest], p[rest], [g[i] for i in rest])
        values = np.asarray(apply_fn(model, p[rows], [g[i] for i in rows]))
        if out is None:
            out = np.empty((y.shape[0], *values.shape[1:]), dtype=values.dtype)
        out[rows] = values
        fitted.append(model)
    assert out is not None  # folds is non-empty when there are rows
    return out, fitted


def cross_fit_decisions(
    y_true, probs, groups: Sequence[str | None], folds: np.ndarray, **fit_options
) -> tuple[np.ndarray, list]:
    """Out-of-fold 0/1 decisions [N, C] with per-group thresholds (`fit_thresholds` options).

    Returns the decisions and the thresholds fitted for each fold (on the other folds).
    """

    def fit(y, p, g):
        return fit_thresholds(y, p, g, **fit_options)  # looked up here, so tests can spy on it

    def apply(thresholds, p, g):
        return apply_thresholds(p, g, thresholds)[0]

    return cross_fit(y_true, probs, groups, folds, fit, apply)


def cross_fit_severity_grades(
    y_true, probs, folds: np.ndarray, **fit_options
) -> tuple[np.ndarray, list[dict]]:
    """Out-of-fold acne-severity grades [N]: each fold graded with cutpoints fitted on the others.

    Parameters
    ----------
    y_true : array [N]
        True grade 0-3 (NaN = unknown: not fitted on, still graded).
    probs : array [N, 4]
        Severity class probabilities.
    folds : int array [N]
        Fold per row (`subject_folds`).
    **fit_options
        Passed to `fairness.severity.fit_severity_cutpoints`.

    Returns
    -------
    (int64 array [N] of grades, list of the fit dicts, one per fold)
    """
    y = np.asarray(y_true, dtype=np.float64).reshape(-1)
    p = np.asarray(probs, dtype=np.float64)

    def fit(y_fit, p_fit, _groups):
        return fit_severity_cutpoints(y_fit, p_fit, **fit_options)  # looked up here: spied on

    def apply(fitted, p_fold, _groups):
        return severity_grade(p_fold, fitted["cutpoints"])

    return cross_fit(y, p, [None] * y.shape[0], folds, fit, apply)
