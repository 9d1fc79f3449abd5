"""Counterfactual robustness per skin-tone group: the same photo under controlled changes.

Each photo is analysed as taken and under `CHANGES`: +0.5 EV and -0.5 EV exposure and a warm and
a cool white balance (`preprocessing.colour.LIGHTING_CHANGES`, applied with `relight`), a JPEG
re-encode at quality 60 and a 5 degree rotation. A decision flips when the served decision of
the changed copy differs from the as-taken one; the estimated tone group changes when the
served ITA estimate differs (an abstained estimate counts as its own value). Rates are per group
of the as-taken photo (real photos: the served estimate, "no estimate" where it abstained;
synthetic: the true group of the labelled type), per change and per condition, with 95% Wilson
score intervals: every photo counts once in every rate, so the trials are independent.

This module is the maths (`wilson_interval`, `rate_table`, `prob_change_table`,
`counterfactual_summary`) and the CSV (`read_counterfactual`, `write_counterfactual`; columns
`COLUMNS`, docs/architecture.md), numpy and the standard library only. The driver that runs the
served pipeline on the photos and writes the CSV is `python -m client.counterfactual`.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist

import numpy as np

__all__ = [
    "ALL_PHOTOS",
    "CHANGES",
    "COLUMNS",
    "NO_ESTIMATE",
    "CounterfactualError",
    "CounterfactualTable",
    "counterfactual_summary",
    "prob_change_table",
    "rate_table",
    "read_counterfactual",
    "wilson_interval",
    "write_counterfactual",
]

CHANGES: tuple[str, ...] = (
    "+0.5 EV",
    "-0.5 EV",
    "warm white balance",
    "cool white balance",
    "JPEG q60",
    "rotate 5 deg",
)
COLUMNS: tuple[str, ...] = (
    "image",
    "group",
    "tone_source",
    "estimated_group",
    "change",
    "condition",
    "prob",
    "prob_changed",
    "threshold",
    "threshold_changed",
    "decision",
    "decision_changed",
    "group_changed",
    "face_changed",
    "uncertain",
    "uncertain_changed",
)
NO_ESTIMATE = "no estimate"  # the row of faces whose as-taken tone estimate abstained
UNKNOWN_GROUP = "unknown"  # a labelled row without a group (no type)
ALL_PHOTOS = "all photos"
ANY_CONDITION = "any condition"
CI_LEVEL = 0.95
CI_METHOD = "Wilson score interval; each photo counts once in each rate"
PERCENTILES = (5.0, 50.0, 95.0)
MAX_LISTED = 5


class CounterfactualError(ValueError):
    """A counterfactual CSV or dataset that cannot be used; the message names file and line."""


# --- the maths (numpy only) ---------------------------------------------------------------


def wilson_interval(count: int, n: int, level: float = CI_LEVEL) -> tuple[float, float]:
    """Wilson score interval of `count` successes in `n` trials; (nan, nan) when n is 0.

    >>> [round(x, 4) for x in wilson_interval(1, 4)]
    [0.0456, 0.6994]
    >>> wilson_interval(0, 5)[0]
    0.0
    """
    if n <= 0:
        return float("nan"), float("nan")
    z = NormalDist().inv_cdf(0.5 + level / 2.0)
    p = count / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2.0 * n)) / denom
    half = z / denom * np.sqrt(p * (1.0 - p) / n + z * z / (4.0 * n * n))
    low = 0.0 if count == 0 else max(0.0, centre - half)
    high = 1.0 if count == n else min(1.0, centre + half)
    return float(low), float(high)


def rate_cell(count: int, n: int, level: float = CI_LEVEL) -> dict:
    """``{"count", "n", "rate", "ci_low", "ci_high"}``; rate and interval None when n is 0."""
    if n == 0:
        return {"count": 0, "n": 0, "rate": None, "ci_low": None, "ci_high": None}
    low, high = wilson_interval(count, n, level)
    return {"count": int(count), "n": int(n), "rate": count / n, "ci_low": low, "ci_high": high}


def rate_table(
    keys: Sequence[np.ndarray], events: np.ndarray, valid: np.ndarray, level: float = CI_LEVEL
) -> dict[tuple, dict]:
    """Per combination of key values: the share of `valid` rows with an event, Wilson CI.

    >>> out = rate_table([np.array(["a", "a", "b"])], np.array([1, 0, 1]), np.array([1, 1, 0]))
    >>> out[("a",)]["rate"], out[("b",)]["n"]
    (0.5, 0)
    """
    events = np.asarray(events, bool)
    valid = np.asarray(valid, bool)
    columns = [np.asarray(k, dtype=object) for k in keys]
    combos = sorted({tuple(row) for row in zip(*columns, strict=True)})
    out = {}
    for combo in combos:
        rows = np.ones(events.shape[0], bool)
        for column, value in zip(columns, combo, strict=True):
            rows &= column == value
        rows &= valid
        out[combo] = rate_cell(int(events[rows].sum()), int(rows.sum()), level)
    return out


def per_photo(
    images: np.ndarray, changes: np.ndarray, values: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of the first row of each (image, change) pair and `values` OR-ed over it.

    >>> per_photo(np.array(["a", "a", "b"]), np.array(["x", "x", "x"]), np.array([0, 1, 0]))
    (array([0, 2]), array([ True, False]))
    """
    pairs = np.char.add(np.char.add(np.asarray(images, str), "\x1f"), np.asarray(changes, str))
    _, first, inverse = np.unique(pairs, return_index=True, return_inverse=True)
    merged = np.zeros(first.shape[0], bool)
    np.logical_or.at(merged, inverse.ravel(), np.asarray(values, bool))
    order = np.argsort(first)
    return first[order], merged[order]


def prob_change_table(keys: Sequence[np.ndarray], delta: np.ndarray) -> dict[tuple, dict]:
    """Per combination of key values: range of the probability change (NaN rows skipped).

    >>> out = prob_change_table([np.array(["a", "a"])], np.array([0.1, -0.3]))
    >>> out[("a",)]["min"], out[("a",)]["max"], out[("a",)]["mean_abs"]
    (-0.3, 0.1, 0.2)
    """
    delta = np.asarray(delta, np.float64)
    columns = [np.asarray(k, dtype=object) for k in keys]
    combos = sorted({tuple(row) for row in zip(*columns, strict=True)})
    out = {}
    for combo in combos:
        rows = np.isfinite(delta)
        for column, value in zip(columns, combo, strict=True):
            rows &= column == value
        d = delta[rows]
        if d.size == 0:
            out[combo] = {
                "n": 0,
                "min": None,
                "p5": None,
                "median": None,
                "p95": None,
                "max": None,
                "mean_abs": None,
            }
            continue
        p5, median, p95 = (float(v) for v in np.percentile(d, PERCENTILES))
        out[combo] = {
            "n": int(d.size),
            "min": float(d.min()),
            "p5": p5,
            "median": median,
            "p95": p95,
            "max": float(d.max()),
            "mean_abs": float(np.abs(d).mean()),
        }
    return out


# --- the CSV ------------------------------------------------------------------------------


@dataclass(frozen=True)
class CounterfactualTable:
    """The rows of a counterfactual CSV as arrays (one row per photo x change x condition)."""

    image: np.ndarray  # str
    group: np.ndarray  # str, "" = no estimate (estimated) or unknown (labelled)
    tone_source: np.ndarray  # str: estimated | labelled
    estimated_group: np.ndarray  # str, "" = the as-taken estimate abstained
    change: np.ndarray  # str
    condition: np.ndarray  # str
    prob: np.ndarray  # float64
    prob_changed: np.ndarray  # float64, NaN = no face on the changed copy
    decision: np.ndarray  # bool
    decision_changed: np.ndarray  # float64 0/1, NaN = no face on the changed copy
    group_changed: np.ndarray  # str, "" = abstained or no face
    face_changed: np.ndarray  # bool
    uncertain: np.ndarray  # bool
    uncertain_changed: np.ndarray  # bool (False when no face)
    source: str = "arrays"

    def report_groups(self) -> np.ndarray:
        """The group each row is reported under: its group, "no estimate" or "unknown"."""
        named = np.where(self.tone_source == "labelled", UNKNOWN_GROUP, NO_ESTIMATE)
        return np.where(self.group == "", named, self.group).astype(object)


def _fmt(value: float | None, digits: int = 6) -> str:
    """A number as CSV text; "" for None or NaN."""
    if value is None or not np.isfinite(value):
        return ""
    return f"{float(value):.{digits}f}"


def write_counterfactual(path: str | Path, rows: Sequence[dict]) -> Path:
    """Write rows (dicts keyed by `COLUMNS`) as CSV atomically (temp file + os.replace)."""
    from fairness.io import atomic_write_text

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        cells = []
        for name in COLUMNS:
            value = row.get(name)
            if isinstance(value, float) or isinstance(value, np.floating):
                value = _fmt(float(value))
            elif isinstance(value, bool | np.bool_):
                value = int(value)
            cells.append("" if value is None else value)
        writer.writerow(cells)
    return atomic_write_text(path, buffer.getvalue())


def _parse_rows(reader: csv.DictReader) -> tuple[dict[str, list], list[str]]:
    """Column values of every row, and one problem per bad cell (line, column)."""
    from core.schema import CONDITIONS, GROUPS

    values: dict[str, list] = {name: [] for name in COLUMNS}
    problems: list[str] = []
    choices = {
        "group": ("", *GROUPS),
        "estimated_group": ("", *GROUPS),
        "group_changed": ("", *GROUPS),
        "tone_source": ("estimated", "labelled"),
        "change": CHANGES,
        "condition": CONDITIONS,
        "decision": ("0", "1"),
        "face_changed": ("0", "1"),
        "uncertain": ("0", "1"),
        "decision_changed": ("", "0", "1"),
        "uncertain_changed": ("", "0", "1"),
    }
    for line, row in enumerate(reader, start=2):
        for name in COLUMNS:
            raw = (row.get(name) or "").strip()
            if name in choices and raw not in choices[name]:
                problems.append(f"line {line}, column {name!r}: {raw!r} not in {choices[name]}")
            elif name.startswith(("prob", "threshold")):
                number = _number(raw)
                if (raw or name in ("prob", "threshold")) and not 0.0 <= number <= 1.0:
                    problems.append(f"line {line}, column {name!r}: {raw!r} not a number in [0, 1]")
                raw = number
            values[name].append(raw)
        if row.get("face_changed") == "1" and not (row.get("prob_changed") or "").strip():
            problems.append(f"line {line}, column 'prob_changed': empty although face_changed is 1")
    return values, problems


def _number(text: str) -> float:
    """A float from CSV text; NaN when empty or not a number."""
    try:
        return float(text) if text else float("nan")
    except ValueError:
        return float("nan")


def read_counterfactual(path: str | Path) -> CounterfactualTable:
    """Read and check a counterfactual CSV; `CounterfactualError` names file, line and column."""
    path = Path(path)
    if not path.is_file():
        raise CounterfactualError(f"{path}: file not found")
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise CounterfactualError(f"{path}: missing column(s) {missing}; expected {COLUMNS}")
        values, problems = _parse_rows(reader)
    if problems:
        more = f" (+{len(problems) - MAX_LISTED} more)" if len(problems) > MAX_LISTED else ""
        raise CounterfactualError(f"{path}: " + "; ".join(problems[:MAX_LISTED]) + more)
    if not values["image"]:
        raise CounterfactualError(f"{path}: no rows")

    def text(name: str) -> np.ndarray:
        """A column as an object array of strings."""
        return np.asarray(values[name], dtype=object)

    def flag(name: str) -> np.ndarray:
        """A 0/1 column as a bool array (empty = False)."""
        return np.asarray([v == "1" for v in values[name]], bool)

    return CounterfactualTable(
        *(text(n) for n in ("image", "group", "tone_source", "estimated_group", "change")),
        text("condition"),
        np.asarray(values["prob"], np.float64),
        np.asarray(values["prob_changed"], np.float64),
        flag("decision"),
        np.asarray([_number(v) for v in values["decision_changed"]], np.float64),
        text("group_changed"),
        flag("face_changed"),
        flag("uncertain"),
        flag("uncertain_changed"),
        source=str(path),
    )


# --- the summary --------------------------------------------------------------------------


def _nest(table: dict[tuple, dict], groups: Sequence[str]) -> dict:
    """{(group, change[, condition]): cell} -> {group: {change: cell or {condition: cell}}}."""
    out: dict = {g: {} for g in groups}
    for key, cell in table.items():
        level = out.setdefault(key[0], {})
        for part in key[1:-1]:
            level = level.setdefault(part, {})
        level[key[-1]] = cell
    return out


def _with_all(groups: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Rows repeated under ALL_PHOTOS: (index into the original rows, group per repeated row)."""
    n = groups.shape[0]
    index = np.concatenate([np.arange(n), np.arange(n)])
    return index, [*groups.tolist(), *[ALL_PHOTOS] * n]


def _photo_rates(t: CounterfactualTable, groups: np.ndarray) -> dict[str, dict]:
    """Photo-level rates per (group, change): any flip, tone change, face lost, uncertain."""
    flipped = t.face_changed & (t.decision_changed != t.decision.astype(np.float64))
    first, any_flip = per_photo(t.image, t.change, flipped)
    tone_changed = t.face_changed & (t.group_changed != t.estimated_group)
    uncertain_new = t.face_changed & t.uncertain_changed & ~t.uncertain
    index, names = _with_all(groups[first])
    keys = [np.asarray(names, dtype=object), t.change[first][index]]
    face = t.face_changed[first][index]
    everyone = np.ones(index.shape[0], bool)
    return {
        "any_flip": rate_table(keys, any_flip[index], face),
        "tone_change": rate_table(keys, tone_changed[first][index], face),
        "face_lost": rate_table(keys, ~face, everyone),
        "became_uncertain": rate_table(keys, uncertain_new[first][index], face),
    }


def counterfactual_summary(t: CounterfactualTable) -> dict:
    """Flip, tone-change, face-lost, became-uncertain rates and probability-change ranges.

    Per group of the as-taken photo (and all photos together), change and condition.
    """
    from core.schema import CONDITIONS, GROUPS

    groups = t.report_groups()
    present = [g for g in (*GROUPS, NO_ESTIMATE, UNKNOWN_GROUP) if (groups == g).any()]
    order = [*present, ALL_PHOTOS]
    index, names = _with_all(groups)
    keys = [np.asarray(names, dtype=object), t.change[index], t.condition[index]]
    flipped = t.face_changed & (t.decision_changed != t.decision.astype(np.float64))
    flips = _nest(rate_table(keys, flipped[index], t.face_changed[index]), order)
    photo = _photo_rates(t, groups)
    for (group, change), cell in photo["any_flip"].items():
        flips[group][change][ANY_CONDITION] = cell
    delta = (t.prob_changed - t.prob)[index]
    photos = {g: int(np.unique(t.image[groups == g]).size) for g in present}
    return {
        "photos": int(np.unique(t.image).size),
        "photos_by_group": photos | {ALL_PHOTOS: int(np.unique(t.image).size)},
        "groups": order,
        "changes": [c for c in CHANGES if (t.change == c).any()],
        "conditions": [c for c in CONDITIONS if (t.condition == c).any()],
        "tone_source": _tone_source(t),
        "ci_level": CI_LEVEL,
        "ci_method": CI_METHOD,
        "flip_rate": flips,
        **{name: _nest(photo[name], order) for name in ("tone_change", "face_lost")},
        "became_uncertain": _nest(photo["became_uncertain"], order),
        "prob_change": _nest(prob_change_table(keys, delta), order),
        "source": t.source,
    }


def _tone_source(t: CounterfactualTable) -> str:
    """estimated | labelled | mixed: where the rows' groups come from."""
    sources = set(t.tone_source.tolist())
    return sources.pop() if len(sources) == 1 else "mixed"
