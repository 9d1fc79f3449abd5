"""Alignment, crops, mask warping and the keypoint skin mask."""

from __future__ import annotations

import numpy as np
import pytest

from preprocessing.align import align_and_crop, crop_affine, transform_points, warp_to_crop
from preprocessing.face_detect import Face
from preprocessing.skin_mask import skin_mask, skin_regions


def tilted_face(angle_deg: float, centre=(200.0, 150.0), eye_distance=40.0) -> Face:
    """A face whose eye line is rotated by angle_deg (image y down)."""
    t = np.radians(angle_deg)
    u = np.array([np.cos(t), np.sin(t)])
    v = np.array([-u[1], u[0]])
    c = np.array(centre)
    kps = np.array(
        [
            c - u * eye_distance / 2 - 0.3 * eye_distance * v,
            c + u * eye_distance / 2 - 0.3 * eye_distance * v,
            c + 0.2 * eye_distance * v,
            c + 0.7 * eye_distance * v,
            c - u * eye_distance,
            c + u * eye_distance,
        ]
    )
    box = (c[0] - eye_distance, c[1] - eye_distance, 2 * eye_distance, 2 * eye_distance)
    return Face(box, 0.9, kps)


@pytest.mark.parametrize("angle", [-25.0, 0.0, 17.0])
def test_affine_levels_the_eyes_and_centres_the_box(angle):
    face = tilted_face(angle)
    affine = crop_affine(face.box, face.keypoints, size=120, margin=0.25)
    eyes = transform_points(face.keypoints[:2], affine)
    assert eyes[0, 1] == pytest.approx(eyes[1, 1], abs=1e-9)
    assert eyes[0, 0] < eyes[1, 0]
    centre = transform_points(np.array([[200.0, 150.0]]), affine)[0]
    np.testing.assert_allclose(centre, [60, 60], atol=1e-9)
    # side = 80 * 1.5 = 120 px -> scale 1
    assert np.hypot(*affine[0, :2]) == pytest.approx(1.0)


def test_warp_to_crop_carries_a_mask_like_the_image():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (300, 400, 3), dtype=np.uint8)
    mask = np.zeros((300, 400), bool)
    mask[140:160, 190:210] = True
    face = tilted_face(10.0)
    crop, affine = align_and_crop(image, face, size=120)
    warped = warp_to_crop(mask, affine, 120)
    assert warped.dtype == bool and warped.shape == (120, 120)
    ys, xs = np.nonzero(warped)
    assert abs(ys.mean() - 60) < 1.5 and abs(xs.mean() - 60) < 1.5
    labels = warp_to_crop(np.dstack([mask * 255] * 3).astype(np.uint8), affine, 120)
    assert set(np.unique(labels).tolist()) <= {0, 255}
    np.testing.assert_array_equal(crop, warp_to_crop(image, affine, 120, nearest=False))


def test_large_downscale_is_antialiased():
    """A fine checkerboard averages to gray instead of aliasing into stripes."""
    image = np.zeros((2000, 2000, 3), np.uint8)
    image[::2, ::2] = 255
    image[1::2, 1::2] = 255
    kps = np.array([[800, 900], [1200, 900]] + [[1000, 1000]] * 4, float)
    face = Face((600.0, 600.0, 800.0, 800.0), 0.9, kps)
    crop, affine = align_and_crop(image, face, size=64)
    assert np.hypot(*affine[0, :2]) < 0.1
    assert abs(float(crop.mean()) - 127.5) < 10 and float(crop.std()) < 20


def test_skin_mask_avoids_eyes_nose_mouth():
    face = tilted_face(0.0, centre=(100.0, 100.0), eye_distance=60.0)
    kps = face.keypoints
    regions = skin_regions(kps, (200, 200))
    mask = skin_mask(kps, (200, 200))
    for x, y in kps[:4]:  # eyes, nose tip, mouth centre
        assert not mask[int(round(y)), int(round(x))]
    assert regions["right_cheek"].sum() == regions["left_cheek"].sum() > 50
    ys, xs = np.nonzero(regions["forehead"])
    assert ys.max() < kps[0, 1]  # forehead lies above the eyes
    ys, xs = np.nonzero(regions["right_cheek"])
    assert kps[0, 1] < ys.min() and ys.max() < kps[3, 1]  # cheeks between eyes and mouth
    assert xs.mean() < kps[2, 0] < np.nonzero(regions["left_cheek"])[1].mean()


def test_skin_mask_rotates_with_the_face():
    upright = skin_mask(tilted_face(0.0, (100.0, 100.0), 60.0).keypoints, (200, 200))
    turned = skin_mask(tilted_face(90.0, (100.0, 100.0), 60.0).keypoints, (200, 200))
    assert abs(int(upright.sum()) - int(turned.sum())) < 0.05 * upright.sum()
    assert (np.rot90(upright, k=-1) & turned).sum() > 0.9 * upright.sum()
