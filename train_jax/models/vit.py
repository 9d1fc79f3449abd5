"""Vision Transformer (Dosovitskiy et al., 2021), patch 16, GAP head (no class token).

Stages for named intermediates: ``patch_embed`` (16x16 patches + position embedding),
``blocks.0`` ... ``blocks.{depth-1}`` and ``norm`` (the final LayerNorm). Every stage returns the
patch tokens as a grid ``[B, H/16, W/16, D]``, so ``features(x)`` is the normalised token grid of
the last block and CAM works as for a CNN. The position embedding is sized for ``image_size``
(default 224); other input sizes raise a ``ValueError``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import jax
from flax import nnx

from train_jax.models.base import Stage, StagedClassifier
from train_jax.models.layers import DropPath
from train_jax.models.ordinal import OrdinalHead

PATCH = 16
LN_EPSILON = 1e-6


@dataclass(frozen=True)
class ViTVariant:
    """Width, depth, heads and MLP width of one ViT size."""

    dim: int
    depth: int
    heads: int
    mlp_dim: int


VARIANTS: dict[str, ViTVariant] = {
    "tiny": ViTVariant(192, 12, 3, 768),
    "small": ViTVariant(384, 12, 6, 1536),
}


class EncoderBlock(nnx.Module):
    """Pre-norm transformer block: x + MHA(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, v: ViTVariant, *, drop_path: float, dtype, rngs: nnx.Rngs):
        self.norm1 = nnx.LayerNorm(v.dim, epsilon=LN_EPSILON, dtype=dtype, rngs=rngs)
        self.attn = nnx.MultiHeadAttention(
            num_heads=v.heads, in_features=v.dim, decode=False, dtype=dtype, rngs=rngs
        )
        self.norm2 = nnx.LayerNorm(v.dim, epsilon=LN_EPSILON, dtype=dtype, rngs=rngs)
        self.fc1 = nnx.Linear(v.dim, v.mlp_dim, dtype=dtype, rngs=rngs)
        self.fc2 = nnx.Linear(v.mlp_dim, v.dim, dtype=dtype, rngs=rngs)
        self.drop_path = DropPath(drop_path, rngs=rngs)

    def __call__(self, grid: jax.Array) -> jax.Array:
        b, h, w, d = grid.shape
        x = grid.reshape(b, h * w, d)
        x = x + self.drop_path(self.attn(self.norm1(x)))
        x = x + self.drop_path(self.fc2(jax.nn.gelu(self.fc1(self.norm2(x)))))
        return x.reshape(b, h, w, d)


class ViT(StagedClassifier):
    """ViT ``variant`` ("tiny" or "small"), patch 16, GAP over patch tokens, linear head."""

    def __init__(
        self,
        num_classes: int = 3,
        *,
        variant: str = "tiny",
        image_size: int | None = None,
        drop_path_rate: float = 0.0,
        dtype=None,
        rngs: nnx.Rngs,
    ):
        if variant not in VARIANTS:
            raise ValueError(f"unknown ViT variant {variant!r}; choose one of {sorted(VARIANTS)}")
        image_size = 224 if image_size is None else image_size
        if image_size % PATCH:
            raise ValueError(f"ViT image_size must be a multiple of {PATCH}, got {image_size}")
        v = VARIANTS[variant]
        self.dtype = dtype
        self.grid = image_size // PATCH
        self.patch_embed = nnx.Conv(
            3,
            v.dim,
            (PATCH, PATCH),
            strides=(PATCH, PATCH),
            padding="VALID",
            dtype=dtype,
            rngs=rngs,
        )
        self.pos_embed = nnx.Param(
            0.02 * jax.random.normal(rngs.params(), (1, self.grid, self.grid, v.dim))
        )
        self.blocks = nnx.List(
            [
                EncoderBlock(
                    v, drop_path=drop_path_rate * i / max(1, v.depth - 1), dtype=dtype, rngs=rngs
                )
                for i in range(v.depth)
            ]
        )
        self.norm = nnx.LayerNorm(v.dim, epsilon=LN_EPSILON, dtype=dtype, rngs=rngs)
        self.num_features = v.dim
        self.head = nnx.Linear(v.dim, num_classes, kernel_init=nnx.initializers.zeros, rngs=rngs)
        self.severity_head = OrdinalHead(v.dim, rngs=rngs)

    def _embed(self, x: jax.Array) -> jax.Array:
        g = self.grid
        if x.shape[1] != g * PATCH or x.shape[2] != g * PATCH:
            raise ValueError(
                f"this ViT was built for {g * PATCH}x{g * PATCH} inputs (image_size override), "
                f"got {x.shape[1]}x{x.shape[2]}"
            )
        return self.patch_embed(x) + self.pos_embed[...].astype(x.dtype)

    def stages(self) -> Sequence[Stage]:
        """``patch_embed``, ``blocks.i``, ``norm``; each returns a token grid."""
        blocks = [(f"blocks.{i}", b) for i, b in enumerate(self.blocks)]
        return [("patch_embed", self._embed), *blocks, ("norm", self.norm)]
