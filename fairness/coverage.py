"""Coverage: how many labelled images and positives each condition has per Fitzpatrick type."""

from __future__ import annotations

import numpy as np

__all__ = ["coverage_counts"]


def coverage_counts(y_true, fitzpatrick, *, split: str = "test") -> dict:
    """Counts per condition x type ("1".."6", "unknown"): labelled images and positives.

    Parameters
    ----------
    y_true : array-like, shape [N, C]
        0/1 labels, NaN = unknown (not counted as labelled).
    fitzpatrick : array-like of int, shape [N]
        Type 1-6, 0 = unknown.
    split : str
        Name recorded in the result.

    Returns
    -------
    dict with ``types``, ``labelled[cond][type]``, ``positives[cond][type]``, ``split``

    >>> c = coverage_counts([[1, 0, float("nan")], [0, 1, 1]], [5, 0])
    >>> c["positives"]["acne"]["5"], c["labelled"]["wrinkles"]["5"]
    (1, 0)
    >>> c["positives"]["wrinkles"]["unknown"]
    1
    """
    from core.schema import CONDITIONS, FITZPATRICK_TYPES

    y = np.asarray(y_true, dtype=np.float64)
    f = np.asarray(fitzpatrick, dtype=np.int64)
    types = [str(t) for t in FITZPATRICK_TYPES] + ["unknown"]
    masks = {str(t): f == t for t in FITZPATRICK_TYPES}
    masks["unknown"] = ~np.isin(f, FITZPATRICK_TYPES)
    labelled = {c: {} for c in CONDITIONS}
    positives = {c: {} for c in CONDITIONS}
    for i, cond in enumerate(CONDITIONS):
        known = np.isfinite(y[:, i])
        for t in types:
            rows = known & masks[t]
            labelled[cond][t] = int(rows.sum())
            positives[cond][t] = int(y[rows, i].sum())
    return {
        "split": split,
        "types": types,
        "labelled": labelled,
        "positives": positives,
        "images_per_type": {t: int(masks[t].sum()) for t in types},
    }
