"""with_cam exports to ONNX with a dynamic batch and matches JAX in onnxruntime."""

from __future__ import annotations

import jax2onnx
import numpy as np
import onnxruntime as ort
import pytest
from flax import nnx

from train_jax.cam import with_cam


@pytest.mark.parametrize("fixture", ["tiny_cnn", "tiny_cnn_fine"])
def test_with_cam_onnx_dynamic_batch_matches_jax(
    fixture: str, request: pytest.FixtureRequest, tmp_path
) -> None:
    cam_model = with_cam(request.getfixturevalue(fixture))
    path = tmp_path / "cam.onnx"
    jax2onnx.to_onnx(
        cam_model,
        [("B", 32, 32, 3)],
        return_mode="file",
        output_path=str(path),
        input_names=["image"],
        output_names=["probs", "cam"],
    )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["probs", "cam"]
    assert session.get_inputs()[0].shape[1:] == [32, 32, 3]
    jitted = nnx.jit(lambda m, x: m(x))
    for batch in (1, 3):
        x = np.random.default_rng(batch).uniform(0, 255, (batch, 32, 32, 3)).astype(np.float32)
        probs, cam = session.run(None, {"image": x})
        probs_jax, cam_jax = jitted(cam_model, x)
        assert probs.shape == (batch, 3) and cam.shape == (batch, 3, 32, 32)
        np.testing.assert_allclose(probs, probs_jax, atol=1e-4)
        np.testing.assert_allclose(cam, cam_jax, atol=1e-4)
