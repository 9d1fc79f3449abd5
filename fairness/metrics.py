"""Classification metrics as pure functions of arrays, and their batched (bootstrap) forms.

Every public metric takes ``(y_true, y_score_or_pred, *, sample_weight=None)`` and returns a
float. Threshold metrics (precision, recall, ...) take 0/1 decisions; ranking metrics (AUROC,
average precision) take scores. Undefined values follow one rule:

- recall is NaN without positives, specificity and FPR are NaN without negatives, AUROC is
  NaN unless both classes are present, average precision is NaN without positives;
- precision is 0 when nothing is predicted positive (scikit-learn's ``zero_division=0``);
  F1 = 2 tp / (2 tp + fp + fn) is NaN only when there are no positives and no predicted
  positives (then tp = fp = fn = 0).

The report never shows these NaNs: `fairness.evaluate` turns a cell with too few positives
or negatives into "insufficient evidence" first.

Each metric has a batched core taking a weight matrix ``W [B, n]`` (one bootstrap replicate
per row), so the point estimate and every replicate go through the same code. The cores live in
`fairness.batched` (shared with `fairness.evaluate`) and are re-exported here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from fairness.batched import (
    SCORE_METRICS,
    THRESHOLD_METRICS,
    batched_metrics,
    confusion_batched,
    safe_ratio,
    score_metrics_batched,
    threshold_metrics_batched,
)

__all__ = [
    "SCORE_METRICS",
    "THRESHOLD_METRICS",
    "average_precision",
    "auroc",
    "epoch_metrics",
    "f1",
    "false_positive_rate",
    "make_metric_frame",
    "precision",
    "prevalence",
    "recall",
    "specificity",
    "batched_metrics",
    "confusion_batched",
    "evaluate_predictions",
    "score_metrics_batched",
    "threshold_metrics_batched",
]

# --- input checks -------------------------------------------------------------------------


def _as_vector(values, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        array = array.reshape(-1)
    if not np.all(np.isfinite(array)):
        bad = int(np.flatnonzero(~np.isfinite(array))[0])
        raise ValueError(f"{name} has a non-finite value at index {bad}")
    return array


def _as_binary(values, name: str) -> np.ndarray:
    array = _as_vector(values, name)
    bad = np.flatnonzero((array != 0) & (array != 1))
    if bad.size:
        raise ValueError(f"{name} must be 0/1; index {int(bad[0])} is {array[bad[0]]!r}")
    return array


def _prepare(y_true, y_other, sample_weight, *, other: str, binary_other: bool):
    y = _as_binary(y_true, "y_true")
    o = _as_binary(y_other, other) if binary_other else _as_vector(y_other, other)
    if y.shape != o.shape:
        raise ValueError(f"y_true has {y.size} values but {other} has {o.size}")
    if sample_weight is None:
        w = np.ones((1, y.size))
    else:
        w = _as_vector(sample_weight, "sample_weight")
        if w.shape != y.shape:
            raise ValueError(f"sample_weight has {w.size} values, expected {y.size}")
        if np.any(w < 0):
            raise ValueError("sample_weight must be non-negative")
        w = w[None, :]
    return y, o, w


# --- pure metric functions ------------------------------------------------------------------


def _threshold_metric(name: str, y_true, y_pred, sample_weight) -> float:
    y, p, w = _prepare(y_true, y_pred, sample_weight, other="y_pred", binary_other=True)
    return float(threshold_metrics_batched(y, p, w)[name][0])


def precision(y_true, y_pred, *, sample_weight=None) -> float:
    """Precision tp / (tp + fp); 0 when nothing is predicted positive.

    Parameters
    ----------
    y_true, y_pred : array-like of 0/1, shape [n]
    sample_weight : array-like, shape [n], optional

    Returns
    -------
    float

    >>> precision([1, 0, 1, 0], [1, 1, 0, 0])
    0.5
    """
    return _threshold_metric("precision", y_true, y_pred, sample_weight)


def recall(y_true, y_pred, *, sample_weight=None) -> float:
    """Recall (true-positive rate) tp / (tp + fn); NaN without positives.

    Parameters
    ----------
    y_true, y_pred : array-like of 0/1, shape [n]
    sample_weight : array-like, shape [n], optional

    Returns
    -------
    float

    >>> recall([1, 1, 1, 0], [1, 0, 0, 1])
    0.3333333333333333
    """
    return _threshold_metric("recall", y_true, y_pred, sample_weight)


def specificity(y_true, y_pred, *, sample_weight=None) -> float:
    """Specificity (true-negative rate) tn / (tn + fp); NaN without negatives.

    Parameters
    ----------
    y_true, y_pred : array-like of 0/1, shape [n]
    sample_weight : array-like, shape [n], optional

    Returns
    -------
    float

    >>> specificity([0, 0, 0, 0, 1], [1, 0, 0, 0, 1])
    0.75
    """
    return _threshold_metric("specificity", y_true, y_pred, sample_weight)


def false_positive_rate(y_true, y_pred, *, sample_weight=None) -> float:
    """False-positive rate fp / (fp + tn) = 1 - specificity; NaN without negatives.

    Parameters
    ----------
    y_true, y_pred : array-like of 0/1, shape [n]
    sample_weight : array-like, shape [n], optional

    Returns
    -------
    float

    >>> false_positive_rate([0, 0, 0, 0, 1], [1, 0, 0, 0, 1])
    0.25
    """
    return _threshold_metric("fpr", y_true, y_pred, sample_weight)


def f1(y_true, y_pred, *, sample_weight=None) -> float:
    """F1 = 2 tp / (2 tp + fp + fn); NaN when there are no positives and no predicted ones.

    Parameters
    ----------
    y_true, y_pred : array-like of 0/1, shape [n]
    sample_weight : array-like, shape [n], optional

    Returns
    -------
    float

    >>> f1([1, 1, 0, 0], [1, 0, 1, 0])
    0.5
    """
    return _threshold_metric("f1", y_true, y_pred, sample_weight)


def auroc(y_true, y_score, *, sample_weight=None) -> float:
    """Area under the ROC curve (ties count one half); NaN unless both classes are present.

    Parameters
    ----------
    y_true : array-like of 0/1, shape [n]
    y_score : array-like of float, shape [n]
    sample_weight : array-like, shape [n], optional

    Returns
    -------
    float

    >>> auroc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    0.75
    """
    y, s, w = _prepare(y_true, y_score, sample_weight, other="y_score", binary_other=False)
    return float(score_metrics_batched(y, s, w)["auroc"][0])


def average_precision(y_true, y_score, *, sample_weight=None) -> float:
    """Average precision: sum over thresholds of (R_k - R_{k-1}) P_k; NaN without positives.

    Parameters
    ----------
    y_true : array-like of 0/1, shape [n]
    y_score : array-like of float, shape [n]
    sample_weight : array-like, shape [n], optional

    Returns
    -------
    float

    >>> round(average_precision([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]), 4)
    0.8333
    """
    y, s, w = _prepare(y_true, y_score, sample_weight, other="y_score", binary_other=False)
    return float(score_metrics_batched(y, s, w)["ap"][0])


def prevalence(y_true, y_pred=None, *, sample_weight=None) -> float:
    """Weighted share of positives; NaN for an empty input. `y_pred` is ignored.

    >>> prevalence([1, 0, 0, 0])
    0.25
    """
    y = _as_binary(y_true, "y_true")
    w = np.ones_like(y) if sample_weight is None else _as_vector(sample_weight, "sample_weight")
    if w.shape != y.shape:
        raise ValueError(f"sample_weight has {w.size} values, expected {y.size}")
    return float(safe_ratio(np.asarray(w @ y), np.asarray(w.sum())))


# --- grouping: fairlearn MetricFrame --------------------------------------------------------

UNKNOWN_GROUP = "unknown"


def group_labels(groups: Sequence[str | None]) -> np.ndarray:
    """Group names as a string array; None/empty/NaN become "unknown"."""
    out = []
    for g in groups:
        if g is None or (isinstance(g, float) and np.isnan(g)) or str(g).strip() == "":
            out.append(UNKNOWN_GROUP)
        else:
            out.append(str(g))
    return np.asarray(out, dtype=object)


def make_metric_frame(y_true, y_pred, groups: Sequence[str | None], metrics: Mapping | None = None):
    """A fairlearn `MetricFrame` over our pure metrics (`by_group`, `difference`, `group_min`).

    `metrics` maps names to functions ``f(y_true, y_pred)``; default: precision, recall,
    specificity, fpr and f1 on 0/1 decisions. Missing groups become "unknown".
    """
    from fairlearn.metrics import MetricFrame

    if metrics is None:
        metrics = {
            "precision": precision,
            "recall": recall,
            "specificity": specificity,
            "fpr": false_positive_rate,
            "f1": f1,
        }
    return MetricFrame(
        metrics=dict(metrics),
        y_true=np.asarray(y_true, dtype=np.float64),
        y_pred=np.asarray(y_pred, dtype=np.float64),
        sensitive_features=group_labels(groups),
    )


def _check_matrix(values, name: str, num_conditions: int) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != num_conditions:
        raise ValueError(f"{name} must have shape [N, {num_conditions}], got {array.shape}")
    return array


def epoch_metrics(y_true, probs, groups: Sequence[str | None], thresholds=None) -> dict[str, float]:
    """Fast per-epoch validation metrics (no bootstrap), for the training loop.

    Parameters
    ----------
    y_true : array-like, shape [N, 3]
        0/1 labels; NaN marks an unknown label (that cell is skipped).
    probs : array-like, shape [N, 3]
        Predicted probabilities, in the order of `core.schema.CONDITIONS`.
    groups : sequence of str or None, length N
        Skin-tone group per row; None or an unrecognised name counts only in the overall.
    thresholds : core.thresholds.Thresholds, optional
        Per-group thresholds; default 0.5 everywhere.

    Returns
    -------
    dict
        ``macro_f1`` (mean over conditions of the overall F1), ``f1/<cond>``, ``f1/<group>``
        (mean over conditions of the F1 inside the group), ``worst_group_f1`` (minimum of the
        ``f1/<group>`` values) and ``gap_dark_vs_medium_f1`` (``|f1/V-VI - f1/III-IV|``).
        A value with no data behind it is NaN.

    >>> m = epoch_metrics([[1, 0, 1], [0, 1, 1]], [[0.9, 0.2, 0.7], [0.1, 0.8, 0.3]],
    ...                   ["V-VI", "III-IV"])
    >>> m["macro_f1"], m["f1/acne"], m["f1/wrinkles"]
    (0.8888888888888888, 1.0, 0.6666666666666666)
    """
    from core.schema import CONDITIONS, GROUPS

    y = _check_matrix(y_true, "y_true", len(CONDITIONS))
    p = _check_matrix(probs, "probs", len(CONDITIONS))
    labels = group_labels(groups)
    if labels.shape[0] != y.shape[0] or p.shape[0] != y.shape[0]:
        raise ValueError(
            f"y_true, probs and groups differ in length: {len(y)}, {len(p)}, {labels.shape[0]}"
        )
    if thresholds is None:
        decisions = p >= 0.5
    else:
        from core.thresholds import apply_thresholds

        decisions, _ = apply_thresholds(p, list(labels), thresholds)
    out: dict[str, float] = {}
    per_group: dict[str, list[float]] = {g: [] for g in GROUPS}
    for c, cond in enumerate(CONDITIONS):
        known = np.isfinite(y[:, c])
        yc, dc = y[known, c], decisions[known, c].astype(np.float64)
        frame = make_metric_frame(yc, dc, labels[known], metrics={"f1": f1}) if yc.size else None
        out[f"f1/{cond}"] = float(frame.overall["f1"]) if frame is not None else float("nan")
        for g in GROUPS:
            value = float("nan")
            if frame is not None and g in frame.by_group.index:
                value = float(frame.by_group.loc[g, "f1"])
            per_group[g].append(value)
    out["macro_f1"] = _nanmean([out[f"f1/{c}"] for c in CONDITIONS])
    for g in GROUPS:
        out[f"f1/{g}"] = _nanmean(per_group[g])
    out["worst_group_f1"] = _nanmin([out[f"f1/{g}"] for g in GROUPS])
    out["gap_dark_vs_medium_f1"] = abs(out["f1/V-VI"] - out["f1/III-IV"])
    return out


def _nanmean(values: Sequence[float]) -> float:
    finite = [v for v in values if np.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def _nanmin(values: Sequence[float]) -> float:
    finite = [v for v in values if np.isfinite(v)]
    return float(np.min(finite)) if finite else float("nan")


def evaluate_predictions(
    data, thresholds=None, *, n_boot: int = 1000, seed: int = 0, **kwargs
) -> dict:
    """Per condition x group metrics with bootstrap CIs and gaps; see `fairness.evaluate`."""
    from fairness.evaluate import evaluate_predictions as _evaluate

    return _evaluate(data, thresholds, n_boot=n_boot, seed=seed, **kwargs)
