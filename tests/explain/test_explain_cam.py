"""CAM maths: upsampling matrices, normalisation, CAM == Grad-CAM, Grad-CAM++, token maps."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from train_jax.cam import (
    EPS,
    bilinear_matrix,
    make_cam_fn,
    normalize_maps,
    tokens_to_grid,
    upsample_maps,
    with_cam,
)


@pytest.mark.parametrize(("n_in", "n_out"), [(2, 4), (4, 32), (7, 64), (8, 128), (5, 3), (6, 6)])
def test_bilinear_matrix_matches_jax_image_resize(n_in: int, n_out: int) -> None:
    v = np.random.default_rng(n_in * 100 + n_out).normal(size=(n_in, 3)).astype(np.float32)
    expected = np.asarray(jax.image.resize(jnp.asarray(v), (n_out, 3), "bilinear"))
    np.testing.assert_allclose(bilinear_matrix(n_in, n_out) @ v, expected, atol=1e-6)


def test_upsample_maps_matches_jax_image_resize() -> None:
    maps = jax.random.uniform(jax.random.key(0), (2, 3, 4, 5))
    expected = jax.image.resize(maps, (2, 3, 32, 40), "bilinear")
    np.testing.assert_allclose(upsample_maps(maps, (32, 40)), expected, atol=1e-6)


def test_normalize_maps_max_one_and_zero_map_stays_zero() -> None:
    maps = np.zeros((2, 3, 4, 4), np.float32)
    maps[0, 0] = np.arange(16).reshape(4, 4)
    maps[1, 2, 1, 1] = 5.0
    maps[1, 1, 0, 0] = EPS / 10  # below EPS: must not be blown up to 1
    out = np.asarray(normalize_maps(jnp.asarray(maps)))
    assert out[0, 0].max() == pytest.approx(1.0)
    assert out[0, 0, 0, 1] == pytest.approx(1 / 15)
    assert out[1, 2, 1, 1] == pytest.approx(1.0)
    assert np.all(out[0, 1] == 0) and np.all(out[1, 0] == 0)
    assert out[1, 1].max() < 0.2


def test_with_cam_probs_are_sigmoid_of_model(tiny_cnn: nnx.Module, images: np.ndarray) -> None:
    probs, cam = nnx.jit(lambda m, x: with_cam(m)(x))(tiny_cnn, images)
    assert probs.shape == (2, 3) and cam.shape == (2, 3, 32, 32)
    np.testing.assert_allclose(probs, jax.nn.sigmoid(tiny_cnn(jnp.asarray(images))), atol=1e-6)
    cam = np.asarray(cam)
    assert cam.min() >= 0 and cam.max() <= 1
    peaks = cam.max(axis=(2, 3))
    assert np.all((np.abs(peaks - 1) < 1e-6) | (peaks == 0))


def test_in_graph_cam_equals_normalised_gradcam(tiny_cnn: nnx.Module, images: np.ndarray) -> None:
    _, cam = nnx.jit(lambda m, x: with_cam(m)(x))(tiny_cnn, images)
    _, gradcam = make_cam_fn(tiny_cnn, method="gradcam")(images)
    assert float(jnp.max(cam)) > 0
    np.testing.assert_allclose(cam, gradcam, atol=1e-5)


def test_in_graph_cam_equals_gradcam_for_stride_8_tone_model(
    tiny_cnn_fine: nnx.Module, images: np.ndarray
) -> None:
    probs, cam = nnx.jit(lambda m, x: with_cam(m)(x))(tiny_cnn_fine, images)
    probs_g, gradcam = make_cam_fn(tiny_cnn_fine, method="gradcam")(images)
    _, small = make_cam_fn(tiny_cnn_fine, method="cam", upsample=False)(images)
    assert small.shape[-2:] == (4, 4)  # 32 px / stride 8
    assert float(jnp.max(cam)) > 0
    np.testing.assert_allclose(cam, gradcam, atol=1e-5)
    np.testing.assert_allclose(probs, probs_g, atol=1e-6)


def _manual_stage_grads(model: nnx.Module, x: np.ndarray, stage: str, c: int):
    _, inter = model.features(jnp.asarray(x), return_intermediates=True)
    act = inter[stage]
    grads = jax.grad(lambda a: model.logits_from(stage, a)[:, c].sum())(act)
    return np.asarray(act, np.float64), np.asarray(grads, np.float64)


def test_gradcam_intermediate_stage_matches_jax_grad(
    tiny_cnn: nnx.Module, images: np.ndarray
) -> None:
    stage = "blocks.1"
    _, cam = make_cam_fn(tiny_cnn, layer=stage, upsample=False)(images)
    for c in range(3):
        act, grads = _manual_stage_grads(tiny_cnn, images, stage, c)
        weights = grads.mean(axis=(1, 2))  # [B, K]
        raw = np.maximum(np.einsum("bhwk,bk->bhw", act, weights), 0)
        expected = raw / np.maximum(raw.max(axis=(1, 2), keepdims=True), EPS)
        np.testing.assert_allclose(cam[:, c], expected, atol=1e-5)


def test_probe_path_equals_stage_path(tiny_cnn: nnx.Module, images: np.ndarray) -> None:
    # "blocks.-4" names the same sub-module as stage "blocks.1" through an attribute path.
    _, by_stage = make_cam_fn(tiny_cnn, layer="blocks.1")(images)
    _, by_probe = make_cam_fn(tiny_cnn, layer="blocks.-4")(images)
    np.testing.assert_allclose(by_probe, by_stage, atol=1e-6)
    _, inner = make_cam_fn(tiny_cnn, layer="blocks.1.pw", method="gradcam++")(images)
    assert inner.shape == (2, 3, 32, 32) and np.isfinite(np.asarray(inner)).all()


def test_gradcampp_closed_form_for_gap_head(tiny_cnn: nnx.Module, images: np.ndarray) -> None:
    # GAP + linear: g = W[k,c]/N everywhere, so alpha = 1/(2 + S_k g) and the channel weight is
    # N * relu(g) * alpha = relu(W[k,c]) / (2 + S_k W[k,c] / N)   (S_k = sum of A_k).
    _, cam = make_cam_fn(tiny_cnn, method="gradcam++", upsample=False)(images)
    feats = np.asarray(tiny_cnn.features(jnp.asarray(images)), np.float64)
    kernel = np.asarray(tiny_cnn.head.kernel[...], np.float64)
    n = feats.shape[1] * feats.shape[2]
    sums = feats.sum(axis=(1, 2))  # [B, K]
    for c in range(3):
        w = kernel[:, c]
        weights = np.maximum(w, 0) / (2 + sums * w / n)
        raw = np.maximum(np.einsum("bhwk,bk->bhw", feats, weights), 0)
        expected = raw / np.maximum(raw.max(axis=(1, 2), keepdims=True), EPS)
        np.testing.assert_allclose(cam[:, c], expected, atol=1e-5)


class _ChannelModel(nnx.Module):
    """features = 4x4 average-pooled image channels; class c reads channel c (head = identity)."""

    def __init__(self) -> None:
        self.head = nnx.Linear(3, 3, rngs=nnx.Rngs(0))
        self.head.kernel[...] = jnp.eye(3)
        self.head.bias[...] = jnp.zeros(3)

    def features(self, x: jax.Array) -> jax.Array:
        b, h, w, c = x.shape
        return x.reshape(b, h // 4, 4, w // 4, 4, c).mean(axis=(2, 4))

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.head(jnp.mean(self.features(x), axis=(1, 2)))


@pytest.mark.parametrize("method", ["cam", "gradcam", "gradcam++"])
def test_maps_point_at_the_evidence(method: str) -> None:
    x = np.zeros((1, 32, 32, 3), np.float32)
    x[0, 4:8, 20:24, 0] = 255.0  # class 0 evidence, top right
    x[0, 24:28, 8:12, 2] = 255.0  # class 2 evidence, bottom left
    _, cam = make_cam_fn(_ChannelModel(), method=method)(x)
    cam = np.asarray(cam)
    y0, x0 = np.unravel_index(cam[0, 0].argmax(), (32, 32))
    y2, x2 = np.unravel_index(cam[0, 2].argmax(), (32, 32))
    assert 4 <= y0 < 8 and 20 <= x0 < 24
    assert 24 <= y2 < 28 and 8 <= x2 < 12
    assert np.all(cam[0, 1] == 0)  # no evidence for class 1: the all-zero map stays zero


def test_tokens_to_grid_drops_class_token() -> None:
    t = jnp.arange(2 * 17 * 3, dtype=jnp.float32).reshape(2, 17, 3)
    grid = tokens_to_grid(t)
    assert grid.shape == (2, 4, 4, 3)
    np.testing.assert_array_equal(grid[:, 0, 1], t[:, 2])
    with pytest.raises(ValueError, match="square patch grid"):
        tokens_to_grid(jnp.zeros((1, 30, 3)))


def test_vit_token_map_from_last_block(toy_vit: nnx.Module, images: np.ndarray) -> None:
    # features() of the toy ViT is the last block's patch tokens as a grid, so the token map of
    # "blocks.1" ([B, 1 + 16, D] with a class token) must equal Grad-CAM on features().
    _, tokens_map = make_cam_fn(toy_vit, layer="blocks.1", upsample=False)(images)
    _, feature_map = make_cam_fn(toy_vit, upsample=False)(images)
    assert tokens_map.shape == (2, 3, 4, 4)
    np.testing.assert_allclose(tokens_map, feature_map, atol=1e-5)


def test_bad_arguments_are_named(tiny_cnn: nnx.Module, images: np.ndarray) -> None:
    with pytest.raises(ValueError, match="unknown CAM method"):
        make_cam_fn(tiny_cnn, method="scorecam")
    with pytest.raises(ValueError, match="has no child 'nope'"):
        make_cam_fn(tiny_cnn, layer="blocks.nope")(images)


@pytest.mark.parametrize("align", ["center", "corner"])
@pytest.mark.parametrize(("grid", "size"), [(4, 64), (8, 64), (7, 32)])
def test_upsampled_peak_is_a_pointing_ceiling_candidate(grid: int, size: int, align: str) -> None:
    from explain.metrics import peak_candidates

    rng = np.random.default_rng(grid)
    r = bilinear_matrix(grid, size, align)
    cand = set(peak_candidates(grid, size, align).tolist())
    for _ in range(50):
        up = r @ rng.random((grid, grid)) @ r.T
        for y, x in np.argwhere(up == up.max()):  # every maximal pixel, plateaus included
            assert y in cand and x in cand


def test_corner_alignment_puts_cells_at_their_receptive_field_centres(tiny_cnn: nnx.Module) -> None:
    # The CNNs pad every convolution by k // 2, so cell j of a stride-s map is centred on input
    # pixel s * j: the input-gradient support of a cell is symmetric about that pixel.
    from train_jax.cam import cell_alignment

    assert cell_alignment(tiny_cnn) == "corner"
    size = 192  # large enough that the centre cell's receptive field is not clipped
    x = jnp.full((1, size, size, 3), 128.0)
    h = tiny_cnn.features(x).shape[1]
    stride, i = size // h, h // 2
    g = jax.grad(lambda a: tiny_cnn.features(a)[0, i, i, :].sum())(x)
    support = np.argwhere(np.abs(np.asarray(g[0])).sum(-1) > 0)
    centre = (support.min(0) + support.max(0)) / 2
    np.testing.assert_allclose(centre, [stride * i, stride * i])
    # ... and the corner-aligned upsampling reproduces the grid value exactly at that pixel
    r = bilinear_matrix(h, size, "corner")
    grid = np.random.default_rng(0).random((h, h)).astype(np.float32)
    up = r @ grid @ r.T
    np.testing.assert_allclose(up[::stride, ::stride], grid, atol=1e-6)


def test_patch_models_use_center_alignment(toy_vit: nnx.Module) -> None:
    from train_jax.cam import cell_alignment

    class _Patchy(nnx.Module):
        stage_names = ("patch_embed", "blocks.0")

    assert cell_alignment(_Patchy()) == "center"
    assert cell_alignment(toy_vit) == "corner"  # no stage names: treated as a CNN
