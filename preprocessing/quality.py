"""Image-quality warnings for one detected face: blur, exposure, face size and colour cast.

`assess_quality(crop, skin_mask, face_width_px)` takes the aligned face crop of
`preprocessing.pipeline.crop_face` (RGB uint8 [S, S, 3], black outside the source image),
the bool skin mask of that crop (`FaceCrop.skin_mask`: the landmark skin regions serving
uses) and the face box width in original pixels. It returns the signals and the
warnings they raise; the codes are the result vocabulary of docs/architecture.md (`WARNINGS`;
`out_of_distribution` is decided elsewhere). Exact black pixels are padding and are left
out of every signal.

Signals and the warning each raises:

- `sharpness`: variance of the Laplacian over variance of the grey level, over the face box
  (the middle of the crop) with the crop resized to SIGNAL_SIZE = 128 px, the classifier's
  input. Dividing by the grey variance makes it independent of exposure and contrast; the
  fixed size measures blur as the model sees it and keeps crops of any size >= 128 px
  comparable (a 224 px crop reads about 25 % lower than a 128 px crop of the same face,
  whose own resampling is sharper; the limit suits both). `blur` below `min_sharpness`.
- `highlight_lightness`: the 99th percentile of L* over the crop (sclera, teeth, specular
  highlights, background), and `dark_fraction`: skin pixels with every channel <= 25.
  `underexposed` when the highlights are below `min_highlight_lightness` or the dark
  fraction above `max_dark_fraction`. The median skin L* is not used for this: properly
  exposed dark skin (V-VI: L* 26-53 on acne-new valid) is as dark as light skin at -2 EV,
  while -2 EV caps every pixel at L* 57.1 (white becomes sRGB 137).
- `clipped_fraction`: skin pixels with two or more channels >= 250 (very light skin clips
  red alone), `skin_lightness`: median skin L*, and `nonskin_clipped_fraction`: the same
  clipping over the rest of the crop. `overexposed` above `max_clipped_fraction`,
  `max_skin_lightness` or `max_nonskin_clipped_fraction`. Dark skin at +2 EV rarely clips
  and looks like well exposed lighter skin; the clipped background, eyes and teeth catch
  part of it.
- `face_width_px`: `face_too_small` below `min_face_width_px` = 85 px. The classifier's
  128 px input covers 1.5 face widths (margin 0.25), so a narrower face is upsampled: the
  source holds less detail than the model uses.
- `colour_cast`: grey-edge illuminant estimate (van de Weijer et al. 2007): the mean
  absolute gradient of each channel in linear RGB over the crop at 128 px, max over min
  channel (1 = neutral). Gradients are less dominated by the skin's own red than channel
  means (grey-world: R/B of 2-5 on neutral photos), so a warm white balance stands out
  better. `colour_cast` above `max_colour_cast`.

A signal that cannot be measured (fewer than MIN_SKIN_PIXELS skin pixels, a crop that is
all padding) is NaN and raises no warning.

Calibration (DEFAULT_LIMITS): each limit sits near the 1st or 99th percentile of its signal
over the faces serving analyses in the acne-new v36 valid photos (verified faces, crops and
landmark skin masks as `crop_face` makes them):

    python benchmarks/quality_limits.py --data data/raw/acne-new-v36/valid/images --size 128

On those 325 faces (128 px crops), 98.8 % raise no blur, 100 % no underexposed, 96.6 % no
overexposed, 99.7 % no face_too_small and 98.8 % no colour_cast warning; 94.2 % none at all.
The underexposure limit sits below the 1st percentile on purpose: properly exposed dark skin
must not be flagged (at the 1st percentile it flagged 4-6 % of the faces estimated V-VI and
0.6 % of I-II). `min_face_width_px` = 85 follows from the model input, not a percentile.
Degraded copies (docs/preprocessing.md, section 7): -2 EV raises underexposed and a 40 px face
face_too_small on every face; +2 EV raises overexposed on 96 %; a blur of 3 px per 95 px of
face width raises blur on every face, while 3 source pixels is invisible at 128 px on most of
these large faces (median width 332 px). This is a research aid, not a diagnosis.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from preprocessing.align import DEFAULT_MARGIN
from preprocessing.colour import srgb_to_linear
from preprocessing.tone import rgb_to_lab

WARNINGS = ("blur", "underexposed", "overexposed", "face_too_small", "colour_cast")
SIGNALS = (
    "sharpness",
    "highlight_lightness",
    "nonskin_clipped_fraction",
    "clipped_fraction",
    "dark_fraction",
    "skin_lightness",
    "face_width_px",
    "colour_cast",
)
SIGNAL_SIZE = 128  # sharpness and colour cast are measured on the crop resized to this side
FACE_FRACTION = 1.0 / (1.0 + 2.0 * DEFAULT_MARGIN)  # the face box's share of the crop side
MIN_SKIN_PIXELS = 50
CLIP_LEVEL = 250  # a channel at or above this is clipped
DARK_LEVEL = 25  # a pixel with every channel at or below this is very dark
HIGHLIGHT_PERCENTILE = 99.0
SKIN_SIGNALS = ("clipped_fraction", "dark_fraction", "skin_lightness")


@dataclass(frozen=True)
class QualityLimits:
    """Warning limits on the signals of `quality_signals` (see the module docstring)."""

    min_sharpness: float = 0.05
    min_highlight_lightness: float = 62.0
    max_dark_fraction: float = 0.25
    max_clipped_fraction: float = 0.093
    max_skin_lightness: float = 88.0
    max_nonskin_clipped_fraction: float = 0.15
    min_face_width_px: float = 85.0
    max_colour_cast: float = 3.0


DEFAULT_LIMITS = QualityLimits()


@dataclass(frozen=True)
class QualityReport:
    """The measured signals (NaN when not measurable) and the warnings, in WARNINGS order."""

    signals: dict[str, float]
    warnings: tuple[str, ...]


_LINEAR = srgb_to_linear(np.arange(256))  # lookup table for uint8 pixels


def padding_mask(crop: np.ndarray) -> np.ndarray:
    """Bool [H, W]: pixels outside the source image (exact black in `align_and_crop`)."""
    return crop.max(axis=2) == 0


def _resized(crop: np.ndarray, size: int) -> np.ndarray:
    interpolation = cv2.INTER_AREA if crop.shape[0] > size else cv2.INTER_LINEAR
    return cv2.resize(crop, (size, size), interpolation=interpolation)


def sharpness(crop: np.ndarray, *, size: int = SIGNAL_SIZE) -> float:
    """var(Laplacian) / var(grey) over the face box of the crop resized to `size`; NaN if empty."""
    small = _resized(crop, size)
    grey = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY).astype(np.float64)
    inside = (~padding_mask(small)).astype(np.uint8)
    inside = cv2.erode(inside, np.ones((5, 5), np.uint8)).astype(bool)  # no padding edges
    lo = int(round(size * (1.0 - FACE_FRACTION) / 2.0))
    region = np.zeros((size, size), bool)
    region[lo : size - lo, lo : size - lo] = True
    region &= inside
    if region.sum() < 100:
        return math.nan
    laplacian = cv2.Laplacian(grey, cv2.CV_64F)
    return float(laplacian[region].var() / max(grey[region].var(), 1.0))


def colour_cast(crop: np.ndarray, *, size: int = SIGNAL_SIZE) -> float:
    """Grey-edge illuminant ratio: max / min channel mean |gradient| in linear RGB (1 = neutral)."""
    small = _resized(crop, size)
    linear = _LINEAR[small]
    inside = ~padding_mask(small)
    grad_x = np.abs(np.diff(linear, axis=1))[inside[:, 1:] & inside[:, :-1]]
    grad_y = np.abs(np.diff(linear, axis=0))[inside[1:] & inside[:-1]]
    grads = np.concatenate([grad_x, grad_y])
    if len(grads) == 0:
        return math.nan
    energy = grads.mean(axis=0)
    if energy.max() <= 0:
        return 1.0  # a flat crop has no colour to measure
    return float(energy.max() / max(energy.min(), 1e-6))


def clipped_fraction(pixels: np.ndarray) -> float:
    """Share of RGB pixels [N, 3] with two or more channels >= CLIP_LEVEL; NaN if none."""
    if len(pixels) == 0:
        return math.nan
    return float(np.mean(np.sort(pixels, axis=1)[:, 1] >= CLIP_LEVEL))


def exposure_signals(crop: np.ndarray, skin_mask: np.ndarray) -> dict[str, float]:
    """Skin clipped and dark fractions and median L*; the crop's highlight L* and other clipping."""
    inside = ~padding_mask(crop)
    skin_mask = np.asarray(skin_mask, bool)
    out = {
        "highlight_lightness": math.nan,
        "nonskin_clipped_fraction": clipped_fraction(crop[inside & ~skin_mask]),
    }
    if inside.any():
        lightness = rgb_to_lab(crop[inside])[:, 0]
        out["highlight_lightness"] = float(np.percentile(lightness, HIGHLIGHT_PERCENTILE))
    skin = crop[skin_mask & inside]
    if len(skin) < MIN_SKIN_PIXELS:
        return {**out, **dict.fromkeys(SKIN_SIGNALS, math.nan)}
    return {
        **out,
        "clipped_fraction": clipped_fraction(skin),
        "dark_fraction": float(np.mean(skin.max(axis=1) <= DARK_LEVEL)),
        "skin_lightness": float(np.median(rgb_to_lab(skin)[:, 0])),
    }


def quality_signals(
    crop: np.ndarray, skin_mask: np.ndarray, face_width_px: float
) -> dict[str, float]:
    """Every signal of one face crop, keyed in SIGNALS order (NaN = not measurable)."""
    crop = np.asarray(crop)
    if crop.ndim != 3 or crop.shape[2] != 3 or crop.dtype != np.uint8:
        raise ValueError(
            f"expected an RGB uint8 crop [S, S, 3], got {crop.dtype} shape {crop.shape}"
        )
    if np.shape(skin_mask) != crop.shape[:2]:
        raise ValueError(
            f"skin_mask shape {np.shape(skin_mask)} does not match the crop {crop.shape[:2]}"
        )
    return {
        "sharpness": sharpness(crop),
        **exposure_signals(crop, skin_mask),
        "face_width_px": float(face_width_px),
        "colour_cast": colour_cast(crop),
    }


def quality_warnings(
    signals: dict[str, float], limits: QualityLimits = DEFAULT_LIMITS
) -> tuple[str, ...]:
    """The warnings the signals raise under `limits`, in WARNINGS order (NaN raises none)."""
    s = signals
    raised = {
        "blur": s["sharpness"] < limits.min_sharpness,
        "underexposed": s["highlight_lightness"] < limits.min_highlight_lightness
        or s["dark_fraction"] > limits.max_dark_fraction,
        "overexposed": s["clipped_fraction"] > limits.max_clipped_fraction
        or s["skin_lightness"] > limits.max_skin_lightness
        or s["nonskin_clipped_fraction"] > limits.max_nonskin_clipped_fraction,
        "face_too_small": s["face_width_px"] < limits.min_face_width_px,
        "colour_cast": s["colour_cast"] > limits.max_colour_cast,
    }
    return tuple(code for code in WARNINGS if raised[code])


def assess_quality(
    crop: np.ndarray,
    skin_mask: np.ndarray,
    face_width_px: float,
    limits: QualityLimits = DEFAULT_LIMITS,
) -> QualityReport:
    """Signals and warnings of one aligned face crop, its skin mask and its box width (px)."""
    signals = quality_signals(crop, skin_mask, face_width_px)
    return QualityReport(signals=signals, warnings=quality_warnings(signals, limits))
