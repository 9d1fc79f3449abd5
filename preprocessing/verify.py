"""Face verification after BlazeFace: a candidate is analysed only if it is a human face.

Two gates, each a pure function of arrays:
- **face presence** (`preprocessing.landmarks.is_face`): FaceMesh's face-flag probability of
  the candidate's crop is at least MIN_FACE_PRESENCE (0.999; measured in landmarks.py);
- **skin plausibility** (`skin_plausibility`): inside the landmark skin mask, the fraction of
  skin-coloured pixels (YCrCb box of Chai & Ngan 1999, widened) is at least MIN_SKIN_FRACTION
  and the skin's ITA lies inside ITA_RANGE. A grayscale image (median chroma under
  MIN_CHROMA) passes the colour test, which would be meaningless.

Measured on the 317 faces of acne-new v36 valid (and their copies at +-0.5 EV and under a
warm or cool white balance): real skin in photos reaches ITA beyond +-90 degrees (b* <= 0 on
pale faces in cool light), so ITA_RANGE only rejects the extremes (a drawn die: -153); the
face-presence gate does the main work (preprocessing/landmarks.py).

`verify_faces` returns the indices kept and one reason per candidate rejected; rejected
candidates are counted in the result JSON and not analysed.
"""

from __future__ import annotations

import cv2
import numpy as np

from preprocessing.landmark_mask import face_window, landmark_skin_mask
from preprocessing.landmarks import MIN_FACE_PRESENCE
from preprocessing.tone import MIN_CHROMA, ita_degrees, rgb_to_lab

CR_RANGE, CB_RANGE = (128, 180), (70, 135)  # YCrCb skin box (8-bit), widened for dark skin
MIN_SKIN_FRACTION = 0.1  # real faces in valid: minimum 0.39, 1st percentile 0.71
ITA_RANGE = (-150.0, 150.0)
MIN_MASK_PIXELS = 30
REASON_NOT_A_FACE = "not a face (face presence {presence:.3f} < {limit})"
REASON_SKIN_FRACTION = "too few skin-coloured pixels ({fraction:.0%})"
REASON_ITA = "skin colour outside the range of real skin (ITA {ita:.0f} degrees)"
REASON_NO_SKIN = "no skin region"


def skin_colour_mask(image_rgb: np.ndarray) -> np.ndarray:
    """Bool [...]: the pixels of an RGB uint8 array [..., 3] inside the YCrCb skin box."""
    px = np.asarray(image_rgb, np.uint8)
    flat = np.ascontiguousarray(px.reshape(1, -1, 3))
    ycrcb = cv2.cvtColor(flat, cv2.COLOR_RGB2YCrCb)[0].astype(np.int32)
    cr, cb = ycrcb[:, 1], ycrcb[:, 2]
    inside = (cr >= CR_RANGE[0]) & (cr <= CR_RANGE[1]) & (cb >= CB_RANGE[0]) & (cb <= CB_RANGE[1])
    return inside.reshape(px.shape[:-1])


def skin_colour_fraction(pixels: np.ndarray) -> float:
    """Fraction of RGB uint8 pixels [N, 3] inside the YCrCb skin box."""
    inside = skin_colour_mask(np.asarray(pixels, np.uint8).reshape(-1, 3))
    return float(inside.mean()) if inside.size else 0.0


def skin_plausibility(pixels: np.ndarray) -> str | None:
    """None when the skin pixels [N, 3] look like real skin, else the reason they do not."""
    px = np.asarray(pixels, np.uint8).reshape(-1, 3)
    if len(px) < MIN_MASK_PIXELS:
        return REASON_NO_SKIN
    lab = rgb_to_lab(px)
    lightness, a_star, b_star = np.median(lab, axis=0)
    if float(np.hypot(a_star, b_star)) < MIN_CHROMA:
        return None  # grayscale: colour says nothing
    fraction = skin_colour_fraction(px)
    if fraction < MIN_SKIN_FRACTION:
        return REASON_SKIN_FRACTION.format(fraction=fraction)
    ita = float(ita_degrees(lightness, b_star))
    if not ITA_RANGE[0] <= ita <= ITA_RANGE[1]:
        return REASON_ITA.format(ita=ita)
    return None


def verify_faces(
    image_rgb: np.ndarray,
    landmarks: np.ndarray,
    presence: np.ndarray,
    *,
    min_presence: float = MIN_FACE_PRESENCE,
) -> tuple[list[int], list[str]]:
    """Indices of the candidates that pass both gates, and a reason per rejected candidate.

    landmarks: [F, 468, 2 or 3] in image pixels; presence: [F] face-flag probabilities.
    """
    kept, rejected = [], []
    shape = image_rgb.shape[:2]
    scores = np.asarray(presence).reshape(-1)
    for i, (points, score) in enumerate(zip(landmarks, scores, strict=True)):
        if score < min_presence:
            rejected.append(REASON_NOT_A_FACE.format(presence=float(score), limit=min_presence))
            continue
        rows, cols, offset = face_window(points, shape)
        window = image_rgb[rows, cols]
        mask = landmark_skin_mask(np.asarray(points)[:, :2] - offset, window.shape[:2])
        reason = skin_plausibility(window[mask])
        if reason is None:
            kept.append(i)
        else:
            rejected.append(reason)
    return kept, rejected
