"""By-eye skin-tone labels shipped beside a converted dataset (OUT/tone_labels.csv).

The file format and its checked reader are `core.tone_labels`; this module gives the
adapter its file name and turns a bad file into the adapter's usage error.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from core import tone_labels
from data.adapters.common import UsageError

FILENAME = "tone_labels.csv"


class ToneLabelError(UsageError):
    """The labels file is malformed or names an image the dataset does not have."""


def checked_tone_labels(path: Path, images: Iterable[str]) -> bytes:
    """The labels file's bytes after checking every row against `images`
    (`core.tone_labels.read_tone_labels`); raises ToneLabelError naming the file and
    line."""
    try:
        text, _ = tone_labels.read_tone_labels(path, images)
    except tone_labels.ToneLabelError as exc:
        raise ToneLabelError(str(exc)) from None
    return text.encode("utf-8")
