"""preprocess: candidates + FaceMesh outputs -> verified, aligned face crops + skin tone +
quality warnings (client.steps.crop_step)."""

import json

import numpy as np
import triton_python_backend_utils as pb_utils

from client.steps import crop_step


def _strings(values):
    return np.array([(v or "").encode() for v in values], dtype=np.object_)


class TritonPythonModel:
    def initialize(self, args):
        params = json.loads(args["model_config"]).get("parameters", {})
        self.crop_size = int(params["crop_size"]["string_value"])

    def execute(self, requests):
        responses = []
        for request in requests:

            def get(name, request=request):
                return pb_utils.get_input_tensor_by_name(request, name).as_numpy()

            try:
                faces = crop_step(
                    get("RGB"),
                    get("CANDIDATES"),
                    get("landmarks"),
                    get("face_flag"),
                    get("FACEMESH_AFFINES"),
                    size=self.crop_size,
                )
            except Exception as exc:  # one bad request must never fail the batch
                responses.append(
                    pb_utils.InferenceResponse(
                        error=pb_utils.TritonError(
                            f"preprocess failed: {exc}", pb_utils.TritonError.INTERNAL
                        )
                    )
                )
                continue
            responses.append(
                pb_utils.InferenceResponse(
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
                        pb_utils.Tensor(
                            "WARNINGS", _strings([",".join(w) for w in faces.warnings])
                        ),
                        pb_utils.Tensor("REJECTED", _strings(faces.rejected)),
                    ]
                )
            )
        return responses
