"""EfficientNet-B0..B3 (Tan & Le, 2019) and EfficientNet-Lite0 in Flax NNX, published layout.

Stages for named intermediates (``features(x, return_intermediates=True)``): ``stem`` (3x3 conv,
stride 2), ``blocks.0`` ... ``blocks.{N-1}`` (every MBConv block in order; N = 16 for B0, 23 for
B1/B2, 26 for B3) and ``top`` (1x1 conv to 1280 * width channels + BN + swish, the CAM layer).

B1-B3 use the compound-scaling coefficients of ``VARIANTS``: channels are multiplied by ``width``
and rounded to multiples of 8 (``round_filters``), repeats by ``depth`` and rounded up
(``round_repeats``). Depthwise convs use ``layers.DepthwiseConv`` (shifted slices to train,
``depthwise_impl="conv"`` to export); padding is symmetric ``k // 2`` as in timm's PyTorch
variants.

``output_stride`` (32, the published network, or 16 or 8) keeps the last stride-2 stage(s) at
stride 1, as DeepLab does: the parameters are the same (ImageNet weights load unchanged) and the
class map is 2x or 4x finer (16x16 instead of 8x8 on a 256 px crop), at about twice (16) or
seven times (8) the compute.

``pyramid_from`` ("blocks.4", the last block at stride 8) adds the output of that block to the
upsampled last map (`train_jax.models.pyramid`): the condition head, and with it the CAM, then
works on a map at that block's stride (32x32 on a 256 px crop) for about 13% more compute
(Lite0: 1.17 against 1.03 GFLOP per 256 px crop).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import jax
import jax.numpy as jnp
from flax import nnx

from train_jax.models.base import Stage, StagedClassifier
from train_jax.models.count import make_severity_head
from train_jax.models.input_norm import INPUT_NORMS
from train_jax.models.layers import (
    BatchNorm,
    Conv,
    DepthwiseConv,
    DropPath,
    dense_init,
    strides_within,
    swish,
)
from train_jax.models.pyramid import LateralFusion


@dataclass(frozen=True)
class Variant:
    """Compound-scaling coefficients of one EfficientNet variant."""

    width: float
    depth: float
    resolution: int
    dropout: float
    lite: bool = False  # EfficientNet-Lite: no squeeze-excite, ReLU6, BatchNorm epsilon 1e-3


VARIANTS: dict[str, Variant] = {
    "b0": Variant(1.0, 1.0, 224, 0.2),
    "b1": Variant(1.0, 1.1, 240, 0.2),
    "b2": Variant(1.1, 1.2, 260, 0.3),
    "b3": Variant(1.2, 1.4, 300, 0.3),
    "lite0": Variant(1.0, 1.0, 224, 0.2, lite=True),
}

# B0 stages: (expansion, output channels, repeats, kernel, stride).
B0_STAGES = (
    (1, 16, 1, 3, 1),
    (6, 24, 2, 3, 2),
    (6, 40, 2, 5, 2),
    (6, 80, 3, 3, 2),
    (6, 112, 3, 5, 1),
    (6, 192, 4, 5, 2),
    (6, 320, 1, 3, 1),
)
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
SE_RATIO = 0.25  # of the block's input channels
BN_MOMENTUM = 0.99
BN_EPSILON = 1e-5  # timm's (PyTorch's) default; the TensorFlow port tf_efficientnet_* uses 1e-3
LITE_BN_EPSILON = 1e-3  # EfficientNet-Lite's weights come from TensorFlow
OUTPUT_STRIDES = (8, 16, 32)


def stage_strides(output_stride: int = 32) -> tuple[int, ...]:
    """Strides of the B0 stages so that the stem (2) times them is at most `output_stride`.

    >>> stage_strides(32), stage_strides(16), stage_strides(8)
    ((1, 2, 2, 2, 1, 2, 1), (1, 2, 2, 2, 1, 1, 1), (1, 2, 2, 1, 1, 1, 1))
    """
    if output_stride not in OUTPUT_STRIDES:
        raise ValueError(f"output_stride must be one of {OUTPUT_STRIDES}, got {output_stride}")
    return strides_within([stage[-1] for stage in B0_STAGES], output_stride)


def round_filters(channels: int, width: float, divisor: int = 8) -> int:
    """Scale ``channels`` by ``width`` and round to a multiple of ``divisor`` (not below 90%)."""
    scaled = channels * width
    new = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if new < 0.9 * scaled:
        new += divisor
    return int(new)


def round_repeats(repeats: int, depth: float) -> int:
    """Scale a stage's block count by ``depth``, rounding up."""
    return int(math.ceil(depth * repeats))


def _bn(c: int, lite: bool = False) -> BatchNorm:
    return BatchNorm(c, momentum=BN_MOMENTUM, epsilon=LITE_BN_EPSILON if lite else BN_EPSILON)


def _activation(lite: bool) -> Callable[[jax.Array], jax.Array]:
    """Swish, or ReLU6 for EfficientNet-Lite."""
    return jax.nn.relu6 if lite else swish


class SqueezeExcite(nnx.Module):
    """Channel gating: GAP -> Linear(C, r) -> swish -> Linear(r, C) -> sigmoid -> scale."""

    def __init__(self, channels: int, reduced: int, *, rngs: nnx.Rngs):
        self.reduce = nnx.Linear(channels, reduced, rngs=rngs)
        self.expand = nnx.Linear(reduced, channels, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        s = jnp.mean(x.astype(jnp.float32), axis=(1, 2))
        s = jax.nn.sigmoid(self.expand(swish(self.reduce(s))))
        return x * s[:, None, None, :].astype(x.dtype)


class MBConv(nnx.Module):
    """Inverted residual: [1x1 expand] -> depthwise kxk -> SE (not Lite) -> 1x1 project (+ skip)."""

    def __init__(
        self,
        cin: int,
        cout: int,
        *,
        expansion: int,
        kernel: int,
        stride: int,
        drop_path: float,
        depthwise_impl: str,
        dtype,
        rngs: nnx.Rngs,
        lite: bool = False,
    ):
        mid = cin * expansion
        self.lite = lite
        if expansion != 1:
            self.expand = Conv(cin, mid, 1, dtype=dtype, rngs=rngs)
            self.expand_bn = _bn(mid, lite)
        else:
            self.expand = None
            self.expand_bn = None
        self.dw = DepthwiseConv(
            mid, kernel, stride=stride, impl=depthwise_impl, dtype=dtype, rngs=rngs
        )
        self.dw_bn = _bn(mid, lite)
        self.se = None if lite else SqueezeExcite(mid, max(1, int(cin * SE_RATIO)), rngs=rngs)
        self.project = Conv(mid, cout, 1, dtype=dtype, rngs=rngs)
        self.project_bn = _bn(cout, lite)
        self.skip = stride == 1 and cin == cout
        self.drop_path = DropPath(drop_path, rngs=rngs) if self.skip else None

    def __call__(self, x: jax.Array) -> jax.Array:
        act = _activation(self.lite)
        h = x
        if self.expand is not None:
            h = act(self.expand_bn(self.expand(h)))
        h = act(self.dw_bn(self.dw(h)))
        if self.se is not None:
            h = self.se(h)
        h = self.project_bn(self.project(h))
        if self.skip:
            h = self.drop_path(h) + x
        return h


def _pyramid_index(name: str, strides: list[int]) -> int | None:
    """Index of block ``name`` ("blocks.i") for ``pyramid_from``, None for ""; its output must
    be finer than the last block's."""
    if not name:
        return None
    n = len(strides)
    index = int(name.split(".")[1]) if name.startswith("blocks.") and name[7:].isdigit() else -1
    if not 0 <= index < n - 1:
        raise ValueError(f"pyramid_from must be one of blocks.0 .. blocks.{n - 2}, got {name!r}")
    if math.prod(strides[index + 1 :]) == 1:
        raise ValueError(
            f"pyramid_from={name!r}: that block's map is as coarse as the last one (output stride)"
        )
    return index


class EfficientNet(StagedClassifier):
    """EfficientNet ``variant`` ("b0".."b3", "lite0") with a ``num_classes`` linear head."""

    mirror_shift = 1  # symmetric k // 2 padding, output stride >= 4 (models.base.flip_averaged)

    def __init__(
        self,
        num_classes: int = 3,
        *,
        variant: str | Variant = "b0",
        drop_rate: float | None = None,
        drop_path_rate: float = 0.2,
        depthwise_impl: str = "slices",
        dtype=None,
        image_size: int | None = None,
        input_norm: str = "imagenet",
        output_stride: int = 32,
        pyramid_from: str = "",
        severity_head: str = "ordinal",
        rngs: nnx.Rngs,
    ):
        if input_norm not in INPUT_NORMS:
            raise ValueError(f"unknown input_norm {input_norm!r}; choose one of {INPUT_NORMS}")
        self.input_norm = input_norm
        if isinstance(variant, str) and variant not in VARIANTS:
            raise ValueError(
                f"unknown EfficientNet variant {variant!r}; choose one of {sorted(VARIANTS)}"
            )
        del image_size  # fully convolutional; VARIANTS[variant].resolution is the published size
        # a Variant instance gives a custom scaling (tests use a tiny one)
        v = VARIANTS[variant] if isinstance(variant, str) else variant
        self.dtype = dtype
        self.lite = v.lite
        # Lite keeps the stem and the top at 32 and 1280 channels whatever the width
        c = STEM_CHANNELS if v.lite else round_filters(STEM_CHANNELS, v.width)
        self.stem = Conv(3, c, 3, stride=2, dtype=dtype, rngs=rngs)
        self.stem_bn = _bn(c, v.lite)
        specs = []
        strides = stage_strides(output_stride)
        for (expansion, cout, repeats, kernel, _), stride in zip(B0_STAGES, strides, strict=True):
            cout = round_filters(cout, v.width)
            for i in range(round_repeats(repeats, v.depth)):
                specs.append((c, cout, expansion, kernel, stride if i == 0 else 1))
                c = cout
        blocks = []
        for idx, (cin, cout, expansion, kernel, stride) in enumerate(specs):
            blocks.append(
                MBConv(
                    cin,
                    cout,
                    expansion=expansion,
                    kernel=kernel,
                    stride=stride,
                    # stochastic depth grows linearly with depth, as in the reference code
                    drop_path=drop_path_rate * idx / len(specs),
                    depthwise_impl=depthwise_impl,
                    dtype=dtype,
                    rngs=rngs,
                    lite=v.lite,
                )
            )
        self.blocks = nnx.List(blocks)
        head_c = HEAD_CHANNELS if v.lite else round_filters(HEAD_CHANNELS, v.width)
        self.top = Conv(c, head_c, 1, dtype=dtype, rngs=rngs)
        self.top_bn = _bn(head_c, v.lite)
        self.pyramid_index = _pyramid_index(pyramid_from, [s[4] for s in specs])
        self.pyramid = (
            None
            if self.pyramid_index is None
            else LateralFusion(
                specs[self.pyramid_index][1], head_c, _bn(head_c, v.lite), dtype=dtype, rngs=rngs
            )
        )
        self.num_features = head_c
        rate = v.dropout if drop_rate is None else drop_rate
        self.dropout = nnx.Dropout(rate, rngs=rngs)
        self.head = nnx.Linear(head_c, num_classes, kernel_init=dense_init, rngs=rngs)
        self.severity_head = make_severity_head(severity_head, head_c, rngs=rngs)

    def _stem(self, x: jax.Array) -> jax.Array:
        return _activation(self.lite)(self.stem_bn(self.stem(x)))

    def _top(self, x: jax.Array) -> jax.Array:
        return _activation(self.lite)(self.top_bn(self.top(x)))

    def _pyramid_stage(self, fine: jax.Array) -> jax.Array:
        """The blocks after ``pyramid_from``, ``top``, then the fusion with ``fine``."""
        h = fine
        for block in self.blocks[self.pyramid_index + 1 :]:
            h = block(h)
        return self.pyramid(self._top(h), fine)

    def stages(self) -> Sequence[Stage]:
        """``stem``, ``blocks.i`` for every MBConv block, ``top``; with ``pyramid_from``, the
        blocks after it, ``top`` and the fusion are one stage, ``pyramid``."""
        blocks = [(f"blocks.{i}", b) for i, b in enumerate(self.blocks)]
        if self.pyramid is not None:
            kept = blocks[: self.pyramid_index + 1]
            return [("stem", self._stem), *kept, ("pyramid", self._pyramid_stage)]
        return [("stem", self._stem), *blocks, ("top", self._top)]

    def stage_owners(self) -> dict[str, tuple[str, ...]]:
        """The stem and the top stage own their convolution and its BatchNorm; ``pyramid`` owns
        the blocks it runs, the top and the fusion."""
        owners = {**super().stage_owners(), "stem": ("stem", "stem_bn")}
        if self.pyramid is None:
            return {**owners, "top": ("top", "top_bn")}
        later = tuple(f"blocks.{i}" for i in range(self.pyramid_index + 1, len(self.blocks)))
        return {**owners, "pyramid": (*later, "top", "top_bn", "pyramid")}

    def pool_and_classify(self, feat: jax.Array) -> jax.Array:
        """GAP -> dropout (identity in eval mode) -> linear head."""
        pooled = jnp.mean(feat.astype(jnp.float32), axis=(1, 2))
        return self.head(self.dropout(pooled))
