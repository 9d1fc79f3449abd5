"""Split assignment: stratified by Fitzpatrick group x label combination, grouped by subject.

The algorithm is a deterministic greedy in two steps:

1. Quotas. Each stratum (group x label combination, unknowns included as their own
   value) gets an integer number of rows per split: ``floor(fraction * size)`` each,
   and the leftover rows go, one per split at most, to the splits with the largest
   overall deficit (target rows minus rows already promised). So a stratum of one row
   does not always land in train, and the split sizes stay close to their fractions.
2. Subjects. Subjects (rows sharing a ``subject_id``; a row without one is its own
   subject) are placed largest first, ties in a seeded random order, each into the
   split whose quotas it fills best; ties go to the split with the larger overall
   deficit. A subject never spans two splits.

Same rows + same seed -> same splits.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from core.schema import CONDITIONS, GROUPS, SPLITS, fitzpatrick_to_group

UNKNOWN = "?"


def _cell_missing(value: object) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    if value is pd.NA:
        return True
    return isinstance(value, str) and value.strip() in ("", "nan", "NaN")


def row_group(fitzpatrick: object, fitzpatrick_group: object = None) -> str | None:
    """Group of one row: from `fitzpatrick` (1-6) or else the optional `fitzpatrick_group`."""
    if not _cell_missing(fitzpatrick):
        return fitzpatrick_to_group(int(float(fitzpatrick)))
    if not _cell_missing(fitzpatrick_group) and str(fitzpatrick_group).strip() in GROUPS:
        return str(fitzpatrick_group).strip()
    return None


def _label_token(value: object) -> str:
    if _cell_missing(value):
        return UNKNOWN
    return str(int(float(value)))


def strata_keys(df: pd.DataFrame) -> list[str]:
    """One stratum key per row: ``group|acne,hyperpigmentation,wrinkles`` (``?`` = unknown)."""
    fitz = df["fitzpatrick"] if "fitzpatrick" in df else pd.Series([None] * len(df), index=df.index)
    fgroup = (
        df["fitzpatrick_group"]
        if "fitzpatrick_group" in df
        else pd.Series([None] * len(df), index=df.index)
    )
    label_cols = [
        df[c] if c in df else pd.Series([None] * len(df), index=df.index) for c in CONDITIONS
    ]
    keys = []
    for i in range(len(df)):
        group = row_group(fitz.iloc[i], fgroup.iloc[i]) or UNKNOWN
        labels = ",".join(_label_token(col.iloc[i]) for col in label_cols)
        keys.append(f"{group}|{labels}")
    return keys


def subject_keys(df: pd.DataFrame) -> list[str]:
    """One subject key per row; rows without a subject_id are their own subject."""
    if "subject_id" not in df:
        return [f"\0row{i}" for i in range(len(df))]
    keys = []
    for i, value in enumerate(df["subject_id"].tolist()):
        keys.append(f"\0row{i}" if _cell_missing(value) else f"s:{str(value).strip()}")
    return keys


def _check_fractions(fractions: Sequence[float]) -> np.ndarray:
    frac = np.asarray(fractions, dtype=np.float64)
    if frac.shape != (len(SPLITS),) or np.any(frac < 0) or not math.isclose(frac.sum(), 1.0):
        raise ValueError(
            f"fractions must be {len(SPLITS)} non-negative numbers for {list(SPLITS)} "
            f"summing to 1, got {tuple(fractions)!r}"
        )
    return frac


def _quotas(strata: list[str], frac: np.ndarray) -> dict[str, np.ndarray]:
    """Integer rows per split for each stratum (see the module docstring, step 1)."""
    sizes: dict[str, int] = {}
    for key in strata:
        sizes[key] = sizes.get(key, 0) + 1
    target = frac * len(strata)
    promised = np.zeros(len(frac))
    quotas: dict[str, np.ndarray] = {}
    leftovers: list[tuple[str, int, np.ndarray]] = []
    for key in sorted(sizes):
        exact = frac * sizes[key]
        base = np.floor(exact + 1e-9)
        quotas[key] = base
        promised += base
        leftovers.append((key, int(sizes[key] - base.sum()), exact - base))
    # Largest strata remainders first; within a stratum, one extra row per split at most.
    leftovers.sort(key=lambda t: (-t[1], t[0]))
    for key, num_left, remainder in leftovers:
        allowed = frac > 0
        for _ in range(num_left):
            deficit = np.where(allowed, target - promised + remainder, -np.inf)
            s = int(np.argmax(deficit))
            quotas[key][s] += 1
            promised[s] += 1
            allowed[s] = False
            if not allowed.any():
                allowed = frac > 0
    return quotas


def assign_splits(
    df: pd.DataFrame,
    *,
    seed: int,
    fractions: Sequence[float] = (0.7, 0.15, 0.15),
) -> pd.DataFrame:
    """Return a copy of `df` with `split` set to train/val/test (stratified, subject-grouped).

    Uses the columns ``fitzpatrick`` (or ``fitzpatrick_group``), the three conditions and
    ``subject_id`` when present (missing ones count as unknown); an existing ``split`` column
    is overwritten. Row order and index are kept.

    `fractions` are for ``("train", "val", "test")``; a zero fraction leaves that split empty
    (e.g. ``(0.85, 0.15, 0.0)`` to carve val out of a dataset's own train portion).
    """
    frac = _check_fractions(fractions)
    out = df.copy()
    if len(df) == 0:
        out["split"] = pd.Series([], dtype=object)
        return out
    strata = strata_keys(df)
    subjects = subject_keys(df)
    quotas = _quotas(strata, frac)

    members: dict[str, list[int]] = {}
    for i, subject in enumerate(subjects):
        members.setdefault(subject, []).append(i)
    names = sorted(members)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(names))
    # Largest subjects first (hardest to place); stable sort keeps the seeded order on ties.
    ordered = sorted((names[j] for j in order), key=lambda s: -len(members[s]))

    target = frac * len(df)
    filled = np.zeros(len(frac))
    counts = {key: np.zeros(len(frac)) for key in quotas}
    chosen = np.empty(len(df), dtype=object)
    open_splits = frac > 0
    for subject in ordered:
        rows = members[subject]
        need = np.zeros(len(frac))
        for i in rows:
            need += quotas[strata[i]] - counts[strata[i]]
        # Overall deficit only breaks ties: it stays below 0.5 rows in magnitude.
        overall = 0.5 * (target - filled) / len(df)
        score = np.where(open_splits, need + overall, -np.inf)
        s = int(np.argmax(score))
        for i in rows:
            counts[strata[i]][s] += 1
            chosen[i] = SPLITS[s]
        filled[s] += len(rows)
    out["split"] = chosen
    return out
