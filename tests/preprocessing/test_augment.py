"""Tone-preserving augmentation: shapes, determinism, and mean ITA moves by < 2 degrees."""

from __future__ import annotations

import numpy as np
import pytest

from preprocessing.align import transform_points
from preprocessing.augment import (
    WHITE_BALANCE_SHIFT,
    AugmentParams,
    add_noise,
    apply_params,
    augment,
    augment_with_masks,
    clahe_l,
    gaussian_blur,
    hflip,
    jpeg_roundtrip,
    random_resized_crop,
    rotate,
    white_balance_shift,
)
from preprocessing.pipeline import analyze_image
from preprocessing.skin_mask import skin_mask
from preprocessing.tone import estimate_skin_tone, rgb_to_lab


@pytest.fixture(scope="module")
def analysed(astronaut, detector):
    return analyze_image(astronaut, size=160, detector=detector)[0]


@pytest.fixture(scope="module")
def face_crop(analysed):
    return analysed.crop


@pytest.fixture(scope="module")
def skin(analysed):
    return skin_mask(transform_points(analysed.keypoints, analysed.affine), (160, 160))


def test_ops_keep_shape_and_dtype(face_crop):
    rng = np.random.default_rng(0)
    for out in (
        clahe_l(face_crop),
        random_resized_crop(face_crop, rng),
        hflip(face_crop),
        rotate(face_crop, 7.0),
        augment(face_crop, rng),
    ):
        assert out.shape == face_crop.shape and out.dtype == np.uint8


def test_hflip_and_zero_rotation_are_exact(face_crop):
    np.testing.assert_array_equal(hflip(hflip(face_crop)), face_crop)
    np.testing.assert_array_equal(rotate(face_crop, 0.0), face_crop)


def test_same_seed_same_output(face_crop):
    a = augment(face_crop, np.random.default_rng(3))
    b = augment(face_crop, np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)


def test_clahe_changes_lightness_not_colour(face_crop):
    before, after = rgb_to_lab(face_crop), rgb_to_lab(clahe_l(face_crop))
    assert np.abs(after[..., 0] - before[..., 0]).mean() > 1.0
    assert abs(np.median(after[..., 1]) - np.median(before[..., 1])) < 1.5
    assert abs(np.median(after[..., 2]) - np.median(before[..., 2])) < 1.5


def test_masks_follow_the_image_geometry(face_crop):
    h, w = face_crop.shape[:2]
    masks = np.zeros((h, w, 3), np.uint8)
    masks[40:80, 50:90, 1] = 255
    image = face_crop.copy()
    image[40:80, 50:90] = (0, 255, 0)
    out, out_masks = augment_with_masks(image, masks, np.random.default_rng(5))
    assert out_masks.shape == masks.shape and set(np.unique(out_masks)) <= {0, 255}
    green = (out[..., 1] > 200) & (out[..., 0] < 60) & (out[..., 2] < 60)
    inside = out_masks[..., 1] > 0
    assert (green & inside).sum() > 0.9 * green.sum()


@pytest.mark.parametrize("seed", [0, 1])
def test_augmentation_moves_mean_ita_by_less_than_two_degrees(face_crop, skin, seed):
    """Skin tone over the same (co-transformed) skin region before and after augmentation."""
    base = estimate_skin_tone(face_crop, skin).ita
    rng = np.random.default_rng(seed)
    itas = []
    for _ in range(16):
        image, mask = augment_with_masks(face_crop, skin, rng)
        itas.append(estimate_skin_tone(image, mask).ita)
    assert all(v is not None for v in itas)
    assert abs(float(np.mean(itas)) - base) < 2.0


def test_camera_degradations_change_pixels_not_mean_colour(face_crop):
    base = rgb_to_lab(face_crop).reshape(-1, 3).mean(axis=0)
    for out in (
        jpeg_roundtrip(face_crop, 50),
        gaussian_blur(face_crop, 1.0),
        add_noise(face_crop, 4.0, seed=0),
    ):
        assert out.shape == face_crop.shape and out.dtype == np.uint8
        assert np.abs(out.astype(int) - face_crop).mean() > 0.5
        lab = rgb_to_lab(out).reshape(-1, 3).mean(axis=0)
        assert np.abs(lab - base).max() < 1.0


def test_white_balance_shift_is_warm_or_cool_and_small(face_crop):
    warm = white_balance_shift(face_crop, WHITE_BALANCE_SHIFT)
    cool = white_balance_shift(face_crop, -WHITE_BALANCE_SHIFT)
    b_star = [rgb_to_lab(x)[..., 2].mean() for x in (cool, face_crop, warm)]
    assert b_star[0] < b_star[1] < b_star[2]  # warm = yellower (b* up), cool = bluer
    assert b_star[2] - b_star[0] < 6.0
    assert np.array_equal(white_balance_shift(face_crop, 0.0), face_crop)


def test_degradations_apply_to_the_image_only(face_crop):
    h, w = face_crop.shape[:2]
    params = AugmentParams((0, 0, h, w), False, 0.0, False, jpeg_quality=60, blur_sigma=1.0,
                           noise_sigma=3.0, white_balance=0.02, noise_seed=1)  # fmt: skip
    mask = np.zeros((h, w, 3), np.uint8)
    mask[10:20, 10:20, 0] = 255
    assert np.array_equal(apply_params(mask, params, is_mask=True), mask)
    assert not np.array_equal(apply_params(face_crop, params), face_crop)
