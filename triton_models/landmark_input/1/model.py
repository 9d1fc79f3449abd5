"""landmark_input: BlazeFace outputs -> candidates + FaceMesh input
(client.steps.landmark_input_step)."""

import numpy as np
import triton_python_backend_utils as pb_utils

from client.steps import landmark_input_step


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:

            def get(name, request=request):
                return pb_utils.get_input_tensor_by_name(request, name).as_numpy()

            try:
                mesh = landmark_input_step(
                    get("RGB"), get("regressors"), get("classificators"), get("DETECTOR_META")
                )
            except Exception as exc:  # one bad request must never fail the batch
                responses.append(
                    pb_utils.InferenceResponse(
                        error=pb_utils.TritonError(
                            f"landmark_input failed: {exc}", pb_utils.TritonError.INTERNAL
                        )
                    )
                )
                continue
            responses.append(
                pb_utils.InferenceResponse(
                    output_tensors=[
                        pb_utils.Tensor("CANDIDATES", np.ascontiguousarray(mesh.candidates)),
                        pb_utils.Tensor("FACEMESH_INPUT", np.ascontiguousarray(mesh.tensor)),
                        pb_utils.Tensor("FACEMESH_AFFINES", np.ascontiguousarray(mesh.affines)),
                    ]
                )
            )
        return responses
