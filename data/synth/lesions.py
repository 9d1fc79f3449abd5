"""Acne, hyperpigmentation and wrinkles painted onto the facial skin, with their ground-truth masks.

Each condition changes the albedo (and, for raised or folded lesions, the height field, so the
lighting shows bumps and creases) only inside the facial skin, and draws its lesions into its own
mask channel. Appearance depends on skin tone as in real skin:
- acne redness (erythema) is scaled by `redness_visibility(L*)`: full on light skin, about a third
  on the darkest skin, where papules show instead as slightly darker, violaceous bumps;
- pigment (melasma, post-inflammatory spots) darkens skin by a fraction that shrinks on types 5-6
  (`PIGMENT_VISIBILITY`), since the background skin is already dark;
- every effect is multiplied by the per-group `contrast` knob.
"""

from __future__ import annotations

import cv2
import numpy as np

from data.synth import skin as skin_mod
from data.synth.face import Geometry, Layers, add_gauss

# Regions where lesions appear: (centre X, centre Y, half-width, half-height) in units of (a, b).
REGIONS: dict[str, tuple[float, float, float, float]] = {
    "forehead": (0.0, -0.36, 0.42, 0.09),
    "cheek_left": (-0.5, 0.3, 0.18, 0.15),
    "cheek_right": (0.5, 0.3, 0.18, 0.15),
    "chin": (0.0, 0.84, 0.2, 0.07),
}
ACNE_REGION_WEIGHTS = {"forehead": 0.25, "cheek_left": 0.3, "cheek_right": 0.3, "chin": 0.15}
PIGMENT_VISIBILITY = {1: 1.0, 2: 1.0, 3: 1.0, 4: 0.95, 5: 0.85, 6: 0.7}
_SHIFT = 4  # sub-pixel bits for cv2 drawing
_ONE = 1 << _SHIFT


def redness_visibility(lightness: float) -> float:
    """Fraction of acne redness visible on skin of CIELAB lightness L* (1 on light skin).

    >>> redness_visibility(70.0), round(redness_visibility(35.0), 2)
    (1.0, 0.33)
    """
    return float(np.clip((lightness - 25.0) / 30.0, 0.33, 1.0))


def _pt(x: float, y: float) -> tuple[int, int]:
    return int(round(x * _ONE)), int(round(y * _ONE))


def sample_points(
    rng: np.random.Generator, g: Geometry, face_skin: np.ndarray, n: int, weights: dict[str, float]
) -> np.ndarray:
    """n lesion centres [n, 2] (pixels) inside the given regions and on facial skin."""
    names = list(weights)
    p = np.array([weights[k] for k in names], dtype=np.float64)
    p /= p.sum()
    out: list[tuple[float, float]] = []
    s = g.size
    for _ in range(20):
        if len(out) >= n:
            break
        m = 2 * (n - len(out)) + 4
        which = rng.choice(len(names), size=m, p=p)
        ang = rng.uniform(0, 2 * np.pi, m)
        rad = np.sqrt(rng.uniform(0, 1, m))
        for k, t, r in zip(which, ang, rad, strict=True):
            cx, cy, hw, hh = REGIONS[names[k]]
            x = g.cx + g.a * (cx + hw * r * np.cos(t))
            y = g.cy + g.b * (cy + hh * r * np.sin(t))
            xi, yi = int(x), int(y)
            if 0 <= xi < s and 0 <= yi < s and face_skin[yi, xi] > 0.95:
                out.append((x, y))
                if len(out) >= n:
                    break
    return np.array(out[:n], dtype=np.float32).reshape(-1, 2)


def paint_acne(
    layers: Layers, g: Geometry, mask: np.ndarray, n: int, contrast: float, rng: np.random.Generator
) -> np.ndarray:
    """Papules, pustules and comedones (n in total); returns their centres."""
    s = g.size
    unit = s / 256.0
    pts = sample_points(rng, g, layers.face_skin, n, ACNE_REGION_WEIGHTS)
    red = np.zeros((s, s), np.float32)
    white = np.zeros((s, s), np.float32)
    black = np.zeros((s, s), np.float32)
    bump = np.zeros((s, s), np.float32)
    kinds = rng.choice(4, size=len(pts), p=(0.5, 0.2, 0.18, 0.12))  # papule, pustule, black, white
    for (x, y), kind in zip(pts, kinds, strict=True):
        c = _pt(x, y)
        if kind <= 1:
            r = rng.uniform(2.3, 4.0) * unit
            cv2.circle(red, c, int(r * _ONE), 1.0, -1, cv2.LINE_AA, _SHIFT)
            cv2.circle(bump, c, int(r * _ONE), r * 0.5, -1, cv2.LINE_AA, _SHIFT)
            if kind == 1:
                cv2.circle(white, c, int(r * 0.45 * _ONE), 1.0, -1, cv2.LINE_AA, _SHIFT)
        else:
            r = rng.uniform(1.1, 1.7) * unit
            cv2.circle(
                black if kind == 2 else white, c, int(r * _ONE), 1.0, -1, cv2.LINE_AA, _SHIFT
            )
            cv2.circle(bump, c, int(r * _ONE), r * 0.3, -1, cv2.LINE_AA, _SHIFT)
        cv2.circle(mask, c, int((r + 1.5 * unit) * _ONE), 255, -1, cv2.LINE_8, _SHIFT)
    sig = 0.9 * unit
    red = cv2.GaussianBlur(red, (0, 0), sig * 1.3) * layers.face_skin
    white = cv2.GaussianBlur(white, (0, 0), sig * 0.7) * layers.face_skin
    black = cv2.GaussianBlur(black, (0, 0), sig * 0.7) * layers.face_skin
    layers.height += cv2.GaussianBlur(bump, (0, 0), sig * 1.5)
    vis = redness_visibility(g.skin_lab[0])
    k_red = contrast * vis * np.float32([0.0, 0.42, 0.36])
    k_dark = contrast * (1.0 - vis) * 0.35
    alb = layers.albedo
    alb *= 1.0 - red[..., None] * (k_red + k_dark)
    pus = np.float32([0.97, 0.93, 0.74])
    wa = (0.85 * contrast * white)[..., None]
    alb[:] = alb * (1 - wa) + pus * wa
    ba = (0.75 * contrast * black)[..., None]
    alb[:] = alb * (1 - ba) + np.float32([0.1, 0.08, 0.07]) * ba
    return pts


def paint_hyperpigmentation(
    layers: Layers,
    g: Geometry,
    mask: np.ndarray,
    *,
    fitzpatrick: int,
    contrast: float,
    acne_points: np.ndarray,
    rng: np.random.Generator,
) -> None:
    """Melasma-like patches and/or post-inflammatory spots (PIH co-occurs with acne)."""
    s = g.size
    unit = s / 256.0
    has_acne = len(acne_points) > 0
    melasma = rng.random() < (0.3 if has_acne else 0.7)
    spots = has_acne or not melasma
    pig = np.zeros((s, s), np.float32)
    if melasma:
        region = np.zeros((s, s), np.float32)
        for side in (-1, 1):
            cx = g.cx + side * g.a * rng.uniform(0.42, 0.55)
            cy = g.cy + g.b * rng.uniform(0.15, 0.3)
            add_gauss(region, cx, cy, 0.13 * g.a, 0.1 * g.b, 1.0)
        if rng.random() < 0.5:
            add_gauss(
                region,
                g.cx + rng.uniform(-0.2, 0.2) * g.a,
                g.cy - 0.4 * g.b,
                0.18 * g.a,
                0.06 * g.b,
                0.9,
            )
        if rng.random() < 0.3:
            add_gauss(region, g.cx, g.mouth_y - 0.07 * g.b, 0.2 * g.a, 0.03 * g.b, 0.8)
        blotch = skin_mod.window(skin_mod.noise_bank(s)["mid"], s, rng)
        m = np.clip((region - 0.55 + 0.25 * blotch) / 0.15, 0, 1) * rng.uniform(0.75, 1.0)
        pig = np.maximum(pig, m * layers.face_skin)
        mask[(pig > 0.3)] = 255
    if spots:
        n = int(rng.integers(5, 13))
        if has_acne:
            idx = rng.integers(0, len(acne_points), size=n)
            pts = acne_points[idx] + rng.normal(0, 6 * unit, size=(n, 2)).astype(np.float32)
        else:
            pts = sample_points(rng, g, layers.face_skin, n, ACNE_REGION_WEIGHTS)
        layer = np.zeros((s, s), np.float32)
        for x, y in pts:
            xi, yi = int(x), int(y)
            if not (0 <= xi < s and 0 <= yi < s and layers.face_skin[yi, xi] > 0.95):
                continue
            r = rng.uniform(2.5, 5.0) * unit
            cv2.circle(
                layer, _pt(x, y), int(r * _ONE), rng.uniform(0.75, 1.0), -1, cv2.LINE_AA, _SHIFT
            )
            cv2.circle(mask, _pt(x, y), int((r + 1.0 * unit) * _ONE), 255, -1, cv2.LINE_8, _SHIFT)
        pig = np.maximum(pig, cv2.GaussianBlur(layer, (0, 0), 1.2 * unit) * layers.face_skin)
    if not mask.any():  # every positive image shows at least one spot
        x, y = sample_points(rng, g, layers.face_skin, 1, {"cheek_left": 1, "cheek_right": 1})[0]
        r = 4.0 * unit
        tmp = np.zeros((s, s), np.float32)
        cv2.circle(tmp, _pt(x, y), int(r * _ONE), 1.0, -1, cv2.LINE_AA, _SHIFT)
        cv2.circle(mask, _pt(x, y), int((r + unit) * _ONE), 255, -1, cv2.LINE_8, _SHIFT)
        pig = np.maximum(pig, cv2.GaussianBlur(tmp, (0, 0), 1.2 * unit))
    k = contrast * PIGMENT_VISIBILITY[fitzpatrick] * np.float32([0.27, 0.36, 0.47])
    layers.albedo *= 1.0 - pig[..., None] * k


def paint_wrinkles(
    layers: Layers,
    g: Geometry,
    mask: np.ndarray,
    *,
    age: int,
    contrast: float,
    rng: np.random.Generator,
) -> None:
    """Forehead lines, crow's feet and nasolabial folds; deeper and more of them with age."""
    s = g.size
    unit = s / 256.0
    sev = float(np.clip((age - 28) / 35.0, 0.35, 1.0))
    crease = np.zeros((s, s), np.float32)
    lines: list[tuple[np.ndarray, int]] = []
    # Forehead: 2-5 gently waving horizontal lines between brows and hairline.
    n_fore = 2 + int(round(3 * sev * rng.uniform(0.6, 1.0)))
    top = g.cy + g.b * max(g.hairline + 0.12, -0.5)
    bottom = g.brow_y - 0.1 * g.b
    for k in range(n_fore):
        y0 = bottom + (top - bottom) * (k + 0.5) / n_fore + rng.normal(0, 0.01 * g.b)
        half = g.a * rng.uniform(0.25, 0.42)
        xs = np.linspace(g.cx - half, g.cx + half, 14) + rng.normal(0, 0.02 * g.a)
        ys = y0 + 0.015 * g.b * np.sin((xs - g.cx) / g.a * rng.uniform(4, 7) + rng.uniform(0, 6))
        ys = ys + 0.03 * g.b * ((xs - g.cx) / g.a) ** 2 * -1
        lines.append((np.stack([xs, ys], 1), 1))
    # Crow's feet: 3 short lines fanning out from each outer eye corner.
    for side in (-1, 1):
        ox = g.cx + side * (g.eye_dx + g.eye_w * 1.15)
        for ang in (-0.45, 0.0, 0.45):
            ang = ang + rng.normal(0, 0.08)
            length = g.a * rng.uniform(0.1, 0.16) * (0.7 + 0.5 * sev)
            t = np.linspace(0, 1, 6)
            xs = ox + side * length * t * np.cos(ang)
            ys = g.eye_y + length * t * np.sin(ang) + 0.02 * g.a * t**2
            lines.append((np.stack([xs, ys], 1), 1))
        # Nasolabial fold: from the nose wing to beside the mouth corner, bowing outwards.
        t = np.linspace(0, 1, 12)
        x0, y0 = g.cx + side * g.nose_w * 1.05, g.nose_y - 0.02 * g.b
        x1, y1 = g.cx + side * g.mouth_w * 1.18, g.mouth_y + 0.08 * g.b
        xs = x0 + (x1 - x0) * t + side * 0.06 * g.a * np.sin(np.pi * t)
        ys = y0 + (y1 - y0) * t
        lines.append((np.stack([xs, ys], 1), 3))
    width = max(1, int(round(unit)))
    fold = np.zeros((s, s), np.float32)
    for pts, thick in lines:
        p = np.round(pts * _ONE).astype(np.int32).reshape(-1, 1, 2)
        target = fold if thick >= 3 else crease
        cv2.polylines(target, [p], False, 1.0, thick * width, cv2.LINE_AA, _SHIFT)
        cv2.polylines(mask, [p], False, 255, thick * width + 3 * width, cv2.LINE_8, _SHIFT)
    crease = cv2.GaussianBlur(crease, (0, 0), 0.6 * unit) * layers.face_skin
    fold = cv2.GaussianBlur(fold, (0, 0), 1.8 * unit) * layers.face_skin
    depth = contrast * (0.14 + 0.16 * sev)
    layers.albedo *= (1.0 - depth * (crease + 0.6 * fold))[..., None]
    layers.height -= (crease * 2.0 + fold * 5.0) * (unit * contrast * (0.5 + sev))
    mask[layers.face_skin < 0.5] = 0
