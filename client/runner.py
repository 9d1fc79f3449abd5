"""The embedded runner: the serving pipeline in-process, with the same ONNX files as Triton.

decode_step -> BlazeFace ONNX -> crop_step -> classifier ONNX -> threshold_step (and
severity_step), exactly the steps the Triton ensemble runs (client/steps.py), with no server.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from client.result import ModelInfo, RawAnalysis, card_evidence, card_training_note
from client.steps import SEVERITY_OUTPUT, crop_step, decode_step, severity_step, threshold_step

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL_DIR = REPO_ROOT / "models" / "default"
MODEL_FILES = ("model.onnx", "model_card.json", "thresholds.json")


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

        from fairness.thresholds import load_thresholds
        from preprocessing.face_detect import FaceDetector

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
        self.detector = FaceDetector(num_threads=num_threads)
        options = ort.SessionOptions()
        options.intra_op_num_threads = num_threads
        options.log_severity_level = 3
        self.classifier = ort.InferenceSession(
            str(self.model_dir / "model.onnx"), options, providers=["CPUExecutionProvider"]
        )
        self.thresholds = load_thresholds(self.model_dir / "thresholds.json")
        # Exports before the acne-severity head have only probs and cam.
        names = {o.name for o in self.classifier.get_outputs()}
        self.outputs = ["probs", "cam"] + ([SEVERITY_OUTPUT] if SEVERITY_OUTPUT in names else [])

    def analyze_bytes(self, data: bytes, *, fitzpatrick: int | None = None) -> RawAnalysis:
        """Analyse one encoded image; raises InvalidImageError or ValueError on bad input."""
        decoded = decode_step(data)
        regressors, scores = self.detector.run(decoded.detector_input)
        faces = crop_step(
            decoded.image, regressors, scores, decoded.detector_meta, size=self.input_size
        )
        probs, cam, *severity = self.classifier.run(self.outputs, {"image": faces.crops})
        num = faces.num_faces
        out = threshold_step(probs[:num], faces.tone_groups, fitzpatrick, self.thresholds)
        grades = severity_step(
            severity[0] if severity else None, num, self.thresholds.severity_cutpoints
        )
        return RawAnalysis(
            boxes=faces.boxes,
            scores=faces.scores,
            ita=faces.ita,
            tone_confidence=faces.tone_confidence,
            affines=faces.affines,
            groups=out.groups,
            sources=out.sources,
            probs=np.asarray(probs[:num], np.float32),
            thresholds=out.thresholds,
            decisions=out.decisions,
            cam=np.asarray(cam[:num], np.float32),
            severity=grades.probabilities,
            severity_grade=grades.grades,
        )

    def close(self) -> None:
        """Nothing to release (kept for symmetry with the Triton client)."""
