"""client/monitoring.py: one request's outputs -> counter increments (pure, no server)."""

from __future__ import annotations

import pytest

from client import monitoring as m
from client.ood import WARNING as OOD_WARNING
from core.schema import CONDITIONS, GROUPS
from preprocessing import quality, tone, verify


def test_warning_codes_are_the_quality_warnings_and_ood():
    assert m.WARNING_CODES == (*quality.WARNINGS, OOD_WARNING)


def test_every_tone_reason_has_its_own_code():
    reasons = [getattr(tone, n) for n in dir(tone) if n.startswith("REASON_")]
    codes = {m.reason_code(r, m.ABSTENTION_REASONS) for r in reasons}
    assert m.OTHER not in codes and len(codes) == len(reasons) == len(m.ABSTENTION_REASONS)


def test_every_rejection_reason_has_its_own_code_with_its_numbers_formatted():
    texts = [
        verify.REASON_NOT_A_FACE.format(presence=0.5, limit=0.999),
        verify.REASON_SKIN_FRACTION.format(fraction=0.12),
        verify.REASON_ITA.format(ita=-80.0),
        verify.REASON_NO_SKIN,
    ]
    codes = [m.reason_code(t, m.REJECTION_REASONS) for t in texts]
    assert codes == ["not_a_face", "skin_fraction", "skin_colour", "no_skin"]
    assert m.reason_code("something new", m.REJECTION_REASONS) == m.OTHER


def test_two_faces_estimated_and_abstained():
    counts = m.request_increments(
        ["I-II", None],
        ["estimated", "estimated"],
        [[True, False, True], [False, False, False]],
        warnings=["blur,colour_cast", ""],
        out_of_distribution=[False, True],
        tone_reasons=["", tone.REASON_SPANS_CUT],
        rejected=[verify.REASON_NOT_A_FACE.format(presence=0.2, limit=0.999)],
    )
    assert counts == {
        m.series(m.IMAGES, status="ok"): 1,
        m.series(m.FACES, group="I-II", source="estimated"): 1,
        m.series(m.FACES, group="none", source="estimated"): 1,
        m.series(m.POSITIVES, condition="acne", group="I-II", source="estimated"): 1,
        m.series(m.POSITIVES, condition="wrinkles", group="I-II", source="estimated"): 1,
        m.series(m.ABSTENTIONS, reason="spans_boundary"): 1,
        m.series(m.WARNINGS, warning="blur"): 1,
        m.series(m.WARNINGS, warning="colour_cast"): 1,
        m.series(m.WARNINGS, warning="out_of_distribution"): 1,
        m.series(m.REJECTED, reason="not_a_face"): 1,
    }


def test_given_group_is_counted_as_given_without_abstention():
    counts = m.request_increments(
        ["V-VI", "V-VI"],
        ["given", "given"],
        [[True, True, False], [True, False, False]],
        tone_reasons=[tone.REASON_TOO_SMALL, ""],
    )
    assert counts[m.series(m.FACES, group="V-VI", source="given")] == 2
    assert counts[m.series(m.POSITIVES, condition="acne", group="V-VI", source="given")] == 2
    assert not any(key[0] == m.ABSTENTIONS for key in counts)


def test_no_face_counts_the_image_and_its_rejected_candidates_only():
    counts = m.request_increments([], [], [], rejected=["no skin region", "no skin region"])
    assert counts == {
        m.series(m.IMAGES, status="no_face"): 1,
        m.series(m.REJECTED, reason="no_skin"): 2,
    }


def test_unwired_inputs_are_not_counted_and_unknown_codes_are_other():
    counts = m.request_increments([None], ["estimated"], [[False] * 3])
    assert counts[m.series(m.ABSTENTIONS, reason=m.OTHER)] == 1
    assert not any(key[0] in (m.WARNINGS, m.REJECTED) for key in counts)
    counts = m.request_increments(["III-IV"], [""], [[0, 0, 0]], warnings=["glare"])
    assert counts[m.series(m.WARNINGS, warning=m.OTHER)] == 1
    assert counts[m.series(m.FACES, group="III-IV", source="estimated")] == 1


def test_lengths_must_agree_and_labels_must_match_the_family():
    with pytest.raises(ValueError, match="groups"):
        m.request_increments(["I-II"], ["estimated"], [])
    with pytest.raises(ValueError, match="takes labels"):
        m.series(m.FACES, group="I-II")


def test_initial_series_cover_every_group_condition_and_source():
    keys = m.initial_series()
    assert len(keys) == len(set(keys))
    groups = (*GROUPS, m.NO_GROUP)
    positives = [k for k in keys if k[0] == m.POSITIVES]
    assert len(positives) == len(CONDITIONS) * len(groups) * len(m.SOURCES)
    assert {k[0] for k in keys} == set(m.LABELS) == set(m.DESCRIPTIONS)
    assert all(name.startswith(m.PREFIX) and name.endswith("_total") for name in m.LABELS)
