"""By-eye skin-tone label files: the one checked reader.

A labels CSV has the columns `image` (the dataset's metadata.csv path), `tone_by_eye` (one of
TONE_LABELS) and optional others (`between`, `note`, ...). The labels are a person's look at the
face crop, not Fitzpatrick types; data/tone_labels/PROTOCOL.md says how the shipped ones were
made. The YOLO adapter ships them beside a converted dataset, `preprocessing.tone_eval
--labels` measures the estimated tone's agreement with them and `fairness.by_eye` groups
predictions by them: all three read them here. Standard library only.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from pathlib import Path

TONE_LABELS = ("I-II", "III-IV", "V-VI", "between", "unusable")


class ToneLabelError(ValueError):
    """The labels file is unreadable or malformed, or names an image it may not name."""


def read_tone_labels(path: Path, images: Iterable[str] | None = None) -> tuple[str, dict[str, str]]:
    """(the file's text, image -> tone_by_eye) after checking every row: the columns, each label,
    no image twice and, with `images`, that each labelled image is one of them. Raises
    ToneLabelError naming the file and line."""
    known = None if images is None else set(images)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ToneLabelError(f"{path}: cannot read the tone labels: {exc}") from None
    reader = csv.DictReader(io.StringIO(text))
    missing = {"image", "tone_by_eye"} - set(reader.fieldnames or ())
    if missing:
        raise ToneLabelError(f"{path}:1: missing column(s) {', '.join(sorted(missing))}")
    labels: dict[str, str] = {}
    for line, row in enumerate(reader, start=2):
        if row["tone_by_eye"] not in TONE_LABELS:
            raise ToneLabelError(
                f"{path}:{line}: tone_by_eye {row['tone_by_eye']!r} is not one of {TONE_LABELS}"
            )
        if known is not None and row["image"] not in known:
            raise ToneLabelError(f"{path}:{line}: image {row['image']!r} is not in the dataset")
        if row["image"] in labels:
            raise ToneLabelError(f"{path}:{line}: image {row['image']!r} is labelled twice")
        labels[row["image"]] = row["tone_by_eye"]
    return text, labels
