"""Vision Transformer (Dosovitskiy et al., 2021), patch 16, GAP head over the patch tokens.

The layout is timm's ``vit_tiny_patch16_224`` / ``vit_small_patch16_224`` (pre-norm blocks,
LayerNorm epsilon 1e-6, exact-erf GELU, attention with q/k/v biases), so a timm checkpoint loads
with ``train_jax.pretrained`` and gives timm's outputs. Two options:

* ``class_token`` (default False): prepend a learned class token to the patch tokens, as timm's
  standard checkpoints do. Our ``cls_token`` parameter holds timm's class token plus its
  position embedding (timm adds ``pos_embed[:, 0]`` to it, a constant), so ``pos_embed`` stays
  the grid of patch positions. The class token takes part in attention; it is not pooled.
* ``input_norm`` ("imagenet", the default and what timm's weights expect, or "tone").

The head pools the normalised patch tokens (timm's ``global_pool="avg", fc_norm=False``), never
the class token, so CAM works as for a CNN: ``features(x)`` is the token grid
``[B, H/16, W/16, D]`` after the final LayerNorm.

Stages for named intermediates: ``patch_embed`` (16x16 patches + position embedding),
``blocks.0`` ... ``blocks.{depth-1}`` and ``norm`` (the final LayerNorm). Without a class token
every stage returns the patch tokens as a grid; with one, ``patch_embed`` and the blocks return
the token sequence ``[B, 1 + H/16 * W/16, D]`` (class token first; ``train_jax.cam`` puts it back
on the grid for a layer's Grad-CAM) and ``norm`` the patch grid.
The position embedding is sized for ``image_size`` (default 224); other input sizes raise a
``ValueError``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import jax
import jax.numpy as jnp
from flax import nnx

from train_jax.models.base import Stage, StagedClassifier
from train_jax.models.count import make_severity_head
from train_jax.models.input_norm import INPUT_NORMS
from train_jax.models.layers import DropPath

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
    """Pre-norm transformer block: x + MHA(LN(x)), then x + MLP(LN(x)), on a grid or sequence."""

    def __init__(self, v: ViTVariant, *, drop_path: float, dtype, rngs: nnx.Rngs):
        self.norm1 = nnx.LayerNorm(v.dim, epsilon=LN_EPSILON, dtype=dtype, rngs=rngs)
        self.attn = nnx.MultiHeadAttention(
            num_heads=v.heads, in_features=v.dim, decode=False, dtype=dtype, rngs=rngs
        )
        self.norm2 = nnx.LayerNorm(v.dim, epsilon=LN_EPSILON, dtype=dtype, rngs=rngs)
        self.fc1 = nnx.Linear(v.dim, v.mlp_dim, dtype=dtype, rngs=rngs)
        self.fc2 = nnx.Linear(v.mlp_dim, v.dim, dtype=dtype, rngs=rngs)
        self.drop_path = DropPath(drop_path, rngs=rngs)

    def __call__(self, tokens: jax.Array) -> jax.Array:
        """``[B, h, w, D]`` grid or ``[B, T, D]`` sequence in, the same shape out."""
        shape = tokens.shape
        x = tokens.reshape(shape[0], -1, shape[-1])
        x = x + self.drop_path(self.attn(self.norm1(x)))
        # exact (erf) GELU, as torch.nn.GELU in timm
        x = x + self.drop_path(self.fc2(jax.nn.gelu(self.fc1(self.norm2(x)), approximate=False)))
        return x.reshape(shape)


class ViT(StagedClassifier):
    """ViT ``variant`` ("tiny" or "small"), patch 16, GAP over patch tokens, linear head."""

    def __init__(
        self,
        num_classes: int = 3,
        *,
        variant: str = "tiny",
        image_size: int | None = None,
        drop_path_rate: float = 0.0,
        class_token: bool = False,
        input_norm: str = "imagenet",
        dtype=None,
        severity_head: str = "ordinal",
        rngs: nnx.Rngs,
    ):
        if variant not in VARIANTS:
            raise ValueError(f"unknown ViT variant {variant!r}; choose one of {sorted(VARIANTS)}")
        if input_norm not in INPUT_NORMS:
            raise ValueError(f"unknown input_norm {input_norm!r}; choose one of {INPUT_NORMS}")
        image_size = 224 if image_size is None else image_size
        if image_size % PATCH:
            raise ValueError(f"ViT image_size must be a multiple of {PATCH}, got {image_size}")
        v = VARIANTS[variant]
        self.dtype = dtype
        self.input_norm = input_norm
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
        # class token + its position embedding (see the module docstring); None without one
        self.cls_token = (
            nnx.Param(0.02 * jax.random.normal(rngs.params(), (1, 1, v.dim)))
            if class_token
            else None
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
        self.severity_head = make_severity_head(severity_head, v.dim, rngs=rngs)

    @property
    def num_prefix_tokens(self) -> int:
        """Tokens before the patch tokens in the stage outputs (``train_jax.cam`` drops them)."""
        return 0 if self.cls_token is None else 1

    def _embed(self, x: jax.Array) -> jax.Array:
        """Patch embedding plus position embedding (and the class token, first)."""
        g = self.grid
        if x.shape[1] != g * PATCH or x.shape[2] != g * PATCH:
            raise ValueError(
                f"this ViT was built for {g * PATCH}x{g * PATCH} inputs (image_size override), "
                f"got {x.shape[1]}x{x.shape[2]}"
            )
        grid = self.patch_embed(x) + self.pos_embed[...].astype(x.dtype)
        if self.cls_token is None:
            return grid
        b, _, _, d = grid.shape
        cls = jnp.broadcast_to(self.cls_token[...].astype(grid.dtype), (b, 1, d))
        return jnp.concatenate([cls, grid.reshape(b, g * g, d)], axis=1)

    def _final_norm(self, tokens: jax.Array) -> jax.Array:
        """The final LayerNorm; with a class token, drop it and return the patch grid."""
        h = self.norm(tokens)
        if self.cls_token is None:
            return h
        g = self.grid
        return h[:, 1:].reshape(h.shape[0], g, g, h.shape[-1])

    def stage_owners(self) -> dict[str, tuple[str, ...]]:
        """The patch embedding also owns the position embedding and the class token."""
        owners = {**super().stage_owners(), "patch_embed": ("patch_embed", "pos_embed")}
        if self.cls_token is not None:
            owners["patch_embed"] += ("cls_token",)
        return owners

    def stages(self) -> Sequence[Stage]:
        """``patch_embed``, ``blocks.i``, ``norm``; ``norm`` returns the patch token grid."""
        blocks = [(f"blocks.{i}", b) for i, b in enumerate(self.blocks)]
        return [("patch_embed", self._embed), *blocks, ("norm", self._final_norm)]
