"""The finer class map from an earlier stage (`pyramid_from`): upsampling, the start from the
plain network, validation, training of the fusion and ONNX parity of the fused CAM."""

from __future__ import annotations

import json
from functools import partial

import jax.numpy as jnp
import numpy as np
import onnxruntime as ort
import pytest
from flax import nnx

from train_jax.cam import with_cam
from train_jax.export import export_model
from train_jax.models.efficientnet import EfficientNet, Variant
from train_jax.models.pyramid import upsample_corner

TINY = Variant(width=0.25, depth=0.25, resolution=64, dropout=0.2)


def _tiny(pyramid_from: str) -> EfficientNet:
    return EfficientNet(3, variant=TINY, pyramid_from=pyramid_from, rngs=nnx.Rngs(0))


def test_corner_upsampling_puts_each_cell_on_its_pixel_and_interpolates_between() -> None:
    x = np.arange(2 * 3 * 3).reshape(1, 3, 3, 2).astype(np.float32)
    up = np.asarray(upsample_corner(jnp.asarray(x), (12, 12)))
    assert up.shape == (1, 12, 12, 2)
    np.testing.assert_array_equal(up[:, ::4, ::4], x)  # cell j sits on pixel 4 j
    np.testing.assert_allclose(up[0, 2, 0], (x[0, 0, 0] + x[0, 1, 0]) / 2)
    np.testing.assert_array_equal(up[0, 9:, 9:], np.broadcast_to(x[0, 2, 2], (3, 3, 2)))  # clamped
    with pytest.raises(ValueError, match="whole factor"):
        upsample_corner(jnp.asarray(x), (10, 12))


def test_the_fused_map_starts_as_the_upsampled_last_map_and_is_finer() -> None:
    x = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype(np.float32)
    plain = EfficientNet(3, variant=TINY, rngs=nnx.Rngs(0))
    fused = EfficientNet(3, variant=TINY, pyramid_from="blocks.2", rngs=nnx.Rngs(0))
    plain.eval(), fused.eval()
    assert fused.stage_names[-1] == "pyramid" and "top" not in fused.stage_names
    features = nnx.jit(lambda model, images: model.features(images))
    f_plain, f_fused = features(plain, x), features(fused, x)
    assert f_plain.shape[1:3] == (2, 2) and f_fused.shape[1:3] == (8, 8)  # stride 32 -> 8
    np.testing.assert_allclose(f_fused, upsample_corner(f_plain, (8, 8)), atol=1e-6)
    for bad, match in (("blocks.9", "one of blocks.0 .. blocks.5"), ("blocks.5", "as coarse")):
        with pytest.raises(ValueError, match=match):
            nnx.eval_shape(partial(_tiny, bad))


def test_the_zero_started_lateral_path_gets_a_gradient() -> None:
    model = EfficientNet(3, variant=TINY, pyramid_from="blocks.2", rngs=nnx.Rngs(0))
    images = np.random.default_rng(1).uniform(0, 255, (4, 64, 64, 3)).astype(np.float32)

    def loss(m):
        return jnp.sum(m(images)[:, 0])

    grads = nnx.jit(nnx.grad(loss))(model)
    # The scale starts at 0, so the projection's kernel has no gradient yet; the scale has one.
    assert np.abs(np.asarray(grads.pyramid.project_bn.scale[...])).max() > 0
    np.testing.assert_array_equal(grads.pyramid.project.kernel[...], 0.0)


def test_the_fused_cam_exports_with_parity(tmp_path) -> None:
    model = EfficientNet(3, variant=TINY, pyramid_from="blocks.2", rngs=nnx.Rngs(2))
    rng = np.random.default_rng(0)
    scale = model.pyramid.project_bn.scale
    scale[...] = jnp.asarray(rng.normal(0, 1.0, scale.shape))  # a lateral path that matters
    model.eval()
    export_model(model, tmp_path, architecture="efficientnet_tiny", input_size=64, dataset="x")
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    x = rng.uniform(0, 255, (3, 64, 64, 3)).astype(np.float32)
    names = [o.name for o in session.get_outputs()]
    outputs = dict(zip(names, session.run(None, {"image": x}), strict=True))
    probs, cam = (np.asarray(a) for a in with_cam(model)(x))
    assert np.abs(outputs["probs"] - probs).max() <= 1e-4
    cam_name = next(n for n in names if n.startswith("cam"))
    assert np.abs(outputs[cam_name] - cam).max() <= 1e-4
    card = json.loads((tmp_path / "model_card.json").read_text())
    assert max(card["export_parity_max_abs_diff"].values()) <= 1e-4
