"""The serving pipeline as three pure steps, shared by the Triton python models and the embedded
runner.

JAX-free and numpy-1.26 compatible: the local Triton server imports this module from its own
environment. Each step only composes `preprocessing/` and `core/` functions, so both serving
paths run the same code between the same two ONNX models (BlazeFace, then the classifier).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.schema import CONDITIONS, SEVERITY_GRADES, fitzpatrick_to_group
from core.severity import severity_grade
from core.thresholds import apply_thresholds
from preprocessing.face_detect import (
    decode_detections,
    faces_from_array,
    faces_to_array,
    make_detector_input,
)
from preprocessing.image_io import DEFAULT_MAX_PIXELS, load_image
from preprocessing.landmarks import INPUT_SIZE as LANDMARK_INPUT_SIZE
from preprocessing.landmarks import decode_landmarks, make_landmark_input
from preprocessing.pipeline import FaceCrop, verified_crops
from preprocessing.quality import assess_quality
from preprocessing.whole_image import whole_image_crop

MAX_PIXELS = DEFAULT_MAX_PIXELS  # larger images are refused from the header, before decoding
INVALID_IMAGE_PREFIX = "invalid image: "  # decode errors start with this (client matches it)
FITZPATRICK_ESTIMATE = 0  # the Triton FITZPATRICK input: 0 = estimate the tone from the crop
BAD_FITZPATRICK = "FITZPATRICK must be 0 (estimate) or a Fitzpatrick type 1-6, got {value!r}"
# The classifier's optional acne-severity output (train_jax/export.py); older exports lack it.
SEVERITY_OUTPUT = "severity"
FEATURES_OUTPUT = "features"  # the classifier's pooled features (out-of-distribution score)
CAM_OUTPUT = "cam"  # the classifier's class-activation maps (heatmap overlays only)
NO_GRADE = -1  # severity grade of a face without severity probabilities (result: null)


def classifier_outputs(outputs: list[str], *, cam: bool) -> list[str]:
    """The classifier outputs one call asks for: `outputs`, without the CAM unless `cam` (it
    only draws overlays, and is 196 kB per face of a 128 px model).

    >>> classifier_outputs(["probs", "cam", "severity"], cam=False)
    ['probs', 'severity']
    """
    return [n for n in outputs if cam or n != CAM_OUTPUT]


@dataclass(frozen=True)
class DecodedImage:
    """Output of the decode step: RGB image, BlazeFace tiles, their metadata float64 [T, 10]."""

    image: np.ndarray
    detector_input: np.ndarray
    detector_meta: np.ndarray


@dataclass(frozen=True)
class LandmarkInput:
    """Output of the landmark-input step for F detector candidates."""

    candidates: np.ndarray  # float64 [F, 17] box, score, keypoints (faces_to_array)
    tensor: np.ndarray  # float32 [max(F, 1), 192, 192, 3] FaceMesh input; zeros when F == 0
    affines: np.ndarray  # float64 [max(F, 1), 2, 3] FaceMesh input -> image pixels

    @property
    def num_candidates(self) -> int:
        return int(self.candidates.shape[0])


@dataclass(frozen=True)
class FaceBatch:
    """Output of the crop step for F faces (largest first); `crops` has max(F, 1) rows."""

    boxes: np.ndarray  # float32 [F, 4] x, y, w, h in original pixels
    scores: np.ndarray  # float32 [F]
    ita: np.ndarray  # float32 [F], NaN when the tone could not be measured
    tone_groups: list[str | None]  # estimated group per face, None when abstaining
    tone_confidence: np.ndarray  # float32 [F]
    affines: np.ndarray  # float32 [F, 2, 3] original pixels -> crop pixels
    crops: np.ndarray  # float32 [max(F, 1), size, size, 3] in 0..255; a zero crop when F == 0
    tone_reasons: list[str | None]  # why the tone estimate abstained (None = it did not)
    ita_interval: np.ndarray  # float32 [F, 2] low, high; NaN = no interval
    face_presence: np.ndarray  # float32 [F] FaceMesh face-presence probability
    warnings: list[tuple[str, ...]]  # quality warnings per face (preprocessing.quality)
    rejected: list[str]  # one reason per detector candidate that failed verification

    @property
    def num_faces(self) -> int:
        return int(self.boxes.shape[0])


@dataclass(frozen=True)
class Decisions:
    """Output of the threshold step for F faces."""

    groups: list[str | None]
    sources: list[str]  # "given" or "estimated"
    thresholds: np.ndarray  # float64 [F, 3]
    decisions: np.ndarray  # bool [F, 3]


@dataclass(frozen=True)
class Severity:
    """Output of the severity step for F faces."""

    probabilities: np.ndarray  # float32 [F, 4]; NaN rows = the model has no severity output
    grades: np.ndarray  # int32 [F]; NO_GRADE where the probabilities are NaN


def decode_step(data: bytes, *, max_pixels: int = MAX_PIXELS) -> DecodedImage:
    """Decode image bytes and build the detector input; raises InvalidImageError."""
    image = load_image(bytes(data), max_pixels=max_pixels)
    tiles, meta = make_detector_input(image)
    # Both paths pass the metadata as the float32 array Triton carries between models.
    return DecodedImage(
        image, np.ascontiguousarray(tiles, np.float32), np.asarray(meta.to_array(), np.float64)
    )


def landmark_input_step(
    image: np.ndarray, regressors: np.ndarray, scores: np.ndarray, meta: np.ndarray
) -> LandmarkInput:
    """Decode the detector's candidates and build FaceMesh's input for each of them."""
    candidates = decode_detections(regressors, scores, meta)
    tensor, affines = make_landmark_input(image, candidates)
    if not candidates:  # Triton tensors need a row: a zero input FaceMesh ignores
        tensor = np.zeros((1, LANDMARK_INPUT_SIZE, LANDMARK_INPUT_SIZE, 3), np.float32)
        affines = np.zeros((1, 2, 3), np.float64)
    return LandmarkInput(faces_to_array(candidates), np.ascontiguousarray(tensor), affines)


def crop_step(
    image: np.ndarray,
    candidates: np.ndarray,
    landmarks: np.ndarray,
    face_flag: np.ndarray,
    affines: np.ndarray,
    *,
    size: int,
) -> FaceBatch:
    """Verify the candidates, align and crop each face, and measure its tone and quality.

    `landmarks` [max(F, 1), 1404] and `face_flag` [max(F, 1), 1] are FaceMesh's outputs on the
    landmark-input step's tensor. `preprocessing.verify.verify_faces` rejects non-faces (face
    presence, skin plausibility), which are only counted; each kept face goes through
    `preprocessing.pipeline.crop_face` with its landmarks (the path whose accuracy
    docs/preprocessing.md reports; `preprocessing.pipeline.verified_crops`, shared with
    `analyze_image`) and `preprocessing.quality.assess_quality`.
    """
    faces = faces_from_array(candidates)
    num = len(faces)
    points, presence = decode_landmarks(
        np.asarray(landmarks)[:num], np.asarray(face_flag)[:num], np.asarray(affines)[:num]
    )
    crops, kept_presence, rejected = verified_crops(image, faces, points, presence, size=size)
    warnings = [assess_quality(f.crop, f.skin_mask, float(f.box[2])).warnings for f in crops]
    return _face_batch(crops, kept_presence, warnings, rejected, size)


def _face_batch(
    faces: list[FaceCrop], presence: np.ndarray, warnings: list, rejected: list[str], size: int
) -> FaceBatch:
    """Stack the kept faces' crops and per-face outputs."""
    tones = [f.skin_tone for f in faces]
    interval = [t.ita_interval or (np.nan, np.nan) for t in tones]
    crops = np.stack([f.crop for f in faces]) if faces else np.zeros((1, size, size, 3), np.uint8)
    return FaceBatch(
        boxes=np.asarray([f.box for f in faces], np.float32).reshape(-1, 4),
        scores=np.asarray([f.score for f in faces], np.float32),
        ita=np.asarray([np.nan if t.ita is None else t.ita for t in tones], np.float32),
        tone_groups=[t.fitzpatrick_group for t in tones],
        tone_confidence=np.asarray([t.confidence for t in tones], np.float32),
        affines=np.asarray([f.affine for f in faces], np.float32).reshape(-1, 2, 3),
        crops=crops.astype(np.float32),
        tone_reasons=[t.reason for t in tones],
        ita_interval=np.asarray(interval, np.float32).reshape(-1, 2),
        face_presence=np.asarray(presence, np.float32).reshape(-1),
        warnings=[tuple(w) for w in warnings],
        rejected=list(rejected),
    )


def whole_image_step(image: np.ndarray, *, size: int) -> FaceBatch:
    """The whole image as one region (`--region whole`: skin close-ups without a face); no
    detection score, keypoints or face presence (NaN)."""
    region = whole_image_crop(image, size=size)
    face = FaceCrop(
        region.box,
        float("nan"),
        np.full((6, 2), np.nan),
        region.crop,
        region.affine,
        region.skin_tone,
        region.skin_mask,
    )
    warnings = assess_quality(region.crop, region.skin_mask, region.box[2]).warnings
    return _face_batch([face], np.full(1, np.nan), [warnings], [], size)


def parse_fitzpatrick(value: int | None) -> int | None:
    """Validate a Fitzpatrick override: None or 0 = estimate, 1-6 = given; raises ValueError."""
    if value is None or int(value) == FITZPATRICK_ESTIMATE:
        return None
    if int(value) not in range(1, 7):
        raise ValueError(BAD_FITZPATRICK.format(value=value))
    return int(value)


def threshold_step(
    probs: np.ndarray, tone_groups: list[str | None], fitzpatrick: int | None, thresholds
) -> Decisions:
    """Pick each face's group (given overrides estimated) and apply the per-group thresholds."""
    given = parse_fitzpatrick(fitzpatrick)
    probs = np.asarray(probs, np.float32).reshape(-1, len(CONDITIONS))
    if given is not None:
        groups = [fitzpatrick_to_group(given)] * len(tone_groups)
        sources = ["given"] * len(tone_groups)
    else:
        groups, sources = list(tone_groups), ["estimated"] * len(tone_groups)
    if probs.shape[0] == 0:
        empty = np.zeros((0, len(CONDITIONS)))
        return Decisions(groups, sources, empty, empty.astype(bool))
    decisions, used = apply_thresholds(probs, groups, thresholds)
    return Decisions(groups, sources, np.asarray(used, np.float64), np.asarray(decisions, bool))


def severity_step(severity: np.ndarray | None, num_faces: int, cutpoints=None) -> Severity:
    """The acne-severity probabilities of the F faces and their grades.

    `severity` is the classifier's `severity` output (max(F, 1) rows) or None for a model
    without it; then every row is NaN and every grade NO_GRADE, which the result JSON shows as
    `"severity": null`. `cutpoints`: the shipped ones (`Thresholds.severity_cutpoints` of
    thresholds.json); None grades with the default 0.5 rule (`core.severity.severity_grade`).
    """
    num_grades = len(SEVERITY_GRADES)
    if severity is None:
        probs = np.full((num_faces, num_grades), np.nan, np.float32)
    else:
        probs = np.asarray(severity, np.float32).reshape(-1, num_grades)[:num_faces]
        if probs.shape[0] != num_faces:
            raise ValueError(f"severity has {probs.shape[0]} rows for {num_faces} faces")
    known = np.isfinite(probs).all(axis=1)
    grades = np.where(known, severity_grade(probs, cutpoints), NO_GRADE).astype(np.int32)
    return Severity(np.ascontiguousarray(probs), grades)
