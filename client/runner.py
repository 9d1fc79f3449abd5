"""The embedded runner: the serving pipeline in-process, with the same ONNX files as Triton.

decode_step -> BlazeFace ONNX -> landmark_input_step -> FaceMesh ONNX -> crop_step (FaceStage)
-> classifier ONNX -> analysis_step (threshold_step, severity_step, ood_step): the classes and
steps Triton's `skin_analysis` model runs (client/steps.py), with no server.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from client.ood import FILENAME as OOD_FILENAME
from client.ood import load_ood, ood_step
from client.result import ModelInfo, RawAnalysis, card_evidence, card_training_note
from client.steps import (
    CAM_OUTPUT,
    FEATURES_OUTPUT,
    MAX_PIXELS,
    SEVERITY_OUTPUT,
    DecodedImage,
    FaceBatch,
    classifier_outputs,
    crop_step,
    decode_step,
    landmark_input_step,
    severity_step,
    threshold_step,
    whole_image_step,
)

REGION_FACE, REGION_WHOLE = "face", "whole"

OPTIONAL_OUTPUTS = (SEVERITY_OUTPUT, FEATURES_OUTPUT)

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL_DIR = REPO_ROOT / "models" / "default"
MODEL_FILES = ("model.onnx", "model_card.json", "thresholds.json")  # ood.json is optional


def face_steps(decoded: DecodedImage, detector, landmark_model, *, size: int) -> FaceBatch:
    """BlazeFace ONNX -> landmark_input_step -> FaceMesh ONNX -> crop_step, in this process."""
    regressors, scores = detector.run(decoded.detector_input)
    mesh = landmark_input_step(decoded.image, regressors, scores, decoded.detector_meta)
    landmarks, face_flag = landmark_model.run(mesh.tensor)
    return crop_step(decoded.image, mesh.candidates, landmarks, face_flag, mesh.affines, size=size)


class FaceStage:
    """Encoded image -> verified, aligned face crops with skin tone and quality warnings:
    decode_step, BlazeFace and FaceMesh (onnxruntime, in this process) and crop_step. The
    embedded runner and Triton's `skin_analysis` model both run this class. num_threads and
    spinning configure BlazeFace's onnxruntime session (FaceMesh runs on one thread)."""

    def __init__(self, size: int, *, num_threads: int = 0, spinning: bool = True) -> None:
        from preprocessing.face_detect import FaceDetector
        from preprocessing.landmarks import LandmarkModel

        self.size = int(size)
        self.detector = FaceDetector(num_threads=num_threads, spinning=spinning)
        self.landmarks = LandmarkModel()

    def __call__(
        self, data: bytes, *, region: str = REGION_FACE, max_pixels: int = MAX_PIXELS
    ) -> FaceBatch:
        """Analyse one encoded image up to the classifier's input; raises InvalidImageError
        or ValueError on bad input. region: "face" or "whole" (the image as one skin region)."""
        decoded = decode_step(data, max_pixels=max_pixels)
        if region == REGION_WHOLE:
            return whole_image_step(decoded.image, size=self.size)
        if region == REGION_FACE:
            return face_steps(decoded, self.detector, self.landmarks, size=self.size)
        raise ValueError(f"region must be {REGION_FACE!r} or {REGION_WHOLE!r}, got {region!r}")


def analysis_step(
    faces: FaceBatch, classified: dict, fitzpatrick: int | None, thresholds, ood
) -> RawAnalysis:
    """The face stage's output plus the classifier's outputs on its crops -> the analysis:
    threshold_step, severity_step and ood_step on the F faces. `classified` maps the
    classifier's output names to arrays of max(F, 1) rows: `probs` always, `cam` when the
    caller asked for heatmaps (RawAnalysis.cam is None without it), `severity` and `features`
    when the model has them. The embedded runner and Triton's `skin_analysis`
    model both end with this step."""
    num = faces.num_faces
    probs = np.asarray(classified["probs"][:num], np.float32)
    out = threshold_step(probs, faces.tone_groups, fitzpatrick, thresholds)
    grades = severity_step(classified.get(SEVERITY_OUTPUT), num, thresholds.severity_cutpoints)
    flagged = ood_step(classified.get(FEATURES_OUTPUT), num, ood)
    return RawAnalysis(
        boxes=faces.boxes,
        scores=faces.scores,
        ita=faces.ita,
        tone_confidence=faces.tone_confidence,
        affines=faces.affines,
        groups=out.groups,
        sources=out.sources,
        probs=probs,
        thresholds=out.thresholds,
        decisions=out.decisions,
        cam=(
            np.asarray(classified[CAM_OUTPUT][:num], np.float32)
            if CAM_OUTPUT in classified
            else None
        ),
        severity=grades.probabilities,
        severity_grade=grades.grades,
        tone_reasons=faces.tone_reasons,
        ita_interval=faces.ita_interval,
        face_presence=faces.face_presence,
        warnings=faces.warnings,
        rejected=faces.rejected,
        ood_distance=flagged.distance,
        out_of_distribution=flagged.flagged,
    )


class ModelDirError(FileNotFoundError):
    """The model folder lacks a file it needs."""


def read_model_dir(model_dir: Path) -> dict:
    """Check the model folder and return its model card."""
    model_dir = Path(model_dir)
    missing = [name for name in MODEL_FILES if not (model_dir / name).is_file()]
    if missing:
        raise ModelDirError(
            f"{model_dir}: missing {', '.join(missing)} (export a model with "
            "python -m train_jax.export)"
        )
    return json.loads((model_dir / "model_card.json").read_text())


class EmbeddedRunner:
    """Runs the pipeline in this process with onnxruntime."""

    def __init__(self, model_dir: Path = DEFAULT_MODEL_DIR, *, num_threads: int = 0) -> None:
        import onnxruntime as ort

        from core.thresholds import load_thresholds

        self.model_dir = Path(model_dir)
        card = read_model_dir(self.model_dir)
        self.input_size = int(card["input_size"])
        self.info = ModelInfo(
            str(card["name"]),
            str(card["version"]),
            "embedded",
            evidence=card_evidence(card),
            training_data=card_training_note(card),
        )
        self.faces = FaceStage(self.input_size, num_threads=num_threads)
        options = ort.SessionOptions()
        options.intra_op_num_threads = num_threads
        options.log_severity_level = 3
        self.classifier = ort.InferenceSession(
            str(self.model_dir / "model.onnx"), options, providers=["CPUExecutionProvider"]
        )
        self.thresholds = load_thresholds(self.model_dir / "thresholds.json")
        self.ood = load_ood(self.model_dir / OOD_FILENAME)
        # Older exports lack the acne-severity and features outputs.
        names = {o.name for o in self.classifier.get_outputs()}
        self.outputs = ["probs", "cam"] + [n for n in OPTIONAL_OUTPUTS if n in names]

    def analyze_bytes(
        self,
        data: bytes,
        *,
        fitzpatrick: int | None = None,
        region: str = REGION_FACE,
        heatmaps: bool = True,
    ) -> RawAnalysis:
        """Analyse one encoded image; raises InvalidImageError or ValueError on bad input.

        region: "face" (detect and verify faces) or "whole" (the image as one skin region).
        heatmaps: False leaves the class-activation maps out (RawAnalysis.cam is None).
        """
        faces = self.faces(data, region=region)
        names = classifier_outputs(self.outputs, cam=heatmaps)
        arrays = self.classifier.run(names, {"image": faces.crops})
        classified = dict(zip(names, arrays, strict=True))
        return analysis_step(faces, classified, fitzpatrick, self.thresholds, self.ood)

    def close(self) -> None:
        """Nothing to release (kept for symmetry with the Triton client)."""
