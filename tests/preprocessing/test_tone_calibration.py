"""The tone confidence calibrated against by-eye labels: maths, fitting, the shipped file."""

from __future__ import annotations

import json

import numpy as np
import pytest

from preprocessing import tone_calibration as calib
from preprocessing.tone import estimate_tone_in_regions, ita_to_group


def test_features_cap_a_missing_or_wide_interval():
    assert calib.confidence_features(50.0, None).tolist() == [50.0, 9.0, calib.UNKNOWN_HALF_WIDTH]
    assert calib.confidence_features(-5.0, (-40.0, 30.0))[2] == calib.UNKNOWN_HALF_WIDTH
    assert calib.confidence_features(20.0, (float("nan"), 1.0))[2] == calib.UNKNOWN_HALF_WIDTH


def test_fit_recovers_a_known_calibration_and_crossfit_is_calibrated():
    rng = np.random.default_rng(0)
    ita = rng.uniform(-40, 80, 3000)
    half = rng.uniform(0, 10, 3000)
    features = np.stack([ita, [calib.confidence_features(i, None)[1] for i in ita], half], 1)
    truth = calib.Calibration(coef=(0.03, 0.05, -0.3), intercept=0.5)
    p = np.array(
        [
            calib.calibrated_confidence(i, (i - h, i + h), truth)
            for i, h in zip(ita, half, strict=True)
        ]
    )
    agree = rng.random(3000) < p
    fitted = calib.fit_calibration(features, agree, {"fitted_on": "simulated"})
    np.testing.assert_allclose(fitted.coef, truth.coef, atol=0.015)
    crossfit = calib.crossfit_confidence(features, agree, repeats=1)
    high = crossfit >= 0.9
    assert high.sum() > 100 and abs(agree[high].mean() - crossfit[high].mean()) < 0.03


def test_write_and_load_round_trip_and_bad_files_are_named(tmp_path):
    cal = calib.Calibration(coef=(0.01, 0.02, -0.1), intercept=0.3, provenance={"faces": 3})
    path = tmp_path / "cal.json"
    calib.write_calibration(cal, path)
    assert calib.load_calibration(path) == cal
    data = json.loads(path.read_text())
    data["features"] = ["ita"]
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=f"{path}.*features"):
        calib.load_calibration(path)
    path.write_text("{")
    with pytest.raises(ValueError, match=str(path)):
        calib.load_calibration(path)


def test_the_shipped_calibration_says_what_it_was_fitted_on():
    cal = calib.load_calibration(calib.DEFAULT_PATH)
    assert "by-eye" in cal.provenance["fitted_on"] and cal.provenance["faces"] >= 100
    crossfit = cal.provenance["crossfit"]
    assert crossfit["faces"] == cal.provenance["faces"]
    for ita in (-30.0, 5.0, 25.0, 70.0):
        assert 0.0 < calib.calibrated_confidence(ita, (ita - 1, ita + 1), cal) < 1.0


def test_the_served_estimate_reports_the_calibrated_confidence():
    rng = np.random.default_rng(1)
    crop = np.clip(rng.normal((200, 160, 140), 4, (96, 96, 3)), 0, 255).astype(np.uint8)
    regions = {}
    for k, (r, c) in enumerate([(10, 10), (10, 60), (60, 10), (60, 60)]):
        regions[f"r{k}"] = np.zeros((96, 96), bool)
        regions[f"r{k}"][r : r + 25, c : c + 25] = True
    cal = calib.Calibration(coef=(0.0, 0.0, 0.0), intercept=1.0)
    tone = estimate_tone_in_regions(crop, regions, calibration=cal)
    assert tone.fitzpatrick_group == ita_to_group(tone.ita)
    assert tone.confidence == round(1 / (1 + np.exp(-1.0)), 3)
    shipped = estimate_tone_in_regions(crop, regions)
    expected = calib.calibrated_confidence(
        shipped.ita, shipped.ita_interval, calib.default_calibration()
    )
    assert shipped.confidence == round(expected, 3)
