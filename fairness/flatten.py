"""One flattener: a fairness report's nested metrics as flat ``key/path -> number`` dicts.

`flatten_report` is what MLflow metrics (`python -m train_jax.report --mlflow-run`,
`python -m train_jax.registry evaluate`), the DVC metrics files and the exported model's
numbers (`train_jax.registry.export_metrics`) are made of; `report_cells` is the nested form
the exported model card keeps (``metrics.per_group``). Keys::

    <prefix>/<summary key>                  macro_f1, worst_group_f1, f1/<group>, ...
    <prefix>/<metric>/<group|overall>/<cond>
    <prefix>/gap/<cond>/<gap>

and, with ``intervals=True``, the same keys with ``_ci_low`` / ``_ci_high`` appended. Cells
without a number (insufficient evidence: null) are left out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["CELL_METRICS", "estimate_value", "flatten_report", "report_cells"]

# The per-group metrics of a report's cells that go to DVC and MLflow.
CELL_METRICS = ("f1", "recall", "precision", "auroc")
INTERVAL_FIELDS = ("ci_low", "ci_high")


def estimate_value(estimate: Any, field: str = "value") -> float | None:
    """The number of a report estimate (``{"value": ...}`` or a bare number); None if missing
    or not finite. `field` picks ``ci_low`` / ``ci_high`` of a dict estimate instead.

    >>> estimate_value({"value": 0.5}), estimate_value(3), estimate_value({"value": None})
    (0.5, 3.0, None)
    """
    if isinstance(estimate, Mapping):
        estimate = estimate.get(field)
    elif field != "value":
        return None
    if isinstance(estimate, bool) or not isinstance(estimate, int | float):
        return None
    return float(estimate) if math.isfinite(estimate) else None


def report_cells(block: Mapping[str, Any], metrics: Sequence[str] = CELL_METRICS) -> dict:
    """Condition -> ``overall`` and each group -> metric -> number (None: no number) of a
    report's split block (``conditions.<cond>.overall`` / ``by_group``). A bare integer (a
    count such as ``n``) stays an integer.

    >>> cell = {"n": 9, "f1": {"value": 0.5}}
    >>> report_cells({"conditions": {"acne": {"overall": cell, "by_group": {}}}}, ("n", "f1"))
    {'acne': {'overall': {'n': 9, 'f1': 0.5}}}
    """
    out: dict = {}
    for cond, entry in (block.get("conditions") or {}).items():
        cells = {"overall": entry.get("overall") or {}, **(entry.get("by_group") or {})}
        out[cond] = {
            group: {m: _number(cell.get(m)) for m in metrics} for group, cell in cells.items()
        }
    return out


def _number(estimate: Any) -> int | float | None:
    if isinstance(estimate, int) and not isinstance(estimate, bool):
        return estimate
    return estimate_value(estimate)


def flatten_report(
    block: Mapping[str, Any],
    prefix: str,
    *,
    metrics: Sequence[str] = CELL_METRICS,
    intervals: bool = False,
) -> dict[str, float]:
    """Flat numbers of a report's split block: its ``summary``, the `metrics` of each
    condition's overall and per-group cells, and its ``gaps`` (see the module's key list).

    >>> cell = {"f1": {"value": 0.5, "ci_low": 0.4}, "auroc": {"value": None}}
    >>> report = {"summary": {"macro_f1": {"value": 0.7}},
    ...           "conditions": {"acne": {"overall": cell, "by_group": {"V-VI": cell}}}}
    >>> flatten_report(report, "eval")
    {'eval/macro_f1': 0.7, 'eval/f1/overall/acne': 0.5, 'eval/f1/V-VI/acne': 0.5}
    >>> flatten_report(report, "f", metrics=("f1",), intervals=True)["f/f1/V-VI/acne_ci_low"]
    0.4
    """
    fields = ("value", *INTERVAL_FIELDS) if intervals else ("value",)
    out: dict[str, float] = {}

    def put(key: str, estimate: Any) -> None:
        for field in fields:
            value = estimate_value(estimate, field)
            if value is not None:
                out[key if field == "value" else f"{key}_{field}"] = value

    for key, estimate in (block.get("summary") or {}).items():
        put(f"{prefix}/{key}", estimate)
    for cond, entry in (block.get("conditions") or {}).items():
        cells = {"overall": entry.get("overall") or {}, **(entry.get("by_group") or {})}
        for metric in metrics:
            for group, cell in cells.items():
                put(f"{prefix}/{metric}/{group}/{cond}", cell.get(metric))
        for gap, estimate in (entry.get("gaps") or {}).items():
            put(f"{prefix}/gap/{cond}/{gap}", estimate)
    return out
