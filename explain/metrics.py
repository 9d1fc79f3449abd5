"""How good is a heatmap? Pointing game, energy in mask, deletion/insertion curves, bootstrap CIs.

Pure numpy (numpy 1.26 compatible); a model enters only as `predict_fn(images) -> scores`.

* Pointing game (Zhang et al. 2016): is the map's maximum inside the lesion mask? For box
  annotations, inside the boxes grown by a fraction of the face width (`pointing_game_dilated`).
  Its chance level (`pointing_chance`) is the share of the crop a random peak would hit.
* Energy in mask: the share of the map's mass inside the mask (a uniform map scores the mask's
  area fraction, reported beside it as the chance level).
* Deletion / insertion (Petsiuk et al. 2018, RISE): remove (or insert) pixels from the most salient
  down, track the class score, take the area under that curve; compare with a random order.
  Deletion AUC below random and insertion AUC above random mean the map is faithful to the model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

PredictFn = Callable[[np.ndarray], np.ndarray]
CURVE_MODES = ("deletion", "insertion")


def _map_and_mask(saliency: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(saliency, dtype=np.float64)
    m = np.asarray(mask).astype(bool)
    if s.ndim != 2 or s.shape != m.shape:
        raise ValueError(
            f"saliency and mask must be 2-D of the same shape, got {s.shape} and {m.shape}"
        )
    return s, m


def pointing_game(saliency: np.ndarray, mask: np.ndarray, *, tolerance_px: float = 0.0) -> bool:
    """True if a maximum of `saliency` lies in `mask` (or within `tolerance_px` of it).

    Ties: any maximal pixel counts; a constant map (no maximum to point with) is a miss, as is an
    empty mask.

    Parameters
    ----------
    saliency : array [H, W]
    mask : array [H, W], non-zero = lesion
    tolerance_px : float
        Euclidean distance in pixels allowed between the maximum and the mask (the original
        pointing game used 15 px at 224 px); 0 = strict.

    Returns
    -------
    bool

    >>> s = np.zeros((4, 4)); s[1, 2] = 1.0
    >>> m = np.zeros((4, 4)); m[1, 2] = 1
    >>> pointing_game(s, m), pointing_game(s, np.roll(m, 2, axis=0))
    (True, False)
    """
    s, m = _map_and_mask(saliency, mask)
    if not m.any() or not np.isfinite(s).all() or s.max() == s.min():
        return False
    peaks = np.argwhere(s == s.max())
    if tolerance_px <= 0:
        return bool(m[peaks[:, 0], peaks[:, 1]].any())
    lesion = np.argwhere(m).astype(np.float64)
    for p in peaks.astype(np.float64):
        if (((lesion - p) ** 2).sum(axis=1) <= tolerance_px**2).any():
            return True
    return False


def pointing_game_dilated(
    saliency: np.ndarray, mask: np.ndarray, *, face_width_px: float, dilate: float = 0.02
) -> bool:
    """Pointing game against box annotations: a hit when a maximum of `saliency` lies in `mask`
    grown by `dilate` x `face_width_px` pixels.

    Boxes drawn by hand are loose, and a peak on a box's edge is as right as one inside it; the
    allowance scales with the face, so it means the same at every crop size. The growth is
    Euclidean (a box's sides move out by the allowance, its corners round off), so a box that
    the eye alignment rotated in the crop grows the same way.

    Parameters
    ----------
    saliency : array [H, W]
    mask : array [H, W], non-zero = inside a (filled) lesion box
    face_width_px : float
        Width of the face in the crop, in pixels (`explain.evaluate.face_width_px`).
    dilate : float
        Allowance as a fraction of the face width (0.02 = 2%); 0 = the strict pointing game.

    Returns
    -------
    bool

    >>> s = np.zeros((50, 50)); s[20, 31] = 1.0  # one pixel right of the box
    >>> m = np.zeros((50, 50)); m[10:30, 10:31] = 1
    >>> [pointing_game_dilated(s, m, face_width_px=50.0, dilate=d) for d in (0.0, 0.02)]
    [False, True]
    """
    if not dilate >= 0 or not face_width_px > 0:
        raise ValueError(
            f"dilate must be >= 0 and face_width_px > 0, got {dilate} and {face_width_px}"
        )
    return pointing_game(saliency, mask, tolerance_px=dilate * face_width_px)


def pointing_chance(mask: np.ndarray, *, tolerance_px: float = 0.0) -> float:
    """The pointing game of a peak drawn uniformly at random: the share of pixels that lie in
    `mask` or within `tolerance_px` (Euclidean) of it, the chance level of `pointing_game` with
    the same tolerance.

    >>> m = np.zeros((10, 10), bool); m[4, 4] = True
    >>> pointing_chance(m), pointing_chance(m, tolerance_px=1.0)
    (0.01, 0.05)
    """
    m = np.asarray(mask).astype(bool)
    if m.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {m.shape}")
    if not tolerance_px >= 0:
        raise ValueError(f"tolerance_px must be >= 0, got {tolerance_px}")
    r = int(np.floor(tolerance_px))
    padded = np.pad(m, r)
    grown = np.zeros_like(m)
    height, width = m.shape
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            if dy * dy + dx * dx <= tolerance_px**2:
                grown |= padded[r + dy : r + dy + height, r + dx : r + dx + width]
    return float(grown.mean())


def peak_candidates(in_size: int, out_size: int, align: str = "center") -> np.ndarray:
    """Output pixels where a bilinear upsampling from `in_size` to `out_size` can peak.

    A bilinearly interpolated map takes its maximum at a grid node: with `align="center"` the
    node of cell j is at `(j + 0.5) * out / in - 0.5` (the two pixels nearest it count), with
    "corner" at `j * out / in` (see `train_jax.cam.bilinear_matrix`). Edges are clamped, so a peak
    at a border node is a plateau reaching the image border.

    >>> peak_candidates(4, 64).tolist()
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 23, 24, 39, 40, 55, 56, 57, 58, 59, 60, 61, 62, 63]
    >>> peak_candidates(4, 32, "corner").tolist()
    [0, 8, 16, 24, 25, 26, 27, 28, 29, 30, 31]
    """
    stride = out_size / in_size
    if align == "corner":
        centres = np.arange(in_size) * stride
    elif align == "center":
        centres = (np.arange(in_size) + 0.5) * stride - 0.5
    else:
        raise ValueError(f"unknown align {align!r}; choose one of ['center', 'corner']")
    pix = [np.floor(centres), np.ceil(centres)]
    pix.append(np.arange(0, np.ceil(centres[0]) + 1))
    pix.append(np.arange(np.floor(centres[-1]), out_size))
    pix_all = np.concatenate(pix).astype(int)
    return np.unique(np.clip(pix_all, 0, out_size - 1))


def pointing_ceiling(mask: np.ndarray, grid: tuple[int, int], align: str = "center") -> bool:
    """Could any map on an h x w `grid`, bilinearly upsampled to the mask's size, point inside?

    The best pointing game a CAM of that resolution can reach, whatever the model: the
    resolution limit of the metric (a lesion that covers no peak candidate cannot be hit).

    >>> m = np.zeros((64, 64), bool); m[34:38, 34:38] = True  # between the nodes of a 4x4 grid
    >>> pointing_ceiling(m, (4, 4)), pointing_ceiling(m, (8, 8))
    (False, True)
    """
    m = np.asarray(mask).astype(bool)
    if m.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {m.shape}")
    rows = peak_candidates(int(grid[0]), m.shape[0], align)
    cols = peak_candidates(int(grid[1]), m.shape[1], align)
    return bool(m[np.ix_(rows, cols)].any())


def energy_in_mask(saliency: np.ndarray, mask: np.ndarray) -> float:
    """Share of the (non-negative) map's mass inside `mask`; NaN for an all-zero map.

    Parameters
    ----------
    saliency : array [H, W], non-negative (negative values are clipped to 0)
    mask : array [H, W], non-zero = lesion

    Returns
    -------
    float in [0, 1], or NaN

    >>> s = np.array([[3.0, 1.0], [0.0, 0.0]])
    >>> energy_in_mask(s, np.array([[1, 0], [0, 0]]))
    0.75
    """
    s, m = _map_and_mask(saliency, mask)
    s = np.clip(s, 0.0, None)
    total = s.sum()
    if total <= 0:
        return float("nan")
    return float(s[m].sum() / total)


def saliency_order(saliency: np.ndarray) -> np.ndarray:
    """Flat pixel indices from most to least salient (stable on ties)."""
    s = np.asarray(saliency, dtype=np.float64).ravel()
    return np.argsort(-s, kind="stable")


def random_order(num_pixels: int, rng: np.random.Generator) -> np.ndarray:
    """A random pixel order (the baseline of deletion/insertion)."""
    return rng.permutation(num_pixels)


def perturbation_curve(
    image: np.ndarray,
    order: np.ndarray,
    predict_fn: PredictFn,
    *,
    baseline: np.ndarray,
    mode: str = "deletion",
    num_steps: int = 20,
) -> np.ndarray:
    """Scores of `predict_fn` as pixels are deleted from (or inserted into) `image` in `order`.

    Parameters
    ----------
    image : array [H, W, ...]
    order : flat pixel indices [H*W], first = changed first
    predict_fn : callable, images [N, H, W, ...] -> scores [N]
    baseline : array like `image`; deletion replaces pixels by it, insertion starts from it
    mode : "deletion" or "insertion"
    num_steps : the curve has num_steps + 1 points, step i changing round(i * H*W / num_steps)
        pixels

    Returns
    -------
    array [num_steps + 1]

    >>> img = np.ones((2, 2)); base = np.zeros((2, 2))
    >>> perturbation_curve(img, np.arange(4), lambda x: x.mean(axis=(1, 2)), baseline=base,
    ...                    num_steps=4).tolist()
    [1.0, 0.75, 0.5, 0.25, 0.0]
    """
    if mode not in CURVE_MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of {sorted(CURVE_MODES)}")
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    img = np.asarray(image)
    base = np.asarray(baseline, dtype=img.dtype)
    if base.shape != img.shape:
        raise ValueError(f"baseline shape {base.shape} != image shape {img.shape}")
    h, w = img.shape[:2]
    n = h * w
    order = np.asarray(order).ravel()
    if order.shape != (n,):
        raise ValueError(f"order must hold {n} pixel indices, got {order.shape}")
    start, end = (img, base) if mode == "deletion" else (base, img)
    flat_start = start.reshape(n, -1)
    flat_end = end.reshape(n, -1)
    counts = np.round(np.arange(num_steps + 1) * n / num_steps).astype(int)
    batch = np.empty((num_steps + 1, n, flat_start.shape[1]), dtype=img.dtype)
    for i, k in enumerate(counts):
        cur = flat_start.copy()
        idx = order[:k]
        cur[idx] = flat_end[idx]
        batch[i] = cur
    scores = np.asarray(predict_fn(batch.reshape(num_steps + 1, *img.shape)), dtype=np.float64)
    return scores.reshape(num_steps + 1)


def curve_auc(curve: Sequence[float] | np.ndarray) -> float:
    """Area under a curve sampled evenly on [0, 1] (trapezoid rule).

    >>> curve_auc([1.0, 0.5, 0.0])
    0.5
    """
    c = np.asarray(curve, dtype=np.float64)
    if c.ndim != 1 or c.size < 2:
        raise ValueError(f"curve needs >= 2 points, got shape {c.shape}")
    return float((c[:-1] + c[1:]).sum() / (2.0 * (c.size - 1)))


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    *,
    statistic: Callable[[np.ndarray], float] = np.mean,
    num_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of `statistic` over `values` (NaNs dropped).

    Parameters
    ----------
    values : 1-D array-like
    statistic : callable reducing a 1-D array to a float
    num_boot : number of resamples
    confidence : coverage of the interval, e.g. 0.95
    seed : seed of the resampling (same seed -> same interval)

    Returns
    -------
    (low, high); (nan, nan) when no finite value is given

    >>> bootstrap_ci([1.0, 1.0, 1.0])
    (1.0, 1.0)
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if v.size == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, v.size, size=(num_boot, v.size))
    stats = np.array([statistic(v[i]) for i in idx], dtype=np.float64)
    tail = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(stats, [tail, 1.0 - tail])
    return float(lo), float(hi)


def spread(by_group: dict[str, float]) -> float:
    """Largest minus smallest finite per-group value (NaN if fewer than two groups have one).

    >>> spread({"I-II": 0.9, "III-IV": 0.86, "V-VI": float("nan")})
    0.04
    """
    vals = [float(v) for v in by_group.values() if v is not None and np.isfinite(v)]
    if len(vals) < 2:
        return float("nan")
    return round(max(vals) - min(vals), 12)
