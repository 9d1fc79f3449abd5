"""Tone-preserving augmentation for training: CLAHE on L*, mild geometry, camera degradations.

Skin tone selects the decision thresholds, so augmentation must not move it: there is no
hue, saturation or brightness jitter. CLAHE only redistributes L* locally (a* and b* are
untouched) and the geometric ops only move pixels. The photometric ops imitate what real
phone photos go through and leave the mean colour where it was: JPEG re-encoding, a slight
Gaussian blur, zero-mean sensor noise, and a white-balance shift of at most 2% per channel
(warm or cool; the mean ITA of skin moves by well under two degrees, tested). All ops take and
return RGB uint8 [H, W, 3] of unchanged size; randomness comes from a numpy Generator passed in.
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
# Camera degradations: probability and range of each (`sample_params`).
JPEG_PROBABILITY, JPEG_QUALITY = 0.5, (50, 95)
BLUR_PROBABILITY, BLUR_SIGMA = 0.3, (0.3, 1.2)
NOISE_PROBABILITY, NOISE_SIGMA = 0.3, (1.0, 5.0)
WHITE_BALANCE_PROBABILITY, WHITE_BALANCE_SHIFT = 0.3, 0.02


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
    """One random draw: crop box (y0, x0, h, w), flip, rotation angle, CLAHE on/off, and the
    camera degradations (0 = off): JPEG quality, blur sigma, noise sigma, white-balance shift
    (R gain exp(+s), B gain exp(-s)) and the noise seed."""

    box: tuple[int, int, int, int]
    flip: bool
    angle_deg: float
    clahe: bool
    jpeg_quality: int = 0
    blur_sigma: float = 0.0
    noise_sigma: float = 0.0
    white_balance: float = 0.0
    noise_seed: int = 0


def jpeg_roundtrip(image: np.ndarray, quality: int) -> np.ndarray:
    """Encode as JPEG at `quality` and decode again (RGB uint8)."""
    ok, buf = cv2.imencode(".jpg", image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError(f"cannot JPEG-encode an image of shape {image.shape}")
    return np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1])


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur with standard deviation `sigma` pixels."""
    return cv2.GaussianBlur(image, (0, 0), sigmaX=float(sigma), borderType=cv2.BORDER_REFLECT_101)


def add_noise(image: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    """Zero-mean Gaussian noise of `sigma` grey levels, clipped to uint8."""
    noise = np.random.default_rng(seed).normal(0.0, sigma, image.shape)
    return np.clip(image.astype(np.float32) + noise, 0, 255).astype(np.uint8)


def white_balance_shift(image: np.ndarray, shift: float) -> np.ndarray:
    """Warm (shift > 0) or cool (< 0) cast: red gain exp(shift), blue gain exp(-shift)."""
    gains = np.array([np.exp(shift), 1.0, np.exp(-shift)], np.float32)
    return np.clip(image.astype(np.float32) * gains, 0, 255).astype(np.uint8)


def _photometric(image: np.ndarray, params: AugmentParams) -> np.ndarray:
    out = image
    if params.white_balance:
        out = white_balance_shift(out, params.white_balance)
    if params.blur_sigma:
        out = gaussian_blur(out, params.blur_sigma)
    if params.noise_sigma:
        out = add_noise(out, params.noise_sigma, params.noise_seed)
    if params.jpeg_quality:
        out = jpeg_roundtrip(out, params.jpeg_quality)
    return out


def sample_params(shape: tuple[int, ...], rng: np.random.Generator) -> AugmentParams:
    """Draw the parameters of one augmentation for an image of `shape`."""
    box = _crop_box(shape, rng, CROP_SCALE)
    flip = bool(rng.random() < HFLIP_PROBABILITY)
    angle = float(rng.uniform(-MAX_ROTATION_DEG, MAX_ROTATION_DEG))
    use_clahe = bool(rng.random() < CLAHE_PROBABILITY)
    draws = rng.random(4)
    quality = int(rng.integers(JPEG_QUALITY[0], JPEG_QUALITY[1] + 1))
    blur, noise = float(rng.uniform(*BLUR_SIGMA)), float(rng.uniform(*NOISE_SIGMA))
    balance = float(rng.uniform(-WHITE_BALANCE_SHIFT, WHITE_BALANCE_SHIFT))
    return AugmentParams(
        box,
        flip,
        angle,
        use_clahe,
        jpeg_quality=quality if draws[0] < JPEG_PROBABILITY else 0,
        blur_sigma=blur if draws[1] < BLUR_PROBABILITY else 0.0,
        noise_sigma=noise if draws[2] < NOISE_PROBABILITY else 0.0,
        white_balance=balance if draws[3] < WHITE_BALANCE_PROBABILITY else 0.0,
        noise_seed=int(rng.integers(2**31)),
    )


def apply_params(image: np.ndarray, params: AugmentParams, *, is_mask: bool = False) -> np.ndarray:
    """Apply one draw; masks use nearest-neighbour resampling and skip CLAHE."""
    interp = cv2.INTER_NEAREST if is_mask else cv2.INTER_LINEAR
    out = _resized_crop(image, params.box, interp)
    if params.flip:
        out = hflip(out)
    out = rotate(out, params.angle_deg, nearest=is_mask)
    if params.clahe and not is_mask:
        out = clahe_l(out)
    return out if is_mask else _photometric(out, params)


def augment(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random tone-preserving augmentation: crop 0.9-1.0, hflip, rotation +-10 deg, CLAHE,
    then JPEG, blur, noise and a white-balance shift of at most 2%."""
    return apply_params(image, sample_params(image.shape, rng))


def augment_with_masks(
    image: np.ndarray, masks: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """`augment` of the image and the same geometry on masks of the same height and width."""
    params = sample_params(image.shape, rng)
    src = masks.astype(np.uint8) if masks.dtype == np.bool_ else masks
    out = apply_params(src, params, is_mask=True)
    return apply_params(image, params), (out.astype(bool) if masks.dtype == np.bool_ else out)
