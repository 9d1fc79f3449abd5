"""ITA maths, group mapping, abstention and illumination normalisation."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from preprocessing import tone
from preprocessing.tone import estimate_skin_tone, ita_degrees, ita_to_group


def lab_to_rgb_uint8(lab) -> np.ndarray:
    rgb = cv2.cvtColor(np.asarray(lab, np.float32).reshape(1, 1, 3), cv2.COLOR_Lab2RGB)
    return np.clip(np.rint(rgb[0, 0] * 255), 0, 255).astype(np.uint8)


def skin_crop(lab, *, size=96, noise=4.0, background=(40, 120, 60), seed=0):
    """A crop: background colour, a skin disc of the given CIELAB colour with pixel noise."""
    rng = np.random.default_rng(seed)
    img = np.empty((size, size, 3), np.float64)
    img[:] = background
    yy, xx = np.mgrid[0:size, 0:size]
    disc = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (0.4 * size) ** 2
    img[disc] = lab_to_rgb_uint8(lab)
    img[disc] += rng.normal(0, noise, (int(disc.sum()), 3))
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), disc


def test_ita_formula_by_hand():
    assert ita_degrees(50.0, 10.0) == pytest.approx(0.0)
    assert ita_degrees(60.0, 10.0) == pytest.approx(45.0)
    assert ita_degrees(40.0, 10.0) == pytest.approx(-45.0)
    assert ita_degrees(50.0 + 10 * np.sqrt(3), 10.0) == pytest.approx(60.0)


@pytest.mark.parametrize(
    ("ita", "group"),
    [
        (70, "I-II"),
        (41.01, "I-II"),
        (41.0, "III-IV"),
        (28, "III-IV"),
        (10.01, "III-IV"),
        (10.0, "V-VI"),
        (-50, "V-VI"),
    ],
)
def test_group_cut_points(ita, group):
    assert ita_to_group(ita) == group


@pytest.mark.parametrize("target_ita", [62.0, 48.0, 33.0, 18.0, -5.0, -42.0])
def test_recovers_the_ita_of_a_known_colour(target_ita):
    b = 16.0
    lab = (50.0 + b * np.tan(np.radians(target_ita)), 10.0, b)
    crop, disc = skin_crop(lab)
    result = estimate_skin_tone(crop, disc)
    assert result.ita == pytest.approx(target_ita, abs=1.5)
    assert result.fitzpatrick_group == ita_to_group(target_ita)
    assert 0.0 < result.confidence <= 1.0 and result.reason is None


def test_shadows_and_highlights_are_trimmed():
    lab = (50.0 + 16 * np.tan(np.radians(33.0)), 10.0, 16.0)
    crop, disc = skin_crop(lab, noise=2.0)
    ys, xs = np.nonzero(disc)
    crop[ys[::12], xs[::12]] = (30, 20, 15)  # 8 % dark hair strands
    assert estimate_skin_tone(crop, disc).ita == pytest.approx(33.0, abs=2.0)


def test_grayscale_abstains():
    crop, disc = skin_crop((65.0, 10.0, 16.0))
    gray = np.repeat(cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)
    result = estimate_skin_tone(gray, disc)
    assert result.fitzpatrick_group is None and result.confidence == 0.0
    assert result.reason == tone.REASON_LOW_CHROMA


def test_exposure_and_size_abstain():
    crop, disc = skin_crop((65.0, 10.0, 16.0))
    over = np.clip(crop.astype(int) + 120, 0, 255).astype(np.uint8)
    assert estimate_skin_tone(over, disc).reason == tone.REASON_OVER
    under = (crop // 20).astype(np.uint8)
    assert estimate_skin_tone(under, disc).reason == tone.REASON_UNDER
    small = np.zeros_like(disc)
    small[40:45, 40:45] = True
    assert estimate_skin_tone(crop, small).reason == tone.REASON_TOO_SMALL


def test_confidence_grows_with_distance_from_a_cut():
    assert tone.tone_confidence(41.5, 1000) < tone.tone_confidence(46.0, 1000)
    assert tone.tone_confidence(25.5, 1000) == pytest.approx(1 - np.exp(-15.5 / 5.0))
    assert tone.tone_confidence(25.5, 300) == pytest.approx(0.5 * (1 - np.exp(-15.5 / 5.0)))


def test_shades_of_gray_removes_a_colour_cast():
    lab = (50.0 + 16 * np.tan(np.radians(33.0)), 10.0, 16.0)
    crop, disc = skin_crop(lab, background=(128, 128, 128))
    cast = np.clip(crop * np.array([0.85, 0.95, 1.25]), 0, 255).astype(np.uint8)
    gains = tone.shades_of_gray_gains(cast[~disc])
    np.testing.assert_allclose(gains / gains.mean(), gains)
    assert gains[2] < 1.0 < gains[0]
    plain = estimate_skin_tone(cast, disc)
    normalised = estimate_skin_tone(cast, disc, illumination="shades_of_gray")
    assert abs(normalised.ita - 33.0) < abs(plain.ita - 33.0)
    assert normalised.ita == pytest.approx(33.0, abs=3.0)


def test_bad_arguments():
    crop, disc = skin_crop((65.0, 10.0, 16.0))
    with pytest.raises(ValueError, match="illumination must be one of"):
        estimate_skin_tone(crop, disc, illumination="retinex")
    with pytest.raises(ValueError, match="RGB crop"):
        estimate_skin_tone(crop[..., 0], disc)


def test_lesion_rejection_ignores_dark_spots():
    lab = (50.0 + 16 * np.tan(np.radians(48.0)), 10.0, 16.0)
    crop, disc = skin_crop(lab, size=160, noise=1.5)
    spotted = crop.copy()
    yy, xx = np.mgrid[:160, :160]
    spots = np.zeros_like(disc)
    for y, x in np.random.default_rng(1).integers(20, 140, size=(3000, 2)):
        spots |= (yy - y) ** 2 + (xx - x) ** 2 <= 4  # spots of radius 2
        if (spots & disc).sum() >= 0.4 * disc.sum():
            break
    spotted[spots] = lab_to_rgb_uint8((lab[0] - 6.0, lab[1] + 1.0, lab[2] + 4.0))  # mild melasma
    plain = estimate_skin_tone(spotted, disc, reject_lesions=False)
    robust = estimate_skin_tone(spotted, disc)
    assert abs(robust.ita - 48.0) < 1.0 < 2.0 < abs(plain.ita - 48.0)
    assert robust.fitzpatrick_group == "I-II"


def test_residuals_computed_once_give_the_same_estimates():
    crop, disc = skin_crop((58.0, 12.0, 17.0), size=160, noise=6.0)
    half = disc & (np.arange(160)[:, None] < 80)
    residuals = tone.local_residuals(crop)
    for mask in (disc, half):
        assert estimate_skin_tone(crop, mask, residuals=residuals) == estimate_skin_tone(crop, mask)
    with pytest.raises(ValueError, match="before illumination"):
        estimate_skin_tone(crop, disc, illumination="shades_of_gray", residuals=residuals)


def test_lesion_rejection_does_not_bias_noisy_skin():
    lab = (50.0 + 16 * np.tan(np.radians(33.0)), 10.0, 16.0)
    crop, disc = skin_crop(lab, size=160, noise=10.0)
    with_rejection = estimate_skin_tone(crop, disc).ita
    without = estimate_skin_tone(crop, disc, reject_lesions=False).ita
    assert abs(with_rejection - without) < 1.0
