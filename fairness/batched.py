"""Batched metric cores: a weight matrix ``W [B, n]`` (one bootstrap replicate per row) -> [B].

The point estimate (unit weights) and every bootstrap replicate go through the same code.
`fairness.metrics` builds its pure metric functions on these cores and `fairness.evaluate`
runs them over bootstrap replicates; both import them from here, so neither imports the
other to get them. The rules for undefined values are in `fairness.metrics`.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "SCORE_METRICS",
    "THRESHOLD_METRICS",
    "batched_metrics",
    "confusion_batched",
    "safe_ratio",
    "score_metrics_batched",
    "threshold_metrics_batched",
]

THRESHOLD_METRICS: tuple[str, ...] = ("precision", "recall", "specificity", "fpr", "f1")
SCORE_METRICS: tuple[str, ...] = ("auroc", "ap")


def safe_ratio(num: np.ndarray, den: np.ndarray, *, empty: float = float("nan")) -> np.ndarray:
    """num / den elementwise, `empty` where den is not positive."""
    out = np.full(np.broadcast(num, den).shape, empty, dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


# --- batched cores: W [B, n] -> [B] ---------------------------------------------------------


def confusion_batched(y: np.ndarray, pred: np.ndarray, weights: np.ndarray) -> dict:
    """Weighted confusion counts tp, fp, tn, fn, each of shape [B]."""
    return {
        "tp": weights @ (y * pred),
        "fp": weights @ ((1 - y) * pred),
        "tn": weights @ ((1 - y) * (1 - pred)),
        "fn": weights @ (y * (1 - pred)),
    }


def threshold_metrics_batched(y: np.ndarray, pred: np.ndarray, weights: np.ndarray) -> dict:
    """precision, recall, specificity, fpr and f1 per replicate (rules: `fairness.metrics`)."""
    c = confusion_batched(y, pred, weights)
    tp, fp, tn, fn = c["tp"], c["fp"], c["tn"], c["fn"]
    return {
        "precision": safe_ratio(tp, tp + fp, empty=0.0),
        "recall": safe_ratio(tp, tp + fn),
        "specificity": safe_ratio(tn, tn + fp),
        "fpr": safe_ratio(fp, tn + fp),
        "f1": safe_ratio(2 * tp, 2 * tp + fp + fn),
    }


def _ranked(y: np.ndarray, score: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative weighted true and false positives [B, thresholds], one per distinct score."""
    order = np.argsort(-score, kind="mergesort")
    s = score[order]
    # Last index of each run of tied scores: one ROC/PR point per distinct threshold.
    distinct = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]
    w = weights[:, order]
    tps = np.cumsum(w * y[order], axis=1)[:, distinct]
    fps = np.cumsum(w * (1 - y[order]), axis=1)[:, distinct]
    return tps, fps


def score_metrics_batched(y: np.ndarray, score: np.ndarray, weights: np.ndarray) -> dict:
    """AUROC (trapezoidal ROC area) and average precision (step PR area) per replicate."""
    b = weights.shape[0]
    if y.size == 0:
        return {"auroc": np.full(b, np.nan), "ap": np.full(b, np.nan)}
    tps, fps = _ranked(y, score, weights)
    total_pos, total_neg = tps[:, -1:], fps[:, -1:]
    zeros = np.zeros((b, 1))
    tpr = np.hstack([zeros, safe_ratio(tps, total_pos)])
    fpr = np.hstack([zeros, safe_ratio(fps, total_neg)])
    auc = np.sum(np.diff(fpr, axis=1) * (tpr[:, 1:] + tpr[:, :-1]) / 2.0, axis=1)
    auc = np.where((total_pos[:, 0] > 0) & (total_neg[:, 0] > 0), auc, np.nan)
    prec = safe_ratio(tps, tps + fps, empty=0.0)
    ap = np.sum(np.diff(tpr, axis=1) * prec, axis=1)
    ap = np.where(total_pos[:, 0] > 0, ap, np.nan)
    return {"auroc": auc, "ap": ap}


def batched_metrics(
    y: np.ndarray, score: np.ndarray, pred: np.ndarray, weights: np.ndarray
) -> dict[str, np.ndarray]:
    """All threshold and score metrics for each replicate row of `weights` [B, n]."""
    return {
        **threshold_metrics_batched(y, pred, weights),
        **score_metrics_batched(y, score, weights),
    }
