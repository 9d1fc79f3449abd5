"""Monitoring counters per skin-tone group: one request's outputs -> counter increments.

The Triton model `skin_analysis` applies these increments to custom Prometheus counters
(`pb_utils.MetricFamily`), which the server exposes on its metrics port (`/metrics`);
`python -m triton_models.drift` reads them back. The counting lives here, numpy-free and pure,
so it is unit-tested without a server; the python model only adds the numbers.

Families (all counters, names prefixed `fsa_`):

- `fsa_images_total{status}`: images that reached the thresholds step, `ok` (>= 1 face) or
  `no_face` (invalid images fail before it: Triton's
  `nv_inference_request_failure{model="skin_analysis"}`);
- `fsa_faces_total{group, source}`: analysed faces by the group used (`I-II`, `III-IV`, `V-VI`,
  `none` when the estimate abstained) and where it came from (`estimated`, `given`);
- `fsa_tone_abstentions_total{reason}`: estimated faces without a group, by reason code;
- `fsa_rejected_candidates_total{reason}`: detector candidates that failed verification;
- `fsa_warnings_total{warning}`: quality warnings and `out_of_distribution`, one per face and code;
- `fsa_positive_decisions_total{condition, group, source}`: faces whose probability reached the
  threshold (the raw decision, before warnings make it uncertain in the result JSON).

The model sends the gathered increments every `FLUSH_INTERVAL_S` while requests come in, so a
scrape can lag the last answers by that much.

Label values are short fixed codes (free-text reasons carry numbers), so every family has a
small, bounded number of series. No image content, identifier or score is recorded.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from core.schema import CONDITIONS, GROUPS

PREFIX = "fsa_"
# How long the python model gathers increments before sending them (seconds): the sending costs
# IPC messages that would otherwise compete with the next request (docs/performance.md).
FLUSH_INTERVAL_S = 0.5
IMAGES = "fsa_images_total"
FACES = "fsa_faces_total"
ABSTENTIONS = "fsa_tone_abstentions_total"
REJECTED = "fsa_rejected_candidates_total"
WARNINGS = "fsa_warnings_total"
POSITIVES = "fsa_positive_decisions_total"
NO_GROUP = "none"  # label of a face whose tone estimate abstained
SOURCES = ("estimated", "given")
IMAGE_STATUSES = ("ok", "no_face")
# preprocessing.quality.WARNINGS + client.ood.WARNING (tests check they agree).
WARNING_CODES = (
    "blur",
    "underexposed",
    "overexposed",
    "face_too_small",
    "colour_cast",
    "out_of_distribution",
)
OTHER = "other"  # a reason or warning this table does not know (a newer preprocessing)
# Reason text (its start; preprocessing.tone REASON_*) -> label code (tests check the table).
ABSTENTION_REASONS = (
    ("skin region too small", "skin_too_small"),
    ("grayscale or low-chroma image", "low_chroma"),
    ("over-exposed skin region", "overexposed"),
    ("under-exposed skin region", "underexposed"),
    ("ITA interval spans a group boundary", "spans_boundary"),
)
# preprocessing.verify REASON_* (formatted with numbers; matched by their start).
REJECTION_REASONS = (
    ("not a face", "not_a_face"),
    ("too few skin-coloured pixels", "skin_fraction"),
    ("skin colour outside the range of real skin", "skin_colour"),
    ("no skin region", "no_skin"),
)
LABELS: dict[str, tuple[str, ...]] = {
    IMAGES: ("status",),
    FACES: ("group", "source"),
    ABSTENTIONS: ("reason",),
    REJECTED: ("reason",),
    WARNINGS: ("warning",),
    POSITIVES: ("condition", "group", "source"),
}
DESCRIPTIONS: dict[str, str] = {
    IMAGES: "Images analysed by skin_analysis, by status (ok: at least one face; no_face)",
    FACES: "Analysed faces by skin-tone group used (none: estimate abstained) and its source",
    ABSTENTIONS: "Faces whose skin-tone estimate abstained, by reason",
    REJECTED: "Detector candidates rejected as not a face, by reason",
    WARNINGS: "Per-face quality and out-of-distribution warnings, by warning",
    POSITIVES: "Faces with probability >= threshold, by condition, group and group source",
}

Series = tuple[str, tuple[tuple[str, str], ...]]  # (family, ((label, value), ...))


def series(family: str, **labels: str) -> Series:
    """The key of one counter: its family and its labels in the family's label order."""
    names = LABELS[family]
    if set(labels) != set(names):
        raise ValueError(f"{family} takes labels {names}, got {sorted(labels)}")
    return family, tuple((name, str(labels[name])) for name in names)


def reason_code(text: str | None, table: Sequence[tuple[str, str]]) -> str:
    """The label code of a free-text reason (matched by its start), else OTHER."""
    text = (text or "").strip()
    for start, code in table:
        if text.startswith(start):
            return code
    return OTHER


def group_label(group: str | None) -> str:
    """A group's label value: the group itself, or NO_GROUP when unknown or abstained."""
    return group if group in GROUPS else NO_GROUP


def initial_series() -> list[Series]:
    """Every series with a known label value, so `/metrics` lists each family from the start
    (at 0) and a rate over a quiet group is 0, not absent."""
    groups = (*GROUPS, NO_GROUP)
    out = [series(IMAGES, status=s) for s in IMAGE_STATUSES]
    out += [series(FACES, group=g, source=s) for g in groups for s in SOURCES]
    out += [series(ABSTENTIONS, reason=code) for _, code in ABSTENTION_REASONS]
    out += [series(REJECTED, reason=code) for _, code in REJECTION_REASONS]
    out += [series(WARNINGS, warning=w) for w in WARNING_CODES]
    out += [
        series(POSITIVES, condition=c, group=g, source=s)
        for c in CONDITIONS
        for g in groups
        for s in SOURCES
    ]
    return out


def _add(counts: dict[Series, int], key: Series, value: int = 1) -> None:
    counts[key] = counts.get(key, 0) + value


def _warning_codes(text: str | None, flagged: bool) -> list[str]:
    """Codes of one face's comma-separated WARNINGS string, plus out_of_distribution."""
    codes = [w.strip() for w in (text or "").split(",") if w.strip()]
    codes = [w if w in WARNING_CODES else OTHER for w in codes]
    return [*codes, "out_of_distribution"] if flagged else codes


def request_increments(
    groups: Sequence[str | None],
    sources: Sequence[str],
    decisions: Iterable[Sequence[bool]],
    *,
    warnings: Sequence[str | None] | None = None,
    out_of_distribution: Sequence[bool] | None = None,
    tone_reasons: Sequence[str | None] | None = None,
    rejected: Sequence[str | None] | None = None,
) -> dict[Series, int]:
    """Counter increments for one request (one image) from the thresholds step's view of it.

    groups, sources, decisions: per face, as `client.steps.threshold_step` returns them (group
    None = unknown; decisions [F, len(CONDITIONS)]). warnings: one comma-separated string per
    face (the WARNINGS output); out_of_distribution: per face; tone_reasons: per face, why
    the estimate abstained ("" = it did not); rejected: one reason per rejected candidate. The
    optional ones may be None (a repository that does not wire them): not counted.
    """
    rows = [list(map(bool, row)) for row in decisions]
    if not len(groups) == len(sources) == len(rows):
        raise ValueError(f"{len(groups)} groups, {len(sources)} sources, {len(rows)} decisions")
    counts: dict[Series, int] = {}
    _add(counts, series(IMAGES, status="ok" if rows else "no_face"))
    for i, (group, source, row) in enumerate(zip(groups, sources, rows, strict=True)):
        label, source = group_label(group), source or "estimated"
        _add(counts, series(FACES, group=label, source=source))
        for cond, positive in zip(CONDITIONS, row, strict=True):
            if positive:
                _add(counts, series(POSITIVES, condition=cond, group=label, source=source))
        if source == "estimated" and label == NO_GROUP:
            reason = tone_reasons[i] if tone_reasons is not None else None
            _add(counts, series(ABSTENTIONS, reason=reason_code(reason, ABSTENTION_REASONS)))
        text = warnings[i] if warnings is not None else None
        flagged = out_of_distribution is not None and bool(out_of_distribution[i])
        for code in _warning_codes(text, flagged):
            _add(counts, series(WARNINGS, warning=code))
    for reason in rejected or ():
        _add(counts, series(REJECTED, reason=reason_code(reason, REJECTION_REASONS)))
    return counts
