"""Tone-preserving augmentation for training: CLAHE on L*, mild geometry, no colour jitter.

Skin tone selects the decision thresholds, so augmentation must not move it: there is no
hue, saturation or brightness jitter. CLAHE only redistributes L* locally (a* and b* are
untouched) and the geometric ops only move pixels. All ops take and return RGB uint8
[H, W, 3] of unchanged size; randomness comes from a numpy Generator passed in.
"""

from __future__ import annotations

import cv2
import numpy as np

CROP_SCALE = (0.9, 1.0)
MAX_ROTATION_DEG = 10.0
CLAHE_PROBABILITY = 0.5
HFLIP_PROBABILITY = 0.5


def clahe_l(image: np.ndarray, *, clip_limit: float = 2.0, tile_grid: int = 8) -> np.ndarray:
    """CLAHE on the L channel in LAB (8-bit), a and b unchanged."""
    lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB)
    clahe = cv2.createCLAHE(clipLimit=clip_limit, tileGridSize=(tile_grid, tile_grid))
    lab[:, :, 0] = clahe.apply(np.ascontiguousarray(lab[:, :, 0]))
    return cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)


def random_resized_crop(
    image: np.ndarray, rng: np.random.Generator, *, scale: tuple[float, float] = CROP_SCALE
) -> np.ndarray:
    """A random square-aspect crop covering `scale` of the area, resized back to the input size."""
    h, w = image.shape[:2]
    area_fraction = rng.uniform(*scale)
    side = np.sqrt(area_fraction)
    ch, cw = max(1, int(round(h * side))), max(1, int(round(w * side)))
    y0 = int(rng.integers(0, h - ch + 1))
    x0 = int(rng.integers(0, w - cw + 1))
    crop = image[y0 : y0 + ch, x0 : x0 + cw]
    return cv2.resize(crop, (w, h), interpolation=cv2.INTER_LINEAR)


def hflip(image: np.ndarray) -> np.ndarray:
    """Horizontal flip."""
    return np.ascontiguousarray(image[:, ::-1])


def rotate(image: np.ndarray, angle_deg: float) -> np.ndarray:
    """Rotate about the centre by angle_deg (counter-clockwise), edges reflected."""
    h, w = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), float(angle_deg), 1.0)
    return cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT_101)


def augment(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random tone-preserving augmentation: crop 0.9-1.0, hflip, rotation +-10 deg, CLAHE."""
    out = random_resized_crop(image, rng)
    if rng.random() < HFLIP_PROBABILITY:
        out = hflip(out)
    out = rotate(out, rng.uniform(-MAX_ROTATION_DEG, MAX_ROTATION_DEG))
    if rng.random() < CLAHE_PROBABILITY:
        out = clahe_l(out)
    return out
