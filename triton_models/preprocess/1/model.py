"""preprocess: encoded image bytes -> verified, aligned face crops + skin tone + quality warnings.

One python model runs the whole face stage of client.runner.FaceStage, the class the embedded
runner runs: decode_step, BlazeFace and FaceMesh (onnxruntime in this process, the committed
preprocessing/assets models) and crop_step. Keeping the two small detector models in this
process saves four python-backend hops per image (docs/serving.md, "Speed").
"""

import json

import numpy as np
import triton_python_backend_utils as pb_utils

from client.runner import FaceStage
from client.steps import INVALID_IMAGE_PREFIX
from preprocessing.image_io import InvalidImageError


def _strings(values):
    return np.array([(v or "").encode() for v in values], dtype=np.object_)


def _error(message: str, code=None):
    code = pb_utils.TritonError.INVALID_ARG if code is None else code
    return pb_utils.InferenceResponse(error=pb_utils.TritonError(message, code))


def _response(faces) -> "pb_utils.InferenceResponse":
    warnings = _strings([",".join(w) for w in faces.warnings])
    return pb_utils.InferenceResponse(
        output_tensors=[
            pb_utils.Tensor("BOXES", faces.boxes),
            pb_utils.Tensor("SCORES", faces.scores),
            pb_utils.Tensor("ITA", faces.ita),
            pb_utils.Tensor("TONE_GROUP", _strings(faces.tone_groups)),
            pb_utils.Tensor("TONE_CONFIDENCE", faces.tone_confidence),
            pb_utils.Tensor("AFFINES", faces.affines),
            pb_utils.Tensor("CROPS", np.ascontiguousarray(faces.crops, np.float32)),
            pb_utils.Tensor("TONE_REASON", _strings(faces.tone_reasons)),
            pb_utils.Tensor("ITA_INTERVAL", faces.ita_interval),
            pb_utils.Tensor("FACE_PRESENCE", faces.face_presence),
            pb_utils.Tensor("WARNINGS", warnings),
            pb_utils.Tensor("REJECTED", _strings(faces.rejected)),
        ]
    )


class TritonPythonModel:
    def initialize(self, args):
        params = json.loads(args["model_config"]).get("parameters", {})

        def param(key, default):
            return params.get(key, {}).get("string_value", default)

        self.max_pixels = int(param("max_pixels", "50000000"))
        self.stage = FaceStage(
            int(param("crop_size", "0")),
            num_threads=int(param("detector_threads", "1")),
            spinning=param("allow_spinning", "1") != "0",
        )

    def execute(self, requests):
        responses = []
        for request in requests:
            raw = pb_utils.get_input_tensor_by_name(request, "IMAGE").as_numpy().reshape(-1)
            if raw.size != 1:
                responses.append(_error(f"IMAGE must hold exactly one image, got {raw.size}"))
                continue
            try:
                faces = self.stage(raw[0], max_pixels=self.max_pixels)
            except (InvalidImageError, ValueError) as exc:
                responses.append(_error(f"{INVALID_IMAGE_PREFIX}{exc}"))
                continue
            except Exception as exc:  # one bad request must never fail the batch
                responses.append(_error(f"preprocess failed: {exc}", pb_utils.TritonError.INTERNAL))
                continue
            responses.append(_response(faces))
        return responses
