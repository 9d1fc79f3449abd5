"""Skin colour from ITA bins (Chardon 1991, Del Bino 2006) and skin texture noise.

ITA = degrees(arctan2(L* - 50, b*)) in CIELAB (D65). The six bins map to Fitzpatrick-like types:

    type 1  very light    ITA > 55
    type 2  light         41 < ITA <= 55
    type 3  intermediate  28 < ITA <= 41
    type 4  tan           10 < ITA <= 28
    type 5  brown        -30 < ITA <= 10
    type 6  dark          ITA <= -30

The generator draws each subject's ITA from the inner part of its bin (`ITA_SAMPLE_RANGES`), so
moderate lighting changes keep the measured ITA inside the bin.
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

# (low, high] ITA bin per Fitzpatrick type; the outer bins are open-ended in the literature.
ITA_BINS: dict[int, tuple[float, float]] = {
    1: (55.0, 90.0),
    2: (41.0, 55.0),
    3: (28.0, 41.0),
    4: (10.0, 28.0),
    5: (-30.0, 10.0),
    6: (-90.0, -30.0),
}
# Where the generator samples the ITA of a subject: the bin minus a safety margin.
ITA_SAMPLE_RANGES: dict[int, tuple[float, float]] = {
    1: (58.5, 68.0),
    2: (49.5, 54.8),
    3: (29.0, 35.5),
    4: (21.5, 27.8),
    5: (-22.0, 1.0),
    6: (-52.0, -37.0),
}
# b* (yellowness) range per type; L* follows from ITA and b*.
B_STAR_RANGES: dict[int, tuple[float, float]] = {
    1: (8.5, 12.0),
    2: (13.0, 17.0),
    3: (16.0, 20.0),
    4: (17.0, 22.0),
    5: (17.0, 22.0),
    6: (12.0, 17.0),
}


def ita_to_fitzpatrick(ita: float) -> int:
    """Fitzpatrick-like type 1-6 of an ITA value (degrees), by the bins above.

    >>> ita_to_fitzpatrick(60.0), ita_to_fitzpatrick(30.0), ita_to_fitzpatrick(-40.0)
    (1, 3, 6)
    """
    for ftype in range(1, 6):
        if ita > ITA_BINS[ftype][0]:
            return ftype
    return 6


def ita_of_lab(lab: np.ndarray) -> np.ndarray:
    """ITA in degrees of CIELAB values [..., 3] (L* 0-100)."""
    lab = np.asarray(lab, dtype=np.float64)
    return np.degrees(np.arctan2(lab[..., 0] - 50.0, lab[..., 2]))


def lab_to_rgb(lab: np.ndarray) -> np.ndarray:
    """CIELAB (D65, L* 0-100) [..., 3] -> sRGB float32 in [0, 1] (pure numpy, exact formulas)."""
    lab = np.asarray(lab, dtype=np.float64)
    fy = (lab[..., 0] + 16.0) / 116.0
    fx = fy + lab[..., 1] / 500.0
    fz = fy - lab[..., 2] / 200.0

    def finv(t: np.ndarray) -> np.ndarray:
        return np.where(t > 6 / 29, t**3, 3 * (6 / 29) ** 2 * (t - 4 / 29))

    xyz = np.stack([0.95047 * finv(fx), finv(fy), 1.08883 * finv(fz)], axis=-1)
    m = np.array(
        [
            [3.2404542, -1.5371385, -0.4985314],
            [-0.9692660, 1.8760108, 0.0415560],
            [0.0556434, -0.2040259, 1.0572252],
        ]
    )
    lin = np.clip(xyz @ m.T, 0.0, 1.0)
    srgb = np.where(lin <= 0.0031308, 12.92 * lin, 1.055 * lin ** (1 / 2.4) - 0.055)
    return srgb.astype(np.float32)


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB float in [0, 1] [..., 3] -> CIELAB (L* 0-100)."""
    rgb = np.asarray(rgb, dtype=np.float32)
    return cv2.cvtColor(rgb.reshape(1, -1, 3), cv2.COLOR_RGB2Lab).reshape(rgb.shape)


def sample_skin_lab(fitzpatrick: int, rng: np.random.Generator) -> np.ndarray:
    """Draw one skin colour (L*, a*, b*) whose ITA lies in the type's sampling range."""
    lo, hi = ITA_SAMPLE_RANGES[fitzpatrick]
    ita = rng.uniform(lo, hi)
    b = rng.uniform(*B_STAR_RANGES[fitzpatrick])
    lightness = 50.0 + b * np.tan(np.radians(ita))
    a = rng.uniform(7.0, 13.0) if fitzpatrick <= 4 else rng.uniform(6.0, 11.0)
    return np.array([lightness, a, b], dtype=np.float32)


@lru_cache(maxsize=4)
def noise_bank(size: int) -> dict[str, np.ndarray]:
    """Fixed (seed 0) noise fields of twice the image size; images take random windows of them.

    `low`: smooth blotchy field (uneven tone, melasma shapes), `mid`: medium blobs,
    `pore`: sparse small dark dots, `grain`: unit gaussian camera noise, `strand`: hair strands.
    """
    rng = np.random.default_rng(0)
    n = 2 * size
    white = rng.standard_normal((n, n)).astype(np.float32)

    def smooth(field: np.ndarray, sigma: float) -> np.ndarray:
        out = cv2.GaussianBlur(field, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
        return (out - out.mean()) / (out.std() + 1e-6)

    low = smooth(white, size / 16)
    mid = smooth(rng.standard_normal((n, n)).astype(np.float32), size / 64)
    pores = cv2.GaussianBlur(rng.standard_normal((n, n)).astype(np.float32), (0, 0), 0.8)
    pores = np.clip((pores - 0.55) / 0.25, 0.0, 1.0).astype(np.float32)
    grain = rng.standard_normal((n, n, 3)).astype(np.float32)
    strand = cv2.GaussianBlur(
        rng.standard_normal((n, n)).astype(np.float32), (0, 0), sigmaX=0.7, sigmaY=8.0
    )
    strand = strand / (strand.std() + 1e-6)
    return {"low": low, "mid": mid, "pore": pores, "grain": grain, "strand": strand}


def window(field: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """A random size x size window of a noise-bank field, randomly flipped."""
    y, x = rng.integers(0, field.shape[0] - size, size=2)
    out = field[y : y + size, x : x + size]
    if rng.random() < 0.5:
        out = out[:, ::-1]
    return out
