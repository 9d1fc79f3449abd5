"""skin_analysis: encoded image bytes -> per-face analysis, as a python model over shared steps.

One request runs client.runner.FaceStage (decode, BlazeFace and FaceMesh with onnxruntime in
this process, face verification, alignment, crop, skin tone, quality warnings), then the
classifier (triton_models.classifier: a BLS call to `classify`, or its model.onnx in this
process on the local server), then client.runner.analysis_step (per-group thresholds, acne
severity, out-of-distribution score): the classes and steps the embedded runner runs. Each
request is counted in the fsa_* counters of the metrics port (triton_models.counters).
One python model instead of an ensemble of python steps: every python-backend hop costs IPC
time and computes nothing (docs/performance.md, "Serving").
"""

import json
import os

import numpy as np
import triton_python_backend_utils as pb_utils

from client.ood import FILENAME as OOD_FILENAME
from client.ood import load_ood
from client.runner import FaceStage, analysis_step
from client.steps import INVALID_IMAGE_PREFIX, parse_fitzpatrick
from core.thresholds import load_thresholds
from preprocessing.image_io import InvalidImageError
from triton_models.classifier import BlsClassifier, ClassifierError, OnnxClassifier, output_names
from triton_models.counters import Counters


def _strings(values):
    return np.array([(v or "").encode() for v in values], dtype=np.object_)


def _error(message: str, code=None):
    code = pb_utils.TritonError.INVALID_ARG if code is None else code
    return pb_utils.InferenceResponse(error=pb_utils.TritonError(message, code))


def _response(raw, requested) -> "pb_utils.InferenceResponse":
    """The RawAnalysis as the model's `requested` output tensors, all when it is empty
    (client.triton_client reads them back)."""
    tensors = {
        "BOXES": raw.boxes,
        "SCORES": raw.scores,
        "ITA": raw.ita,
        "TONE_CONFIDENCE": raw.tone_confidence,
        "AFFINES": raw.affines,
        "GROUP": _strings(raw.groups),
        "GROUP_SOURCE": _strings(raw.sources),
        "PROBS": raw.probs,
        "THRESHOLDS": raw.thresholds,
        "DECISIONS": raw.decisions,
        "CAM": raw.cam,
        "SEVERITY": raw.severity,
        "SEVERITY_GRADE": raw.severity_grade,
        "TONE_REASON": _strings(raw.tone_reasons),
        "ITA_INTERVAL": raw.ita_interval,
        "FACE_PRESENCE": raw.face_presence,
        "WARNINGS": _strings([",".join(w) for w in raw.warnings]),
        "REJECTED": _strings(raw.rejected),
        "OOD_DISTANCE": raw.ood_distance,
        "OUT_OF_DISTRIBUTION": raw.out_of_distribution,
    }
    return pb_utils.InferenceResponse(
        output_tensors=[
            pb_utils.Tensor(k, np.ascontiguousarray(v))
            for k, v in tensors.items()
            if not requested or k in requested
        ]
    )


class TritonPythonModel:
    def initialize(self, args):
        params = json.loads(args["model_config"]).get("parameters", {})

        def param(key, default):
            return params.get(key, {}).get("string_value", default)

        folder = os.path.join(args["model_repository"], args["model_version"])
        spinning = param("allow_spinning", "1") != "0"
        self.max_pixels = int(param("max_pixels", "50000000"))
        self.stage = FaceStage(
            int(param("crop_size", "0")),
            num_threads=int(param("detector_threads", "1")),
            spinning=spinning,
        )
        outputs = output_names(param("classifier_outputs", ""))
        onnx_file = param("classifier_onnx", "")
        if onnx_file:
            self.classifier = OnnxClassifier(
                os.path.join(folder, onnx_file),
                outputs,
                threads=int(param("classifier_threads", "1")),
                spinning=spinning,
            )
        else:
            self.classifier = BlsClassifier(
                param("classifier_model", "classify"),
                outputs,
                max_batch=int(param("classifier_max_batch_size", "32")),
            )
        thresholds_file = param("thresholds_file", "thresholds.json")
        self.thresholds = load_thresholds(os.path.join(folder, thresholds_file))
        self.ood = load_ood(os.path.join(folder, OOD_FILENAME))
        self.counters = Counters()

    def finalize(self):
        self.counters.close()

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                responses.append(self._analyze(request))
            except Exception as exc:  # one bad request must never fail the others
                message = f"skin_analysis failed: {exc}"
                responses.append(_error(message, pb_utils.TritonError.INTERNAL))
        return responses

    def _analyze(self, request):
        raw = pb_utils.get_input_tensor_by_name(request, "IMAGE").as_numpy().reshape(-1)
        if raw.size != 1:
            return _error(f"IMAGE must hold exactly one image, got {raw.size}")
        fitz = pb_utils.get_input_tensor_by_name(request, "FITZPATRICK")
        try:  # a bad FITZPATRICK is refused before the image is analysed
            fitzpatrick = parse_fitzpatrick(
                None if fitz is None else int(fitz.as_numpy().reshape(-1)[0])
            )
        except ValueError as exc:
            return _error(str(exc))
        try:
            faces = self.stage(raw[0], max_pixels=self.max_pixels)
        except (InvalidImageError, ValueError) as exc:
            return _error(f"{INVALID_IMAGE_PREFIX}{exc}")
        requested = set(request.requested_output_names())  # empty: all
        try:  # the CAM only for a client that asks for it (196 kB per face at 128 px)
            classified = self.classifier(faces.crops, cam=not requested or "CAM" in requested)
        except ClassifierError as exc:
            return _error(str(exc), pb_utils.TritonError.INTERNAL)
        result = analysis_step(faces, classified, fitzpatrick, self.thresholds, self.ood)
        self.counters.count(
            result.groups,
            result.sources,
            result.decisions,
            warnings=[",".join(w) for w in result.warnings],
            out_of_distribution=result.out_of_distribution,
            tone_reasons=result.tone_reasons,
            rejected=result.rejected,
        )
        return _response(result, requested)
