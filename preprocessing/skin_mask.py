"""Skin-region mask (both cheeks and the forehead) from the six BlazeFace keypoints.

Regions are ellipses in a face frame built from the keypoints in crop coordinates:
`d` = eye distance along the eye axis, `m` = distance from the eye midpoint to the mouth
along the perpendicular. Cheeks sit under each eye, between the lower eyelid and the
mouth line, outside the nose; the forehead sits above the brows and below a typical
hairline. Eyes, brows, nose, mouth and hair are outside by construction. Pixels that
are black padding (outside the source image) are removed by the caller's crop check.
"""

from __future__ import annotations

import numpy as np

RIGHT_EYE, LEFT_EYE, NOSE, MOUTH = 0, 1, 2, 3

# (centre along the eye axis in d, centre down the face in m (forehead: in d, upward),
#  semi-axis along the eye axis in d, semi-axis down the face in m (forehead: in d))
CHEEK = (0.58, 0.58, 0.30, 0.26)
FOREHEAD = (0.0, 0.62, 0.50, 0.17)


def _ellipse(xx, yy, centre, axis_u, axis_v, semi_u, semi_v):
    du = (xx - centre[0]) * axis_u[0] + (yy - centre[1]) * axis_u[1]
    dv = (xx - centre[0]) * axis_v[0] + (yy - centre[1]) * axis_v[1]
    return (du / semi_u) ** 2 + (dv / semi_v) ** 2 <= 1.0


def skin_regions(keypoints: np.ndarray, shape: tuple[int, int]) -> dict[str, np.ndarray]:
    """Boolean masks {'right_cheek', 'left_cheek', 'forehead'} of an image of `shape` (h, w)."""
    kps = np.asarray(keypoints, dtype=np.float64)
    right, left, mouth = kps[RIGHT_EYE], kps[LEFT_EYE], kps[MOUTH]
    mid = (right + left) / 2.0
    eye_vec = left - right
    d = float(np.hypot(*eye_vec))
    h, w = shape
    if d < 1e-6:
        empty = np.zeros(shape, dtype=bool)
        return {"right_cheek": empty, "left_cheek": empty.copy(), "forehead": empty.copy()}
    axis_u = eye_vec / d
    axis_v = np.array([-axis_u[1], axis_u[0]])  # image "down" for an upright face
    m = float(np.dot(mouth - mid, axis_v))
    if m <= 0.3 * d:  # implausible mouth position: fall back to average proportions
        m = 1.1 * d
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    cu, cv, su, sv = CHEEK
    masks = {}
    for name, sign in (("right_cheek", -1.0), ("left_cheek", 1.0)):
        centre = mid + sign * cu * d * axis_u + cv * m * axis_v
        masks[name] = _ellipse(xx, yy, centre, axis_u, axis_v, su * d, sv * m)
    fu, fv, fsu, fsv = FOREHEAD
    centre = mid + fu * d * axis_u - fv * d * axis_v
    masks["forehead"] = _ellipse(xx, yy, centre, axis_u, axis_v, fsu * d, fsv * d)
    return masks


def skin_mask(keypoints: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Union of the cheek and forehead regions as a bool mask of `shape` (h, w)."""
    regions = skin_regions(keypoints, shape)
    return regions["right_cheek"] | regions["left_cheek"] | regions["forehead"]
