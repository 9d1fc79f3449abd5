"""The compiled CPU kernel (train_jax.models.kernels): built here, bit-identical to pure JAX."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from train_jax.models import kernels, layers

SHAPES = [  # (batch, height, width, channels, k, stride)
    (3, 9, 7, 5, 3, 1),
    (2, 10, 11, 16, 5, 2),
    (2, 7, 9, 8, 3, 2),
    (1, 4, 4, 3, 5, 1),  # kernel wider than the image
]


def _require_kernels() -> None:
    assert kernels.available(), (
        f"compiled CPU kernels did not build: {kernels.build_error()} (needs a C++ compiler)"
    )


@pytest.mark.parametrize("shape", SHAPES)
def test_kernel_grad_equals_pure_jax_bit_for_bit(shape) -> None:
    _require_kernels()
    b, h, w, c, k, s = shape
    rng = np.random.default_rng(0)
    p = k // 2
    x = jnp.asarray(rng.standard_normal((b, h, w, c)), jnp.float32)
    xp = jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
    ho, wo = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    g = jnp.asarray(rng.standard_normal((b, ho, wo, c)), jnp.float32)
    got = jax.jit(kernels.depthwise_kernel_grad_rows, static_argnums=(2, 3))(xp, g, s, k)
    want = jax.jit(kernels.depthwise_kernel_grad_rows_xla, static_argnums=(2, 3))(xp, g, s, k)
    assert got.shape == want.shape == (k * k, ho, c)
    np.testing.assert_array_equal(got, want)
    # The sum itself, against float64 numpy: the shared order is also an accurate one.
    dk = layers._kernel_grad_from_rows(got, k)
    xp64, g64 = np.asarray(xp, np.float64), np.asarray(g, np.float64)
    taps = [
        np.einsum("bhwc,bhwc->c", xp64[:, i : i + s * ho : s, j : j + s * wo : s], g64)
        for i in range(k)
        for j in range(k)
    ]
    np.testing.assert_allclose(dk, np.reshape(taps, (k, k, 1, c)), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("threads", ["1", "3"])
def test_kernel_result_does_not_depend_on_thread_count(monkeypatch, threads) -> None:
    _require_kernels()
    monkeypatch.setenv("FSA_KERNEL_THREADS", threads)
    rng = np.random.default_rng(2)
    xp = jnp.asarray(rng.standard_normal((2, 13, 12, 7)), jnp.float32)
    g = jnp.asarray(rng.standard_normal((2, 11, 10, 7)), jnp.float32)
    got = jax.jit(kernels.depthwise_kernel_grad_rows, static_argnums=(2, 3))(xp, g, 1, 3)
    want = jax.jit(kernels.depthwise_kernel_grad_rows_xla, static_argnums=(2, 3))(xp, g, 1, 3)
    np.testing.assert_array_equal(got, want)


def test_training_gradient_uses_the_kernel_by_default_with_the_same_bits(monkeypatch) -> None:
    _require_kernels()
    monkeypatch.delenv("FSA_CPU_KERNELS", raising=False)  # the default: on
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.standard_normal((2, 8, 8, 6)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((3, 3, 1, 6)), jnp.float32)
    r = jnp.asarray(rng.standard_normal((2, 4, 4, 6)), jnp.float32)

    def loss(x, w):
        # A linear loss: the output gradient is `r` itself. (With an element-wise function of the
        # conv here, XLA may recompute it inside its own reduction loop, where it rounds
        # differently; the real models' gradients are compared in the next test.)
        return jnp.sum(layers.depthwise_conv(x, w, stride=2, impl="slices") * r)

    lowered = jax.jit(jax.grad(loss, argnums=1)).lower(x, w).as_text()
    assert kernels.TARGET in lowered
    with_kernel = jax.jit(jax.grad(loss, argnums=(0, 1)))(x, w)
    monkeypatch.setenv("FSA_CPU_KERNELS", "0")
    assert not kernels.enabled()
    assert kernels.TARGET not in jax.jit(jax.grad(loss, argnums=1)).lower(x, w).as_text()
    without = jax.jit(jax.grad(loss, argnums=(0, 1)))(x, w)
    for a, b in zip(with_kernel, without, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    ("name", "overrides"),
    [
        ("small_cnn", {"width": 0.5, "output_stride": 4, "input_norm": "tone"}),  # the demo's
        ("efficientnet_b0", {}),
    ],
)
def test_model_gradients_are_the_same_bits_with_and_without_the_kernel(
    monkeypatch, name, overrides
) -> None:
    """The training gradients of the real models do not depend on the kernel being used."""
    _require_kernels()
    from flax import nnx

    from train_jax.models import create_model

    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.uniform(0, 255, (4, 64, 64, 3)), jnp.float32)
    y = jnp.asarray(rng.integers(0, 2, (4, 3)), jnp.float32)
    grads = {}
    for setting in ("1", "0"):
        monkeypatch.setenv("FSA_CPU_KERNELS", setting)
        model = create_model(name, rngs=nnx.Rngs(0), image_size=64, **overrides)

        @nnx.jit
        def grad_fn(model, x, y):
            def loss_fn(model):
                return optax.sigmoid_binary_cross_entropy(model(x), y).mean()

            return nnx.grad(loss_fn)(model)

        lowered = grad_fn.lower(model, x, y).as_text()
        assert (kernels.TARGET in lowered) == (setting == "1")
        grads[setting] = jax.tree.leaves(grad_fn(model, x, y))
    assert len(grads["1"]) == len(grads["0"]) > 10
    for a, b in zip(grads["1"], grads["0"], strict=True):
        np.testing.assert_array_equal(a, b)


def test_gradcam_of_a_trained_layout_model_runs_with_the_kernel(monkeypatch) -> None:
    """Grad-CAM pulls back one cotangent per class under vmap through the depthwise convs of a
    model as trained (`slices`, whose gradient calls the kernel): the maps equal the pure-JAX
    ones."""
    _require_kernels()
    from flax import nnx

    from train_jax.cam import make_cam_fn
    from train_jax.models import create_model

    images = np.random.default_rng(4).uniform(0, 255, (2, 64, 64, 3)).astype(np.float32)
    maps = {}
    for setting in ("1", "0"):
        monkeypatch.setenv("FSA_CPU_KERNELS", setting)
        model = create_model("small_cnn", rngs=nnx.Rngs(0), image_size=64, width=0.25)
        model.eval()
        _, maps[setting] = make_cam_fn(model, method="gradcam", layer="blocks.1")(images)
    assert np.asarray(maps["1"]).shape[0] == 2
    np.testing.assert_allclose(maps["1"], maps["0"], atol=1e-6)


def test_self_check_rejects_a_kernel_that_rounds_differently(monkeypatch, tmp_path) -> None:
    _require_kernels()
    real = kernels.depthwise_kernel_grad_rows
    monkeypatch.setattr(
        kernels, "depthwise_kernel_grad_rows", lambda xp, g, s, k: real(xp, g, s, k) * 1.0000001
    )
    with pytest.raises(kernels.KernelBuildError, match="does not reproduce XLA's rounding"):
        kernels._self_check()


def test_failed_build_warns_once_and_reports_why(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("FSA_KERNEL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    monkeypatch.setattr(kernels, "_state", {"ready": None, "error": None})
    with pytest.warns(UserWarning, match="pure-JAX gradient: cannot run .*no-such-compiler"):
        assert not kernels.available()
    assert not kernels.available()  # decided once per process: no second warning
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())
