"""decode: encoded image bytes -> RGB image + BlazeFace input tiles (client.steps.decode_step)."""

import json

import numpy as np
import triton_python_backend_utils as pb_utils

from client.steps import INVALID_IMAGE_PREFIX, decode_step
from preprocessing.image_io import InvalidImageError


def _error(message: str, code=None):
    code = pb_utils.TritonError.INVALID_ARG if code is None else code
    return pb_utils.InferenceResponse(error=pb_utils.TritonError(message, code))


class TritonPythonModel:
    def initialize(self, args):
        params = json.loads(args["model_config"]).get("parameters", {})
        self.max_pixels = int(params.get("max_pixels", {}).get("string_value", "50000000"))

    def execute(self, requests):
        responses = []
        for request in requests:
            raw = pb_utils.get_input_tensor_by_name(request, "IMAGE").as_numpy().reshape(-1)
            if raw.size != 1:
                responses.append(_error(f"IMAGE must hold exactly one image, got {raw.size}"))
                continue
            try:
                decoded = decode_step(raw[0], max_pixels=self.max_pixels)
            except (InvalidImageError, ValueError) as exc:
                responses.append(_error(f"{INVALID_IMAGE_PREFIX}{exc}"))
                continue
            except Exception as exc:  # one bad request must never fail the batch
                responses.append(_error(f"decode failed: {exc}", pb_utils.TritonError.INTERNAL))
                continue
            responses.append(
                pb_utils.InferenceResponse(
                    output_tensors=[
                        pb_utils.Tensor("RGB", np.ascontiguousarray(decoded.image, np.uint8)),
                        pb_utils.Tensor("DETECTOR_INPUT", decoded.detector_input),
                        pb_utils.Tensor("DETECTOR_META", decoded.detector_meta),
                    ]
                )
            )
        return responses
