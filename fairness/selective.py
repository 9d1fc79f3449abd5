"""Selective prediction per skin-tone group: defer the least certain decisions to a human.

A case is one decision with a label (photo x condition). Its certainty is the model's own
confidence: the distance of the probability from the threshold that decided that row
(|p - t|; per-group thresholds, the global one for a row without a group). Deferring every
case below a certainty cut-off keeps a share of the cases, the coverage; one cut-off applies to
every group, as it would in use. Per group and coverage: accuracy (the share of kept decisions
that match the label, pooled over conditions), and per condition the balanced accuracy
((sensitivity + specificity) / 2, defined when the group's kept cases of that condition hold both
classes). The gap is the largest minus the smallest accuracy of the compared groups: the
groups with at least `min_cases` cases at full coverage; where one of them keeps fewer, the gap
is undefined (so a group cannot leave the comparison by being deferred).

The operating point is the largest coverage at which the gap is below a target (default 0.05),
with a bootstrap CI on the gap at that cut-off (photos resampled within each group; the cut-off
is held fixed, so the interval does not count the search for it) and the groups deferred most.
The tone variant defers the cases of uncertain tone first: an abstained tone estimate (no group),
then lower tone confidence when the predictions carry one, then by decision certainty.
numpy only (`fairness.bootstrap` for the resampling).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fairness.bootstrap import (
    estimate,
    insufficient,
    strata_codes,
    stratified_bootstrap_weights,
)

__all__ = [
    "DEFAULT_MIN_CASES",
    "DEFAULT_TARGET",
    "Cases",
    "balanced_accuracy",
    "deferral_curve",
    "gap_bootstrap",
    "labelled_cases",
    "operating_index",
    "selective_prediction",
]

DEFAULT_TARGET = 0.05
DEFAULT_MIN_CASES = 10
COVERAGE_GRID = tuple(round(1.0 - 0.05 * k, 2) for k in range(20))  # 1.00, 0.95, ..., 0.05
CERTAINTY_DECIMALS = 9
CI_LEVEL = 0.95
CI_METHOD = "percentile bootstrap, photos resampled within each group, cut-off held fixed"


@dataclass(frozen=True)
class Cases:
    """The labelled decisions, one per photo x condition, and the order they are deferred in."""

    row: np.ndarray  # int: the photo (row of the predictions)
    condition: np.ndarray  # int: index into the conditions
    group: np.ndarray  # object: the group the row is reported under
    label: np.ndarray  # bool
    decision: np.ndarray  # bool
    rank: np.ndarray  # int: certainty rank, 0 = least certain (deferred first); ties share one

    @property
    def correct(self) -> np.ndarray:
        """Whether each decision matches its label."""
        return self.label == self.decision


def _dense_rank(*keys: np.ndarray) -> np.ndarray:
    """Dense rank of rows ordered by the keys (first key most significant), ties equal.

    >>> _dense_rank(np.array([1, 0, 1]), np.array([0.2, 0.9, 0.2])).tolist()
    [1, 0, 1]
    """
    if not keys or keys[0].size == 0:
        return np.zeros(0 if not keys else keys[0].size, np.int64)
    stacked = np.stack([np.asarray(k, np.float64) for k in keys], axis=1)
    _, inverse = np.unique(stacked, axis=0, return_inverse=True)
    return inverse.ravel().astype(np.int64)


def labelled_cases(
    y_true: np.ndarray,
    probs: np.ndarray,
    thresholds: np.ndarray,
    groups: Sequence[str],
    tone_certainty: np.ndarray | None = None,
) -> Cases:
    """The labelled cells of [N, C] arrays as cases; `thresholds` [N, C] decided each cell.

    `groups`: the group name of each row. `tone_certainty` [N] (None: decision certainty only):
    deferred first where lower (0 = abstained tone estimate), ties broken by decision certainty.
    """
    y = np.asarray(y_true, np.float64)
    p = np.asarray(probs, np.float64)
    t = np.asarray(thresholds, np.float64)
    if not y.shape == p.shape == t.shape or y.ndim != 2 or len(groups) != y.shape[0]:
        raise ValueError("y_true, probs and thresholds must be [N, C] and groups of length N")
    rows, conds = np.nonzero(np.isfinite(y))
    # rounded, so that equal distances are tied whatever the float noise of p - t
    certainty = np.round(np.abs(p - t)[rows, conds], CERTAINTY_DECIMALS)
    keys = (
        [certainty]
        if tone_certainty is None
        else [np.asarray(tone_certainty, np.float64)[rows], certainty]
    )
    return Cases(
        row=rows,
        condition=conds,
        group=np.asarray(groups, dtype=object)[rows],
        label=y[rows, conds] > 0.5,
        decision=(p >= t)[rows, conds],
        rank=_dense_rank(*keys),
    )


def _cumulative(cases: Cases, group: str, cut: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(kept cases, kept correct) of `group` for every cut-off (keep rank >= cut)."""
    top = int(cases.rank.max()) + 1 if cases.rank.size else 1
    mine = cases.group == group
    count = np.bincount(cases.rank[mine], minlength=top)
    correct = np.bincount(cases.rank[mine], weights=cases.correct[mine], minlength=top)
    kept = np.cumsum(count[::-1])[::-1]  # kept[r] = cases with rank >= r
    right = np.cumsum(correct[::-1])[::-1]
    return kept[cut].astype(np.int64), right[cut]


def deferral_curve(
    cases: Cases, groups: Sequence[str], compared: Sequence[str], min_cases: int
) -> dict:
    """Coverage, per-group accuracy and the gap at every distinct certainty cut-off.

    Returns arrays, index 0 = full coverage: ``cut`` (keep cases of rank >= cut), ``coverage``,
    ``kept[g]``, ``accuracy[g]`` (NaN: none kept), ``gap`` (NaN: undefined) and ``compared``.

    >>> c = labelled_cases(np.array([[1.0], [0.0]]), np.array([[0.9], [0.55]]),
    ...                    np.full((2, 1), 0.5), ["a", "b"])
    >>> curve = deferral_curve(c, ["a", "b"], ["a", "b"], 1)
    >>> curve["coverage"].tolist(), curve["gap"].tolist()
    ([1.0, 0.5], [1.0, nan])
    """
    cut = np.unique(cases.rank)
    total = cases.rank.size
    kept_all = np.array([(cases.rank >= c).sum() for c in cut], np.int64)
    kept, accuracy = {}, {}
    for g in groups:
        kept[g], right = _cumulative(cases, g, cut)
        with np.errstate(invalid="ignore", divide="ignore"):
            accuracy[g] = np.where(kept[g] > 0, right / np.maximum(kept[g], 1), np.nan)
    compared = [g for g in compared if g in kept and kept[g][0] >= min_cases]
    gap = np.full(cut.shape, np.nan)
    if len(compared) >= 2:
        acc = np.stack([accuracy[g] for g in compared])
        enough = np.stack([kept[g] >= min_cases for g in compared]).all(axis=0)
        gap = np.where(enough, acc.max(axis=0) - acc.min(axis=0), np.nan)
    return {
        "cut": cut,
        "coverage": kept_all / max(total, 1),
        "kept": kept,
        "accuracy": accuracy,
        "gap": gap,
        "compared": compared,
    }


def operating_index(curve: dict, target: float) -> int | None:
    """Index of the largest coverage whose gap is below `target`; None when none is.

    >>> operating_index({"coverage": np.array([1.0, 0.8, 0.5]),
    ...                  "gap": np.array([0.2, 0.04, 0.01])}, 0.05)
    1
    """
    ok = np.flatnonzero(np.isfinite(curve["gap"]) & (curve["gap"] < target))
    if ok.size == 0:
        return None
    return int(ok[np.argmax(curve["coverage"][ok])])


def balanced_accuracy(cases: Cases, keep: np.ndarray, condition: int, group: str) -> float | None:
    """Balanced accuracy of the kept cases of one condition and group (None: one class).

    (sensitivity + specificity) / 2; None unless both classes are kept.

    >>> c = labelled_cases(np.array([[1.0], [0.0], [1.0]]), np.array([[0.9], [0.2], [0.3]]),
    ...                    np.full((3, 1), 0.5), ["a"] * 3)
    >>> balanced_accuracy(c, np.ones(3, bool), 0, "a")
    0.75
    """
    rows = keep & (cases.condition == condition) & (cases.group == group)
    pos, neg = rows & cases.label, rows & ~cases.label
    if not pos.any() or not neg.any():
        return None
    return float((cases.decision[pos].mean() + (~cases.decision[neg]).mean()) / 2.0)


def gap_bootstrap(
    cases: Cases,
    keep: np.ndarray,
    compared: Sequence[str],
    row_groups: Sequence[str],
    *,
    n_boot: int,
    seed: int,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Bootstrap replicates of the gap and of every group's accuracy on the kept cases.

    Photos are resampled within each group (`row_groups`: each photo's group); the gap is
    over the `compared` groups.
    """
    rng = np.random.default_rng(seed)
    weights = stratified_bootstrap_weights(strata_codes(list(row_groups)), n_boot, rng)
    accuracy = {}
    for g in dict.fromkeys(row_groups):
        mine = keep & (cases.group == g)
        w = weights[:, cases.row[mine]]
        total = w.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            accuracy[g] = np.where(total > 0, (w * cases.correct[mine]).sum(axis=1) / total, np.nan)
    if len(compared) < 2:
        return np.full(n_boot, np.nan), accuracy
    stacked = np.stack([accuracy[g] for g in compared])
    return stacked.max(axis=0) - stacked.min(axis=0), accuracy


@dataclass(frozen=True)
class _Setting:
    """What a variant's point is described with: names, conditions and bootstrap options."""

    groups: list[str]
    conditions: list[str]
    row_groups: list[str]
    n_boot: int
    seed: int


def _point(cases: Cases, curve: dict, index: int, setting: _Setting) -> dict:
    """One point of the curve: coverage, cut-off, gap and accuracy (with CIs), deferral."""
    keep = cases.rank >= curve["cut"][index]
    compared = curve["compared"]
    point = {
        "coverage": float(curve["coverage"][index]),
        "kept": int(keep.sum()),
        "deferred": int((~keep).sum()),
    }
    reps, acc_reps = (np.full(1, np.nan), {})
    if setting.n_boot > 0:
        reps, acc_reps = gap_bootstrap(
            cases, keep, compared, setting.row_groups, n_boot=setting.n_boot, seed=setting.seed
        )
    gap = float(curve["gap"][index])
    point["gap"] = estimate(gap, reps if setting.n_boot else None, CI_LEVEL)
    point["accuracy_by_group"] = {
        g: (
            estimate(float(curve["accuracy"][g][index]), acc_reps.get(g), CI_LEVEL)
            if curve["kept"][g][index] > 0
            else insufficient("no case kept")
        )
        for g in setting.groups
    }
    point["kept_by_group"] = {g: int(curve["kept"][g][index]) for g in setting.groups}
    shares = {}
    for g in setting.groups:
        total = int(curve["kept"][g][0])
        shares[g] = None if total == 0 else 1.0 - int(curve["kept"][g][index]) / total
    point["deferred_share_by_group"] = shares
    point["deferred_most"] = sorted(
        (g for g in setting.groups if shares[g] is not None), key=lambda g: -shares[g]
    )
    point["balanced_accuracy"] = {
        cond: {g: balanced_accuracy(cases, keep, c, g) for g in setting.groups}
        for c, cond in enumerate(setting.conditions)
    }
    return point


def _grid(curve: dict) -> list[dict]:
    """The curve at the coverages of COVERAGE_GRID (the smallest actual coverage >= each)."""
    points = []
    for level in COVERAGE_GRID:
        ok = np.flatnonzero(curve["coverage"] >= level - 1e-12)
        if ok.size == 0:
            continue
        i = int(ok[np.argmin(curve["coverage"][ok])])
        gap = curve["gap"][i]
        points.append(
            {
                "level": level,
                "coverage": float(curve["coverage"][i]),
                "gap": None if not np.isfinite(gap) else float(gap),
                "accuracy": {
                    g: (None if not np.isfinite(a[i]) else float(a[i]))
                    for g, a in curve["accuracy"].items()
                },
            }
        )
    return points


def _variant(
    cases: Cases, setting: _Setting, target: float, min_cases: int, compared: Sequence[str]
) -> dict:
    """One variant: its curve (on the grid, and full for plots), full coverage, operating point."""
    curve = deferral_curve(cases, setting.groups, compared, min_cases)
    out = {
        "cases": int(cases.rank.size),
        "compared_groups": curve["compared"],
        "full_coverage": _point(cases, curve, 0, setting),
        "curve": _grid(curve),
        "plot": {
            "coverage": curve["coverage"].tolist(),
            "gap": [None if not np.isfinite(v) else float(v) for v in curve["gap"]],
            "accuracy": {
                g: [
                    float(v) if n >= min_cases else None
                    for v, n in zip(a, curve["kept"][g], strict=True)
                ]
                for g, a in curve["accuracy"].items()
            },
        },
    }
    index = operating_index(curve, target)
    if index is None:
        finite = np.flatnonzero(np.isfinite(curve["gap"]))
        best = None if finite.size == 0 else int(finite[np.argmin(curve["gap"][finite])])
        out["operating_point"] = {
            "status": "target not reached",
            "smallest_gap": None if best is None else float(curve["gap"][best]),
            "at_coverage": None if best is None else float(curve["coverage"][best]),
        }
    else:
        out["operating_point"] = {"status": "ok", **_point(cases, curve, index, setting)}
    return out


def selective_prediction(
    y_true: np.ndarray,
    probs: np.ndarray,
    thresholds: np.ndarray,
    groups: Sequence[str],
    *,
    conditions: Sequence[str],
    compared: Sequence[str],
    tone_certainty: np.ndarray | None = None,
    target: float = DEFAULT_TARGET,
    min_cases: int = DEFAULT_MIN_CASES,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict:
    """The selective-prediction section: the decision variant and, if given, the tone one.

    The tone variant needs `tone_certainty` (see the module docstring).
    """
    if not 0.0 < target < 1.0:
        raise ValueError(f"the selective-prediction target must be in (0, 1), got {target}")
    if min_cases < 1:
        raise ValueError(f"the selective-prediction minimum cases must be >= 1, got {min_cases}")
    names = [g for g in dict.fromkeys(groups)]
    ordered = [g for g in compared if g in names] + [g for g in names if g not in compared]
    setting = _Setting(ordered, list(conditions), list(groups), n_boot, seed)
    variants = {
        "decision": _variant(
            labelled_cases(y_true, probs, thresholds, groups), setting, target, min_cases, compared
        )
    }
    if tone_certainty is not None:
        cases = labelled_cases(y_true, probs, thresholds, groups, tone_certainty)
        variants["tone"] = _variant(cases, setting, target, min_cases, compared)
    return {
        "target": target,
        "min_cases": min_cases,
        "groups": ordered,
        "conditions": list(conditions),
        "ci_level": CI_LEVEL,
        "ci_method": CI_METHOD,
        "n_boot": n_boot,
        "seed": seed,
        "variants": variants,
    }
