"""Detect, align, crop and estimate skin tone: the one implementation used by training, the
embedded runner and the Triton python models.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from preprocessing.align import DEFAULT_MARGIN, align_and_crop, landmark_frame, transform_points
from preprocessing.colour import white_patch_gains
from preprocessing.face_detect import Face, FaceDetector
from preprocessing.landmark_mask import (
    LEFT_EYE,
    RIGHT_EYE,
    face_window,
    landmark_skin_regions,
    sclera_mask,
    teeth_mask,
)
from preprocessing.landmarks import LandmarkModel, landmarks_for
from preprocessing.skin_mask import skin_mask
from preprocessing.tone import SkinTone, estimate_skin_tone, estimate_tone_in_regions
from preprocessing.verify import verify_faces


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
    skin_mask: np.ndarray | None = None  # bool [size, size] the skin pixels the tone used


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
    landmarks: np.ndarray | None = None,
) -> FaceCrop:
    """Align, crop and estimate the skin tone of one detected face.

    With `landmarks` (FaceMesh [468, 2 or 3] in image pixels) the crop follows the landmark
    frame (`preprocessing.align.landmark_frame`: eye centres and face width, steadier than the
    detector's box) and the tone is measured on the landmark skin regions (cheeks, forehead,
    chin) after the white-patch white balance of the sclera and teeth, with an ITA interval over
    the regions (`landmark_tone`); without them, the crop follows the detector's box and eye
    keypoints and the tone the keypoint ellipses (`preprocessing.skin_mask`).
    """
    crop, affine = aligned_crop(image_rgb, face, size=size, margin=margin, landmarks=landmarks)
    if landmarks is not None and illumination == "none":
        tone, mask = landmark_tone(
            image_rgb, crop, affine, landmarks, reject_lesions=reject_lesions
        )
    else:
        mask = skin_mask(transform_points(face.keypoints, affine), (size, size))
        tone = estimate_skin_tone(
            crop, mask, illumination=illumination, reject_lesions=reject_lesions
        )
    return FaceCrop(face.box, face.score, face.keypoints, crop, affine, tone, mask)


def aligned_crop(
    image_rgb: np.ndarray,
    face: Face,
    *,
    size: int,
    margin: float = DEFAULT_MARGIN,
    landmarks: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The aligned crop [size, size, 3] of one face and its affine (original -> crop).

    With `landmarks` the crop follows the landmark frame (eye centres and face width), else the
    detector's box and eye keypoints: `crop_face`'s crop, without the tone estimate.
    """
    frame = face
    if landmarks is not None:
        box, eyes = landmark_frame(landmarks, RIGHT_EYE, LEFT_EYE)
        frame = Face(box, face.score, np.vstack([eyes, np.asarray(face.keypoints)[2:]]))
    return align_and_crop(image_rgb, frame, size=size, margin=margin)


def landmark_tone(
    image_rgb: np.ndarray,
    crop: np.ndarray,
    affine: np.ndarray,
    landmarks: np.ndarray,
    *,
    reject_lesions: bool = True,
) -> tuple[SkinTone, np.ndarray]:
    """Skin tone of an aligned crop from the face's landmarks, and the skin mask it used."""
    points = np.asarray(landmarks, np.float64)[:, :2]
    regions = landmark_skin_regions(transform_points(points, affine), crop.shape[:2])
    rows, cols, offset = face_window(points, image_rgb.shape[:2])
    window, local = image_rgb[rows, cols], points - offset
    reference = sclera_mask(local, window) | teeth_mask(local, window)
    gains = white_patch_gains(window[reference])
    tone = estimate_tone_in_regions(crop, regions, gains=gains, reject_lesions=reject_lesions)
    return tone, np.logical_or.reduce(list(regions.values()))


def analyze_image(
    image_rgb: np.ndarray,
    *,
    size: int,
    detector: FaceDetector | None = None,
    faces: list[Face] | None = None,
    margin: float = DEFAULT_MARGIN,
    illumination: str = "none",
    landmark_model: LandmarkModel | None = None,
) -> list[FaceCrop]:
    """The verified faces of an RGB uint8 image, largest first, aligned and cropped.

    Every candidate goes through FaceMesh: `preprocessing.verify.verify_faces` drops
    non-faces, and each kept face's tone is measured on its landmark skin regions
    (`crop_face` with landmarks), as in serving (`client.steps.crop_step`). `faces` skips
    detection. `illumination="shades_of_gray"` is the older keypoint-mask ablation.
    """
    if faces is None:
        faces = (detector or default_detector()).detect(image_rgb)
    landmarks, presence = landmarks_for(image_rgb, faces, landmark_model)
    crops, _, _ = verified_crops(
        image_rgb,
        faces,
        landmarks,
        presence,
        size=size,
        margin=margin,
        illumination=illumination,
    )
    return crops


def first_face_crop(
    image_rgb: np.ndarray,
    *,
    size: int,
    detector: FaceDetector | None = None,
    margin: float = DEFAULT_MARGIN,
) -> tuple[np.ndarray, np.ndarray] | None:
    """The crop and affine of the face `analyze_image` returns first (None: no verified face).

    The same detection, FaceMesh verification and landmark-frame crop, without the skin-tone
    estimate, which training crops do not need (it was about 30 % of a photo's crop time).
    """
    faces = (detector or default_detector()).detect(image_rgb)
    landmarks, presence = landmarks_for(image_rgb, faces)
    kept, _ = verify_faces(image_rgb, landmarks, presence)
    if not kept:
        return None
    i = kept[0]
    return aligned_crop(image_rgb, faces[i], size=size, margin=margin, landmarks=landmarks[i])


def verified_crops(
    image_rgb: np.ndarray,
    faces: list[Face],
    landmarks: np.ndarray,
    presence: np.ndarray,
    *,
    size: int,
    margin: float = DEFAULT_MARGIN,
    illumination: str = "none",
) -> tuple[list[FaceCrop], np.ndarray, list[str]]:
    """The faces that pass `verify_faces`, cropped with their landmarks; their face presence;
    and one reason per rejected candidate (the step serving and `analyze_image` share)."""
    kept, rejected = verify_faces(image_rgb, landmarks, presence)
    crops = [
        crop_face(
            image_rgb,
            faces[i],
            size=size,
            margin=margin,
            illumination=illumination,
            landmarks=landmarks[i],
        )
        for i in kept
    ]
    return crops, np.asarray(presence)[kept], rejected


def face_crop_to_dict(face: FaceCrop, *, ndigits: int = 3) -> dict:
    """The `faces[i]` detection and skin-tone part of the result JSON (docs/architecture.md)."""
    tone = face.skin_tone
    interval = tone.ita_interval and [round(float(v), 2) for v in tone.ita_interval]
    return {
        "box": [round(float(v), 1) for v in face.box],
        "score": round(float(face.score), ndigits),
        "keypoints": [[round(float(x), 1), round(float(y), 1)] for x, y in face.keypoints],
        "skin_tone": {
            "ita": None if tone.ita is None else round(float(tone.ita), 2),
            "ita_interval": interval,
            "fitzpatrick_group": tone.fitzpatrick_group,
            "source": "estimated",
            "confidence": round(float(tone.confidence), ndigits),
            "abstain_reason": tone.reason,
        },
    }
