"""The thresholds.json file format and the serving side of thresholds: load, check, apply, save.

One `Thresholds` object per file: per condition a global threshold and one per skin-tone group
(fitted on validation by `fairness.thresholds.fit_thresholds`; method and schema in
docs/fairness.md). A row whose group is unknown, None or not one of the file's groups uses the
global threshold. numpy and the standard library only, on numpy 1.26 too: Triton's
`skin_analysis` python model imports it in its numpy<2 environment, and the client needs
nothing more.

Optional top-level key ``acne_severity``: the acne-severity cutpoints fitted on validation
(`fairness.severity.fit_severity_cutpoints`: ``{"cutpoints": [c0, c1, c2], "qwk", "n",
"method", ...}``), read back as `Thresholds.severity_cutpoints` and applied by
`core.severity.severity_grade`. A file without it (older reports, a model without the severity
head) grades with the default 0.5 rule.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike

from core import atomic
from core.severity import NUM_GRADES

__all__ = [
    "DEFAULT_THRESHOLD",
    "METHOD",
    "Thresholds",
    "ThresholdsError",
    "apply_thresholds",
    "check_probs",
    "group_array",
    "load_severity_cutpoints",
    "load_thresholds",
    "save_thresholds",
]

SCHEMA_VERSION = 1
METHOD = "f1_optimal_precision_recall_curve_shrunk_to_global"
SHRINKAGE_RULE = "t_group = w * t_raw + (1 - w) * t_global, w = n_pos / (n_pos + k)"
DEFAULT_THRESHOLD = 0.5
SEVERITY_KEY = "acne_severity"  # top-level key of the severity cutpoints in thresholds.json
NUM_CUTPOINTS = NUM_GRADES - 1  # P(grade > k) for k = 0, 1, 2


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


# --- applying -----------------------------------------------------------------------------


def check_probs(probs: ArrayLike, num_conditions: int) -> np.ndarray:
    """`probs` as float64 [N, num_conditions]; a ValueError names the first cell outside [0, 1]."""
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


def group_array(groups: Sequence[str | None], n: int) -> np.ndarray:
    """The N groups as an object array, "" for None or a non-string; checks the length."""
    g = np.asarray(["" if x is None or not isinstance(x, str) else x for x in groups], dtype=object)
    if g.shape[0] != n:
        raise ValueError(f"groups has {g.shape[0]} entries, expected {n}")
    return g


def apply_thresholds(
    probs: ArrayLike, groups: Sequence[str | None], thresholds: Thresholds
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
    p = check_probs(probs, len(thresholds.conditions))
    g = group_array(groups, p.shape[0])
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
