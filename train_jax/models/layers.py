"""Building blocks shared by the models: input normalisation, a fast depthwise conv, BatchNorm.

Why not plain ``nnx.Conv(feature_group_count=C)`` and ``nnx.BatchNorm``? On XLA:CPU a grouped
(depthwise) convolution is very slow, 3.5-10x slower than the same maths written as a sum of
k x k shifted slices times per-channel weights (docs/performance.md). ``DepthwiseConv``
keeps the kernel layout of ``nnx.Conv`` (``[k, k, 1, C]``) and has two implementations with the
same parameters and the same output:

* ``impl="slices"`` (default, for training): shifted slices, with a hand-written backward pass.
* ``impl="conv"``: ``lax.conv_general_dilated(feature_group_count=C)``; use it for ONNX export
  so the graph holds a standard depthwise ``Conv``. Switch a whole model with
  ``set_depthwise_impl(model, "conv")``, or use ``set_conv_impl(model, "conv")`` to also run
  1x1 convs as ``Conv`` (instead of a matmul) for export.

``BatchNorm`` has the parameters and statistics of ``nnx.BatchNorm`` (``scale``, ``bias``,
``mean``, ``var``) and computes the batch mean and mean of squares in one pass, with a custom
backward pass that reuses them. ``model.train()`` / ``model.eval()`` toggle it through its
``use_running_average`` attribute, like ``nnx.BatchNorm``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from jax import lax

from train_jax.models import kernels


def strides_within(strides: Sequence[int], output_stride: int, stem: int = 2) -> tuple[int, ...]:
    """`strides` with the later ones set to 1 so that `stem` times them is at most
    `output_stride` (a finer output map from the same parameters).

    >>> strides_within((2, 2, 1, 2, 1), 8)
    (2, 2, 1, 1, 1)
    """
    total, kept = stem, []
    for stride in strides:
        keep = stride if total * stride <= output_stride else 1
        total *= keep
        kept.append(keep)
    return tuple(kept)


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEPTHWISE_IMPLS = ("conv", "slices")
CONV_IMPLS = ("conv", "fast")

Dtype = Any

conv_init = nnx.initializers.variance_scaling(2.0, "fan_out", "normal")
depthwise_init = nnx.initializers.variance_scaling(2.0, "fan_in", "normal", in_axis=(0, 1, 2))
dense_init = nnx.initializers.variance_scaling(1.0 / 3.0, "fan_out", "uniform")


def normalize_image(x: jax.Array, dtype: Dtype | None = None) -> jax.Array:
    """Map float RGB in [0, 255] to ImageNet-normalised values (as one multiply-add)."""
    mean = jnp.asarray(IMAGENET_MEAN, jnp.float32) * 255.0
    inv_std = 1.0 / (jnp.asarray(IMAGENET_STD, jnp.float32) * 255.0)
    y = (x.astype(jnp.float32) - mean) * inv_std
    return y.astype(dtype) if dtype is not None else y


def swish(x: jax.Array) -> jax.Array:
    """Swish / SiLU activation."""
    return jax.nn.silu(x)


# --------------------------------------------------------------------------- depthwise conv


def _out_size(size: int, k: int, stride: int, pad: int) -> int:
    return (size + 2 * pad - k) // stride + 1


def _depthwise_conv_ref(x: jax.Array, kernel: jax.Array, stride: int) -> jax.Array:
    """Depthwise conv via XLA's grouped convolution (symmetric padding k // 2)."""
    k = kernel.shape[0]
    p = k // 2
    return lax.conv_general_dilated(
        x,
        kernel,
        window_strides=(stride, stride),
        padding=((p, p), (p, p)),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=x.shape[-1],
    )


def _slices_forward(xp: jax.Array, kernel: jax.Array, stride: int, out_hw: tuple[int, int]):
    """Sum over the k x k taps of strided slices of the padded input times per-channel weights."""
    k = kernel.shape[0]
    ho, wo = out_hw
    b, _, _, c = xp.shape
    out = None
    for i in range(k):
        for j in range(k):
            tap = lax.slice(
                xp,
                (0, i, j, 0),
                (b, i + stride * (ho - 1) + 1, j + stride * (wo - 1) + 1, c),
                (1, stride, stride, 1),
            )
            term = tap * kernel[i, j, 0]
            out = term if out is None else out + term
    return out


def _use_cpu_kernels(*arrays: jax.Array) -> bool:
    """Whether the compiled CPU kernels (`train_jax.models.kernels`) can serve these arrays."""
    return all(a.dtype == jnp.float32 for a in arrays) and kernels.active()


def _depthwise_slices_padded(x: jax.Array, kernel: jax.Array, stride: int):
    """The depthwise conv's output and the padded input it was computed from."""
    k = kernel.shape[0]
    p = k // 2
    h, w = x.shape[1], x.shape[2]
    out_hw = (_out_size(h, k, stride, p), _out_size(w, k, stride, p))
    xp = jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
    return _slices_forward(xp, kernel, stride, out_hw), xp


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _depthwise_slices(x: jax.Array, kernel: jax.Array, stride: int) -> jax.Array:
    return _depthwise_slices_padded(x, kernel, stride)[0]


def _depthwise_input_grad(
    g: jax.Array, kernel: jax.Array, stride: int, in_hw: tuple[int, int]
) -> jax.Array:
    """Input gradient of a strided depthwise conv, one output phase at a time (polyphase).

    Input row ``y = stride * m + r`` receives ``g[m + d] * w[i]`` for the taps ``i`` with
    ``r + p - i = stride * d``; computing each of the ``stride**2`` phases on its own grid and
    interleaving them does the forward's amount of work, where dilating ``g`` with zeros
    would do ``stride**2`` times more.
    """
    k = kernel.shape[0]
    p = k // 2
    h, w = in_hw
    b, _, _, c = g.shape
    rows, cols = -(-h // stride), -(-w // stride)
    gp = jnp.pad(g, ((0, 0), (k, k + rows), (k, k + cols), (0, 0)))
    phases = []
    for ry in range(stride):
        row = []
        for rx in range(stride):
            acc = jnp.zeros((b, rows, cols, c), g.dtype)
            for i in range(k):
                if (ry + p - i) % stride:
                    continue
                di = k + (ry + p - i) // stride
                for j in range(k):
                    if (rx + p - j) % stride:
                        continue
                    dj = k + (rx + p - j) // stride
                    tap = lax.slice(gp, (0, di, dj, 0), (b, di + rows, dj + cols, c))
                    acc = acc + tap * kernel[i, j, 0]
            row.append(acc)
        phases.append(jnp.stack(row, axis=3))  # [B, rows, cols, s, C]
    dx = jnp.stack(phases, axis=2)  # [B, rows, s, cols, s, C]
    dx = dx.reshape(b, rows * stride, cols * stride, c)
    return dx[:, :h, :w, :]


def _depthwise_slices_fwd(x, kernel, stride):
    # The residual is the padded input the forward reads anyway: the kernel gradient then reads
    # it as is, where re-padding ``x`` in the backward pass cost a separate copy per layer
    # (about 6 % of a B0 step on XLA:CPU, same gradients bit for bit).
    out, xp = _depthwise_slices_padded(x, kernel, stride)
    return out, (xp, kernel)


def _depthwise_slices_bwd(stride, res, g):
    xp, kernel = res
    k = kernel.shape[0]
    p = k // 2
    h, w = xp.shape[1] - 2 * p, xp.shape[2] - 2 * p
    if stride > 1:
        dx = _depthwise_input_grad(g, kernel, stride, (h, w))
    else:
        # Stride 1: a "full" correlation of the output gradient with the flipped kernel,
        # again as shifted slices, then crop the padding away.
        gp = jnp.pad(g, ((0, 0), (k - 1, k - 1), (k - 1, k - 1), (0, 0)))
        dxp = _slices_forward(gp, kernel[::-1, ::-1], 1, (h + 2 * p, w + 2 * p))
        dx = dxp[:, p : p + h, p : p + w, :]
    if _use_cpu_kernels(xp, g):
        rows = kernels.depthwise_kernel_grad_rows(xp, g, stride, k)
    else:
        rows = kernels.depthwise_kernel_grad_rows_xla(xp, g, stride, k)
    return dx, _kernel_grad_from_rows(rows, k).astype(kernel.dtype)


def _kernel_grad_from_rows(rows: jax.Array, k: int) -> jax.Array:
    """Sum ``[k*k, Ho, C]`` per-row partial sums into the ``[k, k, 1, C]`` kernel gradient."""
    return rows.sum(axis=1).reshape(k, k, 1, rows.shape[-1])


_depthwise_slices.defvjp(_depthwise_slices_fwd, _depthwise_slices_bwd)


def depthwise_conv(
    x: jax.Array, kernel: jax.Array, *, stride: int = 1, impl: str = "slices"
) -> jax.Array:
    """Depthwise conv of NHWC ``x`` with a ``[k, k, 1, C]`` kernel, padding ``k // 2``."""
    if impl == "slices":
        return _depthwise_slices(x, kernel, stride)
    if impl == "conv":
        return _depthwise_conv_ref(x, kernel, stride)
    raise ValueError(f"depthwise impl must be one of {sorted(DEPTHWISE_IMPLS)}, got {impl!r}")


class DepthwiseConv(nnx.Module):
    """Depthwise k x k conv, no bias; ``impl`` picks shifted slices or XLA's grouped conv."""

    def __init__(
        self,
        channels: int,
        kernel_size: int,
        *,
        stride: int = 1,
        impl: str = "slices",
        dtype: Dtype | None = None,
        rngs: nnx.Rngs,
    ):
        if impl not in DEPTHWISE_IMPLS:
            raise ValueError(
                f"depthwise impl must be one of {sorted(DEPTHWISE_IMPLS)}, got {impl!r}"
            )
        self.kernel = nnx.Param(
            depthwise_init(rngs.params(), (kernel_size, kernel_size, 1, channels))
        )
        self.stride = stride
        self.depthwise_impl = impl
        self.dtype = dtype

    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.kernel[...]
        if self.dtype is not None:
            x, kernel = x.astype(self.dtype), kernel.astype(self.dtype)
        return depthwise_conv(x, kernel, stride=self.stride, impl=self.depthwise_impl)


def set_depthwise_impl(model: nnx.Module, impl: str) -> None:
    """Switch every ``DepthwiseConv`` in ``model`` to ``impl`` ("slices" or "conv") in place."""
    if impl not in DEPTHWISE_IMPLS:
        raise ValueError(f"depthwise impl must be one of {sorted(DEPTHWISE_IMPLS)}, got {impl!r}")
    model.set_attributes(depthwise_impl=impl, raise_if_not_found=False)


def set_conv_impl(model: nnx.Module, impl: str) -> None:
    """Pick how all convs run: "fast" (training) or "conv" (export: ONNX ``Conv`` nodes).

    "fast" = depthwise as shifted slices and 1x1 convs as matmuls; "conv" = every conv as
    ``lax.conv_general_dilated``, so onnxruntime sees standard (depthwise) ``Conv`` nodes it
    can fuse with the following BatchNorm. Parameters and outputs are the same either way.
    """
    if impl not in CONV_IMPLS:
        raise ValueError(f"conv impl must be one of {sorted(CONV_IMPLS)}, got {impl!r}")
    set_depthwise_impl(model, "slices" if impl == "fast" else "conv")
    model.set_attributes(
        pointwise_impl="dot" if impl == "fast" else "conv", raise_if_not_found=False
    )


# --------------------------------------------------------------------------- pointwise conv


@jax.custom_vjp
def pointwise_dot(x: jax.Array, w: jax.Array) -> jax.Array:
    """1x1 conv as a matmul over the last axis: ``x [..., Cin] @ w [Cin, Cout]``.

    Same value as ``jnp.dot``; the custom backward pass picks the order of the kernel-gradient
    matmul so that XLA:CPU transposes the operand with fewer channels. Autodiff's order
    (``g^T x``) made XLA transpose the output gradient of every expanding 1x1 conv (the widest
    activation of the block) in a separate strided pass; B0 at 128 px trains about 25 % faster
    without it (docs/performance.md).
    """
    return jnp.dot(x, w)


def _pointwise_dot_fwd(x, w):
    return jnp.dot(x, w), (x, w)


def _pointwise_dot_bwd(res, g):
    x, w = res
    cin, cout = w.shape
    x2, g2 = x.reshape(-1, cin), g.reshape(-1, cout)
    contract_rows = (((0,), (0,)), ((), ()))
    if cin <= cout:
        dw = lax.dot_general(x2, g2, contract_rows)
    else:
        dw = lax.dot_general(g2, x2, contract_rows).T
    dx = lax.dot_general(g, w, (((g.ndim - 1,), (1,)), ((), ())))
    return dx, dw


pointwise_dot.defvjp(_pointwise_dot_fwd, _pointwise_dot_bwd)


class Conv(nnx.Module):
    """Bias-free k x k conv (symmetric padding k // 2), kernel ``[k, k, Cin, Cout]``."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        kernel_size: int = 1,
        *,
        stride: int = 1,
        use_bias: bool = False,
        dtype: Dtype | None = None,
        rngs: nnx.Rngs,
    ):
        shape = (kernel_size, kernel_size, in_features, out_features)
        self.kernel = nnx.Param(conv_init(rngs.params(), shape))
        self.bias = nnx.Param(jnp.zeros((out_features,))) if use_bias else None
        self.stride = stride
        self.dtype = dtype
        # 1x1 convs run as a matmul ("dot", fast in XLA); "conv" keeps an ONNX Conv node
        self.pointwise_impl = "dot"

    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.kernel[...]
        if self.dtype is not None:
            x, kernel = x.astype(self.dtype), kernel.astype(self.dtype)
        k = kernel.shape[0]
        if k == 1 and self.stride == 1 and self.pointwise_impl == "dot":
            y = pointwise_dot(x, kernel[0, 0])
        else:
            p = k // 2
            y = lax.conv_general_dilated(
                x,
                kernel,
                window_strides=(self.stride, self.stride),
                padding=((p, p), (p, p)),
                dimension_numbers=("NHWC", "HWIO", "NHWC"),
            )
        if self.bias is not None:
            y = y + self.bias[...].astype(y.dtype)
        return y


# --------------------------------------------------------------------------- batch norm


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _bn_train(x: jax.Array, scale: jax.Array, bias: jax.Array, eps: float):
    y, mean, var, _ = _bn_train_fwd_core(x, scale, bias, eps)
    return y, mean, var


def _bn_train_fwd_core(x, scale, bias, eps):
    xf = x.astype(jnp.float32)
    axes = tuple(range(x.ndim - 1))
    # One pass over x for both moments (XLA fuses the two reductions into one loop).
    mean = jnp.mean(xf, axis=axes)
    mean_sq = jnp.mean(jnp.square(xf), axis=axes)
    var = jnp.maximum(mean_sq - jnp.square(mean), 0.0)
    rstd = lax.rsqrt(var + eps)
    mul = scale * rstd
    y = (xf * mul + (bias - mean * mul)).astype(x.dtype)
    return y, mean, var, rstd


def _bn_train_fwd(x, scale, bias, eps):
    y, mean, var, rstd = _bn_train_fwd_core(x, scale, bias, eps)
    return (y, mean, var), (x, scale, mean, rstd)


def _bn_train_bwd(eps, res, cts):
    del eps
    x, scale, mean, rstd = res
    gy = cts[0]
    axes = tuple(range(x.ndim - 1))
    n = x.size // x.shape[-1]
    gf = gy.astype(jnp.float32)
    xf = x.astype(jnp.float32)
    # Both sums in one pass; xhat is recomputed rather than stored.
    dbias = jnp.sum(gf, axis=axes)
    sum_gx = jnp.sum(gf * xf, axis=axes)
    dscale = (sum_gx - mean * dbias) * rstd
    a = scale * rstd
    # dx = a * (g - dbias / n - xhat * dscale / n), xhat = (x - mean) * rstd
    c1 = a * rstd * dscale / n
    dx = (a * gf - xf * c1 + (mean * c1 - a * dbias / n)).astype(x.dtype)
    return dx, dscale, dbias


_bn_train.defvjp(_bn_train_fwd, _bn_train_bwd)


class BatchNorm(nnx.Module):
    """BatchNorm over the last axis with fused statistics (state layout of ``nnx.BatchNorm``)."""

    def __init__(
        self,
        num_features: int,
        *,
        momentum: float = 0.99,
        epsilon: float = 1e-3,
        use_running_average: bool = False,
        rngs: nnx.Rngs | None = None,
    ):
        del rngs  # no random initialisation; accepted for symmetry with nnx layers
        self.scale = nnx.Param(jnp.ones((num_features,)))
        self.bias = nnx.Param(jnp.zeros((num_features,)))
        self.mean = nnx.BatchStat(jnp.zeros((num_features,)))
        self.var = nnx.BatchStat(jnp.ones((num_features,)))
        self.momentum = momentum
        self.epsilon = epsilon
        self.use_running_average = use_running_average

    def __call__(self, x: jax.Array) -> jax.Array:
        scale, bias = self.scale[...], self.bias[...]
        if self.use_running_average:
            mul = scale * lax.rsqrt(self.var[...] + self.epsilon)
            shift = bias - self.mean[...] * mul
            return (x * mul.astype(x.dtype) + shift.astype(x.dtype)).astype(x.dtype)
        y, mean, var = _bn_train(x, scale, bias, self.epsilon)
        m = self.momentum
        self.mean[...] = m * self.mean[...] + (1.0 - m) * lax.stop_gradient(mean)
        self.var[...] = m * self.var[...] + (1.0 - m) * lax.stop_gradient(var)
        return y


# --------------------------------------------------------------------------- regularisers


class DropPath(nnx.Module):
    """Stochastic depth: drop the whole residual branch per sample with probability ``rate``."""

    def __init__(self, rate: float, *, rngs: nnx.Rngs, deterministic: bool = False):
        self.rate = rate
        self.deterministic = deterministic
        self.rngs = rngs.dropout.fork() if rate > 0 else nnx.data(None)

    def __call__(self, x: jax.Array) -> jax.Array:
        if self.deterministic or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        key = self.rngs()
        mask = jax.random.bernoulli(key, keep, (x.shape[0],) + (1,) * (x.ndim - 1))
        return x * (mask.astype(x.dtype) / keep)
