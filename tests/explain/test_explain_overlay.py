"""Overlays over the crop and back on the original photo through the crop's affine."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from client.overlay import (
    cam_to_original,
    colorize,
    overlay_on_crop,
    overlay_on_original,
    write_image,
)

CROP = 64


def _affine(center: tuple[float, float], angle_deg: float, scale: float) -> np.ndarray:
    """Original -> crop: rotate/scale about `center`, then put `center` at the crop centre."""
    a = cv2.getRotationMatrix2D(center, angle_deg, scale)
    a[:, 2] += np.array([CROP / 2, CROP / 2]) - np.array(center)
    return a


def test_colorize_and_crop_overlay_shapes() -> None:
    cam = np.zeros((8, 8), np.float32)
    cam[2, 3] = 1.0
    rgb = colorize(cam)
    assert rgb.shape == (8, 8, 3) and rgb.dtype == np.uint8
    assert rgb[2, 3, 0] > rgb[2, 3, 2] and rgb[0, 0, 2] > rgb[0, 0, 0]  # hot = red, cold = blue
    crop = np.full((CROP, CROP, 3), 128, np.uint8)
    out = overlay_on_crop(crop, cam)  # 8x8 map resized to the crop
    assert out.shape == crop.shape and out.dtype == np.uint8
    assert not np.array_equal(out, crop)
    with pytest.raises(ValueError, match="RGB uint8"):
        overlay_on_crop(crop.astype(np.float32), cam)


def test_heatmap_maps_back_to_the_lesion_in_the_original() -> None:
    h, w = 180, 240
    lesion_xy = (150.0, 70.0)
    a = _affine(center=(130.0, 90.0), angle_deg=25.0, scale=0.5)
    original = np.zeros((h, w), np.float32)
    cv2.circle(original, (int(lesion_xy[0]), int(lesion_xy[1])), 4, 1.0, -1)
    # the CAM lives on the crop: take the lesion as it appears in the crop
    cam_crop = cv2.warpAffine(original, a, (CROP, CROP), flags=cv2.INTER_LINEAR)
    cam_crop = cv2.GaussianBlur(cam_crop, (0, 0), 1.5)
    cam_crop /= cam_crop.max()
    back, covered = cam_to_original(cam_crop, a, (h, w))
    assert back.shape == (h, w) and covered.shape == (h, w)
    y, x = np.unravel_index(back.argmax(), back.shape)
    assert abs(x - lesion_xy[0]) <= 2 and abs(y - lesion_xy[1]) <= 2
    # the crop covers (CROP / scale)^2 original pixels
    assert covered.sum() == pytest.approx((CROP / 0.5) ** 2, rel=0.03)
    assert back[~covered].max() == 0


def test_overlay_on_original_leaves_uncovered_pixels_alone(tmp_path) -> None:
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    a = _affine(center=(80.0, 60.0), angle_deg=-10.0, scale=1.0)
    cam = np.ones((CROP, CROP), np.float32)
    out = overlay_on_original(photo, cam, a)
    _, covered = cam_to_original(cam, a, photo.shape[:2])
    assert out.shape == photo.shape and 0.1 < covered.mean() < 0.5
    np.testing.assert_array_equal(out[~covered], photo[~covered])
    assert np.abs(out[covered].astype(int) - photo[covered]).mean() > 10
    # a smaller map for a CROP-sized crop is resized first
    small = overlay_on_original(photo, np.ones((8, 8), np.float32), a, crop_size=CROP)
    np.testing.assert_array_equal(small, out)
    path = write_image(tmp_path / "sub" / "overlay.png", out)
    back = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(back, out)
    assert [p.name for p in path.parent.iterdir()] == ["overlay.png"]  # no temp file left
