"""How Triton's `skin_analysis` model runs the exported classifier on its face crops.

- `BlsClassifier` (the repository in git): a BLS call to the `classify` model, which the NGC
  container serves with its C++ onnxruntime backend and a dynamic batcher (a GPU instance group
  where there is one).
- `OnnxClassifier` (the local server, `triton_models.local_repo`): the same `model.onnx` run with
  onnxruntime inside the `skin_analysis` process. The local tritonserver has only the python
  backend, so `classify` would be one more python stub: a python-to-python hop that costs
  latency and computes nothing.

Both take the crops (float32 [N, S, S, 3]) and return {output name: array} for the names asked
for that the model has (without `cam` when the request's client did not ask for the CAM: it is
196 kB per face of a 128 px model); imported by `skin_analysis/1/model.py` in the
python-backend stub only.
"""

from __future__ import annotations

import numpy as np

from client.steps import classifier_outputs

REQUIRED_OUTPUTS = ("probs", "cam")


def output_names(param: str) -> list[str]:
    """The classifier outputs to ask for: `probs`, `cam` and the comma-separated optional
    outputs of the `classifier_outputs` parameter (`severity`, `features`), in that order.

    >>> output_names("severity, features")
    ['probs', 'cam', 'severity', 'features']
    """
    extra = [n.strip() for n in param.split(",") if n.strip()]
    return [*REQUIRED_OUTPUTS, *(n for n in extra if n not in REQUIRED_OUTPUTS)]


def batch_slices(num: int, max_batch: int) -> list[slice]:
    """Consecutive slices of at most `max_batch` rows covering `num` rows (the called model's
    `max_batch_size`; a photo can hold more faces than that).

    >>> batch_slices(70, 32)
    [slice(0, 32, None), slice(32, 64, None), slice(64, 70, None)]
    """
    if max_batch < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")
    return [slice(i, min(i + max_batch, num)) for i in range(0, num, max_batch)]


class ClassifierError(RuntimeError):
    """The classifier call failed (the request fails with this message)."""


class BlsClassifier:
    """The `model_name` model, called through the python backend's BLS in batches of at most
    `max_batch` crops (its `max_batch_size`)."""

    def __init__(self, model_name: str, outputs: list[str], *, max_batch: int) -> None:
        import triton_python_backend_utils as pb_utils

        self._pb = pb_utils
        self.model_name, self.outputs, self.max_batch = model_name, list(outputs), int(max_batch)

    def _call(self, crops: np.ndarray, names: list[str]) -> list[np.ndarray]:
        pb = self._pb
        request = pb.InferenceRequest(
            model_name=self.model_name,
            requested_output_names=names,
            inputs=[pb.Tensor("image", np.ascontiguousarray(crops, np.float32))],
        )
        response = request.exec()
        if response.has_error():
            raise ClassifierError(f"{self.model_name}: {response.error().message()}")
        return [pb.get_output_tensor_by_name(response, n).as_numpy() for n in names]

    def __call__(self, crops: np.ndarray, *, cam: bool = True) -> dict[str, np.ndarray]:
        """Run the classifier on `crops` (without the CAM unless `cam`); raises ClassifierError
        with the server's message."""
        names = classifier_outputs(self.outputs, cam=cam)
        parts = [self._call(crops[s], names) for s in batch_slices(len(crops), self.max_batch)]
        if len(parts) == 1:
            return dict(zip(names, parts[0], strict=True))
        joined = [np.concatenate(arrays) for arrays in zip(*parts, strict=True)]
        return dict(zip(names, joined, strict=True))


class OnnxClassifier:
    """`path` (the classifier's model.onnx) run with onnxruntime in this process."""

    def __init__(self, path: str, outputs: list[str], *, threads: int, spinning: bool) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = int(threads)
        if not spinning:  # idle pool threads sleep instead of burning the other process's core
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        names = {o.name for o in self.session.get_outputs()}
        missing = [n for n in outputs if n not in names]
        if missing:
            raise ClassifierError(f"{path}: no output {', '.join(missing)}")
        self.outputs = list(outputs)

    def __call__(self, crops: np.ndarray, *, cam: bool = True) -> dict[str, np.ndarray]:
        """Run the classifier on `crops` (without the CAM unless `cam`)."""
        names = classifier_outputs(self.outputs, cam=cam)
        feeds = {"image": np.ascontiguousarray(crops, np.float32)}
        return dict(zip(names, self.session.run(names, feeds), strict=True))
