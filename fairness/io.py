"""Read and validate predictions CSVs (`predictions_{val,test}.csv` of a training run).

Columns follow `core.schema.PREDICTION_COLUMNS`. Every problem is reported with the file,
the CSV line number (the header is line 1) and the column. pandas is imported lazily.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from core import atomic
from data.run import Run

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "PredictionArrays",
    "PredictionsError",
    "atomic_write_bytes",
    "atomic_write_text",
    "read_dataset_info",
    "read_predictions",
    "resolve_prediction_files",
    "to_arrays",
]

MAX_LISTED = 5
Columns = dict[str, "pd.Series"]  # checked columns of one validation step, by name


class PredictionsError(ValueError):
    """A predictions file that cannot be evaluated; the message names file, line and column."""


@dataclass(frozen=True)
class PredictionArrays:
    """Labels [N, C] (NaN = unknown), probabilities [N, C], group and type per row."""

    y_true: np.ndarray
    probs: np.ndarray
    groups: list[str | None]
    fitzpatrick: np.ndarray  # int, 0 = unknown
    source: str = "arrays"


def _lines(mask: np.ndarray) -> str:
    rows = np.flatnonzero(mask)
    shown = ", ".join(str(int(r) + 2) for r in rows[:MAX_LISTED])
    more = f" (+{rows.size - MAX_LISTED} more)" if rows.size > MAX_LISTED else ""
    return f"line {shown}{more}" if rows.size == 1 else f"lines {shown}{more}"


def read_predictions(path: str | os.PathLike):
    """Read one predictions CSV into a DataFrame, checking every column and value.

    Raises `PredictionsError` listing every problem (file, CSV line, column).
    """
    import pandas as pd

    path = Path(path)
    df = _load_csv(path)
    out = pd.DataFrame({"image": df["image"], "split": df["split"]})
    problems: list[str] = []
    for step in (_condition_columns, _tone_columns, _optional_columns):
        columns, found = step(df)
        for name, values in columns.items():
            out[name] = values
        problems += found
    if problems:
        raise PredictionsError(f"{path}: " + "; ".join(problems))
    out.attrs["path"] = str(path)
    return out


def _load_csv(path: Path) -> pd.DataFrame:
    """The CSV as text (empty cells as ""), after checking it exists, has rows and columns."""
    import pandas as pd

    from core.schema import PREDICTION_COLUMNS

    if not path.is_file():
        raise PredictionsError(f"{path}: file not found")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise PredictionsError(f"{path}: not a readable CSV ({exc})") from None
    missing = [c for c in PREDICTION_COLUMNS if c not in df.columns]
    if missing:
        raise PredictionsError(
            f"{path}: missing column(s) {missing}; expected {list(PREDICTION_COLUMNS)}"
        )
    if len(df) == 0:
        raise PredictionsError(f"{path}: no rows")
    return df


def _condition_columns(df: pd.DataFrame) -> tuple[Columns, list[str]]:
    """Each condition's label (0, 1 or NaN) and probability, and the problems found."""
    import pandas as pd

    from core.schema import CONDITIONS

    columns: Columns = {}
    problems: list[str] = []
    for cond in CONDITIONS:
        raw = df[cond].str.strip()
        value = pd.to_numeric(raw.where(raw != ""), errors="coerce")
        bad = (raw != "") & ~value.isin([0, 1])
        if bad.any():
            problems.append(
                f"column {cond!r}, {_lines(bad.to_numpy())}: label must be 0, 1 or empty"
            )
        columns[cond] = value.astype(np.float64)
        raw_p = df[f"{cond}_prob"].str.strip()
        prob = pd.to_numeric(raw_p, errors="coerce")
        bad_p = ~prob.between(0.0, 1.0)  # NaN is not between, so it is flagged too
        if bad_p.any():
            problems.append(
                f"column {cond + '_prob'!r}, {_lines(bad_p.to_numpy())}: "
                "probability must be a number in [0, 1] (NaN or empty is not allowed)"
            )
        columns[f"{cond}_prob"] = prob.astype(np.float64)
    return columns, problems


def _tone_columns(df: pd.DataFrame) -> tuple[Columns, list[str]]:
    """The Fitzpatrick type (0 = unknown) and the group (a known type's group when empty)."""
    import pandas as pd

    from core.schema import FITZPATRICK_TYPES, GROUPS

    problems: list[str] = []
    raw_f = df["fitzpatrick"].str.strip()
    fitz = pd.to_numeric(raw_f.where(raw_f != ""), errors="coerce")
    bad_f = (raw_f != "") & ~fitz.isin(FITZPATRICK_TYPES)
    if bad_f.any():
        problems.append(
            f"column 'fitzpatrick', {_lines(bad_f.to_numpy())}: "
            f"must be one of {list(FITZPATRICK_TYPES)} or empty"
        )
    types = fitz.where(~bad_f).fillna(0).astype(np.int64)
    group = df["group"].str.strip()
    bad_g = (group != "") & ~group.isin(GROUPS)
    if bad_g.any():
        problems.append(
            f"column 'group', {_lines(bad_g.to_numpy())}: must be one of {sorted(GROUPS)} or empty"
        )
    expected = types.map(lambda f: GROUPS[(f - 1) // 2] if f > 0 else "")
    clash = (group != "") & (expected != "") & (group != expected) & ~bad_g
    if clash.any():
        problems.append(
            f"columns 'group'/'fitzpatrick', {_lines(clash.to_numpy())}: "
            "group does not match the Fitzpatrick type"
        )
    # A known type with an empty group still belongs to that type's group.
    return {"fitzpatrick": types, "group": group.where(group != "", expected)}, problems


def _optional_columns(df: pd.DataFrame) -> tuple[Columns, list[str]]:
    """The optional columns that are present: pass-through ones, face_found, acne severity."""
    import pandas as pd

    from core.schema import PREDICTION_OPTIONAL_COLUMNS

    columns: Columns = {}
    problems: list[str] = []
    # tone_source: fairness.tone_basis reads it; subject_id: cross-fitting folds keep a subject
    # together (fairness.crossfit); face_found (1/0): the share of faces not analysed.
    for extra in ("source", "tone_source", "subject_id", "face_found"):
        if extra in df.columns:
            columns[extra] = df[extra]
    if "face_found" in df.columns:
        raw_face = df["face_found"].str.strip()
        bad_face = ~raw_face.isin(["0", "1", ""])
        if bad_face.any():
            problems.append(
                f"column 'face_found', {_lines(bad_face.to_numpy())}: must be 0, 1 or empty"
            )
        columns["face_found"] = raw_face
    # tone_confidence (optional, in [0, 1]): the selective-prediction report's tone variant.
    if "tone_confidence" in df.columns:
        raw_conf = df["tone_confidence"].str.strip()
        confidence = pd.to_numeric(raw_conf.where(raw_conf != ""), errors="coerce")
        bad_conf = (raw_conf != "") & ~confidence.between(0.0, 1.0)
        if bad_conf.any():
            problems.append(
                f"column 'tone_confidence', {_lines(bad_conf.to_numpy())}: must be a number "
                "in [0, 1] or empty"
            )
        columns["tone_confidence"] = confidence.astype(np.float64)
    # Optional acne-severity columns (core.schema.PREDICTION_OPTIONAL_COLUMNS), when present:
    # kept as numbers, NaN = empty (unknown label, or a model without the severity head).
    for extra in (c for c in PREDICTION_OPTIONAL_COLUMNS if c.startswith("acne_severity")):
        if extra in df.columns:
            raw_x = df[extra].str.strip()
            columns[extra] = pd.to_numeric(raw_x.where(raw_x != ""), errors="coerce").astype(
                np.float64
            )
    return columns, problems


def to_arrays(df) -> PredictionArrays:
    """Arrays from a validated predictions DataFrame (empty group -> None)."""
    from core.schema import CONDITIONS

    groups = [g if isinstance(g, str) and g else None for g in df["group"].tolist()]
    return PredictionArrays(
        y_true=df[list(CONDITIONS)].to_numpy(dtype=np.float64),
        probs=df[[f"{c}_prob" for c in CONDITIONS]].to_numpy(dtype=np.float64),
        groups=groups,
        fitzpatrick=df["fitzpatrick"].to_numpy(dtype=np.int64),
        source=str(df.attrs.get("path", "dataframe")),
    )


def resolve_prediction_files(inputs: Sequence[str | os.PathLike]) -> tuple[Path, Path]:
    """(val_csv, test_csv) from a run folder or from two CSV paths.

    A folder must hold `predictions_val.csv` and `predictions_test.csv`. Two files are told
    apart by name ("val"/"test" in the file name), else taken in the order given (val, test).
    """
    paths = [Path(p) for p in inputs]
    if len(paths) == 1 and paths[0].is_dir():
        run = Run(paths[0])
        val, test = run.predictions("val"), run.predictions("test")
        missing = [str(p) for p in (val, test) if not p.is_file()]
        if missing:
            raise PredictionsError(f"{paths[0]}: missing {missing}")
        return val, test
    if len(paths) == 1:
        state = "not a folder" if paths[0].exists() else "not found"
        raise PredictionsError(
            f"{paths[0]}: {state}; --predictions takes a run folder or two CSV files (val, test)"
        )
    if len(paths) != 2:
        raise PredictionsError(
            "--predictions takes a run folder or two CSV files (val, test); "
            f"got {len(paths)} path(s)"
        )
    val, test = paths
    if "test" in val.name and "val" in test.name:
        val, test = test, val
    for p in (val, test):
        if not p.is_file():
            raise PredictionsError(f"{p}: file not found")
    return val, test


def read_dataset_info(
    run_dir: Path | None, frames: Sequence = (), data_dirs: Sequence[str | os.PathLike] = ()
) -> dict:
    """What data the predictions come from: `dataset.json`, the `source` column, or unknown.

    Looks for `dataset.json` in the run folder, then for the data folder named in the run's
    `config.json` (any string value that is a folder holding `dataset.json`), then in
    `data_dirs` (e.g. the dataset folders given as datacards), then for a `source` column.
    Returns ``{"name", "kind": "synthetic"|"real"|"unknown", "sources", ...}``.
    """
    candidates: list[Path] = []
    if run_dir is not None:
        candidates.append(run_dir / "dataset.json")
        config = run_dir / "config.json"
        if config.is_file():
            try:
                for value in _strings(json.loads(config.read_text(encoding="utf-8"))):
                    candidates.append(Path(value) / "dataset.json")
            except (OSError, json.JSONDecodeError):
                pass
    candidates += [Path(d) / "dataset.json" for d in data_dirs]
    for candidate in candidates:
        try:
            if candidate.is_file():
                info = json.loads(candidate.read_text(encoding="utf-8"))
                if isinstance(info, dict):
                    kind = _kind(info)
                    name = info.get("name") or info.get("preset") or candidate.parent.name
                    return {**info, "file": str(candidate), "kind": kind, "name": str(name)}
        except (OSError, json.JSONDecodeError, ValueError):
            continue
    sources: set[str] = set()
    for df in frames:
        if "source" in getattr(df, "columns", ()):
            sources |= {s for s in df["source"].astype(str) if s}
    if sources:
        synthetic = all("synth" in s.lower() for s in sources)
        return {
            "kind": "synthetic" if synthetic else "real",
            "sources": sorted(sources),
            "name": ", ".join(sorted(sources)),
        }
    return {"kind": "unknown", "sources": [], "name": "unknown (no dataset.json or source column)"}


def _kind(info: dict) -> str:
    """synthetic | real | unknown: dataset.json's ``synthetic`` key decides when it has one (a
    real dataset may well mention "synth", e.g. one combined with the synthetic benchmark)."""
    if isinstance(info.get("synthetic"), bool):
        return "synthetic" if info["synthetic"] else "real"
    if "synth" in json.dumps(info).lower():
        return "synthetic"
    return "unknown"


def _strings(value) -> list[str]:
    if isinstance(value, str):
        return [value] if len(value) < 500 else []
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write bytes to `path` atomically (`core.atomic.write_bytes`)."""
    return atomic.write_bytes(path, data)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 text atomically (`core.atomic.write_text`)."""
    return atomic.write_text(path, text)
