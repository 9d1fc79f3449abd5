"""Heatmap overlays: over the face crop, and mapped back onto the original photo.

OpenCV + numpy only (no JAX; numpy 1.26 compatible), so the client and the Triton environment
can import it. A face crop comes from `preprocessing.align.align_and_crop`, whose 2x3 `affine`
maps original-image pixel coordinates to crop coordinates (`cv2.warpAffine(image, affine,
(size, size))` is the crop). The CAM lives on the crop grid; `cam_to_original` pulls it back with
the same affine (`WARP_INVERSE_MAP`), so no matrix inversion is needed, and reports which original
pixels the crop covers: outside the crop there is no heatmap and the photo is left unchanged.

    from client.overlay import overlay_on_crop, overlay_on_original, write_image
    write_image("acne_crop.png", overlay_on_crop(face.crop, cam[0]))
    write_image("acne.png", overlay_on_original(photo, cam[0], face.affine))
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import cv2
import numpy as np

DEFAULT_ALPHA = 0.45
COLORMAP = cv2.COLORMAP_JET


def _check_map(cam: np.ndarray) -> np.ndarray:
    m = np.asarray(cam, dtype=np.float32)
    if m.ndim != 2:
        raise ValueError(f"heatmap must be 2-D [h, w], got shape {m.shape}")
    return np.nan_to_num(np.clip(m, 0.0, 1.0), nan=0.0)


def _check_rgb(image: np.ndarray, what: str) -> np.ndarray:
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"{what} must be RGB uint8 [H, W, 3], got {img.dtype} {img.shape}")
    return img


def colorize(cam: np.ndarray) -> np.ndarray:
    """Map a heatmap in [0, 1] [h, w] to RGB uint8 [h, w, 3] (jet: blue = low, red = high)."""
    m = _check_map(cam)
    u8 = np.round(m * 255.0).astype(np.uint8)
    return cv2.cvtColor(cv2.applyColorMap(u8, COLORMAP), cv2.COLOR_BGR2RGB)


def resize_map(cam: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear-resize a heatmap to `shape` (h, w); a no-op when it already has that shape."""
    m = _check_map(cam)
    if m.shape == tuple(shape):
        return m
    return cv2.resize(m, (int(shape[1]), int(shape[0])), interpolation=cv2.INTER_LINEAR)


def blend(
    image: np.ndarray,
    cam: np.ndarray,
    *,
    alpha: float = DEFAULT_ALPHA,
    where: np.ndarray | None = None,
) -> np.ndarray:
    """Alpha-blend the colourised `cam` (same h, w as `image`) over RGB `image` [where True]."""
    img = _check_rgb(image, "image")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    heat = colorize(cam).astype(np.float32)
    a = np.full(img.shape[:2], alpha, dtype=np.float32)
    if where is not None:
        a = a * np.asarray(where, dtype=np.float32)
    out = img.astype(np.float32) * (1.0 - a[..., None]) + heat * a[..., None]
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def overlay_on_crop(
    crop: np.ndarray, cam: np.ndarray, *, alpha: float = DEFAULT_ALPHA
) -> np.ndarray:
    """Heatmap [h, w] in [0, 1] over the face crop (resized to the crop if needed)."""
    crop = _check_rgb(crop, "crop")
    return blend(crop, resize_map(cam, crop.shape[:2]), alpha=alpha)


def cam_to_original(
    cam: np.ndarray, affine: np.ndarray, shape: tuple[int, int], *, crop_size: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Map a crop-space heatmap back to the original image: (map [H, W] float32, covered bool).

    `affine` (2x3) maps original coordinates to crop coordinates; `crop_size` is the side of the
    crop it was made for (default: the heatmap's own size, so pass it when `cam` is smaller).
    """
    m = _check_map(cam)
    a = np.asarray(affine, dtype=np.float64)
    if a.shape != (2, 3) or not np.isfinite(a).all():
        raise ValueError(f"affine must be a finite 2x3 matrix, got shape {a.shape}")
    size = int(crop_size) if crop_size is not None else None
    if size is not None and m.shape != (size, size):
        m = cv2.resize(m, (size, size), interpolation=cv2.INTER_LINEAR)
    h, w = int(shape[0]), int(shape[1])
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    back = cv2.warpAffine(m, a, (w, h), flags=flags, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    ones = np.ones(m.shape, dtype=np.float32)
    cover = cv2.warpAffine(
        ones, a, (w, h), flags=flags, borderMode=cv2.BORDER_CONSTANT, borderValue=0
    )
    return back.astype(np.float32), cover > 0.5


def overlay_on_original(
    image: np.ndarray,
    cam: np.ndarray,
    affine: np.ndarray,
    *,
    crop_size: int | None = None,
    alpha: float = DEFAULT_ALPHA,
) -> np.ndarray:
    """The crop's heatmap drawn over the original photo where the crop covers it."""
    img = _check_rgb(image, "image")
    back, covered = cam_to_original(cam, affine, img.shape[:2], crop_size=crop_size)
    return blend(img, back, alpha=alpha, where=covered)


def write_image(path: str | Path, rgb: np.ndarray) -> Path:
    """Write an RGB uint8 image (format from the suffix, e.g. .png) atomically; returns the path."""
    path = Path(path)
    img = _check_rgb(rgb, "image")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.stem}.", suffix=path.suffix or ".png", dir=path.parent
    )
    os.close(fd)
    try:
        if not cv2.imwrite(tmp, cv2.cvtColor(img, cv2.COLOR_RGB2BGR)):
            raise OSError(f"{path}: OpenCV could not write the image")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
