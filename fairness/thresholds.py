"""Per-group decision thresholds fitted on validation (the file format, loading, applying and
saving are `core.thresholds`, which the serving code uses without scikit-learn).

Method, per condition (documented in docs/fairness.md):

1. Global threshold: the F1-optimal point of `sklearn.metrics.precision_recall_curve` over
   every validation row with a known label (unknown skin tone included).
2. Raw group threshold: the same, on the rows of that group.
3. Shrinkage toward the global value, so a small group cannot get an extreme threshold
   from a handful of positives: ``t_group = w * t_raw + (1 - w) * t_global`` with
   ``w = n_pos / (n_pos + shrinkage_k)``. A group with fewer than `min_positives` positives
   (or no negatives) gets ``w = 0``, i.e. the global threshold.

A row whose group is unknown, None or not one of the fitted groups uses the global threshold.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from core.thresholds import (
    DEFAULT_THRESHOLD,
    Thresholds,
    apply_thresholds,
    check_probs,
    group_array,
)

__all__ = ["GroupThresholdFitter", "f1_optimal_threshold", "fit_thresholds"]


# --- fitting ------------------------------------------------------------------------------


def f1_optimal_threshold(y_true: np.ndarray, probs: np.ndarray) -> tuple[float, float]:
    """(threshold, F1) at the F1-optimal point of the precision-recall curve.

    Decisions are ``probs >= threshold``. Among equal F1 values the lowest threshold wins.

    >>> f1_optimal_threshold(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
    (0.35, 0.8)
    """
    from sklearn.metrics import precision_recall_curve

    prec, rec, thr = precision_recall_curve(y_true, probs)
    prec, rec = prec[:-1], rec[:-1]
    den = prec + rec
    f1 = np.divide(2 * prec * rec, den, out=np.zeros_like(den), where=den > 0)
    best = int(np.argmax(f1))
    return float(thr[best]), float(f1[best])


class GroupThresholdFitter:
    """Fit per-condition, per-group F1-optimal thresholds with shrinkage (scikit-learn style).

    Parameters
    ----------
    min_positives : int
        A group with fewer validation positives than this gets the global threshold.
    shrinkage_k : float
        Pseudo-count k in ``w = n_pos / (n_pos + k)``; 0 disables shrinkage.
    default_threshold : float
        Used as the global threshold when a condition has no positives or no negatives.
    conditions, groups : sequence of str, optional
        Default `core.schema.CONDITIONS` and `core.schema.GROUPS`.

    Attributes (after `fit`)
    ------------------------
    thresholds_ : Thresholds
    global_thresholds_ : dict[str, float]
    group_thresholds_ : dict[str, dict[str, float]]
    """

    def __init__(
        self,
        *,
        min_positives: int = 5,
        shrinkage_k: float = 20.0,
        default_threshold: float = DEFAULT_THRESHOLD,
        conditions: Sequence[str] | None = None,
        groups: Sequence[str] | None = None,
    ) -> None:
        self.min_positives = min_positives
        self.shrinkage_k = shrinkage_k
        self.default_threshold = default_threshold
        self.conditions = conditions
        self.groups = groups

    def _validated(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        if (
            isinstance(self.min_positives, bool)
            or not isinstance(self.min_positives, int)
            or self.min_positives < 1
        ):
            raise ValueError(f"min_positives must be an integer >= 1, got {self.min_positives!r}")
        if not (isinstance(self.shrinkage_k, int | float) and self.shrinkage_k >= 0):
            raise ValueError(f"shrinkage_k must be a number >= 0, got {self.shrinkage_k!r}")
        if not (0.0 <= float(self.default_threshold) <= 1.0):
            raise ValueError(f"default_threshold must be in [0, 1], got {self.default_threshold!r}")
        from core.schema import CONDITIONS, GROUPS  # pure constants, no third-party imports

        conditions = tuple(CONDITIONS if self.conditions is None else self.conditions)
        groups = tuple(GROUPS if self.groups is None else self.groups)
        return conditions, groups

    def fit(self, y_true, probs, groups: Sequence[str | None]) -> GroupThresholdFitter:
        """Fit on validation labels [N, C] (NaN = unknown), probabilities [N, C] and groups."""
        conditions, group_names = self._validated()
        y = np.asarray(y_true, dtype=np.float64)
        p = check_probs(probs, len(conditions))
        if y.shape != p.shape:
            raise ValueError(f"y_true has shape {y.shape} but probs has shape {p.shape}")
        known_labels = y[np.isfinite(y)]
        if np.any((known_labels != 0) & (known_labels != 1)):
            raise ValueError("y_true must be 0, 1 or NaN (unknown)")
        g = group_array(groups, y.shape[0])
        k = float(self.shrinkage_k)
        global_: dict[str, dict] = {}
        by_group: dict[str, dict[str, dict]] = {}
        for c, cond in enumerate(conditions):
            known = np.isfinite(y[:, c])
            global_[cond] = self._fit_one(y[known, c], p[known, c])
            t_global = global_[cond]["threshold"]
            by_group[cond] = {}
            for name in group_names:
                rows = known & (g == name)
                yg, pg = y[rows, c], p[rows, c]
                n, n_pos = int(rows.sum()), int(yg.sum())
                entry = {
                    "threshold": t_global,
                    "raw_threshold": None,
                    "weight": 0.0,
                    "n": n,
                    "positives": n_pos,
                    "f1_at_raw": None,
                }
                if n_pos >= self.min_positives and n_pos < n:
                    t_raw, f1_raw = f1_optimal_threshold(yg, pg)
                    w = n_pos / (n_pos + k)
                    entry.update(
                        # the same value, but exactly t_global when t_raw == t_global (the
                        # textbook form drifts by an ulp and flips rows scored at the threshold)
                        threshold=t_global + w * (t_raw - t_global),
                        raw_threshold=t_raw,
                        weight=w,
                        f1_at_raw=f1_raw,
                    )
                by_group[cond][name] = entry
        self.thresholds_ = Thresholds(
            conditions=conditions,
            groups=group_names,
            global_=global_,
            by_group=by_group,
            min_positives=self.min_positives,
            shrinkage_k=k,
        )
        self.global_thresholds_ = {c: global_[c]["threshold"] for c in conditions}
        self.group_thresholds_ = {
            c: {name: by_group[c][name]["threshold"] for name in group_names} for c in conditions
        }
        return self

    def _fit_one(self, y: np.ndarray, p: np.ndarray) -> dict:
        n, n_pos = int(y.size), int(y.sum())
        if n_pos == 0 or n_pos == n:
            return {
                "threshold": float(self.default_threshold),
                "n": n,
                "positives": n_pos,
                "f1_at_threshold": None,
                "fallback": "default (one class only)",
            }
        t, best = f1_optimal_threshold(y, p)
        return {"threshold": t, "n": n, "positives": n_pos, "f1_at_threshold": best}

    def predict(self, probs, groups: Sequence[str | None]) -> np.ndarray:
        """0/1 decisions [N, C] with the fitted thresholds."""
        if not hasattr(self, "thresholds_"):
            raise RuntimeError("GroupThresholdFitter is not fitted; call fit first")
        return apply_thresholds(probs, groups, self.thresholds_)[0]


def fit_thresholds(
    y_true,
    probs,
    groups: Sequence[str | None],
    *,
    min_positives: int = 5,
    shrinkage_k: float = 20.0,
    default_threshold: float = DEFAULT_THRESHOLD,
    conditions: Sequence[str] | None = None,
    group_names: Sequence[str] | None = None,
) -> Thresholds:
    """Fit per-group F1-optimal thresholds with shrinkage toward the global threshold.

    Parameters
    ----------
    y_true : array-like, shape [N, C]
        0/1 validation labels; NaN marks an unknown label (skipped for that condition).
    probs : array-like, shape [N, C]
        Validation probabilities in [0, 1].
    groups : sequence of str or None, length N
        Skin-tone group per row; None/unknown rows count only toward the global threshold.
    min_positives, shrinkage_k, default_threshold, conditions, group_names
        See `GroupThresholdFitter`.

    Returns
    -------
    Thresholds

    >>> th = fit_thresholds([[0], [0], [1], [1]], [[0.1], [0.4], [0.35], [0.8]],
    ...                     ["V-VI"] * 4, conditions=["acne"], group_names=["V-VI"],
    ...                     min_positives=2, shrinkage_k=2.0)
    >>> th.global_threshold("acne"), th.group_threshold("acne", "V-VI")
    (0.35, 0.35)
    """
    fitter = GroupThresholdFitter(
        min_positives=min_positives,
        shrinkage_k=shrinkage_k,
        default_threshold=default_threshold,
        conditions=conditions,
        groups=group_names,
    )
    return fitter.fit(y_true, probs, groups).thresholds_
