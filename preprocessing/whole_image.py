"""Skin close-ups without a face (`--region whole`): the image's central square as the crop,
and the skin tone from its skin-coloured pixels.

Most dermatology datasets are close-ups of a patch of skin, where a face detector finds
nothing. The crop is the largest central square, resized to the model's input; the skin
pixels are the YCrCb skin box of `preprocessing.verify.skin_colour_mask`; the tone is
`preprocessing.tone.estimate_skin_tone` over them (no landmarks, so no white-patch
correction and no ITA interval). The model was trained on face crops: on close-ups its
numbers are unmeasured, and the result says so with the out-of-distribution score.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from preprocessing.tone import SkinTone, estimate_skin_tone
from preprocessing.verify import skin_colour_mask


@dataclass(frozen=True, eq=False)  # holds arrays: compare fields explicitly
class WholeImageCrop:
    """The crop [size, size, 3] uint8, its box (x, y, w, h) in the image, affine, mask, tone."""

    box: tuple[float, float, float, float]
    crop: np.ndarray
    affine: np.ndarray
    skin_mask: np.ndarray
    skin_tone: SkinTone


def central_square(height: int, width: int) -> tuple[int, int, int]:
    """(x0, y0, side) of the largest central square.

    >>> central_square(300, 400)
    (50, 0, 300)
    """
    side = min(height, width)
    return (width - side) // 2, (height - side) // 2, side


def whole_image_crop(image_rgb: np.ndarray, *, size: int) -> WholeImageCrop:
    """The central square resized to `size`, its skin mask and the tone of its skin pixels."""
    if image_rgb.ndim != 3 or image_rgb.shape[2] != 3:
        raise ValueError(f"expected an RGB image [H, W, 3], got shape {image_rgb.shape}")
    x0, y0, side = central_square(*image_rgb.shape[:2])
    square = image_rgb[y0 : y0 + side, x0 : x0 + side]
    interpolation = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    crop = cv2.resize(square, (size, size), interpolation=interpolation)
    scale = size / side
    affine = np.array([[scale, 0.0, -x0 * scale], [0.0, scale, -y0 * scale]])
    mask = skin_colour_mask(crop)
    tone = estimate_skin_tone(crop, mask)
    box = (float(x0), float(y0), float(side), float(side))
    return WholeImageCrop(box, crop, affine, mask, tone)
