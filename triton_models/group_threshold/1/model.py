"""group_threshold: per-group thresholds on the classifier output (client.steps.threshold_step),
and the acne-severity probabilities trimmed to the faces with their grades under the cutpoints of
thresholds.json (client.steps.severity_step; NaN rows and grade -1 when the classifier has no
`severity` output and the ensemble maps none), and the out-of-distribution score of the
classifier's `features` (client.ood.ood_step with 1/ood.json; NaN and False without them)."""

import json
import os

import numpy as np
import triton_python_backend_utils as pb_utils

from client.ood import FILENAME as OOD_FILENAME
from client.ood import load_ood, ood_step
from client.steps import severity_step, threshold_step
from fairness.thresholds import load_thresholds


def _strings(values):
    return np.array([(v or "").encode() for v in values], dtype=np.object_)


class TritonPythonModel:
    def initialize(self, args):
        params = json.loads(args["model_config"]).get("parameters", {})
        name = params.get("thresholds_file", {}).get("string_value", "thresholds.json")
        path = os.path.join(args["model_repository"], args["model_version"], name)
        self.thresholds = load_thresholds(path)
        folder = os.path.join(args["model_repository"], args["model_version"])
        self.ood = load_ood(os.path.join(folder, OOD_FILENAME))

    def execute(self, requests):
        responses = []
        for request in requests:

            def get(name, request=request):
                tensor = pb_utils.get_input_tensor_by_name(request, name)
                return None if tensor is None else tensor.as_numpy()

            num_faces = get("SCORES").shape[0]
            fitz = get("FITZPATRICK")
            tone_groups = [g.decode() or None for g in get("TONE_GROUP").reshape(-1)]
            probs = get("probs")[:num_faces]
            try:
                out = threshold_step(
                    probs,
                    tone_groups,
                    None if fitz is None else int(fitz.reshape(-1)[0]),
                    self.thresholds,
                )
                severity = severity_step(
                    get("severity"), num_faces, self.thresholds.severity_cutpoints
                )
                ood = ood_step(get("features"), num_faces, self.ood)
            except ValueError as exc:
                responses.append(
                    pb_utils.InferenceResponse(
                        error=pb_utils.TritonError(str(exc), pb_utils.TritonError.INVALID_ARG)
                    )
                )
                continue
            responses.append(
                pb_utils.InferenceResponse(
                    output_tensors=[
                        pb_utils.Tensor("PROBS", np.ascontiguousarray(probs, np.float32)),
                        pb_utils.Tensor(
                            "CAM", np.ascontiguousarray(get("cam")[:num_faces], np.float32)
                        ),
                        pb_utils.Tensor("GROUP", _strings(out.groups)),
                        pb_utils.Tensor("GROUP_SOURCE", _strings(out.sources)),
                        pb_utils.Tensor("THRESHOLDS", out.thresholds),
                        pb_utils.Tensor("DECISIONS", out.decisions),
                        pb_utils.Tensor("SEVERITY", severity.probabilities),
                        pb_utils.Tensor("SEVERITY_GRADE", severity.grades),
                        pb_utils.Tensor("OOD_DISTANCE", ood.distance),
                        pb_utils.Tensor("OUT_OF_DISTRIBUTION", ood.flagged),
                    ]
                )
            )
        return responses
