"""client/result.py: the result JSON built from per-face arrays."""

from __future__ import annotations

import json

import numpy as np

from client.result import ModelInfo, RawAnalysis, build_result

INFO = ModelInfo("m", "v1", "embedded")


def _raw(num_faces: int) -> RawAnalysis:
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
    )


def test_faces_carry_thresholds_decisions_and_null_for_unmeasured_tone():
    result = build_result("x.jpg", _raw(2), INFO)
    assert result["status"] == "ok" and len(result["faces"]) == 2
    first = result["faces"][0]
    assert first["skin_tone"] == {
        "ita": None,
        "fitzpatrick_group": None,
        "source": "estimated",
        "confidence": 0.5,
    }
    assert first["conditions"]["acne"] == {
        "probability": np.float32(0.2).item(),
        "threshold": 0.5,
        "present": False,
    }
    assert first["box"] == [0.0, 1.0, 2.0, 3.0]
    json.dumps(result, allow_nan=False)  # strict JSON: no NaN anywhere


def test_zero_faces_is_no_face_and_invalid_has_error():
    assert build_result("x.jpg", _raw(0), INFO)["status"] == "no_face"
    bad = build_result("y.jpg", None, INFO, error="not an image")
    assert (bad["status"], bad["faces"], bad["error"]) == ("invalid_image", [], "not an image")
    assert bad["model"] == {"name": "m", "version": "v1", "backend": "embedded"}
