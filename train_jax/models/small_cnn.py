"""A small, fast depthwise-separable CNN (~135k parameters) for tests and the CPU demo.

Stages: ``stem`` (3x3 conv, stride 2) then ``blocks.0`` ... ``blocks.4`` (depthwise 3x3 +
pointwise, BatchNorm + swish; same-shape blocks are residual). Total stride 16, so a 128 x 128
input gives an 8 x 8 x 256 feature map for CAM.

``output_stride=8`` (or 4) keeps the last stride-2 block(s) at stride 1: a 96 px input then gives
a 12 x 12 map (24 x 24) for a finer CAM, at more compute in the last blocks; the parameters are
the same. ``input_norm`` picks the in-graph input normalisation (``train_jax.models.input_norm``).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
from flax import nnx

from train_jax.models.base import Stage, StagedClassifier
from train_jax.models.count import make_severity_head
from train_jax.models.input_norm import INPUT_NORMS
from train_jax.models.layers import (
    BatchNorm,
    Conv,
    DepthwiseConv,
    dense_init,
    strides_within,
    swish,
)

# (output channels, stride) per depthwise-separable block; the stem has 32 channels.
SMALL_CNN_BLOCKS = ((64, 2), (128, 2), (128, 1), (256, 2), (256, 1))
STEM_CHANNELS = 32
OUTPUT_STRIDES = (4, 8, 16)


def block_strides(output_stride: int = 16) -> tuple[int, ...]:
    """Strides of the blocks so that stem (2) times them is at most `output_stride`.

    >>> block_strides(16), block_strides(8), block_strides(4)
    ((2, 2, 1, 2, 1), (2, 2, 1, 1, 1), (2, 1, 1, 1, 1))
    """
    if output_stride not in OUTPUT_STRIDES:
        raise ValueError(f"output_stride must be one of {OUTPUT_STRIDES}, got {output_stride}")
    return strides_within([stride for _, stride in SMALL_CNN_BLOCKS], output_stride)


class SeparableBlock(nnx.Module):
    """Depthwise 3x3 -> BN -> swish -> pointwise -> BN (-> + input) -> swish."""

    def __init__(self, cin: int, cout: int, stride: int, *, depthwise_impl: str, dtype, rngs):
        self.dw = DepthwiseConv(cin, 3, stride=stride, impl=depthwise_impl, dtype=dtype, rngs=rngs)
        self.bn1 = BatchNorm(cin)
        self.pw = Conv(cin, cout, 1, dtype=dtype, rngs=rngs)
        self.bn2 = BatchNorm(cout)
        self.residual = stride == 1 and cin == cout

    def __call__(self, x: jax.Array) -> jax.Array:
        h = swish(self.bn1(self.dw(x)))
        h = self.bn2(self.pw(h))
        if self.residual:
            h = h + x
        return swish(h)


class SmallCNN(StagedClassifier):
    """Depthwise-separable CNN; ``width`` scales every channel count, ``output_stride`` (16, 8
    or 4) sets the feature map's stride, ``input_norm`` the input normalisation."""

    mirror_shift = 1  # symmetric k // 2 padding, output stride >= 4 (models.base.flip_averaged)

    def __init__(
        self,
        num_classes: int = 3,
        *,
        width: float = 1.0,
        depthwise_impl: str = "slices",
        dtype=None,
        image_size: int | None = None,
        output_stride: int = 16,
        input_norm: str = "imagenet",
        severity_head: str = "ordinal",
        rngs: nnx.Rngs,
    ):
        del image_size  # fully convolutional: any input size works
        if input_norm not in INPUT_NORMS:
            raise ValueError(f"unknown input_norm {input_norm!r}; choose one of {INPUT_NORMS}")
        self.dtype = dtype
        self.input_norm = input_norm
        self.output_stride = output_stride
        c = max(8, int(STEM_CHANNELS * width))
        self.stem = Conv(3, c, 3, stride=2, dtype=dtype, rngs=rngs)
        self.stem_bn = BatchNorm(c)
        blocks = []
        for (cout, _), stride in zip(SMALL_CNN_BLOCKS, block_strides(output_stride), strict=True):
            cout = max(8, int(cout * width))
            blocks.append(
                SeparableBlock(
                    c, cout, stride, depthwise_impl=depthwise_impl, dtype=dtype, rngs=rngs
                )
            )
            c = cout
        self.blocks = nnx.List(blocks)
        self.num_features = c
        self.head = nnx.Linear(c, num_classes, kernel_init=dense_init, rngs=rngs)
        self.severity_head = make_severity_head(severity_head, c, rngs=rngs)

    def _stem(self, x: jax.Array) -> jax.Array:
        return swish(self.stem_bn(self.stem(x)))

    def stage_owners(self) -> dict[str, tuple[str, ...]]:
        """The stem owns its convolution and its BatchNorm."""
        return {**super().stage_owners(), "stem": ("stem", "stem_bn")}

    def stages(self) -> Sequence[Stage]:
        """``stem``, then ``blocks.i``."""
        return [("stem", self._stem)] + [(f"blocks.{i}", b) for i, b in enumerate(self.blocks)]
