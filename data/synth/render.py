"""One synthetic sample end to end: subject -> face -> lesions -> light -> photo (+ masks)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from data.synth import camera, conditions, face, lesions


@dataclass(frozen=True)
class Sample:
    """One rendered photo, its lesion masks and its ground truth."""

    rgb: np.ndarray  # uint8 [S, S, 3]
    masks: np.ndarray  # uint8 [S, S, 3], channel i = CONDITIONS[i], 0/255
    subject: conditions.Subject
    fitzpatrick: int
    ita: float  # ITA of the skin albedo (what the skin looks like under neutral light)
    skin_lab: tuple[float, float, float]
    face_box: tuple[float, float, float, float]  # x, y, w, h of the face oval in the photo
    jpeg_quality: int


def render_sample(
    rng: np.random.Generator,
    *,
    size: int,
    fitzpatrick: int,
    subject: conditions.Subject,
    contrast: float,
) -> Sample:
    """Draw one photo of `subject` with skin type `fitzpatrick` at `size` x `size`."""
    g = face.sample_geometry(rng, size, fitzpatrick, subject.age)
    layers = face.build_layers(g, rng)
    chans = [np.zeros((size, size), np.uint8) for _ in range(3)]
    acne_pts = np.zeros((0, 2), np.float32)
    if subject.acne:
        acne_pts = lesions.paint_acne(layers, g, chans[0], subject.acne_lesions, contrast, rng)
    if subject.hyperpigmentation:
        lesions.paint_hyperpigmentation(
            layers,
            g,
            chans[1],
            fitzpatrick=fitzpatrick,
            contrast=contrast,
            acne_points=acne_pts,
            rng=rng,
        )
    if subject.wrinkles:
        lesions.paint_wrinkles(layers, g, chans[2], age=subject.age, contrast=contrast, rng=rng)
    face.paint_features(layers, g, rng)
    masks = np.ascontiguousarray(np.stack(chans, axis=-1))
    light_dir = (rng.uniform(-0.5, 0.5), rng.uniform(-0.5, 0.05), 1.0)
    portrait = face.light_portrait(layers, g, light_dir, ambient=rng.uniform(0.45, 0.6))
    pose = camera.sample_pose(rng, g)
    rgb, warped = camera.photograph(portrait, layers.alpha, masks, g, pose, light_dir, rng)
    quality = int(rng.integers(camera.JPEG_QUALITY_RANGE[0], camera.JPEG_QUALITY_RANGE[1] + 1))
    m = pose.matrix(g)
    cx, cy = m @ np.array([g.cx, g.cy, 1.0])
    w, h = 2 * g.a * pose.scale, 2 * g.b * pose.scale
    box = (float(cx - w / 2), float(cy - h / 2), float(w), float(h))
    ita = float(np.degrees(np.arctan2(g.skin_lab[0] - 50.0, g.skin_lab[2])))
    return Sample(rgb, warped, subject, fitzpatrick, ita, g.skin_lab, box, quality)
