"""Where the skin-tone groups come from, and the words every report uses for them.

A group (`I-II`, `III-IV`, `V-VI`) is either the group of a labelled Fitzpatrick type
(`tone_source` = "labelled") or the group of the project's ITA estimate on the photo
("estimated": the dataset has no skin-type labels). An estimated group is never called a
Fitzpatrick group: reports, plots and model cards take their headings from `ToneBasis`.

Per row, the predictions' `tone_source` column decides; where the column is absent (older
predictions) a row with a Fitzpatrick type is "labelled" and any other row takes `default` (the
datacard's `tone_source`, else unknown). The basis of a whole set of predictions is that of its
grouped rows: all labelled, all estimated, mixed, or unknown. Pure Python; no third-party imports.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "ESTIMATED",
    "LABELLED",
    "MIXED",
    "TONE_SOURCES",
    "UNKNOWN",
    "ToneBasis",
    "make_tone_basis",
    "row_tone_sources",
    "tone_basis",
]

LABELLED, ESTIMATED = "labelled", "estimated"
TONE_SOURCES: tuple[str, ...] = (ESTIMATED, LABELLED)  # values of the `tone_source` column
MIXED, UNKNOWN = "mixed", "unknown"
MAX_LISTED = 5

ESTIMATED_NOTE = (
    "The dataset has no skin-type labels: skin tone was estimated from the photo with the ITA "
    "(individual typology angle) estimate and grouped into I-II, III-IV and V-VI. These are "
    "estimated-tone groups, not Fitzpatrick types."
)


@dataclass(frozen=True)
class ToneBasis:
    """How the groups of one evaluation were obtained, with the words to report them by.

    `source`: labelled | estimated | mixed | unknown. `label`: the column, axis or heading
    ("estimated tone group (ITA)"). `group_basis`: one line for JSON files. `note`: the sentence
    a report prints ("" when the groups are labelled Fitzpatrick groups). `prefix`: put before a
    group name where it stands alone ("estimated-tone group V-VI").
    """

    source: str
    label: str
    group_basis: str
    note: str
    prefix: str

    @property
    def estimated(self) -> bool:
        """True when some group is (or may be) an estimate, not a labelled Fitzpatrick type."""
        return self.source != LABELLED

    def group_name(self, group: str) -> str:
        """A group name as a caption reads it: "V-VI" or "estimated-tone group V-VI"."""
        return f"{self.prefix}{group}"

    def to_dict(self) -> dict[str, str]:
        """The JSON keys every report carries: tone_source, group_basis, group_label."""
        return {
            "tone_source": self.source,
            "group_basis": self.group_basis,
            "group_label": self.label,
        }


_BASES = {
    LABELLED: ToneBasis(LABELLED, "Fitzpatrick group", "Fitzpatrick type (labelled)", "", ""),
    ESTIMATED: ToneBasis(
        ESTIMATED,
        "estimated tone group (ITA)",
        "estimated tone (ITA from the photo), not Fitzpatrick",
        ESTIMATED_NOTE,
        "estimated-tone group ",
    ),
    MIXED: ToneBasis(
        MIXED,
        "tone group (labelled Fitzpatrick or estimated ITA)",
        "Fitzpatrick type where labelled, else estimated tone (ITA from the photo)",
        "Some images have a labelled Fitzpatrick type, others only a skin tone estimated from "
        "the photo (ITA, individual typology angle); a group mixes both and is not a "
        "Fitzpatrick group.",
        "tone group ",
    ),
    UNKNOWN: ToneBasis(
        UNKNOWN,
        "skin-tone group (source unknown)",
        "skin-tone group of unknown origin (no tone_source and no Fitzpatrick type)",
        "The predictions do not say where the skin-tone groups come from (no tone_source "
        "column and no Fitzpatrick type); read them as estimates, not Fitzpatrick types.",
        "skin-tone group ",
    ),
}


def make_tone_basis(source: str) -> ToneBasis:
    """The `ToneBasis` of a source name (labelled, estimated, mixed or unknown).

    >>> make_tone_basis("estimated").group_name("V-VI")
    'estimated-tone group V-VI'
    """
    if source not in _BASES:
        raise ValueError(f"unknown tone source {source!r}; choose one of {sorted(_BASES)}")
    return _BASES[source]


def row_tone_sources(
    fitzpatrick: Sequence[int],
    tone_source: Sequence[str] | None = None,
    *,
    default: str | None = None,
) -> list[str | None]:
    """Per row: "labelled", "estimated" or None (unknown).

    Parameters
    ----------
    fitzpatrick : sequence of int
        Fitzpatrick type per row, 0 = unknown.
    tone_source : sequence of str, optional
        The predictions' `tone_source` column ("" = unset); None when the column is absent.
    default : str, optional
        Source of a row with neither a `tone_source` nor a type (e.g. the datacard's).

    Returns
    -------
    list of str or None

    >>> row_tone_sources([3, 0, 0], ["", "estimated", ""])
    ['labelled', 'estimated', None]
    >>> row_tone_sources([3, 0], None, default="estimated")
    ['labelled', 'estimated']
    """
    if default is not None and default not in TONE_SOURCES:
        raise ValueError(f"tone_source {default!r}: must be one of {list(TONE_SOURCES)}")
    column = (
        [""] * len(fitzpatrick) if tone_source is None else [str(s).strip() for s in tone_source]
    )
    if len(column) != len(fitzpatrick):
        raise ValueError("tone_source and fitzpatrick must have one entry per row")
    bad = [i for i, s in enumerate(column) if s and s not in TONE_SOURCES]
    if bad:
        shown = ", ".join(str(i + 2) for i in bad[:MAX_LISTED])  # CSV lines: header is line 1
        more = f" (+{len(bad) - MAX_LISTED} more)" if len(bad) > MAX_LISTED else ""
        raise ValueError(
            f"column 'tone_source', line(s) {shown}{more}: must be one of "
            f"{list(TONE_SOURCES)} or empty"
        )
    out: list[str | None] = []
    for s, f in zip(column, fitzpatrick, strict=True):
        if s:
            out.append(s)
        elif int(f) > 0:
            out.append(LABELLED)
        else:
            out.append(default)
    return out


def tone_basis(groups: Iterable[str | None], sources: Iterable[str | None]) -> ToneBasis:
    """The basis of a set of rows: the sources of the rows that have a group, summarised.

    All labelled -> labelled; all estimated -> estimated; both -> mixed; a grouped row with
    no source, or no grouped row at all -> unknown (unless every grouped row agrees).

    >>> tone_basis(["I-II", "V-VI", None], ["estimated", "estimated", None]).source
    'estimated'
    >>> tone_basis(["I-II", "V-VI"], ["labelled", "estimated"]).source
    'mixed'
    >>> tone_basis(["I-II"], [None]).label
    'skin-tone group (source unknown)'
    """
    seen = {s for g, s in zip(groups, sources, strict=True) if g}
    if None in seen or not seen:
        return _BASES[UNKNOWN]
    if seen == {LABELLED}:
        return _BASES[LABELLED]
    if seen == {ESTIMATED}:
        return _BASES[ESTIMATED]
    return _BASES[MIXED]
