"""The canonical dataset format: loader, validator, split assignment and coverage table.

A dataset is ``DIR/metadata.csv`` beside its images (docs/architecture.md, "Canonical dataset").
Every problem is reported as a `Problem` naming the file, the 1-based CSV line (the header
is line 1) and the column, and all problems are collected in one pass.

Optional columns understood here besides those of core/schema.py: ``fitzpatrick_group``
(``I-II``/``III-IV``/``V-VI`` or empty) for datasets that know only the group of a row
(DDI); when ``fitzpatrick`` is set the two must agree. ``tone_source`` (``labelled``,
``estimated`` or empty): ``estimated`` marks a group estimated from the photo (ITA), which is
never a Fitzpatrick type, so such a row must leave ``fitzpatrick`` empty. Other extra columns
are ignored.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import struct
import zlib
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from core.schema import (
    CONDITIONS,
    FITZPATRICK_TYPES,
    GROUPS,
    REQUIRED_COLUMNS,
    SPLITS,
    TONE_SOURCES,
)
from core.severity import severity_from_count
from data.splits import assign_splits, row_group

__all__ = [
    "METADATA_NAME",
    "DatasetError",
    "Problem",
    "assign_splits",
    "check_image_bytes",
    "coverage_table",
    "estimated_tone_rows",
    "load_metadata",
    "split_table",
    "validate_dataset",
]

METADATA_NAME = "metadata.csv"
EMPTY_VALUES = frozenset({"", "nan", "NaN"})
SEVERITIES = (0, 1, 2, 3)
COUNT_COLUMN = "acne_lesion_count"
GROUP_COLUMN = "fitzpatrick_group"
TONE_SOURCE_COLUMN = "tone_source"
TONE_ESTIMATED = "estimated"  # the TONE_SOURCES value of a group estimated from the photo
assert TONE_ESTIMATED in TONE_SOURCES

MSG_EMPTY_FILE = "file is empty (no header line)"
MSG_NO_ROWS = "no data rows"
MSG_MISSING_COLUMN = "missing required column"
MSG_ESTIMATED_WITH_TYPE = (
    "an estimated tone is a group, never a Fitzpatrick type: leave fitzpatrick empty and put "
    "the estimate in fitzpatrick_group"
)


@dataclass(frozen=True)
class Problem:
    """One problem in a dataset: file, 1-based CSV line (None = whole file), column, message."""

    file: str
    row: int | None
    column: str | None
    message: str

    def __str__(self) -> str:
        where = [self.file]
        if self.row is not None:
            where.append(str(self.row))
            if self.column:
                where.append(self.column)
        elif self.column:
            where.append(self.column)
        return ":".join(where) + ": " + self.message

    def to_dict(self) -> dict[str, object]:
        """Plain dict for JSON output."""
        return asdict(self)


class DatasetError(ValueError):
    """A dataset has problems; `problems` lists every one of them."""

    def __init__(self, problems: Sequence[Problem]):
        self.problems = list(problems)
        lines = [str(p) for p in self.problems]
        head = f"{len(lines)} problem(s) in dataset"
        super().__init__(head + (":\n" + "\n".join(lines) if lines else ""))


# ---------------------------------------------------------------------------------------------
# Reading the CSV with exact line numbers.


@dataclass
class _Table:
    file: str
    header: list[str]
    rows: list[tuple[int, list[str]]]  # (1-based line of the record's start, fields)


def _read_table(csv_path: Path, problems: list[Problem]) -> _Table | None:
    file = str(csv_path)
    try:
        text = csv_path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        problems.append(Problem(file, None, None, "file not found"))
        return None
    except UnicodeDecodeError as exc:
        problems.append(Problem(file, None, None, f"not UTF-8 text ({exc.reason})"))
        return None
    except OSError as exc:
        problems.append(Problem(file, None, None, f"cannot read: {exc.strerror}"))
        return None
    reader = csv.reader(io.StringIO(text, newline=""))
    header: list[str] | None = None
    rows: list[tuple[int, list[str]]] = []
    last_line = 0
    try:
        for record in reader:
            start = last_line + 1
            last_line = reader.line_num
            if not record or all(not f.strip() for f in record):
                continue
            if header is None:
                header = [h.strip() for h in record]
                header_line = start
            else:
                rows.append((start, record))
    except csv.Error as exc:
        problems.append(Problem(file, reader.line_num, None, f"malformed CSV: {exc}"))
    if header is None:
        problems.append(Problem(file, None, None, MSG_EMPTY_FILE))
        return None
    if header_line != 1:
        problems.append(Problem(file, header_line, None, "blank lines before the header"))
    return _Table(file, header, rows)


# ---------------------------------------------------------------------------------------------
# Value checks (pure functions of one cell; they return an error message or None).


def _as_int(value: str) -> int | None:
    try:
        number = float(value)
    except ValueError:
        return None
    if not number.is_integer():
        return None
    return int(number)


def _check_choice(value: str, allowed: Iterable[int], what: str) -> str | None:
    if value in EMPTY_VALUES:
        return None
    number = _as_int(value)
    allowed = tuple(allowed)
    if number is None or number not in allowed:
        shown = ", ".join(str(a) for a in allowed)
        return f"{what} must be one of {shown} or empty, got {value!r}"
    return None


def _check_count(value: str, severity: str) -> str | None:
    """A lesion count: empty, or a whole number >= 0 whose ACNE04 band is the row's severity."""
    if value in EMPTY_VALUES:
        return None
    count = _as_int(value)
    if count is None or count < 0:
        return f"{COUNT_COLUMN} must be a whole number >= 0 or empty, got {value!r}"
    grade = _as_int(severity) if severity not in EMPTY_VALUES else None
    if grade is not None and grade != severity_from_count(count):
        return (
            f"{COUNT_COLUMN} {count} is grade {severity_from_count(count)}, "
            f"but acne_severity is {severity!r}"
        )
    return None


def _check_relpath(value: str, what: str) -> str | None:
    if value.startswith(("/", "\\")) or (len(value) > 1 and value[1] == ":"):
        return f"{what} path {value!r} must be relative to the CSV"
    if ".." in Path(value).parts:
        return f"{what} path {value!r} must stay inside the dataset folder (no '..')"
    return None


def _check_rows(table: _Table, problems: list[Problem]) -> list[tuple[int, dict[str, str]]]:
    """Check every cell; return the rows with the right field count as dicts."""
    file, header = table.file, table.header
    seen_cols: set[str] = set()
    for name in header:
        if name in seen_cols:
            problems.append(Problem(file, 1, name, "duplicate column name"))
        seen_cols.add(name)
    for name in REQUIRED_COLUMNS:
        if name not in seen_cols:
            problems.append(Problem(file, 1, name, MSG_MISSING_COLUMN))
    if not table.rows:
        problems.append(Problem(file, None, None, MSG_NO_ROWS))

    good: list[tuple[int, dict[str, str]]] = []
    for line, fields in table.rows:
        if len(fields) != len(header):
            problems.append(
                Problem(file, line, None, f"expected {len(header)} fields, got {len(fields)}")
            )
            continue
        row = {name: value.strip() for name, value in zip(header, fields, strict=True)}
        good.append((line, row))

        def report(column: str, message: str | None, line: int = line) -> None:
            if message:
                problems.append(Problem(file, line, column, message))

        if "image" in row:
            if row["image"] in EMPTY_VALUES:
                report("image", "empty image path")
            else:
                report("image", _check_relpath(row["image"], "image"))
        for cond in CONDITIONS:
            if cond in row:
                report(cond, _check_choice(row[cond], (0, 1), "label"))
        if "acne_severity" in row:
            report(
                "acne_severity", _check_choice(row["acne_severity"], SEVERITIES, "acne_severity")
            )
        if COUNT_COLUMN in row:
            report(COUNT_COLUMN, _check_count(row[COUNT_COLUMN], row.get("acne_severity", "")))
        fitz_ok = False
        if "fitzpatrick" in row:
            message = _check_choice(row["fitzpatrick"], FITZPATRICK_TYPES, "fitzpatrick")
            report("fitzpatrick", message)
            fitz_ok = message is None and row["fitzpatrick"] not in EMPTY_VALUES
        if GROUP_COLUMN in row and row[GROUP_COLUMN] not in EMPTY_VALUES:
            group = row[GROUP_COLUMN]
            if group not in GROUPS:
                report(GROUP_COLUMN, f"must be one of {', '.join(GROUPS)} or empty, got {group!r}")
            elif fitz_ok and row_group(row["fitzpatrick"]) != group:
                report(
                    GROUP_COLUMN,
                    f"{group!r} disagrees with fitzpatrick {row['fitzpatrick']!r} "
                    f"(group {row_group(row['fitzpatrick'])})",
                )
        if TONE_SOURCE_COLUMN in row and row[TONE_SOURCE_COLUMN] not in EMPTY_VALUES:
            source = row[TONE_SOURCE_COLUMN]
            if source not in TONE_SOURCES:
                report(
                    TONE_SOURCE_COLUMN,
                    f"must be one of {', '.join(sorted(TONE_SOURCES))} or empty, got {source!r}",
                )
            elif source == TONE_ESTIMATED and row.get("fitzpatrick", "") not in EMPTY_VALUES:
                report(TONE_SOURCE_COLUMN, MSG_ESTIMATED_WITH_TYPE)
        if "split" in row and row["split"] not in SPLITS:
            report("split", f"split must be one of {', '.join(SPLITS)}, got {row['split']!r}")
        if "mask" in row and row["mask"] not in EMPTY_VALUES:
            report("mask", _check_relpath(row["mask"], "mask"))
    _check_duplicate_paths(file, good, problems)
    _check_subject_splits(file, good, problems)
    return good


def _check_duplicate_paths(
    file: str, rows: list[tuple[int, dict[str, str]]], problems: list[Problem]
) -> None:
    first: dict[str, int] = {}
    for line, row in rows:
        image = row.get("image", "")
        if image in EMPTY_VALUES:
            continue
        key = os.path.normpath(image)
        if key in first:
            problems.append(
                Problem(
                    file, line, "image", f"duplicate image {image!r} (also on row {first[key]})"
                )
            )
        else:
            first[key] = line


def _check_subject_splits(
    file: str, rows: list[tuple[int, dict[str, str]]], problems: list[Problem]
) -> None:
    by_subject: dict[str, dict[str, list[int]]] = {}
    for line, row in rows:
        subject = row.get("subject_id", "")
        split = row.get("split", "")
        if subject in EMPTY_VALUES or split not in SPLITS:
            continue
        by_subject.setdefault(subject, {}).setdefault(split, []).append(line)
    for subject, splits in by_subject.items():
        if len(splits) < 2:
            continue
        first_split = min(splits, key=lambda s: splits[s][0])
        where = "; ".join(
            f"{s} (row{'s' if len(v) > 1 else ''} {', '.join(map(str, v[:5]))}"
            f"{', ...' if len(v) > 5 else ''})"
            for s, v in sorted(splits.items(), key=lambda kv: kv[1][0])
        )
        for split, lines in splits.items():
            if split != first_split:
                problems.append(
                    Problem(
                        file,
                        lines[0],
                        "subject_id",
                        f"subject {subject!r} appears in several splits: {where}",
                    )
                )


# ---------------------------------------------------------------------------------------------
# Image checks.


def silence_decoder_warnings() -> None:
    """Keep libjpeg/libpng warnings off stderr: the validator reports every problem itself."""
    if hasattr(cv2, "setLogLevel"):  # OpenCV 4.11 has no cv2.utils.logging
        cv2.setLogLevel(2)  # 2 = errors only


def check_image_bytes(data: bytes) -> str | None:
    """Return why encoded image bytes are unreadable, or None when OpenCV decodes them.

    Decodes at 1/8 scale (libjpeg DCT scaling) so thousands of images check in seconds.
    """
    if not data:
        return "empty file"
    try:
        decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_REDUCED_GRAYSCALE_8)
    except cv2.error:
        decoded = None
    if decoded is None or decoded.size == 0:
        return "cannot be decoded as an image"
    if data[:2] == b"\xff\xd8" and b"\xff\xd9" not in data[-4096:]:
        return "truncated JPEG (no end-of-image marker)"
    return None


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# PNG colour type -> channels after decoding (palette images decode to 3 channels).
PNG_CHANNELS = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}


def _check_mask_bytes(data: bytes) -> str | None:
    """Why a mask PNG is unusable, or None.

    Checks the PNG structure without decoding pixels (signature, every chunk's CRC, IEND
    present, 3 channels): a full decode would cost ~10x more. Pixel values (0/255) are not
    checked here.
    """
    if not data:
        return "empty file"
    if not data.startswith(PNG_SIGNATURE):
        return "mask must be a PNG file"
    pos, channels = len(PNG_SIGNATURE), None
    while pos + 12 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        end = pos + 12 + length
        if end > len(data):
            return "truncated PNG"
        (crc,) = struct.unpack(">I", data[end - 4 : end])
        if zlib.crc32(data[pos + 4 : end - 4]) != crc:
            return f"corrupt PNG (bad checksum in {kind.decode('latin-1')!r} chunk)"
        if kind == b"IHDR" and length >= 13:
            channels = PNG_CHANNELS.get(data[pos + 17])
        if kind == b"IEND":
            break
        pos = end
    else:
        return "truncated PNG (no IEND chunk)"
    if channels != len(CONDITIONS):
        return (
            f"mask must have {len(CONDITIONS)} channels ({', '.join(CONDITIONS)}), got {channels}"
        )
    return None


def _inspect_file(path: Path, is_mask: bool) -> tuple[str | None, str | None]:
    """(error message, content hash) of one image or mask file."""
    if not path.exists():
        return "file not found", None
    if not path.is_file():
        return "not a regular file", None
    try:
        data = path.read_bytes()
    except OSError as exc:
        return f"cannot read ({exc.strerror})", None
    error = _check_mask_bytes(data) if is_mask else check_image_bytes(data)
    return error, hashlib.blake2b(data, digest_size=16).hexdigest()


def _check_files(
    file: str,
    root: Path,
    rows: list[tuple[int, dict[str, str]]],
    problems: list[Problem],
    *,
    progress: bool,
) -> None:
    jobs: list[tuple[int, str, str]] = []  # (line, column, relative path)
    for line, row in rows:
        for column in ("image", "mask"):
            value = row.get(column, "")
            if value not in EMPTY_VALUES and _check_relpath(value, column) is None:
                jobs.append((line, column, value))
    if not jobs:
        return

    def work(job: tuple[int, str, str]) -> tuple[str | None, str | None]:
        return _inspect_file(root / job[2], job[1] == "mask")

    from tqdm import tqdm

    workers = max(1, min(4, os.cpu_count() or 1))
    with ThreadPoolExecutor(workers) as pool:
        results = list(
            tqdm(
                pool.map(work, jobs),
                total=len(jobs),
                desc="checking images",
                unit="file",
                disable=None if progress else True,
                leave=False,
            )
        )
    first_hash: dict[str, tuple[int, str]] = {}
    seen_paths: set[str] = set()
    for (line, column, rel), (error, digest) in zip(jobs, results, strict=True):
        if error:
            problems.append(Problem(file, line, column, f"{column} {rel!r}: {error}"))
            continue
        if column != "image" or digest is None:
            continue
        key = os.path.normpath(rel)
        if key in seen_paths:  # same path twice is reported by the table checks
            continue
        seen_paths.add(key)
        if digest in first_hash:
            other_line, other = first_hash[digest]
            problems.append(
                Problem(
                    file,
                    line,
                    "image",
                    f"image {rel!r} has the same content as {other!r} (row {other_line})",
                )
            )
        else:
            first_hash[digest] = (line, rel)


# ---------------------------------------------------------------------------------------------
# Public API.


def _resolve_csv(path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    return path / METADATA_NAME if path.is_dir() else path


def _collect(
    csv_path: Path, *, check_images: bool, progress: bool
) -> tuple[list[Problem], _Table | None, list[tuple[int, dict[str, str]]]]:
    problems: list[Problem] = []
    table = _read_table(csv_path, problems)
    if table is None:
        return problems, None, []
    rows = _check_rows(table, problems)
    if check_images:
        _check_files(table.file, csv_path.parent, rows, problems, progress=progress)
    problems.sort(key=lambda p: (p.row or 0, p.column or ""))
    return problems, table, rows


def validate_dataset(
    dir_or_csv: str | os.PathLike[str], *, check_images: bool = True, progress: bool = False
) -> list[Problem]:
    """Every problem of a canonical dataset (a folder holding metadata.csv, or the CSV itself)."""
    problems, _, _ = _collect(
        _resolve_csv(dir_or_csv), check_images=check_images, progress=progress
    )
    return problems


def _to_frame(table: _Table, rows: list[tuple[int, dict[str, str]]]) -> pd.DataFrame:
    df = pd.DataFrame([row for _, row in rows], columns=table.header)
    df = df.replace(list(EMPTY_VALUES), np.nan)
    for cond in CONDITIONS:
        df[cond] = pd.to_numeric(df[cond]).astype("float64")
    df["fitzpatrick"] = pd.to_numeric(df["fitzpatrick"]).round().astype("Int64")
    for column in ("acne_severity", COUNT_COLUMN):
        if column in df:
            df[column] = pd.to_numeric(df[column]).round().astype("Int64")
    groups = df[GROUP_COLUMN] if GROUP_COLUMN in df else pd.Series([None] * len(df))
    df["group"] = [
        row_group(None if pd.isna(f) else int(f), g)
        for f, g in zip(df["fitzpatrick"], groups, strict=True)
    ]
    df.attrs["csv_lines"] = [line for line, _ in rows]
    return df


def load_metadata(csv_path: str | os.PathLike[str], *, check_images: bool = False) -> pd.DataFrame:
    """Load metadata.csv (or a dataset folder) as typed columns; raise `DatasetError` on problems.

    Labels become float (NaN = unknown), ``fitzpatrick``/``acne_severity`` nullable Int64,
    and a ``group`` column (I-II/III-IV/V-VI, missing when unknown) is added.
    """
    path = _resolve_csv(csv_path)
    problems, table, rows = _collect(path, check_images=check_images, progress=False)
    if problems:
        raise DatasetError(problems)
    assert table is not None
    return _to_frame(table, rows)


def _groups_of(df: pd.DataFrame) -> list[str | None]:
    if "group" in df:
        return [g if isinstance(g, str) and g in GROUPS else None for g in df["group"]]
    fgroup = df[GROUP_COLUMN] if GROUP_COLUMN in df else pd.Series([None] * len(df))
    return [row_group(f, g) for f, g in zip(df["fitzpatrick"], fgroup, strict=True)]


def estimated_tone_rows(df: pd.DataFrame) -> np.ndarray:
    """Boolean mask of the rows whose tone is estimated from the photo (``tone_source``)."""
    if TONE_SOURCE_COLUMN not in df:
        return np.zeros(len(df), dtype=bool)
    return (df[TONE_SOURCE_COLUMN].astype("string").str.strip() == TONE_ESTIMATED).to_numpy(
        dtype=bool, na_value=False
    )


def coverage_table(df: pd.DataFrame) -> pd.DataFrame:
    """Counts per Fitzpatrick type (FST1-6, unknown) and group: images, positives, labelled.

    Rows: ``images`` then ``<condition> +`` (positives) and ``<condition> labelled`` (0 or 1,
    i.e. not unknown) for each condition. Columns: ``FST1``..``FST6``, ``FST?``, the three
    groups, ``group?`` and ``total``.
    """
    fitz = pd.to_numeric(df["fitzpatrick"], errors="coerce")
    fst = ["FST?" if pd.isna(f) else f"FST{int(f)}" for f in fitz]
    grp = [g or "group?" for g in _groups_of(df)]
    columns = [f"FST{t}" for t in FITZPATRICK_TYPES] + ["FST?", *GROUPS, "group?", "total"]
    index = ["images"] + [f"{c} {kind}" for c in CONDITIONS for kind in ("+", "labelled")]
    table = pd.DataFrame(0, index=index, columns=columns, dtype=int)
    counts = {"images": np.ones(len(df), dtype=int)}
    for c in CONDITIONS:
        value = pd.to_numeric(df[c], errors="coerce").to_numpy(dtype=float)
        counts[f"{c} +"] = (value == 1).astype(int)
        counts[f"{c} labelled"] = (~np.isnan(value)).astype(int)
    frame = pd.DataFrame(counts)
    for keys in (fst, grp):
        sums = frame.groupby(np.asarray(keys, dtype=object)).sum()
        for col in sums.index:
            table.loc[index, col] = sums.loc[col, index].to_numpy()
    table["total"] = frame[index].sum().to_numpy()
    return table


def split_table(df: pd.DataFrame) -> pd.DataFrame:
    """Images per split x group (rows: train/val/test, columns: groups, group?, total)."""
    grp = [g or "group?" for g in _groups_of(df)]
    table = pd.DataFrame(0, index=list(SPLITS), columns=[*GROUPS, "group?", "total"], dtype=int)
    for split, g in zip(df["split"], grp, strict=True):
        if split in SPLITS:
            table.loc[split, g] += 1
            table.loc[split, "total"] += 1
    return table
