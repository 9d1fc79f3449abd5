"""A frontal face in a canonical frame: geometry, albedo (skin, hair, eyes, lips) and shading.

Everything is drawn at the output size with the head centred and upright; `camera` later moves,
scales and rotates the result. Proportions follow real faces: the eyes sit at mid-height of the
head, the nose tip a third of the way to the chin, the mouth two thirds. Shading comes from a
height field (head ellipsoid plus nose, brow ridge, eye sockets, cheekbones, lips, chin) lit by a
directional light (Lambert + a little specular), so light from any side stays consistent.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from data.synth import skin as skin_mod

HAIR_COLOURS_LIGHT = (
    (0.78, 0.64, 0.42),
    (0.45, 0.30, 0.18),
    (0.55, 0.27, 0.13),
    (0.10, 0.07, 0.05),
)
HAIR_COLOURS_DARK = ((0.09, 0.07, 0.06), (0.16, 0.11, 0.08), (0.05, 0.05, 0.05))
IRIS_LIGHT = ((0.30, 0.45, 0.62), (0.35, 0.48, 0.30), (0.40, 0.26, 0.14), (0.25, 0.16, 0.09))
IRIS_DARK = ((0.22, 0.13, 0.07), (0.14, 0.09, 0.05))
CLOTHES = (
    (0.15, 0.2, 0.35),
    (0.55, 0.1, 0.12),
    (0.85, 0.85, 0.82),
    (0.2, 0.2, 0.22),
    (0.3, 0.45, 0.3),
    (0.6, 0.5, 0.35),
    (0.4, 0.3, 0.5),
)


@dataclass(frozen=True)
class Geometry:
    """Face layout in canonical pixels: head centre (cx, cy), half-width a, half-height b."""

    size: int
    cx: float
    cy: float
    a: float
    b: float
    jaw: float  # how much the jaw narrows toward the chin
    eye_y: float
    eye_dx: float  # distance of each eye centre from the midline
    eye_w: float  # half-width of an eye
    eye_up: float  # height of the upper lid arc
    eye_lo: float  # depth of the lower lid arc
    brow_y: float
    brow_thick: float
    nose_y: float  # nose tip
    nose_w: float  # half-width of the nose wings
    mouth_y: float
    mouth_w: float  # half-width of the mouth
    lip_up: float
    lip_lo: float
    hairline: float  # hairline height at the midline, in units of b from the centre
    hair_style: int  # 0 short, 1 long, 2 shaved
    skin_lab: tuple[float, float, float]
    skin_rgb: tuple[float, float, float]
    hair_rgb: tuple[float, float, float]
    iris_rgb: tuple[float, float, float]
    clothes_rgb: tuple[float, float, float]
    gaze: tuple[float, float]


def _rgb(values) -> tuple[float, float, float]:
    return tuple(float(v) for v in values)  # type: ignore[return-value]


def sample_geometry(rng: np.random.Generator, size: int, fitzpatrick: int, age: int) -> Geometry:
    """Draw one person's face shape, feature placement and colours."""
    s = float(size)
    a = s * 0.215 * rng.uniform(0.93, 1.07)
    b = a * rng.uniform(1.28, 1.40)
    cx, cy = s / 2, s * 0.52
    eye_w = a * rng.uniform(0.15, 0.18)
    eye_y = cy + b * rng.uniform(-0.05, 0.03)
    lab = skin_mod.sample_skin_lab(fitzpatrick, rng)
    light = fitzpatrick <= 2
    hair_pool = HAIR_COLOURS_LIGHT if light else HAIR_COLOURS_DARK
    hair = np.array(hair_pool[rng.integers(len(hair_pool))], dtype=np.float32)
    if age > 50 and rng.random() < (age - 50) / 35:
        grey = rng.uniform(0.45, 0.75)
        hair = hair * (1 - grey) + np.float32(0.62) * grey
    hair = np.clip(hair * rng.uniform(0.85, 1.15), 0, 1)
    iris_pool = IRIS_LIGHT if light else IRIS_DARK
    return Geometry(
        size=size,
        cx=cx,
        cy=cy,
        a=a,
        b=b,
        jaw=rng.uniform(0.08, 0.3),
        eye_y=eye_y,
        eye_dx=a * rng.uniform(0.37, 0.42),
        eye_w=eye_w,
        eye_up=eye_w * rng.uniform(0.40, 0.52),
        eye_lo=eye_w * rng.uniform(0.28, 0.36),
        brow_y=eye_y - eye_w * rng.uniform(1.0, 1.3),
        brow_thick=a * rng.uniform(0.035, 0.06),
        nose_y=cy + b * rng.uniform(0.30, 0.37),
        nose_w=a * rng.uniform(0.16, 0.22),
        mouth_y=cy + b * rng.uniform(0.57, 0.63),
        mouth_w=a * rng.uniform(0.28, 0.36),
        lip_up=b * rng.uniform(0.035, 0.05),
        lip_lo=b * rng.uniform(0.05, 0.075),
        hairline=rng.uniform(-0.66, -0.54),
        hair_style=int(rng.choice(3, p=(0.5, 0.42, 0.08))),
        skin_lab=_rgb(lab),
        skin_rgb=_rgb(skin_mod.lab_to_rgb(lab)),
        hair_rgb=_rgb(hair),
        iris_rgb=_rgb(iris_pool[rng.integers(len(iris_pool))]),
        clothes_rgb=_rgb(CLOTHES[rng.integers(len(CLOTHES))]),
        gaze=(rng.uniform(-0.12, 0.12), rng.uniform(-0.05, 0.08)),
    )


@lru_cache(maxsize=4)
def grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinate grids (x, y), float32."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    return xs, ys


def _soft(mask: np.ndarray, sigma: float = 0.8) -> np.ndarray:
    return cv2.GaussianBlur(mask.astype(np.float32), (0, 0), sigma)


def face_width(yn: np.ndarray, jaw: float) -> np.ndarray:
    """Half-width of the face outline (units of a) at normalised height yn in [-1, 1]."""
    y = np.clip(np.abs(yn), 0.0, 1.0)
    top = (1.0 - y**2.2) ** (1 / 2.2)
    bottom = (1.0 - y**2.2) ** 0.5 * (1.0 - jaw * y**1.5)
    return np.where(yn < 0, top, bottom)


def add_gauss(
    arr: np.ndarray, x0: float, y0: float, sx: float, sy: float, amp, *, weight=None
) -> None:
    """In place: arr += amp * exp(-((x-x0)^2/2sx^2 + (y-y0)^2/2sy^2)) over a 3-sigma window."""
    h, w = arr.shape[:2]
    x1, x2 = max(int(x0 - 3 * sx), 0), min(int(x0 + 3 * sx) + 2, w)
    y1, y2 = max(int(y0 - 3 * sy), 0), min(int(y0 + 3 * sy) + 2, h)
    if x1 >= x2 or y1 >= y2:
        return
    gx = np.exp(-0.5 * ((np.arange(x1, x2, dtype=np.float32) - x0) / sx) ** 2)
    gy = np.exp(-0.5 * ((np.arange(y1, y2, dtype=np.float32) - y0) / sy) ** 2)
    g = gy[:, None] * gx[None, :]
    if weight is not None:
        g = g * weight[y1:y2, x1:x2]
    if arr.ndim == 3:
        arr[y1:y2, x1:x2] += g[..., None] * np.asarray(amp, dtype=np.float32)
    else:
        arr[y1:y2, x1:x2] += g * amp


@dataclass
class Layers:
    """Canonical-frame layers of one portrait before lighting."""

    albedo: np.ndarray  # float32 [S,S,3] reflectance in sRGB units
    alpha: np.ndarray  # float32 [S,S] foreground coverage (person vs background)
    height: np.ndarray  # float32 [S,S] height field in pixels, for shading
    skin: np.ndarray  # float32 [S,S] skin coverage (face, ears, neck)
    face_skin: np.ndarray  # float32 [S,S] facial skin where lesions may appear
    hair: np.ndarray  # float32 [S,S] hair coverage
    gloss: np.ndarray  # float32 [S,S] specular strength


def build_layers(g: Geometry, rng: np.random.Generator) -> Layers:
    """Body, neck, ears, face oval, hair and textured skin; features come later."""
    s = g.size
    axis = np.arange(s, dtype=np.float32)
    xs, ys = axis[None, :], axis[:, None]  # the canonical frame is upright: broadcast rows/cols
    bank = skin_mod.noise_bank(s)
    xn = (xs - g.cx) / g.a
    yn = (ys - g.cy) / g.b
    width = face_width(yn, g.jaw).astype(np.float32)
    face, neck, body = _silhouette(g, xn, yn, ys, width)
    ears = _ears(g, xs, ys)
    hair_front, hair_back = _hair_masks(g, xn, yn, width, bank, rng)
    tex = _textures(g, bank, rng)
    albedo, alpha = _composite(
        s,
        [
            (body, tex.clothes),
            (hair_back, tex.hair),
            (neck * (1 - body), tex.skin * 0.97),
            (ears, tex.skin * 0.98),
            (face, tex.skin),
            (hair_front, tex.hair),
        ],
    )
    skin = np.clip(np.maximum(np.maximum(face, ears), neck * (1 - body)) - hair_front, 0, 1)
    skin = skin * (1 - hair_back * (1 - np.maximum(face, neck)))
    face_skin = np.clip(face - hair_front, 0, 1)
    _blush_cheeks(albedo, g, face)
    height = _height_field(g, xn, yn, width, face, neck, body)
    hair_all = np.maximum(hair_front, hair_back * (1 - np.maximum(face, neck)))
    height += hair_all * (8.0 + 2.0 * tex.strands)
    gloss = face_skin * rng.uniform(0.02, 0.07)
    return Layers(albedo, alpha, height, skin, face_skin, hair_all, gloss)


def _silhouette(
    g: Geometry, xn: np.ndarray, yn: np.ndarray, ys: np.ndarray, width: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Soft coverage of the face oval, the neck and the body below the shoulders."""
    face = _soft((np.abs(xn) < width) & (np.abs(yn) < 1.0))
    neck_w = 0.52 + 0.08 * np.clip((yn - 0.6) / 1.0, 0, 1)
    neck = _soft((np.abs(xn) < neck_w) & (yn > 0.3))
    shoulder = g.cy + 1.12 * g.b + 0.22 * g.b * xn**2
    neckline = (np.abs(xn) < 0.5 - 0.5 * (ys - shoulder) / g.b) & (ys < shoulder + 0.35 * g.b)
    body = _soft((ys > shoulder) & ~neckline, 1.2)
    return face, neck, body


def _ears(g: Geometry, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Soft coverage of both ears (none under long hair)."""
    s = g.size
    ear_x = g.cx + g.a * (float(face_width(np.float32(0.08), g.jaw)) - 0.02)
    ears = np.zeros((s, s), np.float32)
    if g.hair_style != 1:
        for side in (-1, 1):
            ex = g.cx + side * (ear_x - g.cx)
            e = (
                ((xs - ex) / (0.13 * g.a)) ** 2 + ((ys - (g.cy + 0.1 * g.b)) / (0.24 * g.b)) ** 2
            ) < 1
            ears = np.maximum(ears, _soft(e))
    return ears


def _hair_masks(
    g: Geometry,
    xn: np.ndarray,
    yn: np.ndarray,
    width: np.ndarray,
    bank: dict[str, np.ndarray],
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Soft coverage of the hair in front of the face and of long hair behind the head."""
    s = g.size
    hairline = g.hairline + 0.38 * xn**2 + 0.04 * skin_mod.window(bank["mid"], s, rng)
    cap = ((xn / 1.09) ** 2 + ((yn + 0.1) / 1.0) ** 2) < 1
    if g.hair_style == 2:
        hair_front = _soft(cap & (yn < g.hairline - 0.12 + 0.3 * xn**2) & (yn < -0.35), 1.5) * 0.35
    else:
        side_limit = 0.05 if g.hair_style == 0 else 0.25
        hair_front = _soft(
            cap & ((yn < hairline) | ((np.abs(xn) > width) & (yn < side_limit))), 1.0
        )
    hair_back = np.zeros((s, s), np.float32)
    if g.hair_style == 1:
        length = rng.uniform(1.1, 1.6)
        edge = 0.05 * skin_mod.window(bank["mid"], s, rng)
        back = (np.abs(xn) < 1.14 + 0.12 * np.clip(yn, 0, 2) + edge) & (yn > -0.6)
        back &= yn < length - 0.35 * xn**2 + edge
        hair_back = _soft(back | cap, 1.5)
    return hair_front, hair_back


@dataclass
class _Textures:
    """Textured colours of skin, hair and clothes, and the hair-strand pattern."""

    skin: np.ndarray  # float32 [S,S,3]
    hair: np.ndarray  # float32 [S,S,3]
    strands: np.ndarray  # float32 [S,S]
    clothes: np.ndarray  # float32 [S,S,3]


def _textures(g: Geometry, bank: dict[str, np.ndarray], rng: np.random.Generator) -> _Textures:
    """Skin tone variation and pores, hair strands and a clothes pattern from the noise bank."""
    s = g.size
    skin_rgb = np.array(g.skin_rgb, np.float32)
    hair_rgb = np.array(g.hair_rgb, np.float32)
    tone = (
        1.0
        + 0.035 * skin_mod.window(bank["low"], s, rng)
        + 0.02 * skin_mod.window(bank["mid"], s, rng)
    )
    pores = skin_mod.window(bank["pore"], s, rng)
    skin_tex = skin_rgb[None, None, :] * (tone * (1.0 - 0.07 * pores))[..., None]
    strands = 1.0 + 0.18 * skin_mod.window(bank["strand"], s, rng)
    hair_tex = hair_rgb[None, None, :] * strands[..., None]
    clothes = (
        np.array(g.clothes_rgb, np.float32)
        * (1 + 0.05 * skin_mod.window(bank["mid"], s, rng))[..., None]
    )
    return _Textures(skin_tex, hair_tex, strands, clothes)


def _composite(
    size: int, layers: list[tuple[np.ndarray, np.ndarray]]
) -> tuple[np.ndarray, np.ndarray]:
    """Paint (coverage, colour) layers back to front: the albedo and the foreground coverage."""
    albedo = np.zeros((size, size, 3), np.float32)
    alpha = np.zeros((size, size), np.float32)
    for layer_alpha, colour in layers:
        layer_alpha = np.ascontiguousarray(layer_alpha, dtype=np.float32)
        colour = np.ascontiguousarray(np.broadcast_to(colour, albedo.shape), dtype=np.float32)
        albedo[:] = cv2.blendLinear(colour, albedo, layer_alpha, 1.0 - layer_alpha)
        np.maximum(alpha, layer_alpha, out=alpha)
    return albedo, alpha


def _blush_cheeks(albedo: np.ndarray, g: Geometry, face: np.ndarray) -> None:
    """In place: cheeks a little redder than the rest of the face."""
    skin_rgb = np.array(g.skin_rgb, np.float32)
    for side in (-1, 1):
        add_gauss(
            albedo,
            g.cx + side * 0.5 * g.a,
            g.cy + 0.28 * g.b,
            0.18 * g.a,
            0.16 * g.b,
            skin_rgb * np.float32([0.0, -0.05, -0.04]),
            weight=face,
        )


def _height_field(g, xn, yn, width, face, neck, body) -> np.ndarray:
    a, b = g.a, g.b
    head = a * 0.95 * np.sqrt(np.clip(1.0 - (xn / np.maximum(width, 1e-3)) ** 2, 0, 1))
    head *= np.sqrt(np.clip(1.0 - 0.35 * yn**2, 0, 1))
    neck_h = 0.5 * a * np.sqrt(np.clip(1.0 - (xn / 0.58) ** 2, 0, 1)) - 0.25 * a
    body_h = 0.6 * a * np.sqrt(np.clip(1.0 - (xn / 2.6) ** 2, 0, 1)) - 0.3 * a
    h = face * head + (1 - face) * (neck * neck_h + (1 - neck) * body * body_h)
    cx = g.cx
    # Nose: a ridge from between the eyes to the tip, a ball at the tip, two wings.
    steps = 8
    for k in range(steps):
        t = (k + 1) / steps
        y = g.eye_y + t * (g.nose_y - g.eye_y)
        add_gauss(h, cx, y, 0.075 * a + 0.04 * a * t, 0.07 * b, 0.05 * a * (0.5 + t))
    add_gauss(h, cx, g.nose_y, 0.1 * a, 0.07 * b, 0.16 * a)
    for side in (-1, 1):
        add_gauss(h, cx + side * g.nose_w * 0.75, g.nose_y + 0.03 * b, 0.07 * a, 0.05 * b, 0.07 * a)
        # Eye sockets, cheekbones and brow ridge.
        add_gauss(h, cx + side * g.eye_dx, g.eye_y, 0.18 * a, 0.1 * b, -0.13 * a)
        add_gauss(h, cx + side * 0.5 * a, g.cy + 0.22 * b, 0.2 * a, 0.12 * b, 0.06 * a)
        add_gauss(h, cx + side * g.eye_dx, g.brow_y, 0.22 * a, 0.05 * b, 0.04 * a)
    add_gauss(h, cx, g.mouth_y - g.lip_up * 0.5, g.mouth_w * 0.6, g.lip_up * 0.8, 0.04 * a)
    add_gauss(h, cx, g.mouth_y + g.lip_lo * 0.5, g.mouth_w * 0.55, g.lip_lo * 0.7, 0.05 * a)
    add_gauss(h, cx, g.mouth_y + 0.22 * b, 0.3 * a, 0.06 * b, -0.03 * a)
    add_gauss(h, cx, g.cy + 0.88 * b, 0.22 * a, 0.08 * b, 0.05 * a)
    return h


def paint_features(layers: Layers, g: Geometry, rng: np.random.Generator) -> None:
    """Eyes, brows, nostrils and lips, painted into the albedo in place."""
    albedo = layers.albedo
    s = g.size
    xs, ys = grid(s)
    skin_rgb = np.array(g.skin_rgb, np.float32)
    lum = float(skin_rgb.mean())
    hair_rgb = np.array(g.hair_rgb, np.float32)
    dark_brow = np.minimum(hair_rgb, skin_rgb * 0.45) if lum > 0.3 else skin_rgb * 0.35
    for side in (-1, 1):
        ex = g.cx + side * g.eye_dx
        _paint_eye(albedo, layers.gloss, g, ex, side, rng, xs, ys)
        _paint_brow(albedo, g, ex, side, dark_brow, xs, ys)
        # Nostril.
        nx, ny = g.cx + side * g.nose_w * 0.45, g.nose_y + 0.05 * g.b
        x1, x2, y1, y2 = _box(nx, ny, g.nose_w * 0.5, g.b * 0.05, s)
        d = ((xs[y1:y2, x1:x2] - nx) / (g.nose_w * 0.28)) ** 2 + (
            (ys[y1:y2, x1:x2] - ny) / (g.b * 0.025)
        ) ** 2
        m = _soft(d < 1, 0.7)[..., None]
        albedo[y1:y2, x1:x2] = albedo[y1:y2, x1:x2] * (1 - 0.65 * m)
    _paint_lips(albedo, layers.gloss, g, xs, ys)


def _box(x0, y0, rx, ry, s):
    return (
        max(int(x0 - rx) - 2, 0),
        min(int(x0 + rx) + 3, s),
        max(int(y0 - ry) - 2, 0),
        min(int(y0 + ry) + 3, s),
    )


def _paint_eye(albedo, gloss, g, ex, side, rng, xs, ys) -> None:
    s = g.size
    w = g.eye_w
    x1, x2, y1, y2 = _box(ex, g.eye_y, w * 1.3, g.eye_up * 2.0, s)
    x, y = xs[y1:y2, x1:x2], ys[y1:y2, x1:x2]
    # Outer corner slightly higher (canthal tilt); the inner corner is rounder.
    dx = (x - ex) / w
    tilt = -0.08 * w * dx * side
    yc = g.eye_y + tilt
    t = np.clip(1 - dx**2, 0, 1)
    top = yc - g.eye_up * t**0.8
    bottom = yc + g.eye_lo * t**0.9
    almond = (np.abs(dx) < 1) & (y > top) & (y < bottom)
    almond_f = _soft(almond, 0.6)
    patch = albedo[y1:y2, x1:x2]
    sclera = np.array([0.86, 0.83, 0.80], np.float32) * (1 - 0.12 * np.abs(dx))[..., None]
    ir = w * 0.46
    icx = ex + g.gaze[0] * w
    icy = g.eye_y + g.gaze[1] * w + 0.05 * w
    r = np.sqrt((x - icx) ** 2 + (y - icy) ** 2)
    iris_col = np.array(g.iris_rgb, np.float32)
    iris = iris_col * (1.0 - 0.45 * np.clip((r / ir - 0.75) / 0.25, 0, 1))[..., None]
    iris = np.where((r < ir * 0.42)[..., None], np.float32(0.03), iris)
    iris_a = _soft(r < ir, 0.6)
    eye_col = sclera * (1 - iris_a[..., None]) + iris * iris_a[..., None]
    # Shadow of the upper lid on the eyeball.
    eye_col = (
        eye_col * (1 - 0.35 * np.clip(1 - (y - top) / (0.45 * g.eye_up + 1e-3), 0, 1))[..., None]
    )
    patch[:] = patch * (1 - almond_f[..., None]) + eye_col * almond_f[..., None]
    # Lash line along the upper lid, thin lower lid line, lid crease.
    lash = np.exp(-0.5 * ((y - top + 0.6) / (0.09 * g.eye_up + 0.5)) ** 2) * (np.abs(dx) < 1.05)
    lash = lash * np.clip(1.2 - np.abs(dx), 0, 1)
    patch[:] = patch * (1 - 0.85 * lash[..., None]) + 0.04 * lash[..., None]
    low = np.exp(-0.5 * ((y - bottom) / 0.7) ** 2) * (np.abs(dx) < 0.95)
    patch[:] = patch * (1 - 0.25 * low[..., None])
    crease_y = yc - g.eye_up * 1.45 * t**0.6
    crease = np.exp(-0.5 * ((y - crease_y) / 0.9) ** 2) * (np.abs(dx) < 0.9)
    patch[:] = patch * (1 - 0.18 * crease[..., None])
    # Catch-light.
    hx, hy = icx + 0.35 * ir * (-1 if side < 0 else -1), icy - 0.35 * ir
    spot = np.exp(-0.5 * (((x - hx) ** 2 + (y - hy) ** 2) / (0.12 * ir + 0.4) ** 2))
    patch[:] = patch + 0.7 * (spot * almond_f)[..., None]


def _paint_brow(albedo, g, ex, side, colour, xs, ys) -> None:
    s = g.size
    half = g.eye_w * 1.35
    bx = ex + side * 0.1 * g.eye_w
    x1, x2, y1, y2 = _box(bx, g.brow_y, half * 1.1, g.brow_thick * 3, s)
    x, y = xs[y1:y2, x1:x2], ys[y1:y2, x1:x2]
    u = (x - bx) / half * side  # -1 inner end, +1 outer end
    arc = g.brow_y - g.brow_thick * 1.2 * (1 - (u - 0.15) ** 2)
    thick = g.brow_thick * (1.0 - 0.45 * np.clip(u, 0, 1) + 0.1 * np.clip(-u, 0, 1))
    inside = (np.abs(u) < 1) & (np.abs(y - arc) < thick / 2)
    m = _soft(inside, 0.9) * 0.85
    patch = albedo[y1:y2, x1:x2]
    patch[:] = patch * (1 - m[..., None]) + colour * m[..., None]


def _paint_lips(albedo, gloss, g, xs, ys) -> None:
    s = g.size
    x1, x2, y1, y2 = _box(g.cx, g.mouth_y, g.mouth_w * 1.1, g.lip_lo * 2, s)
    x, y = xs[y1:y2, x1:x2], ys[y1:y2, x1:x2]
    dx = (x - g.cx) / g.mouth_w
    t = np.clip(1 - dx**2, 0, 1)
    bow = (
        1.0 - 0.3 * np.exp(-((dx / 0.1) ** 2)) + 0.1 * np.exp(-(((np.abs(dx) - 0.22) / 0.12) ** 2))
    )
    line = g.mouth_y - 0.08 * g.lip_up * (1 - t)  # corners turn very slightly up
    top = line - g.lip_up * t**0.5 * bow
    bottom = line + g.lip_lo * t**0.7
    lips = _soft((np.abs(dx) < 1) & (y > top) & (y < bottom), 0.8)
    lab = np.array(g.skin_lab, np.float32)
    light = lab[0] > 55
    lip_lab = lab + (np.array([-9.0, 16.0, 1.0]) if light else np.array([-5.0, 9.0, -3.0]))
    lip_rgb = skin_mod.lab_to_rgb(lip_lab.astype(np.float32))
    upper_dark = np.where(y < line, 0.88, 1.0).astype(np.float32)
    patch = albedo[y1:y2, x1:x2]
    col = lip_rgb * upper_dark[..., None]
    patch[:] = patch * (1 - lips[..., None]) + col * lips[..., None]
    mouth = np.exp(-0.5 * ((y - line) / 0.8) ** 2) * np.clip(1.05 - np.abs(dx), 0, 1)
    patch[:] = patch * (1 - 0.6 * mouth[..., None])
    gloss[y1:y2, x1:x2] += 0.12 * lips * (y > line)


def light_portrait(
    layers: Layers, g: Geometry, light_dir: tuple[float, float, float], ambient: float
) -> np.ndarray:
    """Lambert + specular shading of the albedo; facial skin keeps a median brightness of 1."""
    h = cv2.GaussianBlur(layers.height, (0, 0), 1.5)
    gy, gx = np.gradient(h)
    norm = np.sqrt(gx * gx + gy * gy + 1.0)
    lx, ly, lz = light_dir
    ln = float(np.sqrt(lx * lx + ly * ly + lz * lz))
    lx, ly, lz = float(lx), float(ly), float(lz)
    ndotl = (-gx * lx - gy * ly + lz) / (norm * ln)
    diffuse = np.clip(ndotl, 0.0, 1.0)
    shade = ambient + (1 - ambient) * diffuse
    # Ambient occlusion: under the jaw, under the hairline and around the nose.
    ao = np.ones_like(shade)
    add_gauss(ao, g.cx, g.cy + 1.02 * g.b, 0.5 * g.a, 0.12 * g.b, -0.35)
    add_gauss(ao, g.cx, g.nose_y + 0.08 * g.b, 0.22 * g.a, 0.04 * g.b, -0.15)
    shade = shade * ao
    # Normalise on the central face (cheeks, forehead, nose): where skin tone is measured, so
    # the skin there shows its albedo colour on average whatever the light direction.
    s = g.size
    x0, x1 = int(g.cx - 0.6 * g.a), int(g.cx + 0.6 * g.a) + 1
    y0, y1 = int(g.cy - 0.5 * g.b), int(g.cy + 0.45 * g.b) + 1
    region = layers.face_skin[max(y0, 0) : y1, max(x0, 0) : x1] > 0.9
    vals = shade[max(y0, 0) : y1, max(x0, 0) : x1][region]
    ref = float(np.median(vals)) if vals.size else 1.0
    del s
    shade = shade / max(ref, 1e-3)
    refl = 2 * ndotl * (1 / norm) - lz / ln  # reflected light toward the viewer (0, 0, 1)
    spec = layers.gloss * np.clip(refl, 0, 1) ** 12
    return layers.albedo * shade[..., None] + spec[..., None]
