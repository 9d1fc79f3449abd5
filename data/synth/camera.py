"""From the lit canonical portrait to a photograph: pose, background, light colour, noise, JPEG."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from data.synth import skin as skin_mod
from data.synth.face import Geometry, grid

JPEG_QUALITY_RANGE = (80, 95)  # inclusive; set explicitly per image so output is reproducible
PNG_COMPRESSION = 1  # masks are mostly zeros: light compression is small and fast


@dataclass(frozen=True)
class Pose:
    """Similarity transform from the canonical frame to the photo (degrees, scale, shift in px)."""

    angle: float
    scale: float
    shift: tuple[float, float]

    def matrix(self, g: Geometry) -> np.ndarray:
        """The 2x3 affine matrix (canonical -> photo)."""
        m = cv2.getRotationMatrix2D((g.cx, g.cy), self.angle, self.scale)
        m[:, 2] += self.shift
        return m


def sample_pose(rng: np.random.Generator, g: Geometry) -> Pose:
    """Scale (face 40-65% of the width), small rotation and a shift that keeps the head in frame."""
    s = float(g.size)
    lo, hi = 0.40 * s / (2 * g.a), 0.62 * s / (2 * g.a)
    scale = rng.uniform(lo, min(hi, 0.46 * s / g.b))
    angle = rng.uniform(-8.0, 8.0)
    half_w, half_h = 1.1 * g.a * scale, g.b * scale
    margin = 0.02 * s
    dx_lo, dx_hi = margin + half_w - g.cx, s - margin - half_w - g.cx
    dy_lo, dy_hi = margin + half_h - g.cy, s - margin - half_h - g.cy
    dx = rng.uniform(max(dx_lo, -0.08 * s), min(dx_hi, 0.08 * s))
    dy = rng.uniform(max(dy_lo, -0.06 * s), min(dy_hi, 0.06 * s))
    return Pose(angle, scale, (dx, dy))


def make_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A plain indoor-looking wall: muted two-colour gradient with soft blotches, float32 RGB.

    Drawn at 1/8 resolution and upsampled: it is smooth anyway, and this keeps it cheap.
    """
    small = max(size // 8, 8)
    axis = (np.arange(small, dtype=np.float32) + 0.5) / small - 0.5
    base = rng.uniform(0.25, 0.85)
    hue = rng.uniform(-0.12, 0.12, size=3).astype(np.float32)
    c1 = np.clip(base + hue, 0.05, 0.95)
    c2 = np.clip(c1 * rng.uniform(0.7, 1.1) + rng.uniform(-0.05, 0.05, size=3), 0.03, 0.97)
    theta = rng.uniform(0, 2 * np.pi)
    t = axis[None, :] * np.cos(theta) + axis[:, None] * np.sin(theta) + 0.5
    blot = skin_mod.window(skin_mod.noise_bank(size)["low"], size, rng)[::8, ::8][:small, :small]
    bg = (c1 * (1 - t[..., None]) + c2 * t[..., None]) * (1 + 0.05 * blot[..., None])
    return cv2.resize(bg.astype(np.float32), (size, size), interpolation=cv2.INTER_LINEAR)


@lru_cache(maxsize=4)
def _radius2(size: int) -> np.ndarray:
    xs, ys = grid(size)
    return ((xs - size / 2) ** 2 + (ys - size / 2) ** 2) / (0.5 * size * size)


def photograph(
    portrait: np.ndarray,
    alpha: np.ndarray,
    masks: np.ndarray,
    g: Geometry,
    pose: Pose,
    light_dir: tuple[float, float, float],
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Warp the canonical portrait into a photo over a background -> (RGB uint8, masks uint8)."""
    s = g.size
    m = pose.matrix(g)
    fg = cv2.warpAffine(
        portrait, m, (s, s), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    al = cv2.warpAffine(alpha, m, (s, s), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    mk = cv2.warpAffine(masks, m, (s, s), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT)
    bg = make_background(rng, s)
    # Soft shadow of the person on the wall, away from the light.
    q = 4  # the shadow is blurry: compute it at 1/4 resolution
    small = cv2.resize(al, (s // q, s // q), interpolation=cv2.INTER_AREA)
    shift = np.float32(
        [[1, 0, -light_dir[0] * 0.06 * s / q], [0, 1, (-light_dir[1] * 0.06 + 0.02) * s / q]]
    )
    shadow = cv2.warpAffine(small, shift, (s // q, s // q), borderMode=cv2.BORDER_REPLICATE)
    shadow = cv2.GaussianBlur(shadow, (0, 0), 0.03 * s / q)
    shadow = cv2.resize(shadow, (s, s), interpolation=cv2.INTER_LINEAR)
    bg *= (1 - rng.uniform(0.1, 0.3) * shadow)[..., None]
    img = cv2.blendLinear(
        fg.astype(np.float32, copy=False), bg.astype(np.float32, copy=False), al, 1.0 - al
    )
    # Light colour temperature and exposure (moderate, so skin ITA stays in its bin).
    temp = rng.uniform(-0.03, 0.03)
    gains = np.float32([1 + temp, 1 + 0.1 * temp, 1 - temp]) * rng.uniform(0.97, 1.03)
    vignette = 1 - rng.uniform(0.0, 0.12) * _radius2(s)
    img = img * vignette[..., None] * gains
    img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.35, 0.7))
    grain = skin_mod.noise_bank(s)["grain"]
    y0, x0 = rng.integers(0, grain.shape[0] - s, size=2)
    img = img + grain[y0 : y0 + s, x0 : x0 + s] * np.float32(rng.uniform(1.0, 3.5) / 255)
    rgb = np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)
    return rgb, mk


def encode_jpeg(rgb: np.ndarray, quality: int) -> bytes:
    """JPEG bytes of an RGB uint8 image at an explicit quality."""
    ok, buf = cv2.imencode(
        ".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes()


def encode_mask_png(masks: np.ndarray) -> bytes:
    """PNG bytes of a mask [H, W, 3] whose channel i (in RGB order) is CONDITIONS[i]."""
    ok, buf = cv2.imencode(".png", masks[..., ::-1], [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION])
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()
