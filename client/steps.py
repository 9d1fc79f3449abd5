"""The serving pipeline as three pure steps, shared by the Triton python models and the embedded
runner.

JAX-free and numpy-1.26 compatible: the local Triton server imports this module from its own
environment. Each step only composes `preprocessing/` and `fairness/` functions, so both serving
paths run the same code between the same two ONNX models (BlazeFace, then the classifier).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from data.schema import CONDITIONS, SEVERITY_GRADES, fitzpatrick_to_group
from fairness.severity import severity_grade
from fairness.thresholds import apply_thresholds
from preprocessing.face_detect import decode_detections, make_detector_input
from preprocessing.image_io import load_image
from preprocessing.pipeline import crop_face

INVALID_IMAGE_PREFIX = "invalid image: "  # decode errors start with this (client matches it)
FITZPATRICK_ESTIMATE = 0  # the Triton FITZPATRICK input: 0 = estimate the tone from the crop
BAD_FITZPATRICK = "FITZPATRICK must be 0 (estimate) or a Fitzpatrick type 1-6, got {value!r}"
# The classifier's optional acne-severity output (train_jax/export.py); older exports lack it.
SEVERITY_OUTPUT = "severity"
NO_GRADE = -1  # severity grade of a face without severity probabilities (result: null)


@dataclass(frozen=True)
class DecodedImage:
    """Output of the decode step: RGB image, BlazeFace tiles, their metadata float64 [T, 10]."""

    image: np.ndarray
    detector_input: np.ndarray
    detector_meta: np.ndarray


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


def decode_step(data: bytes, *, max_pixels: int = 50_000_000) -> DecodedImage:
    """Decode image bytes and build the detector input; raises InvalidImageError."""
    image = load_image(bytes(data), max_pixels=max_pixels)
    tiles, meta = make_detector_input(image)
    # Both paths pass the metadata as the float32 array Triton carries between models.
    return DecodedImage(
        image, np.ascontiguousarray(tiles, np.float32), np.asarray(meta.to_array(), np.float64)
    )


def crop_step(
    image: np.ndarray, regressors: np.ndarray, scores: np.ndarray, meta: np.ndarray, *, size: int
) -> FaceBatch:
    """Decode detections, align and crop each face, and estimate its skin tone.

    Each face goes through `preprocessing.pipeline.crop_face`: the skin tone is measured on the
    skin mask from the face's keypoints, the same path as the training crops, the dataset
    converters and the tone accuracy in docs/preprocessing.md.
    """
    faces = decode_detections(regressors, scores, meta)
    crops, affines, boxes, face_scores, ita, groups, conf = [], [], [], [], [], [], []
    for face in faces:
        face_crop = crop_face(image, face, size=size)
        crop, affine, tone = face_crop.crop, face_crop.affine, face_crop.skin_tone
        affines.append(affine)
        crops.append(crop)
        boxes.append(face.box)
        face_scores.append(face.score)
        ita.append(np.nan if tone.ita is None else tone.ita)
        groups.append(tone.fitzpatrick_group)
        conf.append(tone.confidence)
    stacked = np.stack(crops) if crops else np.zeros((1, size, size, 3), np.uint8)
    return FaceBatch(
        boxes=np.asarray(boxes, np.float32).reshape(-1, 4),
        scores=np.asarray(face_scores, np.float32),
        ita=np.asarray(ita, np.float32),
        tone_groups=groups,
        tone_confidence=np.asarray(conf, np.float32),
        affines=np.asarray(affines, np.float32).reshape(-1, 2, 3),
        crops=stacked.astype(np.float32),
    )


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
    thresholds.json); None grades with the default 0.5 rule (`fairness.severity.severity_grade`).
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
