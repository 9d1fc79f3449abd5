"""The compiled CPU kernel (train_jax.models.kernels): built here, equal to the pure-JAX path."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
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
def test_kernel_grad_matches_pure_jax(shape) -> None:
    _require_kernels()
    b, h, w, c, k, s = shape
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((b, h, w, c)), jnp.float32)
    ho, wo = (h + 2 * (k // 2) - k) // s + 1, (w + 2 * (k // 2) - k) // s + 1
    g = jnp.asarray(rng.standard_normal((b, ho, wo, c)), jnp.float32)
    got = jax.jit(kernels.depthwise_kernel_grad, static_argnums=(2, 3))(x, g, s, k)
    p = k // 2
    want = layers._depthwise_kernel_grad_xla(jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0))), g, s, k)
    assert got.shape == want.shape == (k, k, 1, c)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    again = jax.jit(kernels.depthwise_kernel_grad, static_argnums=(2, 3))(x, g, s, k)
    np.testing.assert_array_equal(got, again)  # fixed batch split: deterministic


def test_training_gradient_uses_the_kernel_only_when_asked(monkeypatch) -> None:
    _require_kernels()
    monkeypatch.setenv("FSA_CPU_KERNELS", "1")
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.standard_normal((2, 8, 8, 6)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((3, 3, 1, 6)), jnp.float32)

    def loss(x, w):
        return jnp.sum(jnp.sin(layers.depthwise_conv(x, w, stride=2, impl="slices")))

    lowered = jax.jit(jax.grad(loss, argnums=1)).lower(x, w).as_text()
    assert kernels.TARGET in lowered
    with_kernel = jax.grad(loss, argnums=(0, 1))(x, w)
    monkeypatch.delenv("FSA_CPU_KERNELS")  # the default: off
    assert not kernels.enabled()
    assert kernels.TARGET not in jax.jit(jax.grad(loss, argnums=1)).lower(x, w).as_text()
    without = jax.grad(loss, argnums=(0, 1))(x, w)
    for a, b in zip(with_kernel, without, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_failed_build_warns_once_and_reports_why(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("FSA_KERNEL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    monkeypatch.setattr(kernels, "_state", {"ready": None, "error": None})
    with pytest.warns(UserWarning, match="pure-JAX gradient: cannot run .*no-such-compiler"):
        assert not kernels.available()
    assert not kernels.available()  # decided once per process: no second warning
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())
