"""Face verification, white-patch colour constancy and the ITA interval, on real photos."""

from __future__ import annotations

import json

import numpy as np
import pytest

from client.result import build_result
from client.runner import EmbeddedRunner
from preprocessing.colour import LIGHTING_CHANGES, apply_gains, relight, white_patch_gains
from preprocessing.image_io import load_image
from preprocessing.pipeline import analyze_image, first_face_crop
from preprocessing.tone import REASON_SPANS_CUT, SkinTone, estimate_tone_in_regions
from preprocessing.tone_robustness import BASE, label_agreement, lighting_summary
from preprocessing.verify import skin_plausibility, verify_faces
from tests.preprocessing.test_landmarks import draw_die, draw_smiley


def test_group_photo_analyses_six_faces_and_counts_the_hand(group_photo_path):
    runner = EmbeddedRunner()
    raw = runner.analyze_bytes(group_photo_path.read_bytes())
    assert raw.num_faces == 6 and len(raw.rejected) == 1
    assert raw.rejected[0].startswith("not a face")
    result = build_result("t1.jpg", raw, runner.info)
    assert result["rejected_candidates"] == 1
    json.dumps(result, allow_nan=False)


@pytest.mark.parametrize("draw", [draw_die, draw_smiley])
def test_drawn_non_faces_are_not_analysed(draw, tmp_path):
    import cv2

    path = tmp_path / "x.png"
    cv2.imwrite(str(path), cv2.cvtColor(draw(), cv2.COLOR_RGB2BGR))
    runner = EmbeddedRunner()
    raw = runner.analyze_bytes(path.read_bytes())
    assert raw.num_faces == 0 and len(raw.rejected) >= 1
    assert build_result("x.png", raw, runner.info)["status"] == "no_face"


def test_skin_plausibility_rejects_blue_and_grey_patches_but_not_skin(astronaut):
    (face,) = analyze_image(astronaut, size=128)
    skin = face.crop[face.skin_mask]
    assert skin_plausibility(skin) is None
    blue = np.tile(np.array([[40, 60, 160]], np.uint8), (500, 1))
    assert "skin-coloured" in skin_plausibility(blue)
    grey = np.tile(np.array([[120, 120, 120]], np.uint8), (500, 1))
    assert skin_plausibility(grey) is None  # a grayscale photo: colour says nothing
    assert "no skin" in skin_plausibility(skin[:5])


def test_verify_faces_applies_the_presence_limit(astronaut, detector):
    from preprocessing.landmarks import landmarks_for

    faces = detector.detect(astronaut)
    landmarks, presence = landmarks_for(astronaut, faces)
    assert verify_faces(astronaut, landmarks, presence) == ([0], [])
    kept, rejected = verify_faces(astronaut, landmarks, presence, min_presence=1.01)
    assert kept == [] and rejected[0].startswith("not a face")


def test_white_patch_gains_undo_a_white_balance_change():
    rng = np.random.default_rng(0)
    white = rng.integers(200, 230, size=(200, 3)).astype(np.uint8)
    white[:] = white[:, :1]  # grey pixels
    warm = relight(white[None], 0.0, LIGHTING_CHANGES["warm white balance"][1])[0]
    gains = white_patch_gains(warm)
    restored = apply_gains(warm, gains)
    spread = restored.astype(float).max(axis=1) - restored.astype(float).min(axis=1)
    assert spread.mean() < 2.0 < (warm.max(axis=1) - warm.min(axis=1)).mean()
    assert white_patch_gains(warm[:3]) is None  # too few pixels


def test_tone_interval_abstains_when_regions_straddle_a_cut(astronaut):
    (face,) = analyze_image(astronaut, size=160)
    crop = face.crop.copy()
    h, w = crop.shape[:2]
    left = np.zeros((h, w), bool)
    left[40:120, 20:70] = True
    right = np.zeros((h, w), bool)
    right[40:120, 90:140] = True
    # Same skin in both regions: a narrow interval and a group.
    same = estimate_tone_in_regions(crop, {"a": left, "b": right})
    assert same.ita_interval is not None and same.fitzpatrick_group is not None
    # Darken one region only: the regions disagree across a cut and the estimate abstains.
    crop[right] = (crop[right] * 0.7).astype(np.uint8)
    split = estimate_tone_in_regions(crop, {"a": left, "b": right})
    assert split.reason == REASON_SPANS_CUT and split.fitzpatrick_group is None
    low, high = split.ita_interval
    assert low < 10.0 < high or low < 41.0 < high
    assert split.ita is not None


def _tone(group):
    return SkinTone(ita=0.0, fitzpatrick_group=group, confidence=0.95)


def test_lighting_summary_and_label_agreement_count_correctly():
    results = [
        {BASE: _tone("I-II"), "+0.5 EV": _tone("I-II")},
        {BASE: _tone("I-II"), "+0.5 EV": _tone("III-IV")},
        {BASE: _tone(None), "+0.5 EV": _tone(None)},
        {BASE: None, "+0.5 EV": None},  # no face: left out
    ]
    summary = lighting_summary(results)
    assert summary["faces"] == 3 and summary["abstain_as_taken"] == pytest.approx(1 / 3, 1e-3)
    assert summary["+0.5 EV"] == {"group_changed": pytest.approx(1 / 3, 1e-3), "abstain": 0.3333}
    tones = {"a": _tone("I-II"), "b": _tone("V-VI"), "c": _tone(None), "d": _tone("V-VI")}
    labels = {"a": "I-II", "b": "I-II", "c": "III-IV", "d": "between", "e": "I-II"}
    agreement = label_agreement(tones, labels)
    assert agreement["clear_labels"] == 3 and agreement["estimated"] == 2
    assert agreement["agreement"] == 0.5 and agreement["light_estimated_v_vi"] == 0.5
    light = agreement["by_label"]["I-II"]
    assert light["faces"] == 2 and light["estimated_as"] == {
        "I-II": 1,
        "III-IV": 0,
        "V-VI": 1,
        "None": 0,
    }
    assert agreement["by_label"]["III-IV"]["estimated_as"]["None"] == 1


def test_exif_rotated_webp_gives_the_same_face(astronaut_path, tmp_path):
    from PIL import Image

    rotated = Image.open(astronaut_path).convert("RGB").rotate(90, expand=True)
    exif = Image.Exif()
    exif[0x0112] = 6  # the stored image is turned 90 degrees anticlockwise: turn it back
    path = tmp_path / "a.webp"
    rotated.save(path, "WEBP", lossless=True, exif=exif)
    upright = load_image(path)
    np.testing.assert_array_equal(upright, load_image(astronaut_path)[..., :3])


@pytest.mark.parametrize("photo", ["astronaut_path", "group_photo_path"])
def test_first_face_crop_is_the_first_face_of_analyze_image(photo, request, detector):
    image = load_image(request.getfixturevalue(photo))
    first = analyze_image(image, size=96, detector=detector)[0]
    crop, affine = first_face_crop(image, size=96, detector=detector)
    np.testing.assert_array_equal(crop, first.crop)
    np.testing.assert_array_equal(affine, first.affine)


def test_first_face_crop_is_none_without_a_verified_face(detector):
    assert first_face_crop(draw_die(), size=64, detector=detector) is None


@pytest.mark.parametrize(
    "gains", [(1.15, 1.0, 0.85), (0.87 * 1.41, 1.41, 1.15 * 1.41), (0.3, 2.5, 1.0)]
)
def test_apply_gains_table_gives_the_bytes_of_the_float_formula(astronaut, gains):
    from preprocessing.colour import linear_to_srgb, srgb_to_linear

    crop = astronaut[40:300:2, 100:400]  # not contiguous
    expected = linear_to_srgb(srgb_to_linear(crop) * np.asarray(gains))
    np.testing.assert_array_equal(apply_gains(crop, gains), expected)
