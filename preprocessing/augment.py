"""Tone-preserving augmentation for training: CLAHE on L*, mild geometry, no colour jitter.

Skin tone selects the decision thresholds, so augmentation must not move it: there is no
hue, saturation or brightness jitter. CLAHE only redistributes L* locally (a* and b* are
untouched) and the geometric ops only move pixels. All ops take and return RGB uint8
[H, W, 3] of unchanged size; randomness comes from a numpy Generator passed in.
`augment_with_masks` applies the same geometry to lesion masks (nearest neighbour).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

CROP_SCALE = (0.9, 1.0)
MAX_ROTATION_DEG = 10.0
CLAHE_PROBABILITY = 0.5
HFLIP_PROBABILITY = 0.5
CLAHE_CLIP_LIMIT = 2.0
CLAHE_TILES = 8


def clahe_l(
    image: np.ndarray, *, clip_limit: float = CLAHE_CLIP_LIMIT, tile_grid: int = CLAHE_TILES
) -> np.ndarray:
    """CLAHE on the L channel in LAB (8-bit), a and b unchanged."""
    lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB)
    clahe = cv2.createCLAHE(clipLimit=clip_limit, tileGridSize=(tile_grid, tile_grid))
    lab[:, :, 0] = clahe.apply(np.ascontiguousarray(lab[:, :, 0]))
    return cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)


def _crop_box(shape: tuple[int, ...], rng: np.random.Generator, scale) -> tuple[int, ...]:
    h, w = shape[:2]
    side = np.sqrt(rng.uniform(*scale))
    ch, cw = max(1, int(round(h * side))), max(1, int(round(w * side)))
    y0 = int(rng.integers(0, h - ch + 1))
    x0 = int(rng.integers(0, w - cw + 1))
    return y0, x0, ch, cw


def _resized_crop(image: np.ndarray, box, interpolation: int) -> np.ndarray:
    y0, x0, ch, cw = box
    h, w = image.shape[:2]
    out = cv2.resize(image[y0 : y0 + ch, x0 : x0 + cw], (w, h), interpolation=interpolation)
    return out[..., None] if image.ndim == 3 and out.ndim == 2 else out


def random_resized_crop(
    image: np.ndarray, rng: np.random.Generator, *, scale: tuple[float, float] = CROP_SCALE
) -> np.ndarray:
    """A random crop covering `scale` of the area (same aspect), resized back to the input size."""
    return _resized_crop(image, _crop_box(image.shape, rng, scale), cv2.INTER_LINEAR)


def hflip(image: np.ndarray) -> np.ndarray:
    """Horizontal flip."""
    return np.ascontiguousarray(image[:, ::-1])


def rotate(image: np.ndarray, angle_deg: float, *, nearest: bool = False) -> np.ndarray:
    """Rotate about the centre by angle_deg (counter-clockwise), edges reflected."""
    h, w = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), float(angle_deg), 1.0)
    flags = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    out = cv2.warpAffine(image, matrix, (w, h), flags=flags, borderMode=cv2.BORDER_REFLECT_101)
    return out[..., None] if image.ndim == 3 and out.ndim == 2 else out


@dataclass(frozen=True)
class AugmentParams:
    """One random draw: crop box (y0, x0, h, w), flip, rotation angle, CLAHE on/off."""

    box: tuple[int, int, int, int]
    flip: bool
    angle_deg: float
    clahe: bool


def sample_params(shape: tuple[int, ...], rng: np.random.Generator) -> AugmentParams:
    """Draw the parameters of one augmentation for an image of `shape`."""
    box = _crop_box(shape, rng, CROP_SCALE)
    flip = bool(rng.random() < HFLIP_PROBABILITY)
    angle = float(rng.uniform(-MAX_ROTATION_DEG, MAX_ROTATION_DEG))
    use_clahe = bool(rng.random() < CLAHE_PROBABILITY)
    return AugmentParams(box, flip, angle, use_clahe)


def apply_params(image: np.ndarray, params: AugmentParams, *, is_mask: bool = False) -> np.ndarray:
    """Apply one draw; masks use nearest-neighbour resampling and skip CLAHE."""
    interp = cv2.INTER_NEAREST if is_mask else cv2.INTER_LINEAR
    out = _resized_crop(image, params.box, interp)
    if params.flip:
        out = hflip(out)
    out = rotate(out, params.angle_deg, nearest=is_mask)
    if params.clahe and not is_mask:
        out = clahe_l(out)
    return out


def augment(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random tone-preserving augmentation: crop 0.9-1.0, hflip, rotation +-10 deg, CLAHE."""
    return apply_params(image, sample_params(image.shape, rng))


def augment_with_masks(
    image: np.ndarray, masks: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """`augment` of the image and the same geometry on masks of the same height and width."""
    params = sample_params(image.shape, rng)
    src = masks.astype(np.uint8) if masks.dtype == np.bool_ else masks
    out = apply_params(src, params, is_mask=True)
    return apply_params(image, params), (out.astype(bool) if masks.dtype == np.bool_ else out)
