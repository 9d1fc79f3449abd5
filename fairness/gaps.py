"""Fairness gaps as small functions of per-group metric values (scalars or replicate arrays).

Each function takes ``{group: value}`` where a value is a float or an array of bootstrap
replicates (all the same shape), and works element-wise, so the point estimate and its
bootstrap CI come from the same lines. Names follow fairlearn's `MetricFrame`.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

__all__ = ["dark_vs_medium", "difference", "equalized_odds_difference", "group_min"]

DARK, MEDIUM = "V-VI", "III-IV"


def _stack(by_group: Mapping[str, np.ndarray | float]) -> np.ndarray:
    if len(by_group) < 1:
        raise ValueError("need at least one group")
    return np.stack([np.asarray(v, dtype=np.float64) for v in by_group.values()])


def difference(by_group: Mapping[str, np.ndarray | float]) -> np.ndarray:
    """Largest minus smallest group value (fairlearn `difference(method="between_groups")`).

    >>> float(difference({"I-II": 0.8, "III-IV": 0.7, "V-VI": 0.5}))
    0.30000000000000004
    """
    values = _stack(by_group)
    return values.max(axis=0) - values.min(axis=0)


def group_min(by_group: Mapping[str, np.ndarray | float]) -> np.ndarray:
    """Smallest group value (fairlearn `group_min`): the worst group for a higher-is-better metric.

    >>> float(group_min({"I-II": 0.8, "V-VI": 0.5}))
    0.5
    """
    return _stack(by_group).min(axis=0)


def dark_vs_medium(
    by_group: Mapping[str, np.ndarray | float], dark: str = DARK, medium: str = MEDIUM
) -> np.ndarray:
    """Signed gap ``value[V-VI] - value[III-IV]``: negative when dark skin does worse.

    >>> round(float(dark_vs_medium({"III-IV": 0.75, "V-VI": 0.48})), 2)
    -0.27
    """
    missing = [g for g in (dark, medium) if g not in by_group]
    if missing:
        raise ValueError(f"dark_vs_medium needs groups {sorted(missing)}")
    return np.asarray(by_group[dark], dtype=np.float64) - np.asarray(by_group[medium])


def equalized_odds_difference(
    tpr_by_group: Mapping[str, np.ndarray | float], fpr_by_group: Mapping[str, np.ndarray | float]
) -> np.ndarray:
    """Larger of the between-group TPR and FPR differences (fairlearn's worst-case form).

    >>> float(equalized_odds_difference({"a": 0.9, "b": 0.7}, {"a": 0.1, "b": 0.15}))
    0.20000000000000007
    """
    return np.maximum(difference(tpr_by_group), difference(fpr_by_group))
