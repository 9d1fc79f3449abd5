"""Per-group decision thresholds: fit on validation, save/load `thresholds.json`, apply.

Imports only numpy and json at module level (plus the standard library) and runs on
numpy 1.26, because Triton's `group_threshold` python model imports it in a numpy<2
environment. Fitting imports scikit-learn lazily; loading and applying never need it.

Method, per condition (documented in docs/fairness.md):

1. Global threshold: the F1-optimal point of `sklearn.metrics.precision_recall_curve` over
   every validation row with a known label (unknown skin tone included).
2. Raw group threshold: the same, on the rows of that group.
3. Shrinkage toward the global value, so a small group cannot get an extreme threshold
   from a handful of positives: ``t_group = w * t_raw + (1 - w) * t_global`` with
   ``w = n_pos / (n_pos + shrinkage_k)``. A group with fewer than `min_positives` positives
   (or no negatives) gets ``w = 0``, i.e. the global threshold.

A row whose group is unknown, None or not one of the fitted groups uses the global threshold.

Optional top-level key ``acne_severity``: the acne-severity cutpoints fitted on validation
(`fairness.severity.fit_severity_cutpoints`: ``{"cutpoints": [c0, c1, c2], "qwk", "n",
"method", ...}``), read back as `Thresholds.severity_cutpoints`. A file without it (older
reports, a model without the severity head) grades with the default 0.5 rule.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core import atomic

__all__ = [
    "GroupThresholdFitter",
    "Thresholds",
    "ThresholdsError",
    "apply_thresholds",
    "fit_thresholds",
    "load_severity_cutpoints",
    "load_thresholds",
    "save_thresholds",
]

SCHEMA_VERSION = 1
METHOD = "f1_optimal_precision_recall_curve_shrunk_to_global"
SHRINKAGE_RULE = "t_group = w * t_raw + (1 - w) * t_global, w = n_pos / (n_pos + k)"
DEFAULT_THRESHOLD = 0.5
SEVERITY_KEY = "acne_severity"  # top-level key of the severity cutpoints in thresholds.json
NUM_CUTPOINTS = 3  # grades 0-3: P(grade > k) for k = 0, 1, 2


class ThresholdsError(ValueError):
    """A thresholds.json file or object that does not follow the schema."""


@dataclass(frozen=True)
class Thresholds:
    """Fitted thresholds: per condition a global entry and one entry per group.

    Each entry is a dict with at least ``threshold`` (float), ``n`` and ``positives`` (the
    validation counts behind it). Group entries also carry ``raw_threshold`` (None when the
    group was not fitted) and ``weight`` (the shrinkage weight w).
    """

    conditions: tuple[str, ...]
    groups: tuple[str, ...]
    global_: dict[str, dict]
    by_group: dict[str, dict[str, dict]]
    min_positives: int = 5
    shrinkage_k: float = 20.0
    method: str = METHOD
    extra: dict = field(default_factory=dict)
    # The ``acne_severity`` entry (`fairness.severity.fit_severity_cutpoints`); None = absent.
    acne_severity: dict | None = None

    @property
    def severity_cutpoints(self) -> tuple[float, ...] | None:
        """The acne-severity cutpoints, or None (grade with the default 0.5 rule)."""
        if self.acne_severity is None:
            return None
        return tuple(float(c) for c in self.acne_severity["cutpoints"])

    def global_threshold(self, condition: str) -> float:
        """The global threshold of one condition."""
        return float(self.global_[condition]["threshold"])

    def group_threshold(self, condition: str, group: str | None) -> float:
        """The threshold of one condition for a group; unknown groups get the global one."""
        entry = self.by_group[condition].get(group) if isinstance(group, str) else None
        return float(entry["threshold"]) if entry is not None else self.global_threshold(condition)

    def to_dict(self) -> dict:
        """The thresholds.json document (see docs/fairness.md for the schema)."""
        return {
            "schema_version": SCHEMA_VERSION,
            "method": self.method,
            "shrinkage": {
                "rule": SHRINKAGE_RULE,
                "k": self.shrinkage_k,
                "min_positives": self.min_positives,
            },
            "conditions": list(self.conditions),
            "groups": list(self.groups),
            "unknown_group": "global",
            "thresholds": {
                c: {
                    "global": dict(self.global_[c]),
                    "groups": {g: dict(self.by_group[c][g]) for g in self.groups},
                }
                for c in self.conditions
            },
            **({"extra": self.extra} if self.extra else {}),
            **({SEVERITY_KEY: dict(self.acne_severity)} if self.acne_severity is not None else {}),
        }

    @classmethod
    def from_dict(cls, doc: dict, *, source: str = "thresholds") -> Thresholds:
        """Parse and validate a thresholds.json document; errors name `source` and the field."""

        def fail(where: str, what: str) -> ThresholdsError:
            return ThresholdsError(f"{source}: field {where!r}: {what}")

        if not isinstance(doc, dict):
            raise fail("<root>", f"expected an object, got {type(doc).__name__}")
        for key in ("conditions", "groups", "thresholds"):
            if key not in doc:
                raise fail(key, "missing")
        version = doc.get("schema_version", SCHEMA_VERSION)
        if version != SCHEMA_VERSION:
            raise fail("schema_version", f"expected {SCHEMA_VERSION}, got {version!r}")
        conditions, groups = doc["conditions"], doc["groups"]
        for key, names in (("conditions", conditions), ("groups", groups)):
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise fail(key, "expected a list of names")
        if not conditions:
            raise fail("conditions", "empty")
        table = doc["thresholds"]
        if not isinstance(table, dict):
            raise fail("thresholds", "expected an object")
        global_: dict[str, dict] = {}
        by_group: dict[str, dict[str, dict]] = {}
        for c in conditions:
            entry = table.get(c)
            if not isinstance(entry, dict):
                raise fail(f"thresholds.{c}", "missing")
            global_[c] = _check_entry(entry.get("global"), f"thresholds.{c}.global", fail)
            group_table = entry.get("groups")
            if not isinstance(group_table, dict):
                raise fail(f"thresholds.{c}.groups", "missing")
            by_group[c] = {
                g: _check_entry(group_table.get(g), f"thresholds.{c}.groups.{g}", fail)
                for g in groups
            }
        shrinkage = doc.get("shrinkage", {})
        severity = doc.get(SEVERITY_KEY)
        if severity is not None:
            severity = _check_severity(severity, fail)
        return cls(
            conditions=tuple(conditions),
            groups=tuple(groups),
            global_=global_,
            by_group=by_group,
            min_positives=int(shrinkage.get("min_positives", 5)),
            shrinkage_k=float(shrinkage.get("k", 20.0)),
            method=str(doc.get("method", METHOD)),
            extra=dict(doc.get("extra", {})),
            acne_severity=severity,
        )


def _check_entry(entry, where: str, fail) -> dict:
    if not isinstance(entry, dict):
        raise fail(where, "missing")
    t = entry.get("threshold")
    if isinstance(t, bool) or not isinstance(t, int | float) or not (0.0 <= t <= 1.0):
        raise fail(f"{where}.threshold", f"expected a number in [0, 1], got {t!r}")
    for key in ("n", "positives"):
        v = entry.get(key)
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise fail(f"{where}.{key}", f"expected a non-negative integer, got {v!r}")
    return dict(entry)


def _check_severity(entry, fail) -> dict:
    """The ``acne_severity`` entry: an object whose ``cutpoints`` are 3 numbers in [0, 1]."""
    if not isinstance(entry, dict):
        raise fail(SEVERITY_KEY, f"expected an object, got {type(entry).__name__}")
    cuts = entry.get("cutpoints")
    ok = (
        isinstance(cuts, list)
        and len(cuts) == NUM_CUTPOINTS
        and all(
            not isinstance(c, bool) and isinstance(c, int | float) and 0.0 <= c <= 1.0 for c in cuts
        )
    )
    if not ok:
        raise fail(
            f"{SEVERITY_KEY}.cutpoints",
            f"expected {NUM_CUTPOINTS} numbers in [0, 1], got {cuts!r}",
        )
    return dict(entry)


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
        p = _check_probs(probs, len(conditions))
        if y.shape != p.shape:
            raise ValueError(f"y_true has shape {y.shape} but probs has shape {p.shape}")
        known_labels = y[np.isfinite(y)]
        if np.any((known_labels != 0) & (known_labels != 1)):
            raise ValueError("y_true must be 0, 1 or NaN (unknown)")
        g = _group_array(groups, y.shape[0])
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


# --- applying -----------------------------------------------------------------------------


def _check_probs(probs, num_conditions: int) -> np.ndarray:
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != num_conditions:
        raise ValueError(f"probs must have shape [N, {num_conditions}], got {p.shape}")
    bad = ~np.isfinite(p) | (p < 0) | (p > 1)
    if bad.any():
        row, col = (int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"probs[{row}, {col}] = {float(p[row, col])!r} is not a probability in [0, 1]"
        )
    return p


def _group_array(groups: Sequence[str | None], n: int) -> np.ndarray:
    g = np.asarray(["" if x is None or not isinstance(x, str) else x for x in groups], dtype=object)
    if g.shape[0] != n:
        raise ValueError(f"groups has {g.shape[0]} entries, expected {n}")
    return g


def apply_thresholds(
    probs, groups: Sequence[str | None], thresholds: Thresholds
) -> tuple[np.ndarray, np.ndarray]:
    """Decisions ``probs >= threshold`` with each row's group threshold.

    Parameters
    ----------
    probs : array-like, shape [N, C]
        Probabilities in the order of ``thresholds.conditions``.
    groups : sequence of str or None, length N
        Group per row; None, empty or an unrecognised name uses the global threshold.
    thresholds : Thresholds

    Returns
    -------
    decisions : numpy.ndarray of bool, shape [N, C]
    used : numpy.ndarray of float64, shape [N, C]
        The threshold applied to each cell.

    >>> th = Thresholds(("acne",), ("V-VI",), {"acne": {"threshold": 0.5, "n": 9, "positives": 3}},
    ...                 {"acne": {"V-VI": {"threshold": 0.3, "n": 4, "positives": 2}}})
    >>> d, used = apply_thresholds([[0.4], [0.4]], ["V-VI", None], th)
    >>> d[:, 0].tolist(), used[:, 0].tolist()
    ([True, False], [0.3, 0.5])
    """
    p = _check_probs(probs, len(thresholds.conditions))
    g = _group_array(groups, p.shape[0])
    used = np.empty_like(p)
    for c, cond in enumerate(thresholds.conditions):
        used[:, c] = thresholds.global_threshold(cond)
        for name in thresholds.groups:
            used[g == name, c] = thresholds.group_threshold(cond, name)
    return p >= used, used


# --- files --------------------------------------------------------------------------------


def _json_safe(value):
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        value = float(value)
        return value if math.isfinite(value) else None
    return value


def save_thresholds(thresholds: Thresholds, path: str | os.PathLike) -> Path:
    """Write thresholds.json atomically (temp file in the same folder, then `os.replace`)."""
    text = json.dumps(_json_safe(thresholds.to_dict()), indent=2, allow_nan=False) + "\n"
    return atomic.write_text(path, text)


def load_thresholds(path: str | os.PathLike) -> Thresholds:
    """Read and validate thresholds.json; a `ThresholdsError` names the file and the field."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ThresholdsError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ThresholdsError(f"{path}: not valid JSON ({exc})") from None
    return Thresholds.from_dict(doc, source=str(path))


def load_severity_cutpoints(path: str | os.PathLike) -> tuple[float, ...] | None:
    """The acne-severity cutpoints of a thresholds.json, or None when it has none."""
    return load_thresholds(path).severity_cutpoints
