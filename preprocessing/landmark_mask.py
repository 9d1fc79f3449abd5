"""Skin, sclera and teeth masks from the 468 FaceMesh landmarks of one face (pure numpy/OpenCV).

Landmarks are (x, y[, z]) in image pixels (`preprocessing.landmarks.decode_landmarks`), with
pixel (j, i) covering [j, j + 1) x [i, i + 1). Skin regions are polygons over FaceMesh
indices: both cheeks and the forehead (docs/preprocessing.md) and the chin between
the lip-chin crease and the jaw; eyes, brows, lips and the nose base (nostrils) are cut out
again, dilated by `EXCLUDE_MARGIN` of the eye distance, so an odd pose cannot bring them in.

Sclera and teeth are white-patch references for colour constancy: the eye openings (eye
contours) and the mouth opening (inner lip contour), keeping only the bright pixels (the
iris, pupil, lashes, lid shadow and the dark mouth fall below the lightness cut), and for
the teeth also only the low-chroma ones (lips, gums and tongue are red). Clipped pixels
(a channel >= `CLIPPED`) are dropped: they carry no colour. A closed mouth gives an empty
teeth mask; callers decide how many pixels they need.
"""

from __future__ import annotations

import cv2
import numpy as np

NUM_LANDMARKS = 468
# Skin regions (FaceMesh indices, polygon order). Subject's right = image left.
SKIN_REGIONS: dict[str, tuple[int, ...]] = {
    "right_cheek": (117, 118, 101, 36, 205, 187, 123),
    "left_cheek": (346, 347, 330, 266, 425, 411, 352),
    "forehead": (67, 109, 10, 338, 297, 299, 337, 151, 108, 69),
    "chin": (83, 18, 313, 421, 428, 396, 175, 171, 208, 201),
}
RIGHT_EYE = (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246)
LEFT_EYE = (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466)
RIGHT_BROW = (70, 63, 105, 66, 107, 55, 65, 52, 53, 46)
LEFT_BROW = (300, 293, 334, 296, 336, 285, 295, 282, 283, 276)
LIPS_OUTER = (
    61,
    146,
    91,
    181,
    84,
    17,
    314,
    405,
    321,
    375,
    291,
    409,
    270,
    269,
    267,
    0,
    37,
    39,
    40,
    185,
)
LIPS_INNER = (
    78,
    95,
    88,
    178,
    87,
    14,
    317,
    402,
    318,
    324,
    308,
    415,
    310,
    311,
    312,
    13,
    82,
    81,
    80,
    191,
)
NOSE_BASE = (49, 48, 64, 98, 97, 2, 326, 327, 294, 278, 279, 4)
EXCLUDED = {
    "right_eye": RIGHT_EYE,
    "left_eye": LEFT_EYE,
    "right_brow": RIGHT_BROW,
    "left_brow": LEFT_BROW,
    "lips": LIPS_OUTER,
    "nose_base": NOSE_BASE,
}
EYE_CENTRES = ((33, 133), (263, 362))  # eye corners: (outer, inner) of right and left eye
EXCLUDE_MARGIN = 0.05  # dilation of the excluded parts, in eye distances

CLIPPED = 250  # a channel at or above this is treated as clipped
SCLERA_MIN_L = 40.0  # CIELAB L* floor for sclera and teeth
SCLERA_REL_L = 0.75  # ... and at least this fraction of the opening's 95th-percentile L*
TEETH_MAX_CHROMA = 30.0  # CIELAB chroma ceiling for teeth (lips and gums are redder)
WINDOW_PAD = 0.1  # `face_window`: margin around the landmarks, in units of their extent


def _check(landmarks: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    points = np.asarray(landmarks, dtype=np.float64)
    if points.ndim != 2 or points.shape[0] != NUM_LANDMARKS or points.shape[1] not in (2, 3):
        raise ValueError(f"expected landmarks [468, 2 or 3], got {points.shape}")
    if len(shape) != 2 or min(shape) <= 0:
        raise ValueError(f"expected a mask shape (height, width), got {shape}")
    return points[:, :2]


def polygon_mask(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bool mask of `shape` (h, w): pixels whose centre lies in the polygon (image pixels).

    >>> polygon_mask(np.array([[1, 1], [4, 1], [4, 3], [1, 3.]]), (4, 5)).astype(int).tolist()
    [[0, 0, 0, 0, 0], [0, 1, 1, 1, 0], [0, 1, 1, 1, 0], [0, 0, 0, 0, 0]]
    """
    # Even-odd rule on the pixel centres of the bounding box (cv2.fillPoly also fills the
    # pixels its edges touch, a one-pixel bias to the right and bottom).
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    mask = np.zeros(shape, dtype=bool)
    x0, y0 = np.maximum(np.floor(pts.min(axis=0)).astype(int), 0)
    x1 = min(int(np.ceil(pts[:, 0].max())), shape[1])
    y1 = min(int(np.ceil(pts[:, 1].max())), shape[0])
    if x1 <= x0 or y1 <= y0:
        return mask
    cx = np.arange(x0, x1) + 0.5
    cy = (np.arange(y0, y1) + 0.5)[None, :, None]
    a, b = pts, np.roll(pts, -1, axis=0)
    edges = a[:, 1] != b[:, 1]  # horizontal edges never cross a row of pixel centres
    (ax, ay), (bx, by) = (v[edges].T.reshape(2, -1, 1, 1) for v in (a, b))
    crosses = (ay > cy) != (by > cy)  # [edge, row, 1]
    x_at = ax + (cy - ay) * (bx - ax) / (by - ay)
    # Even-odd: inside where an odd number of edges cross the row to the right of the centre.
    hits = np.count_nonzero(crosses & (cx < x_at), axis=0)
    mask[y0:y1, x0:x1] = hits % 2 == 1
    return mask


def face_window(
    landmarks: np.ndarray, shape: tuple[int, int], pad: float = WINDOW_PAD
) -> tuple[slice, slice, np.ndarray]:
    """(rows, cols, offset): the landmarks' bounding box grown by `pad` of its size on every
    side and clipped to `shape`, and its top-left corner (x, y). Every mask of this module lies
    inside it, so masks of `image[rows, cols]` with `landmarks - offset` equal the full-image
    ones there; on a 12 MP photo that is most of the cost saved.

    >>> rows, cols, offset = face_window(np.array([[10, 20], [30, 60.]]), (100, 100), pad=0.1)
    >>> (rows, cols, offset.tolist())
    (slice(14, 66, None), slice(6, 34, None), [6, 14])
    """
    points = np.asarray(landmarks, dtype=np.float64)[:, :2]
    lo, hi = points.min(axis=0), points.max(axis=0)
    margin = pad * (hi - lo) + 2.0
    x0, y0 = np.maximum(np.floor(lo - margin).astype(int), 0)
    x1 = int(min(np.ceil(hi[0] + margin[0]), shape[1]))
    y1 = int(min(np.ceil(hi[1] + margin[1]), shape[0]))
    return slice(int(y0), max(int(y0), y1)), slice(int(x0), max(int(x0), x1)), np.array([x0, y0])


def eye_distance(landmarks: np.ndarray) -> float:
    """Distance in pixels between the two eye centres (mean of each eye's corners)."""
    points = np.asarray(landmarks, dtype=np.float64)[:, :2]
    right, left = (points[list(corners)].mean(axis=0) for corners in EYE_CENTRES)
    return float(np.linalg.norm(left - right))


def excluded_mask(landmarks: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Eyes, brows, lips and nose base, dilated by EXCLUDE_MARGIN eye distances."""
    points = _check(landmarks, shape)
    mask = np.zeros(shape, dtype=bool)
    for indices in EXCLUDED.values():
        mask |= polygon_mask(points[list(indices)], shape)
    radius = int(round(EXCLUDE_MARGIN * eye_distance(points)))
    if radius > 0:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
        mask = cv2.dilate(mask.astype(np.uint8), kernel).astype(bool)
    return mask


def landmark_skin_regions(landmarks: np.ndarray, shape: tuple[int, int]) -> dict[str, np.ndarray]:
    """Bool masks {'right_cheek', 'left_cheek', 'forehead', 'chin'} of `shape` (h, w)."""
    points = _check(landmarks, shape)
    excluded = excluded_mask(points, shape)
    return {
        name: polygon_mask(points[list(indices)], shape) & ~excluded
        for name, indices in SKIN_REGIONS.items()
    }


def landmark_skin_mask(landmarks: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Union of the cheek, forehead and chin regions as a bool mask of `shape` (h, w)."""
    regions = landmark_skin_regions(landmarks, shape)
    return np.logical_or.reduce(list(regions.values()))


def _bright_pixels(
    image_rgb: np.ndarray, opening: np.ndarray, max_chroma: float | None
) -> np.ndarray:
    """Pixels of `opening` that are bright (and low-chroma if asked) and not clipped."""
    out = np.zeros(opening.shape, dtype=bool)
    ys, xs = np.nonzero(opening)
    if ys.size == 0:
        return out
    pixels = image_rgb[ys, xs]
    lab = cv2.cvtColor(pixels[None].astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)[0]
    lightness = lab[:, 0]
    threshold = max(SCLERA_MIN_L, SCLERA_REL_L * float(np.percentile(lightness, 95)))
    keep = (lightness >= threshold) & (pixels.max(axis=1) < CLIPPED)
    if max_chroma is not None:
        keep &= np.hypot(lab[:, 1], lab[:, 2]) <= max_chroma
    out[ys[keep], xs[keep]] = True
    return out


def _image_shape(image_rgb: np.ndarray, shape: tuple[int, int] | None) -> tuple[int, int]:
    if image_rgb.ndim != 3 or image_rgb.shape[2] != 3 or image_rgb.dtype != np.uint8:
        raise ValueError(
            f"expected an RGB uint8 image [H, W, 3], got {image_rgb.dtype} {image_rgb.shape}"
        )
    if shape is not None and tuple(shape) != image_rgb.shape[:2]:
        raise ValueError(f"shape {tuple(shape)} differs from the image's {image_rgb.shape[:2]}")
    return image_rgb.shape[:2]


def sclera_mask(
    landmarks: np.ndarray, image_rgb: np.ndarray, shape: tuple[int, int] | None = None
) -> np.ndarray:
    """Bool mask of the visible sclera of both eyes (bright pixels of the eye openings)."""
    shape = _image_shape(image_rgb, shape)
    points = _check(landmarks, shape)
    openings = polygon_mask(points[list(RIGHT_EYE)], shape)
    openings |= polygon_mask(points[list(LEFT_EYE)], shape)
    return _bright_pixels(image_rgb, openings, max_chroma=None)


def teeth_mask(
    landmarks: np.ndarray, image_rgb: np.ndarray, shape: tuple[int, int] | None = None
) -> np.ndarray:
    """Bool mask of visible teeth (bright, low-chroma pixels inside the inner lip contour)."""
    shape = _image_shape(image_rgb, shape)
    points = _check(landmarks, shape)
    opening = polygon_mask(points[list(LIPS_INNER)], shape)
    return _bright_pixels(image_rgb, opening, max_chroma=TEETH_MAX_CHROMA)
