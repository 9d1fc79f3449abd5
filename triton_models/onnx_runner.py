"""Python-backend stand-in for an `onnxruntime` model (local server only).

The launcher copies this file to `<model>/<version>/model.py` of every ONNX model in the local
repository copy. It runs the same `model.onnx` with onnxruntime and, when the model batches, runs
all requests of a dynamic batch as one onnxruntime call.
"""

from __future__ import annotations

import json
import os

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    """Runs `model.onnx` of this version folder with onnxruntime on the CPU."""

    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        path = os.path.join(
            args["model_repository"],
            args["model_version"],
            params.get("onnx_filename", "model.onnx"),
        )
        options = ort.SessionOptions()
        # The onnxruntime backend's own parameter name; 0 = onnxruntime's default (all cores).
        options.intra_op_num_threads = int(params.get("intra_op_thread_count", "0") or 0)
        if params.get("allow_spinning") == "0":  # idle pool threads sleep instead of spinning
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.inputs = [t["name"] for t in config["input"]]
        self.outputs = [t["name"] for t in config["output"]]
        self.batching = int(config.get("max_batch_size", 0)) > 0

    def execute(self, requests):
        feeds = [
            {n: pb_utils.get_input_tensor_by_name(r, n).as_numpy() for n in self.inputs}
            for r in requests
        ]
        if self.batching and len(requests) > 1:
            sizes = [f[self.inputs[0]].shape[0] for f in feeds]
            joined = {n: np.concatenate([f[n] for f in feeds]) for n in self.inputs}
            results = self.session.run(self.outputs, joined)
            bounds = np.cumsum(sizes)[:-1]
            split = [np.split(r, bounds) for r in results]
            per_request = [list(parts) for parts in zip(*split, strict=True)]
        else:
            per_request = [self.session.run(self.outputs, f) for f in feeds]
        return [
            pb_utils.InferenceResponse(
                output_tensors=[
                    pb_utils.Tensor(n, np.ascontiguousarray(a))
                    for n, a in zip(self.outputs, arrays, strict=True)
                ]
            )
            for arrays in per_request
        ]
