"""Per-condition, per-group evaluation with stratified bootstrap CIs, guards and gaps.

`evaluate_predictions` is the one entry point: it takes predictions (DataFrame or arrays),
optional thresholds, and returns a JSON-ready dict. Layout (docs/fairness.md has the full
description)::

    {"conditions": {cond: {"overall": cell, "by_group": {g: cell}, "by_type": {"1": cell},
                           "difference": {metric: est}, "group_min": {metric: est},
                           "gaps": {...}}},
     "macro": {...same keys, metrics averaged over conditions...},
     "summary": {"macro_f1": est, "worst_group_f1": est, "gap_dark_vs_medium_f1": est, ...}}

A cell holds ``n``, ``positives``, ``negatives``, ``prevalence`` and one estimate per metric;
an estimate is ``{"value", "ci_low", "ci_high", "status"}`` where status is "ok",
"insufficient evidence" or, for a condition no image has a label for (e.g. wrinkles on a
dataset without wrinkle labels), "no ground truth"; then the numbers are null and ``reason``
says why. Macro metrics average over the conditions that have ground truth (``macro.conditions``;
the others are listed in ``no_ground_truth``). No NaN is ever returned.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from fairness import gaps
from fairness.batched import SCORE_METRICS, THRESHOLD_METRICS, batched_metrics
from fairness.bootstrap import (
    INSUFFICIENT,
    estimate,
    insufficient,
    strata_codes,
    stratified_bootstrap_weights,
)
from fairness.io import PredictionArrays, to_arrays

__all__ = [
    "INSUFFICIENT",
    "MIN_NEGATIVES",
    "MIN_POSITIVES",
    "NO_GROUND_TRUTH",
    "evaluate_predictions",
]

NO_GROUND_TRUTH = "no ground truth"
NO_GROUND_TRUTH_REASON = "no image has a label for this condition"
# Below 10 positives (or negatives) even a perfect-looking recall has a 95% CI wider than
# +-0.3 (Wilson interval for 5/10 is [0.24, 0.76]); a number there would mislead.
MIN_POSITIVES = 10
MIN_NEGATIVES = 10
METRICS: tuple[str, ...] = (*THRESHOLD_METRICS, *SCORE_METRICS)
CI_METHOD = (
    "percentile bootstrap, resampling images with replacement within strata of "
    "Fitzpatrick type (group when the type is unknown) x label pattern"
)
# The same strata when no row has a type (e.g. estimated tone): no Fitzpatrick in the text.
CI_METHOD_GROUPS = (
    "percentile bootstrap, resampling images with replacement within strata of "
    "skin-tone group x label pattern"
)


@dataclass
class _Cell:
    rows: np.ndarray  # indices into the arrays
    positives: int
    negatives: int
    reason: str | None  # None = enough evidence
    status: str = "ok"  # "ok", INSUFFICIENT or NO_GROUND_TRUTH

    @property
    def ok(self) -> bool:
        return self.reason is None


@dataclass(frozen=True)
class _Rows:
    """The evaluated rows as arrays."""

    y: np.ndarray  # labels [N, C], NaN = unknown
    p: np.ndarray  # probabilities [N, C]
    decisions: np.ndarray  # 0/1 decisions [N, C], float64
    group: np.ndarray  # group name per row, "" = unknown
    types: np.ndarray  # Fitzpatrick type per row, 0 = unknown


CellKey = tuple[str, str, str]  # (condition, "overall" | "by_group" | "by_type", subset name)
Replicates = dict[CellKey, dict[str, np.ndarray | None]]


def coerce_arrays(data) -> PredictionArrays:
    """PredictionArrays from a DataFrame, a PredictionArrays, a mapping or a tuple of arrays."""
    if isinstance(data, PredictionArrays):
        return data
    if hasattr(data, "columns"):
        return to_arrays(data)
    if isinstance(data, Mapping):
        y, p, g, f = data["y_true"], data["probs"], data["groups"], data.get("fitzpatrick")
    elif isinstance(data, tuple | list) and len(data) in (3, 4):
        y, p, g = data[:3]
        f = data[3] if len(data) == 4 else None
    else:
        raise TypeError(
            "predictions must be a DataFrame, PredictionArrays, a mapping with "
            "y_true/probs/groups[/fitzpatrick] or a tuple "
            "(y_true, probs, groups[, fitzpatrick])"
        )
    y = np.asarray(y, dtype=np.float64)
    groups = [x if isinstance(x, str) and x else None for x in g]
    fitz = np.zeros(len(groups), dtype=np.int64) if f is None else np.asarray(f, dtype=np.int64)
    return PredictionArrays(
        y_true=y, probs=np.asarray(p, dtype=np.float64), groups=groups, fitzpatrick=fitz
    )


def evaluate_predictions(
    data,
    thresholds=None,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    min_positives: int = MIN_POSITIVES,
    min_negatives: int = MIN_NEGATIVES,
    ci_level: float = 0.95,
    progress: bool = False,
    chunk_size: int = 100,
    decisions=None,
) -> dict:
    """Evaluate predictions per condition x group (and type) with bootstrap 95% CIs.

    Parameters
    ----------
    data : DataFrame | PredictionArrays | mapping | tuple
        Labels [N, C] (NaN = unknown), probabilities [N, C], group per row and, optionally,
        the Fitzpatrick type per row (0 = unknown).
    thresholds : core.thresholds.Thresholds, optional
        Per-group thresholds (unknown group -> global). Default: 0.5 everywhere.
    n_boot : int
        Bootstrap replicates (0 gives point estimates only, CIs null).
    seed : int
        Seed of the bootstrap; same seed, same intervals.
    min_positives, min_negatives : int
        Minimum-count guard: a cell with fewer known positives or negatives reports
        "insufficient evidence" instead of numbers.
    ci_level : float
        Coverage of the percentile interval.
    progress : bool
        Show a tqdm bar over bootstrap chunks.
    decisions : array-like of 0/1, shape [N, C], optional
        Decisions made elsewhere (e.g. cross-fitted thresholds, `fairness.crossfit`); they
        replace applying `thresholds`, which then only names the method.

    Returns
    -------
    dict (JSON-ready; see the module docstring)
    """
    from core.schema import CONDITIONS, FITZPATRICK_TYPES, GROUPS

    rows, method = _evaluated_rows(data, thresholds, decisions, len(CONDITIONS))
    no_ground_truth = [c for i, c in enumerate(CONDITIONS) if not _has_labels(rows.y[:, i])]
    subsets = _subset_masks(rows.group, rows.types, GROUPS, FITZPATRICK_TYPES)
    cells = _cells(rows.y, subsets, CONDITIONS, no_ground_truth, min_positives, min_negatives)
    points = _point_estimates(rows, cells, CONDITIONS)
    replicates = _bootstrap_replicates(
        rows, cells, list(points), CONDITIONS, n_boot, seed, chunk_size, progress
    )
    result_conditions = {
        cond: _condition_entry(cond, cells, points, replicates, ci_level, cond in no_ground_truth)
        for cond in CONDITIONS
    }
    # Conditions nobody labelled would make every macro cell insufficient: average the others.
    scored = [c for c in CONDITIONS if c not in no_ground_truth] or list(CONDITIONS)
    macro = _macro(scored, GROUPS, cells, points, replicates, ci_level)
    macro["conditions"] = scored
    return {
        "schema_version": 1,
        "n": int(rows.y.shape[0]),
        "n_boot": int(n_boot),
        "seed": int(seed),
        "ci_level": ci_level,
        "ci_method": CI_METHOD if (rows.types > 0).any() else CI_METHOD_GROUPS,
        "min_positives": min_positives,
        "min_negatives": min_negatives,
        "thresholds": method,
        "conditions": result_conditions,
        "no_ground_truth": no_ground_truth,
        "macro": macro,
        "summary": _summary(macro, result_conditions, CONDITIONS, GROUPS),
    }


def _evaluated_rows(
    data: Any, thresholds: Any, decisions: Any, num_conditions: int
) -> tuple[_Rows, str]:
    """The rows to evaluate, their decisions, and the name of how the decisions were made."""
    arr = coerce_arrays(data)
    y, p = arr.y_true, arr.probs
    n_rows = y.shape[0]
    if y.shape != (n_rows, num_conditions) or p.shape != y.shape:
        raise ValueError(
            f"y_true and probs must both have shape [N, {num_conditions}], "
            f"got {y.shape} and {p.shape}"
        )
    if len(arr.groups) != n_rows or arr.fitzpatrick.shape[0] != n_rows:
        raise ValueError("groups and fitzpatrick must have one entry per row")
    method = "per-group (fitted)" if thresholds is not None else "0.5 for every group"
    if decisions is not None:
        method = "decisions given"
        decisions = np.asarray(decisions)
        if decisions.shape != y.shape:
            raise ValueError(f"decisions must have shape {y.shape}, got {decisions.shape}")
    elif thresholds is None:
        decisions = p >= 0.5
        if not np.all(np.isfinite(p)):
            raise ValueError("probs contain NaN or infinite values")
    else:
        from core.thresholds import apply_thresholds

        decisions, _ = apply_thresholds(p, arr.groups, thresholds)
    group = np.asarray([g or "" for g in arr.groups], dtype=object)
    return _Rows(y, p, decisions.astype(np.float64), group, arr.fitzpatrick), method


def _has_labels(labels: np.ndarray) -> bool:
    """Whether any row has a known (finite) label."""
    return bool(np.isfinite(labels).any())


def _subset_masks(
    group: np.ndarray,
    types: np.ndarray,
    groups: tuple[str, ...],
    fitzpatrick_types: tuple[int, ...],
) -> dict[str, dict[str, np.ndarray]]:
    """Row masks of the subsets: all rows, each group and each Fitzpatrick type."""
    return {
        "overall": {"all": np.ones(group.shape[0], dtype=bool)},
        "by_group": {g: group == g for g in groups},
        "by_type": {str(t): types == t for t in fitzpatrick_types},
    }


def _cells(
    y: np.ndarray,
    subsets: dict[str, dict[str, np.ndarray]],
    conditions: tuple[str, ...],
    no_ground_truth: list[str],
    min_positives: int,
    min_negatives: int,
) -> dict[CellKey, _Cell]:
    """Every condition x subset cell: its rows with a known label and its evidence status."""
    cells: dict[CellKey, _Cell] = {}
    for c, cond in enumerate(conditions):
        known = np.isfinite(y[:, c])
        for kind, members in subsets.items():
            for name, mask in members.items():
                rows = np.flatnonzero(known & mask)
                cells[(cond, kind, name)] = _make_cell(
                    rows, y[rows, c], cond in no_ground_truth, min_positives, min_negatives
                )
    return cells


def _make_cell(
    rows: np.ndarray, labels: np.ndarray, no_truth: bool, min_positives: int, min_negatives: int
) -> _Cell:
    """A cell of `rows` with 0/1 `labels`; a reason when it reports no number."""
    pos = int(labels.sum())
    neg = int(rows.size - pos)
    if no_truth:
        return _Cell(rows, pos, neg, NO_GROUND_TRUTH_REASON, NO_GROUND_TRUTH)
    if pos < min_positives or neg < min_negatives:
        reason = (
            f"{pos} positives and {neg} negatives; need at least "
            f"{min_positives} and {min_negatives}"
        )
        return _Cell(rows, pos, neg, reason, INSUFFICIENT)
    return _Cell(rows, pos, neg, None, "ok")


def _point_estimates(
    rows: _Rows, cells: dict[CellKey, _Cell], conditions: tuple[str, ...]
) -> dict[CellKey, dict[str, float]]:
    """Point estimates of the cells with enough evidence: the batched code with unit weights."""
    points: dict[CellKey, dict[str, float]] = {}
    for (cond, kind, name), cell in cells.items():
        if cell.ok:
            c = conditions.index(cond)
            r = cell.rows
            m = batched_metrics(
                rows.y[r, c], rows.p[r, c], rows.decisions[r, c], np.ones((1, r.size))
            )
            points[(cond, kind, name)] = {k: float(v[0]) for k, v in m.items()}
    return points


def _bootstrap_strata(y: np.ndarray, group: np.ndarray, types: np.ndarray) -> np.ndarray:
    """Stratum code per row: Fitzpatrick type (group when the type is unknown) x label
    pattern."""
    tone_key = [str(t) if t > 0 else f"g:{g}" for t, g in zip(types, group, strict=True)]
    label_key = [",".join("u" if np.isnan(v) else str(int(v)) for v in row) for row in y]
    return strata_codes(tone_key, label_key)


def _chunks(n_boot: int, chunk_size: int, progress: bool) -> Iterable[int]:
    """Replicates per bootstrap chunk (behind a tqdm bar when `progress`)."""
    chunks = [min(chunk_size, n_boot - s) for s in range(0, n_boot, chunk_size)]
    if not progress:
        return chunks
    from tqdm import tqdm

    return tqdm(chunks, desc="bootstrap", unit="chunk", leave=False, disable=None)


def _bootstrap_replicates(
    rows: _Rows,
    cells: dict[CellKey, _Cell],
    keys: list[CellKey],
    conditions: tuple[str, ...],
    n_boot: int,
    seed: int,
    chunk_size: int,
    progress: bool,
) -> Replicates:
    """Bootstrap replicates [n_boot] of every metric of the cells `keys` (None if n_boot is
    0), stratified by type (group if unknown) x label pattern."""
    reps: dict[CellKey, dict[str, list[np.ndarray]]] = {
        key: {m: [] for m in METRICS} for key in keys
    }
    if n_boot > 0:
        strata = _bootstrap_strata(rows.y, rows.group, rows.types)
        rng = np.random.default_rng(seed)
        for size in _chunks(n_boot, chunk_size, progress):
            weights = stratified_bootstrap_weights(strata, size, rng)
            for key in keys:
                c, r = conditions.index(key[0]), cells[key].rows
                m = batched_metrics(rows.y[r, c], rows.p[r, c], rows.decisions[r, c], weights[:, r])
                for name, values in m.items():
                    reps[key][name].append(values)
    return {
        key: {m: (np.concatenate(v) if v else None) for m, v in by_metric.items()}
        for key, by_metric in reps.items()
    }


def _cell_dict(
    cell: _Cell,
    point: dict[str, float] | None,
    replicates: dict[str, np.ndarray | None] | None,
    ci_level: float,
) -> dict:
    """A cell of the output: counts, prevalence and one estimate per metric."""
    n = int(cell.rows.size)
    out = {
        "n": n,
        "positives": cell.positives,
        "negatives": cell.negatives,
        "prevalence": (cell.positives / n) if n else None,
    }
    for metric in METRICS:
        if cell.ok:
            out[metric] = estimate(point[metric], replicates[metric], ci_level)
        else:
            out[metric] = insufficient(cell.reason, cell.status)
    out["status"] = cell.status
    return out


def _condition_entry(
    cond: str,
    cells: dict[CellKey, _Cell],
    points: dict[CellKey, dict[str, float]],
    replicates: Replicates,
    ci_level: float,
    no_truth: bool,
) -> dict:
    """One condition of the output: overall, by group, by type and the between-group gaps."""
    from core.schema import FITZPATRICK_TYPES, GROUPS

    def cell_dict(kind: str, name: str) -> dict:
        key = (cond, kind, name)
        return _cell_dict(cells[key], points.get(key), replicates.get(key), ci_level)

    entry = {
        "overall": cell_dict("overall", "all"),
        "by_group": {g: cell_dict("by_group", g) for g in GROUPS},
        "by_type": {str(t): cell_dict("by_type", str(t)) for t in FITZPATRICK_TYPES},
    }
    group_values = {
        g: (points[(cond, "by_group", g)], replicates[(cond, "by_group", g)])
        for g in GROUPS
        if cells[(cond, "by_group", g)].ok
    }
    between = _between_groups(group_values, ci_level)
    if no_truth:
        between = _mark_no_ground_truth(between)
    entry.update(between)
    return entry


def _summary(
    macro: dict, by_condition: dict, conditions: tuple[str, ...], groups: tuple[str, ...]
) -> dict:
    """The headline estimates: macro F1, worst-group F1, the dark-vs-medium gap, F1s."""
    return {
        "macro_f1": macro["overall"]["f1"],
        "worst_group_f1": macro["group_min"]["f1"],
        "gap_dark_vs_medium_f1": macro["gaps"]["f1_dark_vs_medium"],
        **{f"f1/{c}": by_condition[c]["overall"]["f1"] for c in conditions},
        **{f"f1/{g}": macro["by_group"][g]["f1"] for g in groups},
    }


def _between_groups(group_values: dict, level: float) -> dict:
    """`difference`, `group_min` and the named gaps from {group: (points, replicates)}."""
    reason = (
        f"only {len(group_values)} group(s) with enough evidence; need 2"
        if len(group_values) < 2
        else None
    )

    def combine(fn, *metrics) -> dict:
        if reason is not None:
            return insufficient(reason)
        point_args = [{g: v[0][m] for g, v in group_values.items()} for m in metrics]
        point = float(fn(*point_args))
        reps = None
        if all(v[1][m] is not None for v in group_values.values() for m in metrics):
            rep_args = [{g: v[1][m] for g, v in group_values.items()} for m in metrics]
            reps = fn(*rep_args)
        return estimate(point, reps, level)

    out = {
        "difference": {m: combine(gaps.difference, m) for m in METRICS},
        "group_min": {m: combine(gaps.group_min, m) for m in METRICS},
    }
    have_pair = gaps.DARK in group_values and gaps.MEDIUM in group_values
    if have_pair:
        pair = {g: group_values[g] for g in (gaps.MEDIUM, gaps.DARK)}
        signed = _combine_pair(pair, lambda d: gaps.dark_vs_medium(d), "f1", level)
        absolute = _combine_pair(pair, lambda d: np.abs(gaps.dark_vs_medium(d)), "f1", level)
        dvm = {**absolute, "signed": signed}
    else:
        dvm = insufficient(f"needs enough evidence in both {gaps.MEDIUM} and {gaps.DARK}")
    out["gaps"] = {
        "f1_dark_vs_medium": dvm,
        "f1_worst_best": out["difference"]["f1"],
        "tpr": out["difference"]["recall"],
        "equalized_odds": combine(gaps.equalized_odds_difference, "recall", "fpr"),
        "auroc": out["difference"]["auroc"],
    }
    return out


def _mark_no_ground_truth(tree):
    """The same between-group dict with every estimate marked "no ground truth"."""
    if isinstance(tree, dict) and "status" in tree:
        return insufficient(NO_GROUND_TRUTH_REASON, NO_GROUND_TRUTH)
    if isinstance(tree, dict):
        return {k: _mark_no_ground_truth(v) for k, v in tree.items()}
    return tree


def _combine_pair(pair: dict, fn, metric: str, level: float) -> dict:
    point = float(fn({g: v[0][metric] for g, v in pair.items()}))
    reps = None
    if all(v[1][metric] is not None for v in pair.values()):
        reps = fn({g: v[1][metric] for g, v in pair.items()})
    return estimate(point, reps, level)


def _macro(conditions, groups, cells, points, replicates, level) -> dict:
    """Metrics averaged over conditions; a subset needs enough evidence for every condition."""

    def macro_of(kind: str, name: str):
        keys = [(c, kind, name) for c in conditions]
        bad = [k[0] for k in keys if not cells[k].ok]
        if bad:
            return None, f"insufficient evidence for {bad}"
        point = {m: float(np.mean([points[k][m] for k in keys])) for m in METRICS}
        reps = {}
        for m in METRICS:
            arrays = [replicates[k][m] for k in keys]
            reps[m] = None if any(a is None for a in arrays) else np.mean(arrays, axis=0)
        return (point, reps), None

    def macro_cell(kind: str, name: str) -> dict:
        values, reason = macro_of(kind, name)
        if values is None:
            return {**{m: insufficient(reason) for m in METRICS}, "status": INSUFFICIENT}
        return {
            **{m: estimate(values[0][m], values[1][m], level) for m in METRICS},
            "status": "ok",
        }

    group_values = {}
    for g in groups:
        values, _ = macro_of("by_group", g)
        if values is not None:
            group_values[g] = values
    return {
        "overall": macro_cell("overall", "all"),
        "by_group": {g: macro_cell("by_group", g) for g in groups},
        **_between_groups(group_values, level),
    }
