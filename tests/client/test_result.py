"""client/result.py: the result JSON built from per-face arrays."""

from __future__ import annotations

import json

import numpy as np

from client.result import ModelInfo, RawAnalysis, build_result, card_evidence, summarize

INFO = ModelInfo("m", "v1", "embedded")
MIXED = {"acne": "real+synthetic", "hyperpigmentation": "real", "wrinkles": "synthetic"}


def _raw(num_faces: int, severity: np.ndarray | None = None) -> RawAnalysis:
    return RawAnalysis(
        boxes=np.arange(4 * num_faces, dtype=np.float32).reshape(num_faces, 4),
        scores=np.full(num_faces, 0.9, np.float32),
        ita=np.array([np.nan, 30.0][:num_faces], np.float32),
        tone_confidence=np.full(num_faces, 0.5, np.float32),
        affines=np.zeros((num_faces, 2, 3), np.float32),
        groups=[None, "III-IV"][:num_faces],
        sources=["estimated"] * num_faces,
        probs=np.array([[0.2, 0.6, 0.9], [0.5, 0.5, 0.5]][:num_faces], np.float32),
        thresholds=np.full((num_faces, 3), 0.5),
        decisions=np.array([[False, True, True], [True, True, True]][:num_faces]),
        cam=np.zeros((num_faces, 3, 8, 8), np.float32),
        severity=severity,
    )


def test_faces_carry_thresholds_decisions_and_null_for_unmeasured_tone():
    result = build_result("x.jpg", _raw(2), INFO)
    assert result["status"] == "ok" and len(result["faces"]) == 2
    first = result["faces"][0]
    assert first["skin_tone"] == {
        "ita": None,
        "ita_interval": None,
        "fitzpatrick_group": None,
        "source": "estimated",
        "confidence": 0.5,
        "abstain_reason": None,
    }
    assert first["conditions"]["acne"] == {
        "probability": np.float32(0.2).item(),
        "threshold": 0.5,
        "present": False,
        "evidence": None,  # INFO has no model card evidence: unknown
        "severity": None,  # a model without the severity output
    }
    assert first["box"] == [0.0, 1.0, 2.0, 3.0]
    json.dumps(result, allow_nan=False)  # strict JSON: no NaN anywhere


def test_zero_faces_is_no_face_and_invalid_has_error():
    assert build_result("x.jpg", _raw(0), INFO)["status"] == "no_face"
    bad = build_result("y.jpg", None, INFO, error="not an image")
    assert (bad["status"], bad["faces"], bad["error"]) == ("invalid_image", [], "not an image")
    assert bad["model"] == {
        "name": "m",
        "version": "v1",
        "backend": "embedded",
        "training_data": None,
    }


def test_acne_severity_is_grade_and_probabilities_or_null():
    severity = np.array([[0.1, 0.3, 0.4, 0.2], [np.nan] * 4], np.float32)
    result = build_result("x.jpg", _raw(2, severity), INFO)
    json.dumps(result, allow_nan=False)
    first, second = (face["conditions"] for face in result["faces"])
    assert first["acne"]["severity"] == {
        "grade": 2,  # the median: P(grade > 1) = 0.6 > 0.5, P(grade > 2) = 0.2
        "probabilities": [float(np.float32(p)) for p in (0.1, 0.3, 0.4, 0.2)],
    }
    assert set(first["acne"]) == {"probability", "threshold", "present", "evidence", "severity"}
    assert "severity" not in first["hyperpigmentation"] and "severity" not in first["wrinkles"]
    assert second["acne"]["severity"] is None  # NaN row: no severity output in the model
    assert "severity grade 2" in summarize(result)


def test_severity_step_trims_to_the_faces_and_fills_nan_without_the_output():
    from client.steps import severity_step

    probs = np.arange(8, dtype=np.float32).reshape(2, 4)
    np.testing.assert_array_equal(severity_step(probs, 1).probabilities, probs[:1])
    empty = severity_step(probs, 0)
    assert empty.probabilities.shape == (0, 4) and empty.grades.shape == (0,)
    missing = severity_step(None, 3)
    assert missing.probabilities.shape == (3, 4) and missing.probabilities.dtype == np.float32
    assert np.isnan(missing.probabilities).all()
    assert missing.grades.dtype == np.int32 and missing.grades.tolist() == [-1, -1, -1]


def test_severity_step_grades_with_the_cutpoints():
    from client.steps import severity_step

    # P(grade > k): row 0 (0.9, 0.6, 0.2), row 1 (0.3, 0.1, 0.05)
    probs = np.array([[0.1, 0.3, 0.4, 0.2], [0.7, 0.2, 0.05, 0.05]], np.float32)
    assert severity_step(probs, 2).grades.tolist() == [2, 0]  # default: the median
    assert severity_step(probs, 2, (0.25, 0.08, 0.5)).grades.tolist() == [2, 2]
    assert severity_step(probs, 2, [0.95, 0.95, 0.1]).grades.tolist() == [1, 0]


def test_result_shows_the_steps_grade_and_grades_itself_without_one():
    severity = np.array([[0.1, 0.3, 0.4, 0.2], [0.7, 0.2, 0.05, 0.05]], np.float32)
    raw = _raw(2, severity)
    given = RawAnalysis(**{**raw.__dict__, "severity_grade": np.array([3, -1], np.int32)})
    faces = build_result("x.jpg", given, INFO)["faces"]
    # a given grade wins; -1 (or no grades at all: a server built before them) falls back to
    # the default rule on the probabilities
    assert [f["conditions"]["acne"]["severity"]["grade"] for f in faces] == [3, 0]
    faces = build_result("x.jpg", raw, INFO)["faces"]
    assert [f["conditions"]["acne"]["severity"]["grade"] for f in faces] == [2, 0]


def test_card_evidence_from_the_card_or_its_synthetic_flag():
    assert card_evidence({"training_data": {"synthetic": False, "evidence": MIXED}}) == MIXED
    # Today's synthetic card has no evidence block: every condition rests on synthetic data.
    synthetic = {"training_data": {"dataset": "data/synthskin-v1", "synthetic": True}}
    assert card_evidence(synthetic) == dict.fromkeys(MIXED, "synthetic")
    assert card_evidence({"training_data": {"synthetic": False}}) == dict.fromkeys(MIXED)
    assert card_evidence({}) == dict.fromkeys(MIXED)
    # A value outside the vocabulary is not passed on.
    odd = {"training_data": {"synthetic": True, "evidence": {**MIXED, "acne": "photos"}}}
    assert card_evidence(odd)["acne"] == "synthetic"


def test_every_face_carries_the_models_evidence_and_training_note():
    info = ModelInfo("m", "v1", "embedded", evidence=MIXED, training_data="trained on X")
    result = build_result("x.jpg", _raw(2), info)
    json.dumps(result, allow_nan=False)
    for face in result["faces"]:
        assert {c: v["evidence"] for c, v in face["conditions"].items()} == MIXED
    assert result["model"]["training_data"] == "trained on X"
    text = summarize(result)
    assert "[trained on: real+synthetic]" in text and "trained on X" in text


def _with_trust(raw, warnings, rejected):
    num = raw.num_faces
    return RawAnalysis(
        **{
            **raw.__dict__,
            "tone_reasons": ["ITA interval spans a group boundary"] + [None] * (num - 1),
            "ita_interval": np.array([[5.0, 15.0]] + [[np.nan, np.nan]] * (num - 1), np.float32),
            "face_presence": np.full(num, 0.9999, np.float32),
            "warnings": warnings,
            "rejected": rejected,
        }
    )


def test_unusable_face_is_uncertain_unless_forced_and_rejected_candidates_are_counted():
    raw = _with_trust(_raw(2), [("blur",), ("colour_cast",)], ["not a face", "not a face", "x"])
    result = build_result("x.jpg", raw, INFO)
    blurred, cast = result["faces"]
    assert blurred["warnings"] == ["blur"]
    assert {c["present"] for c in blurred["conditions"].values()} == {None}
    # a colour cast alone only warns: the decisions stay yes/no
    assert [c["present"] for c in cast["conditions"].values()] == [True, True, True]
    assert blurred["skin_tone"]["ita_interval"] == [5.0, 15.0]
    assert blurred["skin_tone"]["abstain_reason"] == "ITA interval spans a group boundary"
    assert result["rejected_candidates"] == 3
    assert result["rejected_reasons"] == {"not a face": 2, "x": 1}
    forced = build_result("x.jpg", raw, INFO, force=True)
    assert [c["present"] for c in forced["faces"][0]["conditions"].values()] == [
        False,
        True,
        True,
    ]
    text = summarize(result)
    assert "warnings: blur" in text and "uncertain" in text and "not analysed: 3" in text
    json.dumps(result, allow_nan=False)
