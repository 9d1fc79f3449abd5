"""A finer class map from a CNN's earlier stage: the last feature map, upsampled to the grid of an
earlier stage's output, plus a 1x1 projection of that output (one top-down step of a feature
pyramid network, Lin et al. 2017).

Deep stages see the whole face and say *whether* a condition is present; an earlier stage at
stride 8 still sees lesion-sized details and can say *where*. The condition head (and so the CAM)
then works on the fused map, at the earlier stage's resolution. The projection's BatchNorm scale
starts at zero, so a network started from pretrained weights begins as it was (the fused map is
the upsampled last map) and learns how much detail to add.

The upsampling is a product with constant bilinear matrices (`train_jax.cam.bilinear_matrix`,
"corner" cells: a CNN's cell j of a stride-s map sits on input pixel s * j), so it exports to ONNX
with a symbolic batch.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from train_jax.cam import bilinear_matrix
from train_jax.models.layers import BatchNorm, Conv


def upsample_corner(x: jax.Array, size: tuple[int, int]) -> jax.Array:
    """Bilinear upsampling of `x` [B, h, w, C] to [B, H, W, C] with "corner" cells (cell j of
    the input on cell j * H / h of the output); H / h and W / w must be whole numbers."""
    _, h, w, _ = x.shape
    if size[0] % h or size[1] % w:
        raise ValueError(f"cannot upsample a {h}x{w} map to {size[0]}x{size[1]} by a whole factor")
    rows = jnp.asarray(bilinear_matrix(h, size[0], "corner"), x.dtype)
    cols = jnp.asarray(bilinear_matrix(w, size[1], "corner"), x.dtype)
    return jnp.einsum("Hh,Ww,bhwc->bHWc", rows, cols, x)


class LateralFusion(nnx.Module):
    """`fused = upsample(coarse) + norm(conv1x1(fine))`, on the grid of `fine`; `norm` is the
    projection's BatchNorm, whose scale is set to zero here."""

    def __init__(
        self, fine_channels: int, channels: int, norm: BatchNorm, *, dtype=None, rngs: nnx.Rngs
    ):
        self.project = Conv(fine_channels, channels, 1, dtype=dtype, rngs=rngs)
        self.project_bn = norm
        self.project_bn.scale[...] = jnp.zeros((channels,))  # start as the coarse map alone

    def __call__(self, coarse: jax.Array, fine: jax.Array) -> jax.Array:
        """The fused map [B, h_fine, w_fine, channels]."""
        up = upsample_corner(coarse, (fine.shape[1], fine.shape[2]))
        return up + self.project_bn(self.project(fine)).astype(up.dtype)
