"""Shared parts of the dataset adapters: label mapping, records, summary, atomic writer, CLI.

Each adapter turns a public dataset's own files into `Record`s and calls `write_dataset`,
which copies (or links) the images, assigns splits, validates the result with
`data.canonical.validate_dataset` and only then moves it into place. Policies
(data/ADAPTERS.md): a missing, unreadable or duplicate image skips its row (reported in the
summary); an unknown tone leaves ``fitzpatrick`` empty; a label outside the mapping tables
leaves all three conditions unknown (empty), never 0.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import shutil
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from core.schema import CONDITIONS, SPLITS
from core.severity import severity_from_count  # noqa: F401 (adapters import it from here)
from data.canonical import (
    METADATA_NAME,
    DatasetError,
    assign_splits,
    check_image_bytes,
    silence_decoder_warnings,
)

EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE = 0, 1, 2
TRAINVAL = "trainval"  # a dataset's own train portion, to be split into train/val

# ---------------------------------------------------------------------------------------------
# Label mapping: diagnosis names -> conditions. Names are compared after `normalize_name`.

ACNE_NAMES = frozenset(
    {
        "acne",
        "acne vulgaris",
        "acne cystic",
        "cystic acne",
        "nodulocystic acne",
        "comedonal acne",
        "acne comedonal",
        "acne conglobata",
        "acne fulminans",
        "acne excoriee",
        "hormonal acne",
        "inflammatory acne",
        "acne papulopustular",
        "papulopustular acne",
        "neonatal acne",
        "infantile acne",
        "steroid acne",
        "acne mechanica",
        "comedone",
        "comedones",
    }
)
# Conditions with "acne" in the name that are not acne vulgaris or its variants.
ACNE_EXCLUDED = frozenset(
    {
        "acne keloidalis",
        "acne keloidalis nuchae",
        "acne rosacea",
        "acne inversa",
        "acneiform eruption",
        "acne necrotica",
        "acne urticata",
    }
)
HYPERPIGMENTATION_NAMES = frozenset(
    {
        "hyperpigmentation",
        "post inflammatory hyperpigmentation",
        "postinflammatory hyperpigmentation",
        "pih",
        "melasma",
        "chloasma",
        "solar lentigo",
        "lentigo",
        "lentigines",
        "lentigo simplex",
        "senile lentigo",
        "actinic lentigo",
        "ephelides",
        "ephelis",
        "freckles",
        "freckle",
        "cafe au lait macule",
        "cafe au lait macules",
        "acanthosis nigricans",
        "erythema dyschromicum perstans",
        "ashy dermatosis",
        "drug induced pigmentation",
        "drug induced hyperpigmentation",
        "riehl melanosis",
        "periorbital hyperpigmentation",
        "lichen planus pigmentosus",
        "becker nevus",
        "nevus of ota",
        "hori nevus",
        "pigmentary demarcation lines",
    }
)
WRINKLES_NAMES = frozenset(
    {
        "wrinkles",
        "wrinkle",
        "rhytides",
        "rhytids",
        "photoaging",
        "photoageing",
        "photodamage",
        "photodamaged skin",
        "solar elastosis",
        "actinic elastosis",
        "cutis rhomboidalis nuchae",
        "dermatoheliosis",
    }
)
# Conditions for which `--assume-negative` may write 0: visible on any skin photo. Wrinkles
# are not in it: most images of these datasets are not faces, and age is unknown.
ASSUMABLE_NEGATIVE = ("acne", "hyperpigmentation")


def normalize_name(name: str) -> str:
    """Lower-case, ``-``/``_`` to spaces, accents and punctuation dropped, spaces collapsed."""
    text = str(name).lower().replace("é", "e").replace("è", "e").replace("'", "")
    text = re.sub(r"[-_/,()]+", " ", text)
    return re.sub(r"\s+", " ", text).strip()


def conditions_of(name: str) -> set[str]:
    """Conditions a diagnosis name implies (empty set: none of ours / not in the tables)."""
    key = normalize_name(name)
    found: set[str] = set()
    if key in ACNE_NAMES or (
        re.search(r"\bacne\b", key) and not any(key.startswith(e) for e in ACNE_EXCLUDED)
    ):
        found.add("acne")
    if key in HYPERPIGMENTATION_NAMES:
        found.add("hyperpigmentation")
    if key in WRINKLES_NAMES:
        found.add("wrinkles")
    return found


def unmapped_note(names: Counter, limit: int = 10) -> str:
    """One line naming the most common diagnosis names that mapped to none of our conditions."""
    top = ", ".join(f"{n!r} x{c}" for n, c in names.most_common(limit))
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return f"labels left unknown (not in the mapping tables): {top}{more}"


def labels_from_names(
    names: Iterable[str], *, assume_negative: bool = False
) -> tuple[dict[str, float], bool]:
    """(labels, mapped) for a set of diagnosis names: 1 where a name maps, else NaN (unknown).

    With ``assume_negative`` the conditions of `ASSUMABLE_NEGATIVE` that no name maps to
    become 0. `mapped` says whether any name mapped to one of our conditions.
    """
    found: set[str] = set()
    for name in names:
        found |= conditions_of(name)
    labels = {}
    for cond in CONDITIONS:
        if cond in found:
            labels[cond] = 1.0
        elif assume_negative and cond in ASSUMABLE_NEGATIVE:
            labels[cond] = 0.0
        else:
            labels[cond] = math.nan
    return labels, bool(found)


def unknown_labels() -> dict[str, float]:
    """All three conditions unknown."""
    return {cond: math.nan for cond in CONDITIONS}


# ---------------------------------------------------------------------------------------------
# Records and summary.


@dataclass
class Record:
    """One output row before writing: where its image is and what is known about it."""

    row_id: str  # how the user finds the input row, e.g. "fitzpatrick17k.csv:17"
    image_src: Path | None
    image_name: str  # file name under OUT/images/
    labels: dict[str, float]
    fitzpatrick: int | None = None
    fitzpatrick_group: str | None = None
    acne_severity: int | None = None
    subject_id: str | None = None
    split: str | None = None  # train/val/test, TRAINVAL, or None = assign
    extra: dict[str, object] = field(default_factory=dict)
    # Lesion-mask PNG bytes (3 channels, CONDITIONS in RGB order), encoded only when the row is
    # written: thousands of full-size masks are not held in memory. None = no mask.
    mask_png: Callable[[], bytes] | None = None


@dataclass
class Summary:
    """What an adapter did: rows in/out, skipped rows with reasons, warning counts."""

    dataset: str
    rows_in: int = 0
    rows_out: int = 0
    skipped: list[dict[str, str]] = field(default_factory=list)
    warnings: Counter = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)
    out: str = ""

    def skip(self, row_id: str, reason: str) -> None:
        """Record one skipped input row."""
        self.skipped.append({"row": row_id, "reason": reason})

    def warn(self, kind: str, count: int = 1) -> None:
        """Count one warning of a kind (unknown_tone, unmapped_label, ...)."""
        self.warnings[kind] += count

    def to_dict(self) -> dict[str, object]:
        """Plain dict for JSON output."""
        reasons = Counter(s["reason"].split(":")[0] for s in self.skipped)
        return {
            "dataset": self.dataset,
            "out": self.out,
            "rows_in": self.rows_in,
            "rows_out": self.rows_out,
            "skipped_count": len(self.skipped),
            "skipped_by_reason": dict(sorted(reasons.items())),
            "skipped": self.skipped,
            "warnings": dict(sorted(self.warnings.items())),
            "notes": self.notes,
        }

    def format(self, max_skipped: int = 20) -> str:
        """Human-readable summary."""
        d = self.to_dict()
        lines = [
            f"{self.dataset}: rows_in={self.rows_in} rows_out={self.rows_out} "
            f"skipped={len(self.skipped)} -> {self.out}"
        ]
        for reason, n in d["skipped_by_reason"].items():
            lines.append(f"  skipped ({reason}): {n}")
        for s in self.skipped[:max_skipped]:
            lines.append(f"    {s['row']}: {s['reason']}")
        if len(self.skipped) > max_skipped:
            lines.append(f"    ... {len(self.skipped) - max_skipped} more (use --json for all)")
        for kind, n in d["warnings"].items():
            lines.append(f"  warning {kind}: {n}")
        lines.extend(f"  note: {n}" for n in self.notes)
        return "\n".join(lines)


class AdapterError(ValueError):
    """The source files cannot be converted (missing file or column); message names it."""


class UsageError(AdapterError):
    """A flag value turns out wrong only once the source is read (e.g. an unknown class name)."""


def require_columns(df: pd.DataFrame, columns: Sequence[str], file: Path) -> None:
    """Raise `AdapterError` naming the file and every missing column."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        found = ", ".join(map(str, df.columns))
        raise AdapterError(f"{file}: missing column(s) {', '.join(missing)}; found {found}")


def read_source_csv(path: Path) -> pd.DataFrame:
    """Read a dataset's CSV as strings (empty = ''); `AdapterError` if it is missing/unreadable."""
    if not path.is_file():
        raise AdapterError(f"{path}: file not found")
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise AdapterError(f"{path}: cannot parse CSV ({exc})") from exc


def csv_row_id(file: Path, index: int) -> str:
    """``name.csv:LINE`` for the DataFrame row `index` (header = line 1)."""
    return f"{file.name}:{index + 2}"


# ---------------------------------------------------------------------------------------------
# Writing.


def _fmt(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _unique_name(name: str, used: set[str]) -> str:
    if name not in used:
        return name
    stem, suffix = os.path.splitext(name)
    k = 1
    while f"{stem}_{k}{suffix}" in used:
        k += 1
    return f"{stem}_{k}{suffix}"


def _accept_images(records: list[Record], summary: Summary, progress: bool) -> list[Record]:
    """Drop records whose image is missing, unreadable or a content duplicate (reported)."""
    from tqdm import tqdm

    kept: list[Record] = []
    first_by_hash: dict[str, str] = {}
    for rec in tqdm(
        records, desc="checking images", unit="img", disable=None if progress else True, leave=False
    ):
        src = rec.image_src
        if src is None or not src.is_file():
            summary.skip(rec.row_id, f"missing image: {src}")
            continue
        data = src.read_bytes()
        error = check_image_bytes(data)
        if error:
            summary.skip(rec.row_id, f"unreadable image: {src} ({error})")
            continue
        digest = hashlib.blake2b(data, digest_size=16).hexdigest()
        if digest in first_by_hash:
            summary.skip(
                rec.row_id,
                f"duplicate image: {src} has the same content as {first_by_hash[digest]}",
            )
            continue
        first_by_hash[digest] = f"{src} ({rec.row_id})"
        kept.append(rec)
    return kept


def _inherit_subject_splits(records: list[Record], df: pd.DataFrame) -> None:
    """Rows of a subject without a split take the split given to another row of that subject."""
    given: dict[str, tuple[str, str]] = {}
    conflicts = []
    for rec in records:
        if rec.subject_id is None or rec.split is None:
            continue
        first = given.setdefault(rec.subject_id, (rec.split, rec.row_id))
        if first[0] != rec.split:
            conflicts.append(
                f"{rec.row_id}: subject {rec.subject_id!r} is in {rec.split!r} but "
                f"in {first[0]!r} at {first[1]}"
            )
    if conflicts:
        raise AdapterError("one subject in several splits:\n" + "\n".join(conflicts))
    for i, rec in enumerate(records):
        if rec.split is None and rec.subject_id in given:
            df.loc[df.index[i], "split"] = given[rec.subject_id][0]


def _to_frame(records: list[Record], source: str, seed: int, val_fraction: float) -> pd.DataFrame:
    extra_cols: list[str] = []
    for rec in records:
        extra_cols.extend(k for k in rec.extra if k not in extra_cols)
    used: set[str] = set()
    used_masks: set[str] = set()
    any_mask = any(rec.mask_png is not None for rec in records)
    rows = []
    for rec in records:
        name = _unique_name(rec.image_name, used)
        used.add(name)
        rec.image_name = name
        row = {
            "image": f"images/{name}",
            **{c: rec.labels[c] for c in CONDITIONS},
            "acne_severity": rec.acne_severity,
            "fitzpatrick": rec.fitzpatrick,
            "fitzpatrick_group": rec.fitzpatrick_group,
            "split": rec.split,
            "source": source,
            "subject_id": rec.subject_id,
        }
        if any_mask:
            mask_name = None
            if rec.mask_png is not None:
                mask_name = _unique_name(Path(name).with_suffix(".png").as_posix(), used_masks)
                used_masks.add(mask_name)
            row["mask"] = None if mask_name is None else f"masks/{mask_name}"
        row.update({k: rec.extra.get(k) for k in extra_cols})
        rows.append(row)
    columns = [
        "image",
        *CONDITIONS,
        "acne_severity",
        "fitzpatrick",
        "fitzpatrick_group",
        "split",
        "source",
        "subject_id",
        *(["mask"] if any_mask else []),
        *extra_cols,
    ]
    df = pd.DataFrame(rows, columns=columns)
    _inherit_subject_splits(records, df)
    # A dataset's own trainval portion is split into train/val; rows without a split get all three.
    trainval = (df["split"] == TRAINVAL).to_numpy()
    if trainval.any():
        part = assign_splits(
            df[trainval], seed=seed, fractions=(1.0 - val_fraction, val_fraction, 0.0)
        )
        df.loc[trainval, "split"] = part["split"].to_numpy()
    unset = df["split"].isna().to_numpy()
    if unset.any():
        df.loc[unset, "split"] = assign_splits(df[unset], seed=seed)["split"].to_numpy()
    return df


def _place_atomically(tmp: Path, out: Path, force: bool) -> None:
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()
    if out.exists():
        if not force:
            raise FileExistsError(out)
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)


def write_dataset(
    records: list[Record],
    out: Path,
    summary: Summary,
    *,
    source: str,
    link: bool = False,
    seed: int = 0,
    val_fraction: float = 0.15,
    force: bool = False,
    progress: bool = False,
    extra_files: dict[str, bytes] | None = None,
) -> pd.DataFrame:
    """Write records as a canonical dataset at `out` (atomically, validated); return its table.

    Records with a `mask_png` get ``masks/<image stem>.png`` and a ``mask`` column;
    `extra_files` (name -> bytes, e.g. a ``dataset.json`` with the source's licence) are
    written beside metadata.csv.
    """
    from tqdm import tqdm

    from data.canonical import validate_dataset

    out = Path(out).absolute()
    if out.exists() and not out.is_dir():
        raise AdapterError(f"--out {out} is a file, not a folder")
    if out.exists() and any(out.iterdir()) and not force:
        raise FileExistsError(out)
    records = _accept_images(records, summary, progress)
    if not records:
        raise AdapterError(f"no usable rows: all {summary.rows_in} input rows were skipped")
    df = _to_frame(records, source, seed, val_fraction)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    masks = df["mask"].tolist() if "mask" in df else [None] * len(records)
    try:
        for rec, mask in tqdm(
            zip(records, masks, strict=True),
            total=len(records),
            desc="writing images",
            unit="img",
            disable=None if progress else True,
            leave=False,
        ):
            target = tmp / "images" / rec.image_name
            target.parent.mkdir(parents=True, exist_ok=True)
            assert rec.image_src is not None
            if link:
                os.symlink(rec.image_src.absolute(), target)
            else:
                shutil.copyfile(rec.image_src, target)
            if mask is not None and rec.mask_png is not None:
                mask_path = tmp / mask
                mask_path.parent.mkdir(parents=True, exist_ok=True)
                mask_path.write_bytes(rec.mask_png())
        for name, data in (extra_files or {}).items():
            (tmp / name).write_bytes(data)
        text = df.map(_fmt).to_csv(index=False, lineterminator="\n")
        (tmp / METADATA_NAME).write_text(text, encoding="utf-8")
        problems = validate_dataset(tmp, check_images=True)
        if problems:
            raise DatasetError(problems)
        _place_atomically(tmp, out, force)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    summary.rows_out = len(df)
    summary.out = str(out)
    return df


# ---------------------------------------------------------------------------------------------
# CLI.


def write_from_args(
    records: list[Record],
    summary: Summary,
    args: argparse.Namespace,
    *,
    progress: bool,
    **options: Any,
) -> Summary:
    """`write_dataset` with the options every adapter CLI shares (--out, --link, --seed, --force).

    The dataset's `source` is `summary.dataset`; `options` go to `write_dataset` (e.g.
    `val_fraction`). Returns `summary`.
    """
    write_dataset(
        records,
        args.out,
        summary,
        source=summary.dataset,
        link=args.link,
        seed=args.seed,
        force=args.force,
        progress=progress,
        **options,
    )
    return summary


def make_parser(prog: str, description: str, *, images_help: str | None) -> argparse.ArgumentParser:
    """The flags every adapter shares (`images_help` None: the adapter has no --images)."""
    parser = argparse.ArgumentParser(
        prog=prog, description=description + " Exit 0 = written, 1 = bad source data, 2 = usage."
    )
    parser.add_argument("--src", required=True, type=Path, help="folder with the dataset's files")
    parser.add_argument("--out", required=True, type=Path, help="output canonical dataset folder")
    if images_help is not None:
        parser.add_argument("--images", type=Path, default=None, help=images_help)
    parser.add_argument(
        "--link", action="store_true", help="symlink the images instead of copying them"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the split assignment")
    parser.add_argument("--force", action="store_true", help="replace an existing --out folder")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    return parser


def add_assume_negative(parser: argparse.ArgumentParser) -> None:
    """The opt-in flag that writes 0 instead of unknown for acne/hyperpigmentation."""
    parser.add_argument(
        "--assume-negative",
        action="store_true",
        help="write 0 (not unknown) for acne/hyperpigmentation when the image's diagnosis is "
        "another condition (an assumption; see data/ADAPTERS.md)",
    )


def run_cli(
    args: argparse.Namespace, convert_fn: Callable[[argparse.Namespace, bool], Summary]
) -> int:
    """Run an adapter's `convert_fn(args, progress)`; print the summary; return the exit code."""
    if not args.src.is_dir():
        print(f"error: --src {args.src} is not a folder", file=sys.stderr)
        return EXIT_USAGE
    images = getattr(args, "images", None)
    if images is not None and not images.is_dir():
        print(f"error: --images {images} is not a folder", file=sys.stderr)
        return EXIT_USAGE
    silence_decoder_warnings()
    progress = not args.json and sys.stderr.isatty()
    try:
        summary = convert_fn(args, progress)
    except FileExistsError as exc:
        print(
            f"error: {exc} already exists and is not empty (use --force to replace it)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    except DatasetError as exc:
        print(f"error: the converted dataset is invalid (nothing written): {exc}", file=sys.stderr)
        return EXIT_PROBLEMS
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except AdapterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_PROBLEMS
    print(json.dumps(summary.to_dict(), indent=2) if args.json else summary.format())
    return EXIT_OK


def parse_int(value: object) -> int | None:
    """Integer from a cell ('3', '3.0'), else None."""
    try:
        number = float(str(value).strip())
    except ValueError:
        return None
    return int(number) if number.is_integer() else None


def valid_split(value: object) -> str | None:
    """train/val/test from common spellings, else None."""
    key = normalize_name(str(value))
    aliases = {
        "training": "train",
        "validation": "val",
        "valid": "val",
        "dev": "val",
        "testing": "test",
    }
    key = aliases.get(key, key)
    return key if key in SPLITS else None
