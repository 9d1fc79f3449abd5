"""Skin tone as the Individual Typology Angle (ITA) and a Fitzpatrick-like group.

ITA = degrees(arctan2(L* - 50, b*)) in CIELAB (D65) over the skin pixels (Chardon et al.
1991; Del Bino et al. 2006). Robust statistics: pixels whose L* lies outside its 10th-90th
percentile (shadows, highlights, stray hair) are dropped, then the medians of L* and b* give
one ITA. Group mapping, from the six ITA categories of Chardon/Del Bino (very light > 55,
light 41-55, intermediate 28-41, tan 10-28, brown -30-10, dark < -30), two categories per
group:

    ITA > 41         -> "I-II"   (very light, light)
    10 < ITA <= 41   -> "III-IV" (intermediate, tan)
    ITA <= 10        -> "V-VI"   (brown, dark)

The estimate abstains (group None, confidence 0) when the skin region is too small, the
colour is grayscale or low-chroma (ITA is meaningless when b* ~ 0), or the region is badly
under- or over-exposed. The served estimate over landmark regions
(`estimate_tone_in_regions`) reports a confidence calibrated against by-eye tone labels
(`preprocessing.tone_calibration`); the single-mask estimate (`tone_from_pixels`, the keypoint
ablation) keeps a heuristic one that grows with the distance of the ITA from the nearest cut
point, 1 - exp(-margin / CONFIDENCE_SCALE_DEG), scaled down when fewer than
FULL_CONFIDENCE_PIXELS skin pixels were measured. This is a research aid, not a diagnosis.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from core.schema import GROUPS, ITA_CUTS
from preprocessing import tone_calibration

TRIM_PERCENTILES = (10.0, 90.0)
MIN_SKIN_PIXELS = 150
MIN_CHROMA = 5.0  # median sqrt(a*^2 + b*^2); real skin is ~10-30, grayscale ~0
MAX_CLIPPED_FRACTION = 0.3  # two or more channels >= 250 (very light skin clips red alone)
MAX_DARK_FRACTION = 0.3  # all channels <= 15
SHADES_OF_GRAY_P = 6
# Local outlier rejection: lesions (acne, spots, melasma), wrinkle lines and cast shadows are
# darker or redder than the skin around them, so pixels more than LOCAL_DELTA below the local
# median L* (or above the local median a*) are dropped before the statistics. The local
# median uses a window of LOCAL_WINDOW x the crop side (31 px in a 224 px crop). The margin
# grows with the image's own texture noise (NOISE_FACTOR x the robust SD of L* around its
# local median over the skin) so that noisy photos do not lose their darker half of pixels
# (a one-sided cut inside the noise would bias ITA upwards).
LOCAL_WINDOW = 0.14
LOCAL_DELTA = 2.0
NOISE_FACTOR = 2.0
CONFIDENCE_SCALE_DEG = 5.0
FULL_CONFIDENCE_PIXELS = 600

REASON_TOO_SMALL = "skin region too small"
REASON_LOW_CHROMA = "grayscale or low-chroma image"
REASON_OVER = "over-exposed skin region"
REASON_UNDER = "under-exposed skin region"
REASON_SPANS_CUT = "ITA interval spans a group boundary"
MIN_REGION_PIXELS = 60  # a skin region with fewer pixels does not enter the ITA interval
INTERVAL_Z = 1.0  # the ITA interval: ITA +- INTERVAL_Z standard errors of the region ITAs


@dataclass(frozen=True)
class SkinTone:
    """ITA in degrees, group ('I-II', 'III-IV', 'V-VI' or None when abstaining), confidence.

    When abstaining, the group is None, confidence is 0 and `reason` says why; ita is None too
    unless the abstention is REASON_SPANS_CUT. `ita_interval` (low, high): the range of the
    ITA over the skin regions (cheeks, forehead, chin) when they were measured separately.
    """

    ita: float | None
    fitzpatrick_group: str | None
    confidence: float
    reason: str | None = None
    ita_interval: tuple[float, float] | None = None


def ita_degrees(lightness, b_star):
    """ITA = degrees(arctan2(L* - 50, b*)).

    >>> round(float(ita_degrees(60.0, 10.0)), 2)
    45.0
    """
    return np.degrees(
        np.arctan2(np.asarray(lightness, np.float64) - 50.0, np.asarray(b_star, np.float64))
    )


def ita_to_group(ita: float) -> str:
    """Group of an ITA value by ITA_CUTS.

    >>> ita_to_group(50.0), ita_to_group(41.0), ita_to_group(10.0)
    ('I-II', 'III-IV', 'V-VI')
    """
    if ita > ITA_CUTS[0]:
        return GROUPS[0]
    if ita > ITA_CUTS[1]:
        return GROUPS[1]
    return GROUPS[2]


def rgb_to_lab(pixels: np.ndarray) -> np.ndarray:
    """RGB uint8 (or float in [0, 1]) [..., 3] -> CIELAB float [..., 3] with L* in 0-100."""
    arr = np.asarray(pixels)
    rgb = arr.astype(np.float32) / 255.0 if arr.dtype == np.uint8 else arr.astype(np.float32)
    flat = np.ascontiguousarray(rgb.reshape(1, -1, 3))
    return cv2.cvtColor(flat, cv2.COLOR_RGB2Lab).reshape(rgb.shape).astype(np.float64)


def shades_of_gray_gains(pixels: np.ndarray, p: int = SHADES_OF_GRAY_P) -> np.ndarray:
    """Per-channel gains (mean 1) that make the Minkowski p-mean of each channel equal."""
    x = np.asarray(pixels, np.float64).reshape(-1, 3) / 255.0
    norms = np.power(np.mean(np.power(x, p), axis=0), 1.0 / p)
    norms = np.maximum(norms, 1e-6)
    gains = norms.mean() / norms
    return gains / gains.mean()


def normalize_illumination(
    image: np.ndarray, reference_mask: np.ndarray | None = None, p: int = SHADES_OF_GRAY_P
) -> np.ndarray:
    """Shades-of-gray colour constancy: gains estimated on `reference_mask` (or all pixels)."""
    ref = image[reference_mask] if reference_mask is not None else image.reshape(-1, 3)
    if len(ref) == 0:
        return image
    gains = shades_of_gray_gains(ref, p)
    return np.clip(np.rint(image.astype(np.float64) * gains), 0, 255).astype(np.uint8)


def tone_confidence(ita: float, num_pixels: int) -> float:
    """1 - exp(-margin / CONFIDENCE_SCALE_DEG) times min(1, num_pixels / FULL_CONFIDENCE_PIXELS).

    >>> round(tone_confidence(25.5, 600), 3)  # 15.5 degrees from the nearest cut (10 and 41)
    0.955
    """
    margin = min(abs(ita - cut) for cut in ITA_CUTS)
    return float(
        (1.0 - np.exp(-margin / CONFIDENCE_SCALE_DEG))
        * min(1.0, num_pixels / FULL_CONFIDENCE_PIXELS)
    )


def _abstain(reason: str) -> SkinTone:
    return SkinTone(ita=None, fitzpatrick_group=None, confidence=0.0, reason=reason)


def tone_from_pixels(pixels: np.ndarray) -> SkinTone:
    """Skin tone of skin pixels [N, 3] RGB uint8 (robust ITA, abstention, confidence)."""
    px = np.asarray(pixels, dtype=np.uint8).reshape(-1, 3)
    px = px[px.max(axis=1) > 0]  # exact black = padding outside the source image
    if len(px) < MIN_SKIN_PIXELS:
        return _abstain(REASON_TOO_SMALL)
    lab = rgb_to_lab(px)
    lo, hi = np.percentile(lab[:, 0], TRIM_PERCENTILES)
    kept = lab[(lab[:, 0] >= lo) & (lab[:, 0] <= hi)]
    if len(kept) < MIN_SKIN_PIXELS // 2:
        kept = lab
    lightness, a_star, b_star = np.median(kept, axis=0)
    if np.mean(np.sort(px, axis=1)[:, 1] >= 250) > MAX_CLIPPED_FRACTION:
        return _abstain(REASON_OVER)
    if np.mean(px.max(axis=1) <= 15) > MAX_DARK_FRACTION:
        return _abstain(REASON_UNDER)
    if float(np.hypot(a_star, b_star)) < MIN_CHROMA:
        return _abstain(REASON_LOW_CHROMA)
    ita = float(ita_degrees(lightness, b_star))
    group = ita_to_group(ita)
    confidence = tone_confidence(ita, len(px))
    return SkinTone(ita=round(ita, 2), fitzpatrick_group=group, confidence=round(confidence, 3))


def default_skin_mask(shape: tuple[int, int]) -> np.ndarray:
    """Skin mask for an aligned crop made with the default margin, from average keypoints."""
    from preprocessing.skin_mask import skin_mask

    h, w = shape
    # BlazeFace keypoints relative to the box (average of frontal faces), box = middle 2/3.
    rel = np.array([[0.30, 0.37], [0.70, 0.37], [0.50, 0.60], [0.50, 0.78]])
    kps = (rel * (2.0 / 3.0) + 1.0 / 6.0) * np.array([w, h])
    return skin_mask(kps, (h, w))


def local_residuals(
    crop: np.ndarray, *, window: float = LOCAL_WINDOW
) -> tuple[np.ndarray, np.ndarray]:
    """(L* residual, a* residual) [H, W]: each channel minus its local median over a window of
    `window` x the crop's side. They do not depend on the skin mask, so one pair serves every
    region of a crop."""
    lab = rgb_to_lab(crop)
    ksize = max(3, int(round(window * max(crop.shape[:2]))) | 1)
    lightness = np.clip(np.rint(lab[..., 0] * 2.55), 0, 255).astype(np.uint8)
    redness = np.clip(np.rint(lab[..., 1] + 128.0), 0, 255).astype(np.uint8)
    res_l = lab[..., 0] - cv2.medianBlur(lightness, ksize).astype(np.float64) / 2.55
    res_a = lab[..., 1] - (cv2.medianBlur(redness, ksize).astype(np.float64) - 128.0)
    return res_l, res_a


def local_outliers(
    crop: np.ndarray,
    mask: np.ndarray,
    *,
    window: float = LOCAL_WINDOW,
    delta: float = LOCAL_DELTA,
    noise_factor: float = NOISE_FACTOR,
    residuals: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Bool [H, W]: pixels darker (L*) or redder (a*) than their local median by more than
    max(delta, noise_factor x the robust SD of that channel's residual over `mask`).
    `residuals`: `local_residuals(crop, window=window)` when already computed."""
    res_l, res_a = local_residuals(crop, window=window) if residuals is None else residuals

    def margin(residual: np.ndarray) -> float:
        values = residual[mask]
        if values.size == 0:
            return delta
        sigma = 1.4826 * float(np.median(np.abs(values - np.median(values))))
        return max(delta, noise_factor * sigma)

    return (res_l < -margin(res_l)) | (res_a > margin(res_a))


def estimate_skin_tone(
    crop: np.ndarray,
    skin_mask: np.ndarray | None = None,
    *,
    illumination: str = "none",
    reject_lesions: bool = True,
    residuals: tuple[np.ndarray, np.ndarray] | None = None,
) -> SkinTone:
    """Estimate the skin tone of an aligned face crop (RGB uint8).

    skin_mask: bool [H, W] of skin pixels (None: the default cheeks/forehead layout of an
    aligned crop). illumination: "none" or "shades_of_gray" (gains estimated on the non-skin
    part of the crop). reject_lesions: drop local outliers first (`local_outliers`; its
    `residuals` of this crop, when already computed, with illumination "none" only).
    """
    if crop.ndim != 3 or crop.shape[2] != 3:
        raise ValueError(f"expected an RGB crop [H, W, 3], got shape {crop.shape}")
    mask = default_skin_mask(crop.shape[:2]) if skin_mask is None else skin_mask.astype(bool)
    if illumination == "shades_of_gray":
        crop = normalize_illumination(crop, ~mask)
    elif illumination != "none":
        raise ValueError(
            f"illumination must be one of ['none', 'shades_of_gray'], got {illumination!r}"
        )
    if residuals is not None and illumination != "none":
        raise ValueError("residuals are of the crop before illumination normalisation")
    if reject_lesions:
        kept = mask & ~local_outliers(crop, mask, residuals=residuals)
        if kept.sum() >= MIN_SKIN_PIXELS:
            mask = kept
    return tone_from_pixels(crop[mask])


def estimate_tone_in_regions(
    crop: np.ndarray,
    regions: dict[str, np.ndarray],
    *,
    gains: np.ndarray | None = None,
    reject_lesions: bool = True,
    calibration: tone_calibration.Calibration | None = None,
) -> SkinTone:
    """Skin tone over the union of `regions` (bool masks) with an ITA interval over regions.

    `gains`: chromatic white-balance gains in linear RGB (`preprocessing.colour.
    white_patch_gains` of the sclera and teeth) applied first. The interval is the overall
    ITA +- INTERVAL_Z standard errors of the mean of the region ITAs (regions with at least
    MIN_REGION_PIXELS pixels; none with fewer than two regions); when it spans a group cut the
    estimate abstains with REASON_SPANS_CUT and keeps the ITA and the interval. The confidence
    of a group is `preprocessing.tone_calibration.calibrated_confidence` (`calibration`,
    default the shipped one): the probability that a by-eye rating agrees.
    """
    from preprocessing.colour import apply_gains

    if gains is not None:
        crop = apply_gains(crop, gains)
    union = np.logical_or.reduce([np.asarray(m, bool) for m in regions.values()])
    residuals = local_residuals(crop) if reject_lesions else None
    overall = estimate_skin_tone(crop, union, reject_lesions=reject_lesions, residuals=residuals)
    if overall.ita is None:
        return overall
    itas = []
    for mask in regions.values():
        if np.count_nonzero(mask) >= MIN_REGION_PIXELS:
            region = estimate_skin_tone(
                crop, mask, reject_lesions=reject_lesions, residuals=residuals
            )
            if region.ita is not None:
                itas.append(region.ita)
    interval = None
    if len(itas) >= 2:
        half = INTERVAL_Z * float(np.std(itas, ddof=1)) / np.sqrt(len(itas))
        interval = (round(overall.ita - half, 2), round(overall.ita + half, 2))
        if ita_to_group(interval[0]) != ita_to_group(interval[1]):
            return SkinTone(overall.ita, None, 0.0, REASON_SPANS_CUT, interval)
    confidence = tone_calibration.calibrated_confidence(
        overall.ita, interval, calibration or tone_calibration.default_calibration()
    )
    return SkinTone(overall.ita, overall.fitzpatrick_group, round(confidence, 3), None, interval)
