"""Fixtures for the explain tests: tiny real models (small_cnn at width 0.25) and toy models."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from train_jax.models import create_model

IMAGE_SIZE = 32


@pytest.fixture(scope="session")
def tiny_cnn() -> nnx.Module:
    """small_cnn at the smallest width, eval mode, exportable depthwise implementation."""
    model = create_model("small_cnn", rngs=nnx.Rngs(0), width=0.25, depthwise_impl="conv")
    model.eval()
    return model


@pytest.fixture(scope="session")
def tiny_cnn_fine() -> nnx.Module:
    """small_cnn as the demo now builds it: output stride 8, tone-aware input, eval mode."""
    model = create_model(
        "small_cnn",
        rngs=nnx.Rngs(1),
        width=0.25,
        depthwise_impl="conv",
        output_stride=8,
        input_norm="tone",
    )
    model.eval()
    return model


@pytest.fixture(scope="session")
def images() -> np.ndarray:
    """Two random RGB images in [0, 255], [2, 32, 32, 3] float32."""
    rng = np.random.default_rng(0)
    return rng.uniform(0, 255, (2, IMAGE_SIZE, IMAGE_SIZE, 3)).astype(np.float32)


class _Block(nnx.Module):
    """Residual MLP block over tokens."""

    def __init__(self, dim: int, *, rngs: nnx.Rngs):
        self.fc = nnx.Linear(dim, dim, rngs=rngs)

    def __call__(self, t: jax.Array) -> jax.Array:
        return t + jax.nn.gelu(self.fc(t))


class ToyViT(nnx.Module):
    """Patch tokens plus a class token through two residual blocks; GAP over patches + head."""

    def __init__(self, *, patch: int = 8, dim: int = 8, rngs: nnx.Rngs):
        self.patch = patch
        self.embed = nnx.Linear(patch * patch * 3, dim, rngs=rngs)
        self.cls = nnx.Param(jax.random.normal(rngs.params(), (1, 1, dim)))
        self.blocks = nnx.List([_Block(dim, rngs=rngs) for _ in range(2)])
        self.head = nnx.Linear(dim, 3, rngs=rngs)

    def tokens(self, x: jax.Array) -> jax.Array:
        b, h, w, _ = x.shape
        p = self.patch
        patches = x.reshape(b, h // p, p, w // p, p, 3).transpose(0, 1, 3, 2, 4, 5)
        t = self.embed(patches.reshape(b, (h // p) * (w // p), p * p * 3) / 255.0)
        t = jnp.concatenate([jnp.broadcast_to(self.cls[...], (b, 1, t.shape[-1])), t], axis=1)
        for blk in self.blocks:
            t = blk(t)
        return t

    def features(self, x: jax.Array) -> jax.Array:
        t = self.tokens(x)[:, 1:]
        g = int(round(t.shape[1] ** 0.5))
        return t.reshape(t.shape[0], g, g, t.shape[2])

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.head(jnp.mean(self.features(x), axis=(1, 2)))


@pytest.fixture(scope="session")
def toy_vit() -> nnx.Module:
    return ToyViT(rngs=nnx.Rngs(1))
