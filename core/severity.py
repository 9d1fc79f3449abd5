"""The acne-severity grade of class probabilities under cutpoints: the serving rule.

Grades are the ACNE04 bands 0-3 (`core.schema.SEVERITY_GRADES`). The grade counts the k with
``P(grade > k) > cutpoints[k]``; the default 0.5 for every k is CORAL's median rule. The shipped
cutpoints come from thresholds.json (key ``acne_severity``, `core.thresholds`), fitted on
validation by `fairness.severity.fit_severity_cutpoints`, and are applied by the serving step
(`client.steps.severity_step`). numpy only, so the Triton python models (numpy<2 environment),
the client and the trainer all grade with this code.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from core.schema import SEVERITY_COUNT_BANDS, SEVERITY_GRADES

__all__ = [
    "DEFAULT_CUTPOINT",
    "NUM_GRADES",
    "exceedance_probs",
    "severity_from_count",
    "severity_grade",
    "severity_grade_from_above",
]

NUM_GRADES = len(SEVERITY_GRADES)  # 4: grades 0-3
DEFAULT_CUTPOINT = 0.5  # CORAL's median rule


def severity_from_count(lesion_count: int) -> int:
    """ACNE04 / Hayashi grade of an acne lesion count: <=5 -> 0, 6-20 -> 1, 21-50 -> 2, >50 -> 3.

    >>> [severity_from_count(c) for c in (0, 5, 6, 20, 21, 50, 51)]
    [0, 0, 1, 1, 2, 2, 3]
    """
    if lesion_count < 0:
        raise ValueError(f"lesion count must be >= 0, got {lesion_count}")
    return sum(int(lesion_count) > upper for upper in SEVERITY_COUNT_BANDS)


def exceedance_probs(probs: ArrayLike) -> np.ndarray:
    """``P(grade > k) = 1 - cumsum(p)_k`` for k = 0, 1, 2 of class probabilities [..., 4].

    float32, computed as the served grade computes it, so a cutpoint fitted on these values
    splits the same rows at serving time.

    >>> exceedance_probs([0.1, 0.3, 0.4, 0.2]).astype(float).round(2).tolist()
    [0.9, 0.6, 0.2]
    """
    p = np.asarray(probs, dtype=np.float32)
    if p.shape[-1:] != (NUM_GRADES,):
        raise ValueError(f"probs must have shape [..., {NUM_GRADES}], got {p.shape}")
    return np.float32(1.0) - np.cumsum(p, axis=-1, dtype=np.float32)[..., :-1]


def _check_cutpoints(cutpoints: ArrayLike) -> np.ndarray:
    c = np.asarray(cutpoints, dtype=np.float64)
    if c.shape != (NUM_GRADES - 1,) or not np.all(np.isfinite(c)):
        raise ValueError(
            f"cutpoints must be {NUM_GRADES - 1} finite numbers, got {np.asarray(cutpoints)!r}"
        )
    return c


def severity_grade(probs: ArrayLike, cutpoints: ArrayLike | None = None) -> np.ndarray:
    """Grade of severity class probabilities [..., 4] -> int64 [...].

    Parameters
    ----------
    probs : array-like, shape [..., 4]
        Class probabilities of the grades 0-3 (the exported `severity` output).
    cutpoints : sequence of 3 floats, optional
        The grade is the number of k with ``P(grade > k) > cutpoints[k]``. None: 0.5 each, the
        median (CORAL's rule, the numpy twin of `train_jax.models.ordinal.severity_grade`).

    Returns
    -------
    numpy.ndarray of int64, shape [...]

    >>> severity_grade([[0.1, 0.3, 0.4, 0.2], [0.5, 0.2, 0.2, 0.1]]).tolist()
    [2, 0]
    >>> severity_grade([[0.1, 0.3, 0.4, 0.2], [0.5, 0.2, 0.2, 0.1]], [0.3, 0.35, 0.15]).tolist()
    [3, 1]
    """
    above = exceedance_probs(probs)
    if cutpoints is None:
        return (above > DEFAULT_CUTPOINT).sum(axis=-1).astype(np.int64)
    return (above > _check_cutpoints(cutpoints)).sum(axis=-1).astype(np.int64)


def severity_grade_from_above(above: np.ndarray, cutpoints: np.ndarray) -> np.ndarray:
    """`severity_grade` from precomputed ``P(grade > k)`` [..., 3] (the cutpoint fitter's inner
    loop, `fairness.severity.fit_severity_cutpoints`).

    >>> severity_grade_from_above(np.array([[0.9, 0.6, 0.2]]), np.array([0.5, 0.5, 0.5])).tolist()
    [2]
    """
    return (above > np.asarray(cutpoints, np.float64)).sum(axis=-1).astype(np.int64)
