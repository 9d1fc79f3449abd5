"""Names shared by every package: conditions, skin-tone groups and the canonical columns.

Pure constants and tiny helpers; no third-party imports, so the Triton python
models (numpy<2 environment) and the JAX trainer can both import it.
"""

from __future__ import annotations

CONDITIONS: tuple[str, ...] = ("acne", "hyperpigmentation", "wrinkles")
GROUPS: tuple[str, ...] = ("I-II", "III-IV", "V-VI")
# ITA cut points of the estimated groups (preprocessing.tone.ita_to_group): I-II above the
# first, V-VI at or below the second.
ITA_CUTS: tuple[float, float] = (41.0, 10.0)
FITZPATRICK_TYPES: tuple[int, ...] = (1, 2, 3, 4, 5, 6)
SPLITS: tuple[str, ...] = ("train", "val", "test")

# Columns of metadata.csv (docs/architecture.md, "Canonical dataset").
REQUIRED_COLUMNS: tuple[str, ...] = ("image", *CONDITIONS, "fitzpatrick", "split", "source")
OPTIONAL_COLUMNS: tuple[str, ...] = (
    "acne_severity",
    "acne_lesion_count",
    "fitzpatrick_group",
    "tone_source",
    "subject_id",
    "mask",
)

# Acne severity grades (ACNE04 bands of the lesion count: <=5, 6-20, 21-50, >50).
SEVERITY_GRADES: tuple[int, ...] = (0, 1, 2, 3)
# The largest acne lesion count of grades 0, 1 and 2 (grade 3 is everything above the last).
SEVERITY_COUNT_BANDS: tuple[int, ...] = (5, 20, 50)
# Where a row's skin tone comes from: a label, or an estimate from the photo (never a type).
TONE_SOURCES: tuple[str, ...] = ("labelled", "estimated")

# Columns of predictions_{val,test}.csv (docs/architecture.md, "Predictions").
PREDICTION_COLUMNS: tuple[str, ...] = (
    "image",
    "fitzpatrick",
    "group",
    "split",
    *CONDITIONS,
    *(f"{c}_prob" for c in CONDITIONS),
)
# Written by every training run after those; readers keep them when present and do not require
# them (older predictions files lack them). Empty = unknown (label or tone source) or, for the
# grade and probabilities, a model without a severity head.
PREDICTION_OPTIONAL_COLUMNS: tuple[str, ...] = (
    "tone_source",
    "acne_severity",
    "acne_severity_grade",
    *(f"acne_severity_prob_{k}" for k in SEVERITY_GRADES),
)

DISCLAIMER = "research aid, not a diagnosis"
# Per condition, which kinds of data had labels in the train split (the model card's
# training_data.evidence; the result JSON's conditions.<cond>.evidence).
TRAINING_EVIDENCE: tuple[str, ...] = ("none", "real", "real+synthetic", "synthetic")


def fitzpatrick_to_group(fitzpatrick: int | None) -> str | None:
    """Map a Fitzpatrick type 1-6 to its group name; None (unknown) stays None.

    >>> fitzpatrick_to_group(5)
    'V-VI'
    """
    if fitzpatrick is None:
        return None
    f = int(fitzpatrick)
    if f not in FITZPATRICK_TYPES:
        allowed = list(FITZPATRICK_TYPES)
        raise ValueError(f"Fitzpatrick type must be one of {allowed}, got {fitzpatrick!r}")
    return GROUPS[(f - 1) // 2]
