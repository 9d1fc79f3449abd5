"""Detect, align, crop and estimate skin tone: the one implementation used by training, the
embedded runner and the Triton python models.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from preprocessing.align import DEFAULT_MARGIN, align_and_crop, transform_points
from preprocessing.face_detect import Face, FaceDetector
from preprocessing.skin_mask import skin_mask
from preprocessing.tone import SkinTone, estimate_skin_tone


@dataclass(frozen=True, eq=False)  # holds arrays: compare fields explicitly
class FaceCrop:
    """A face: detection (box x, y, w, h in original pixels, score, keypoints (6, 2)), the
    aligned crop [size, size, 3] uint8 with its affine (original -> crop), and the skin tone."""

    box: tuple[float, float, float, float]
    score: float
    keypoints: np.ndarray
    crop: np.ndarray
    affine: np.ndarray
    skin_tone: SkinTone


_DEFAULT_DETECTOR: FaceDetector | None = None


def default_detector() -> FaceDetector:
    """A process-wide FaceDetector on the committed model (created on first use)."""
    global _DEFAULT_DETECTOR
    if _DEFAULT_DETECTOR is None:
        _DEFAULT_DETECTOR = FaceDetector()
    return _DEFAULT_DETECTOR


def crop_face(
    image_rgb: np.ndarray,
    face: Face,
    *,
    size: int,
    margin: float = DEFAULT_MARGIN,
    illumination: str = "none",
    reject_lesions: bool = True,
) -> FaceCrop:
    """Align, crop and estimate the skin tone of one detected face."""
    crop, affine = align_and_crop(image_rgb, face, size=size, margin=margin)
    kps_crop = transform_points(face.keypoints, affine)
    mask = skin_mask(kps_crop, (size, size))
    tone = estimate_skin_tone(crop, mask, illumination=illumination, reject_lesions=reject_lesions)
    return FaceCrop(face.box, face.score, face.keypoints, crop, affine, tone)


def analyze_image(
    image_rgb: np.ndarray,
    *,
    size: int,
    detector: FaceDetector | None = None,
    faces: list[Face] | None = None,
    margin: float = DEFAULT_MARGIN,
    illumination: str = "none",
) -> list[FaceCrop]:
    """All faces of an RGB uint8 image, largest first, aligned and cropped to size x size.

    `faces` skips detection (e.g. when Triton ran the detector model already).
    """
    if faces is None:
        faces = (detector or default_detector()).detect(image_rgb)
    return [
        crop_face(image_rgb, f, size=size, margin=margin, illumination=illumination) for f in faces
    ]


def face_crop_to_dict(face: FaceCrop, *, ndigits: int = 3) -> dict:
    """The `faces[i]` detection and skin-tone part of the result JSON (ARCHITECTURE.md)."""
    tone = face.skin_tone
    return {
        "box": [round(float(v), 1) for v in face.box],
        "score": round(float(face.score), ndigits),
        "keypoints": [[round(float(x), 1), round(float(y), 1)] for x, y in face.keypoints],
        "skin_tone": {
            "ita": None if tone.ita is None else round(float(tone.ita), 2),
            "fitzpatrick_group": tone.fitzpatrick_group,
            "source": "estimated",
            "confidence": round(float(tone.confidence), ndigits),
        },
    }
