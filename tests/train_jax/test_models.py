"""Model registry, layers and parameter counts (fast: counts use abstract shapes only)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from train_jax.models import MODEL_NAMES, create_model, set_conv_impl, set_depthwise_impl
from train_jax.models.efficientnet import (
    EfficientNet,
    MBConv,
    Variant,
    round_filters,
    round_repeats,
)
from train_jax.models.layers import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    BatchNorm,
    depthwise_conv,
    normalize_image,
    pointwise_dot,
)

# Expected trainable parameter counts with a 3-class head. Published counts (timm / Keras,
# 1000 classes, trainable parameters only) minus their head (C*1000 + 1000) plus ours (C*3 + 3)
# plus the ordinal acne-severity head (CORAL: one shared weight vector C and 3 biases, C + 3):
#   B0: 5,288,548 - (1280*1000 + 1000) + (1280*3 + 3) + (1280 + 3) = 4,012,674
#   B1: 7,794,184 - 1,281,000 + 3,843 + 1,283 = 6,518,310
#   B2: 9,109,994 - (1408*1000 + 1000) + (1408*3 + 3) + (1408 + 3) = 7,706,632
#   B3: 12,233,232 - (1536*1000 + 1000) + (1536*3 + 3) + (1536 + 3) = 10,702,382
# ViT (timm vit_*_patch16_224, 1000 classes); ours has no class token, so it also loses the
# class token (D) and its position embedding (D):
#   Ti: 5,717,416 - (192*1000 + 1000) + (192*3 + 3) - 2*192 + (192 + 3) = 5,524,806
#   S: 22,050,664 - (384*1000 + 1000) + (384*3 + 3) - 2*384 + (384 + 3) = 21,666,438
EXPECTED_PARAMS = {
    "efficientnet_b0": 4_012_674,
    "efficientnet_b1": 6_518_310,
    "efficientnet_b2": 7_706_632,
    "efficientnet_b3": 10_702_382,
    "efficientnet_lite0": 3_376_134,  # 4,652,008 published with the 1000-class head
    "vit_tiny": 5_524_806,
    "vit_small": 21_666_438,
}


def _num_params(module: nnx.Module) -> int:
    return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(nnx.state(module, nnx.Param)))


def _images(rng: int, shape: tuple[int, ...]) -> jax.Array:
    return jnp.asarray(np.random.default_rng(rng).uniform(0, 255, shape), jnp.float32)


def test_registry_names_and_unknown_name():
    assert set(EXPECTED_PARAMS) | {"small_cnn"} == set(MODEL_NAMES)
    with pytest.raises(ValueError, match="unknown model 'resnet'.*efficientnet_b0"):
        create_model("resnet", rngs=nnx.Rngs(0))


# B1, B2 and ViT-S are left out to keep the suite fast (abstract construction of each costs
# seconds); B3 exercises the most channel rounding.
@pytest.mark.parametrize(
    "name", ["efficientnet_b0", "efficientnet_b3", "efficientnet_lite0", "vit_tiny"]
)
def test_published_parameter_counts(name):
    abstract = nnx.eval_shape(lambda: create_model(name, num_classes=3, rngs=nnx.Rngs(0)))
    assert _num_params(abstract) == EXPECTED_PARAMS[name]
    assert abstract.head.kernel.shape[1] == 3
    assert abstract.severity_head.linear.kernel.shape == (abstract.num_features, 1)
    assert abstract.severity_head.bias.shape == (3,)


def test_compound_scaling_rounding():
    # 40 * 1.1 = 44 -> nearest multiple of 8 rounding half up is 48; 112 * 1.1 = 123.2 -> 120
    assert [round_filters(c, 1.1) for c in (32, 40, 112, 1280)] == [32, 48, 120, 1408]
    assert round_filters(32, 1.2) == 40 and round_filters(1280, 1.2) == 1536
    assert [round_repeats(r, 1.4) for r in (1, 2, 3, 4)] == [2, 3, 5, 6]


def test_normalize_image_uses_imagenet_statistics():
    mean_px = jnp.asarray(IMAGENET_MEAN) * 255.0
    x = jnp.stack([mean_px, mean_px + jnp.asarray(IMAGENET_STD) * 255.0])[None, None]
    np.testing.assert_allclose(normalize_image(x)[0, 0], [[0, 0, 0], [1, 1, 1]], atol=1e-5)


@pytest.mark.parametrize(
    ("size", "kernel", "stride"), [((9, 10), 5, 1), ((9, 9), 3, 2), ((10, 7), 5, 2)]
)
def test_depthwise_slices_matches_grouped_conv(size, kernel, stride):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(2, *size, 4)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(kernel, kernel, 1, 4)), jnp.float32)
    ref = jax.lax.conv_general_dilated(
        x,
        w,
        (stride, stride),
        [(kernel // 2, kernel // 2)] * 2,
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=4,
    )
    out = depthwise_conv(x, w, stride=stride, impl="slices")
    assert out.shape == ref.shape
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
    g = jnp.asarray(rng.normal(size=ref.shape), jnp.float32)
    grads = {
        impl: jax.grad(
            lambda a, b, i=impl: jnp.sum(depthwise_conv(a, b, stride=stride, impl=i) * g),
            argnums=(0, 1),
        )(x, w)
        for impl in ("slices", "conv")
    }
    for got, want in zip(grads["slices"], grads["conv"], strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize(("cin", "cout"), [(3, 8), (8, 3), (5, 5)])
def test_pointwise_dot_value_and_gradients_match_autodiff_of_dot(cin, cout):
    # Both orders of the kernel-gradient matmul (cin < cout, cin > cout) and the tie.
    rng = np.random.default_rng(cin * 10 + cout)
    x = jnp.asarray(rng.normal(size=(2, 5, 6, cin)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(cin, cout)), jnp.float32)
    g = jnp.asarray(rng.normal(size=(2, 5, 6, cout)), jnp.float32)
    np.testing.assert_allclose(pointwise_dot(x, w), jnp.dot(x, w), rtol=1e-6, atol=1e-6)
    got = jax.grad(lambda a, b: jnp.sum(pointwise_dot(a, b) * g), argnums=(0, 1))(x, w)
    want = jax.grad(lambda a, b: jnp.sum(jnp.dot(a, b) * g), argnums=(0, 1))(x, w)
    for a, b in zip(got, want, strict=True):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_fused_batchnorm_matches_nnx_batchnorm():
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.normal(2.0, 3.0, size=(4, 5, 5, 6)), jnp.float32)
    ours, ref = (
        BatchNorm(6, momentum=0.9, epsilon=1e-3),
        nnx.BatchNorm(6, momentum=0.9, epsilon=1e-3, rngs=nnx.Rngs(0)),
    )
    for m in (ours, ref):
        m.scale[...] = jnp.linspace(0.5, 1.5, 6)
        m.bias[...] = jnp.linspace(-1.0, 1.0, 6)
    np.testing.assert_allclose(ours(x), ref(x), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(ours.mean[...], ref.mean[...], rtol=1e-5)
    np.testing.assert_allclose(ours.var[...], ref.var[...], rtol=1e-4)
    g = jnp.asarray(rng.normal(size=x.shape), jnp.float32)

    def loss(m, x):
        return jnp.sum(m(x) * g)

    (gm_ours, gx_ours), (gm_ref, gx_ref) = (
        nnx.grad(loss, argnums=(0, 1))(m, x) for m in (ours, ref)
    )
    np.testing.assert_allclose(gx_ours, gx_ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(gm_ours["scale"][...], gm_ref["scale"][...], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(gm_ours["bias"][...], gm_ref["bias"][...], rtol=1e-5, atol=1e-5)
    ours.eval()
    ref.eval()
    np.testing.assert_allclose(ours(x), ref(x), rtol=1e-4, atol=1e-4)


def test_small_cnn_interface_and_intermediates():
    model = create_model("small_cnn", rngs=nnx.Rngs(0))
    assert 100_000 <= _num_params(model) <= 300_000
    x = _images(0, (2, 64, 64, 3))
    stats_before = np.asarray(model.blocks[0].bn1.mean[...])

    @nnx.jit
    def run(m, x):
        m.train()
        train_logits = m(x)  # updates BatchNorm statistics
        m.eval()
        feat, inter = m.features(x, return_intermediates=True)
        return train_logits, feat, inter, m(x), m.logits_from("blocks.1", inter["blocks.1"])

    train_logits, feat, inter, logits, resumed = run(model, x)
    assert not np.allclose(model.blocks[0].bn1.mean[...], stats_before)
    assert model.blocks[0].bn1.use_running_average  # eval mode set inside jit persists
    assert feat.shape == (2, 4, 4, model.head.in_features)
    assert sorted(inter) == sorted(model.stage_names) and model.stage_names[0] == "stem"
    assert logits.shape == train_logits.shape == (2, 3)
    pooled = np.asarray(feat).mean(axis=(1, 2))
    expected = pooled @ np.asarray(model.head.kernel[...]) + np.asarray(model.head.bias[...])
    np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(resumed, logits, atol=1e-5)
    with pytest.raises(ValueError, match="unknown stage 'nope'"):
        model.logits_from("nope", feat)


def test_depthwise_switch_keeps_output_and_parameters():
    model = create_model("small_cnn", rngs=nnx.Rngs(1))
    model.eval()
    x = _images(1, (2, 32, 32, 3))
    before = model(x)
    params = jax.tree.leaves(nnx.state(model, nnx.Param))
    set_depthwise_impl(model, "conv")
    assert model.blocks[0].dw.depthwise_impl == "conv"
    np.testing.assert_allclose(model(x), before, rtol=1e-4, atol=1e-5)
    assert all(
        a is b for a, b in zip(params, jax.tree.leaves(nnx.state(model, nnx.Param)), strict=True)
    )
    set_conv_impl(model, "conv")
    assert model.blocks[0].pw.pointwise_impl == "conv"
    np.testing.assert_allclose(model(x), before, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="depthwise impl"):
        set_depthwise_impl(model, "fft")


def test_bf16_compute_keeps_float32_params():
    model = create_model("small_cnn", rngs=nnx.Rngs(0), dtype=jnp.bfloat16)
    assert {p.dtype for p in jax.tree.leaves(nnx.state(model, nnx.Param))} == {jnp.dtype("float32")}
    logits = model(_images(2, (2, 32, 32, 3)))
    assert logits.dtype == jnp.float32 and bool(jnp.isfinite(logits).all())


def test_mbconv_block_with_skip_and_stochastic_depth():
    block = MBConv(
        8,
        8,
        expansion=6,
        kernel=5,
        stride=1,
        drop_path=0.5,
        depthwise_impl="slices",
        dtype=None,
        rngs=nnx.Rngs(0),
    )
    x = jnp.asarray(np.random.default_rng(3).normal(size=(16, 6, 6, 8)), jnp.float32)
    y = block(x)
    assert y.shape == x.shape
    # with drop rate 0.5 some samples keep only the skip path
    dropped = np.all(np.isclose(np.asarray(y - x), 0.0), axis=(1, 2, 3))
    assert 0 < dropped.sum() < 16
    block.eval()
    assert not np.any(np.all(np.isclose(np.asarray(block(x) - x), 0.0), axis=(1, 2, 3)))


def test_efficientnet_b0_stage_names():
    abstract = nnx.eval_shape(lambda: create_model("efficientnet_b0", rngs=nnx.Rngs(0)))
    assert abstract.stage_names == ("stem", *(f"blocks.{i}" for i in range(16)), "top")


def test_tiny_efficientnet_forward_and_intermediates():
    # width 0.25 (channels floor at 8), depth 0.25 (one block per stage): the B0 layout, tiny
    tiny = Variant(width=0.25, depth=0.25, resolution=32, dropout=0.2)
    model = EfficientNet(3, variant=tiny, rngs=nnx.Rngs(0))
    model.eval()
    assert model.stage_names == ("stem", *(f"blocks.{i}" for i in range(7)), "top")

    @nnx.jit
    def run(m, x):
        feat, inter = m.features(x, return_intermediates=True)
        return feat, inter, m.logits_from("blocks.3", inter["blocks.3"]), m.pool_and_classify(feat)

    feat, inter, resumed, logits = run(model, _images(4, (2, 32, 32, 3)))
    assert feat.shape == (2, 1, 1, 320)
    assert inter["stem"].shape == (2, 16, 16, 8) and inter["blocks.6"].shape == (2, 1, 1, 80)
    assert logits.shape == (2, 3)
    np.testing.assert_allclose(resumed, logits, atol=1e-5)


def test_vit_tiny_forward_token_grid():
    model = create_model("vit_tiny", rngs=nnx.Rngs(0), image_size=32)
    model.eval()
    x = _images(5, (2, 32, 32, 3))
    feat, inter = model.features(x, return_intermediates=True)
    assert feat.shape == (2, 2, 2, 192)
    assert model.stage_names[0] == "patch_embed" and model.stage_names[-1] == "norm"
    np.testing.assert_allclose(
        model.logits_from("blocks.5", inter["blocks.5"]), model(x), atol=1e-5
    )
    with pytest.raises(ValueError, match="built for 32x32"):
        model(_images(5, (1, 48, 48, 3)))


def test_vit_class_token_attends_but_is_not_pooled():
    # timm's layout: the class token (with its position folded in) joins the sequence
    plain = create_model("vit_tiny", rngs=nnx.Rngs(0), image_size=32)
    model = create_model("vit_tiny", rngs=nnx.Rngs(0), image_size=32, class_token=True)
    assert _num_params(model) == _num_params(plain) + 192
    model.eval()
    model.head.kernel[...] = jnp.asarray(np.random.default_rng(0).normal(size=(192, 3)))
    x = _images(6, (2, 32, 32, 3))
    feat, inter = model.features(x, return_intermediates=True)
    assert feat.shape == (2, 2, 2, 192)  # the patch grid after the final LayerNorm
    assert inter["patch_embed"].shape == inter["blocks.3"].shape == (2, 5, 192)
    np.testing.assert_allclose(
        model.logits_from("blocks.3", inter["blocks.3"]), model(x), atol=1e-5
    )
    before = np.asarray(model(x))
    model.cls_token[...] = model.cls_token[...] + 1.0  # it changes the patch tokens via attention
    assert not np.allclose(model(x), before, atol=1e-4)
    with pytest.raises(ValueError, match="unknown input_norm"):
        create_model("vit_tiny", rngs=nnx.Rngs(0), image_size=32, input_norm="none")


@pytest.mark.parametrize(("output_stride", "grid"), [(16, 4), (8, 8), (4, 16)])
def test_small_cnn_output_stride_same_parameters_finer_map(output_stride, grid):
    base = create_model("small_cnn", rngs=nnx.Rngs(0), width=0.25)
    model = create_model("small_cnn", rngs=nnx.Rngs(0), width=0.25, output_stride=output_stride)
    assert _num_params(model) == _num_params(base)
    assert model.features(_images(0, (1, 64, 64, 3))).shape[1:3] == (grid, grid)
    with pytest.raises(ValueError, match="output_stride must be one of"):
        create_model("small_cnn", rngs=nnx.Rngs(0), output_stride=32)


@pytest.mark.parametrize(("output_stride", "grid"), [(32, 2), (16, 4), (8, 8)])
def test_efficientnet_output_stride_same_parameters_finer_map(output_stride, grid):
    tiny = Variant(width=0.25, depth=0.25, resolution=64, dropout=0.2)
    base = EfficientNet(3, variant=tiny, rngs=nnx.Rngs(0))
    model = EfficientNet(3, variant=tiny, output_stride=output_stride, rngs=nnx.Rngs(0))
    assert _num_params(model) == _num_params(base)
    # the same parameters, so the same weights load into either layout
    nnx.update(model, nnx.state(base))
    x = _images(0, (1, 64, 64, 3))
    assert model.features(x).shape[1:3] == (grid, grid)
    with pytest.raises(ValueError, match="output_stride must be one of"):
        EfficientNet(3, variant=tiny, output_stride=4, rngs=nnx.Rngs(0))


def test_tone_input_norm_factors_out_skin_tone_and_exposure():
    from train_jax.models.input_norm import TONE_OFFSET, describe, normalize_input, tone_normalize

    assert "ImageNet" in describe("imagenet") and "log" in describe("tone")

    x = _images(1, (2, 16, 16, 3))
    # a darker skin / lower exposure: every channel scaled (in offset units) by its own factor
    darker = (x + TONE_OFFSET) * jnp.asarray([0.3, 0.25, 0.2]) - TONE_OFFSET
    np.testing.assert_allclose(tone_normalize(darker), tone_normalize(x), atol=1e-5)
    assert not np.allclose(normalize_input(darker), normalize_input(x), atol=0.1)  # imagenet
    # a lesion darkening the skin by a factor is the same step on light and dark skin
    skin = jnp.full((1, 16, 16, 3), 200.0 - TONE_OFFSET)
    lesion = jnp.ones((1, 16, 16, 1)).at[:, 4:8, 4:8].set(0.7)
    for tone in (1.0, 0.25):
        img = (skin + TONE_OFFSET) * tone * lesion - TONE_OFFSET
        y = np.asarray(normalize_input(img, "tone"))
        assert y[0, 5, 5, 0] - y[0, 12, 12, 0] == pytest.approx(2.0 * np.log(0.7), abs=1e-4)
    model = create_model("small_cnn", rngs=nnx.Rngs(0), width=0.25, input_norm="tone")
    model.eval()
    np.testing.assert_allclose(model(darker), model(x), atol=1e-4)
    with pytest.raises(ValueError, match="unknown input_norm"):
        create_model("small_cnn", rngs=nnx.Rngs(0), input_norm="lab")


def test_test_time_flip_treats_an_image_and_its_mirror_alike_in_evaluation_only():
    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    mirror = x[:, :, ::-1, :]
    model = create_model("small_cnn", rngs=nnx.Rngs(0), width=0.25, test_time_flip=True)
    model.eval()
    np.testing.assert_allclose(model(x), model(mirror), atol=1e-5)
    feats = np.asarray(model.features(x))
    assert model.mirror_shift == 1
    # The map of the mirror image is the mirrored map, moved by the alignment shift.
    mirrored = np.roll(np.asarray(model.features(mirror))[:, :, ::-1], model.mirror_shift, axis=2)
    np.testing.assert_allclose(feats, mirrored, atol=1e-5)
    # The same parameters without the flip: the mirror image gives other logits.
    plain = create_model("small_cnn", rngs=nnx.Rngs(0), width=0.25)
    plain.eval()
    assert np.abs(np.asarray(plain(x)) - np.asarray(plain(mirror))).max() > 1e-4
    np.testing.assert_allclose(
        np.asarray(model(x)),
        (
            np.asarray(plain.features(x)).mean(axis=(1, 2))
            + np.asarray(plain.features(mirror)).mean(axis=(1, 2))
        )
        / 2
        @ np.asarray(plain.head.kernel)
        + np.asarray(plain.head.bias),
        atol=1e-4,
    )
    # Training and intermediates see the image alone.
    _, inter = model.features(x, return_intermediates=True)
    assert set(inter) == set(model.stage_names)
    model.train()
    assert not model.deterministic
    assert np.abs(np.asarray(model(x)) - np.asarray(model(mirror))).max() > 1e-4
    with pytest.raises(ValueError, match="test_time_flip"):
        create_model("small_cnn", rngs=nnx.Rngs(0), test_time_flip="yes")


def test_flip_averaged_lines_the_mirror_pass_up_with_the_image():
    """A stride-4 map whose cell i is centred at pixel 4i (symmetric padding): the mirror pass's
    cell i sits at pixel 4i + 3, so unshifted the average of a bump at cell 3 smears into cell 2;
    shifted one cell, it peaks at cell 3."""
    from train_jax.models.base import flip_averaged

    bump = np.exp(-0.5 * ((np.arange(32) - 12) / 1.5) ** 2).astype(np.float32)
    x = np.broadcast_to(bump[None, None, :, None], (1, 4, 32, 1))

    def sample(v):
        return v[:, ::4, ::4, :]

    aligned = np.asarray(flip_averaged(sample, x, 1))[0, 0, :, 0]
    plain = np.asarray(flip_averaged(sample, x, 0))[0, 0, :, 0]
    assert aligned.argmax() == 3 and aligned[3] > 0.85
    assert plain[3] < 0.6 and plain[2] > 0.4
    np.testing.assert_allclose(aligned.mean(), plain.mean(), rtol=1e-6)  # pooling unchanged
