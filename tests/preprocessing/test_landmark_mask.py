"""Landmark skin, sclera and teeth masks: on astronaut.png's FaceMesh and on synthetic arrays."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from preprocessing.landmark_mask import (
    EXCLUDED,
    LEFT_EYE,
    LIPS_INNER,
    LIPS_OUTER,
    RIGHT_EYE,
    SKIN_REGIONS,
    excluded_mask,
    face_window,
    landmark_skin_mask,
    landmark_skin_regions,
    polygon_mask,
    sclera_mask,
    teeth_mask,
)
from preprocessing.landmarks import LandmarkModel


@pytest.fixture(scope="module")
def astronaut_landmarks(detector, astronaut) -> np.ndarray:
    landmarks, _ = LandmarkModel().landmarks(astronaut, detector.detect(astronaut))
    return landmarks[0]


def pixel(point: np.ndarray) -> tuple[int, int]:
    """(row, column) of the pixel holding an (x, y) point."""
    return int(np.floor(point[1])), int(np.floor(point[0]))


def lab(pixels: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(pixels.reshape(1, -1, 3).astype(np.float32) / 255, cv2.COLOR_RGB2Lab)[0]


# --- polygons


def test_polygon_mask_uses_pixel_centres_and_area():
    square = polygon_mask(np.array([[2, 2], [6, 2], [6, 5], [2, 5.0]]), (8, 8))
    expected = np.zeros((8, 8), bool)
    expected[2:5, 2:6] = True
    np.testing.assert_array_equal(square, expected)
    t = np.linspace(0, 2 * np.pi, 64, endpoint=False)
    circle = np.stack([50 + 30 * np.cos(t), 40 + 30 * np.sin(t)], axis=1)
    assert abs(polygon_mask(circle, (100, 100)).sum() - np.pi * 30**2) < 0.01 * np.pi * 30**2
    assert not polygon_mask(np.array([[-9, -9], [-1, -9], [-1, -1.0]]), (5, 5)).any()


def even_odd_reference(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Pixel-by-pixel even-odd rule on the pixel centres, in plain Python."""
    out = np.zeros(shape, bool)
    n = len(points)
    for row in range(shape[0]):
        for col in range(shape[1]):
            x, y, inside = col + 0.5, row + 0.5, False
            for k in range(n):
                (ax, ay), (bx, by) = points[k], points[(k + 1) % n]
                if (ay > y) != (by > y) and x < ax + (y - ay) * (bx - ax) / (by - ay):
                    inside = not inside
            out[row, col] = inside
    return out


def test_polygon_mask_matches_the_even_odd_rule_pixel_by_pixel():
    rng = np.random.default_rng(0)
    for k in range(60):
        points = rng.uniform(-6, 30, size=(int(rng.integers(3, 12)), 2))
        if k % 3 == 0:  # integer vertices: horizontal edges and vertices on pixel centres
            points = np.round(points) + 0.5 * (k % 2)
        np.testing.assert_array_equal(
            polygon_mask(points, (20, 24)), even_odd_reference(points, (20, 24)), err_msg=str(k)
        )


# --- skin regions on a real face


def test_skin_mask_keeps_cheeks_and_excludes_eyes_brows_lips(astronaut, astronaut_landmarks):
    shape = astronaut.shape[:2]
    regions = landmark_skin_regions(astronaut_landmarks, shape)
    assert sorted(regions) == sorted(SKIN_REGIONS)
    mask = landmark_skin_mask(astronaut_landmarks, shape)
    np.testing.assert_array_equal(mask, np.logical_or.reduce(list(regions.values())))
    for name, indices in SKIN_REGIONS.items():
        centre = astronaut_landmarks[list(indices), :2].mean(axis=0)
        assert regions[name][pixel(centre)], name
        assert regions[name].sum() > 150, name  # the astronaut's eyes are 62 px apart
    for name, indices in EXCLUDED.items():
        for point in astronaut_landmarks[list(indices), :2]:
            assert not mask[pixel(point)], (name, point)
    assert not (mask & excluded_mask(astronaut_landmarks, shape)).any()
    # Skin colour: red over green over blue, as on skin, for nearly every masked pixel.
    rgb = astronaut[mask].astype(int)
    assert ((rgb[:, 0] > rgb[:, 1]) & (rgb[:, 1] > rgb[:, 2])).mean() > 0.9


def test_skin_regions_follow_the_landmarks():
    # A synthetic mesh: the astronaut-independent check that masks move with the points.
    rng = np.random.default_rng(0)
    landmarks = rng.uniform(20, 30, size=(468, 2))
    cheek = list(SKIN_REGIONS["right_cheek"])
    angles = np.linspace(0, 2 * np.pi, len(cheek), endpoint=False)
    landmarks[cheek] = np.stack([70 + 10 * np.cos(angles), 60 + 10 * np.sin(angles)], axis=1)
    regions = landmark_skin_regions(landmarks, (100, 120))
    assert regions["right_cheek"][60, 70] and regions["right_cheek"].sum() > 200
    assert not regions["right_cheek"][25, 25]
    # An eye landing on the cheek (an odd pose) is cut out of it, with a margin.
    eye = list(RIGHT_EYE)
    angles = np.linspace(0, 2 * np.pi, len(eye), endpoint=False)
    landmarks[eye] = np.stack([70 + 3 * np.cos(angles), 60 + 2 * np.sin(angles)], axis=1)
    cheek = landmark_skin_regions(landmarks, (100, 120))["right_cheek"]
    assert not cheek[60, 70] and not cheek[60, 73] and cheek[60, 78]


def test_bad_landmarks_and_shapes_are_refused(astronaut):
    with pytest.raises(ValueError, match="landmarks"):
        landmark_skin_mask(np.zeros((6, 2)), (10, 10))
    with pytest.raises(ValueError, match="differs"):
        sclera_mask(np.zeros((468, 3)), astronaut, (10, 10))


# --- white patches


def test_sclera_and_teeth_on_the_astronaut(astronaut, astronaut_landmarks):
    sclera = sclera_mask(astronaut_landmarks, astronaut)
    teeth = teeth_mask(astronaut_landmarks, astronaut)
    shape = astronaut.shape[:2]
    eyes = polygon_mask(astronaut_landmarks[list(RIGHT_EYE), :2], shape) | polygon_mask(
        astronaut_landmarks[list(LEFT_EYE), :2], shape
    )
    mouth = polygon_mask(astronaut_landmarks[list(LIPS_INNER), :2], shape)
    assert 10 <= sclera.sum() < eyes.sum() and not (sclera & ~eyes).any()
    assert 30 <= teeth.sum() < mouth.sum() and not (teeth & ~mouth).any()
    # The kept pixels are the bright part of each opening and greyer than the skin.
    skin = lab(astronaut[landmark_skin_mask(astronaut_landmarks, shape)])
    for white, opening in ((sclera, eyes), (teeth, mouth)):
        white_lab, opening_lab = lab(astronaut[white]), lab(astronaut[opening])
        assert np.median(white_lab[:, 0]) > np.median(opening_lab[:, 0]) + 10
        chroma = np.median(np.hypot(white_lab[:, 1], white_lab[:, 2]))
        assert chroma < 0.7 * np.median(np.hypot(skin[:, 1], skin[:, 2]))


def test_sclera_drops_the_iris_and_teeth_drop_the_lips(astronaut_landmarks):
    shape = (512, 512)
    image = np.full((*shape, 3), (180, 120, 100), np.uint8)  # skin-coloured everywhere
    points = astronaut_landmarks[:, :2]
    eye = polygon_mask(points[list(RIGHT_EYE)], shape)
    image[eye] = (235, 235, 230)
    iris_centre = points[list(RIGHT_EYE)].mean(axis=0)
    cv2.circle(image, tuple(int(v) for v in iris_centre), 4, (60, 40, 30), -1)
    iris = np.all(image == (60, 40, 30), axis=-1)
    sclera = sclera_mask(astronaut_landmarks, image)
    assert sclera.sum() > 0.5 * (eye & ~iris).sum() and not (sclera & iris).any()

    mouth = polygon_mask(points[list(LIPS_INNER)], shape)
    rows = np.nonzero(mouth.any(axis=1))[0]
    upper = mouth & (np.arange(shape[0])[:, None] < rows.mean())
    image[mouth] = (200, 60, 70)  # dark red: the tongue, dropped for its lightness
    image[upper] = (240, 238, 225)  # teeth
    lower_half = mouth & ~upper
    image[lower_half & (np.arange(shape[1]) % 2 == 0)] = (245, 160, 175)  # pink lip: L* 74.5
    teeth = teeth_mask(astronaut_landmarks, image)  # (bright enough), chroma 34: not teeth
    np.testing.assert_array_equal(teeth, upper)


def test_closed_mouth_has_no_teeth(astronaut, astronaut_landmarks):
    closed = astronaut_landmarks.copy()
    closed[list(LIPS_INNER)] = closed[list(LIPS_INNER)].mean(axis=0)
    assert not teeth_mask(closed, astronaut).any()
    closed[list(LIPS_OUTER)] = closed[list(LIPS_OUTER)].mean(axis=0)
    assert not teeth_mask(closed, astronaut).any()


def test_clipped_pixels_are_not_white_references(astronaut_landmarks):
    image = np.full((512, 512, 3), 255, np.uint8)
    assert not sclera_mask(astronaut_landmarks, image).any()
    assert not teeth_mask(astronaut_landmarks, image).any()


def test_masks_in_the_face_window_equal_the_full_image_masks(astronaut, astronaut_landmarks):
    big = cv2.resize(astronaut, (1536, 1536), interpolation=cv2.INTER_CUBIC)
    points = astronaut_landmarks[:, :2] * 3.0
    rows, cols, offset = face_window(points, big.shape[:2])
    window, local = big[rows, cols], points - offset
    assert window.shape[0] * window.shape[1] < 0.2 * big.shape[0] * big.shape[1]
    for full, part in (
        (landmark_skin_mask(points, big.shape[:2]), landmark_skin_mask(local, window.shape[:2])),
        (sclera_mask(points, big), sclera_mask(local, window)),
        (teeth_mask(points, big), teeth_mask(local, window)),
    ):
        np.testing.assert_array_equal(full[rows, cols], part)
        assert full.sum() == part.sum()  # nothing of the mask lies outside the window
