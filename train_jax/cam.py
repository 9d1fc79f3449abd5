"""Class activation maps for the NNX models: the in-graph CAM head used at export, Grad-CAM,
Grad-CAM++ and ViT token maps.

Every model of `train_jax.models` ends in `features(x) -> [B, h, w, K]` and a GAP + linear head,
`logits = head(mean(features, axis=(1, 2)))`. For such a head the class activation map
`CAM_c = ReLU(sum_k W[k, c] * A_k)` needs no gradient, so it is part of the forward pass and of the
exported ONNX graph (`with_cam`). Grad-CAM on that last feature map has weights
`mean_ij d logit_c / d A_ij,k = W[k, c] / (h * w)`, i.e. it is the same map up to a positive scale,
which the per-map normalisation removes (tested to 1e-5).

Grad-CAM / Grad-CAM++ at any *intermediate* layer need gradients, which jax2onnx cannot export;
they are for analysis in JAX (`make_cam_fn`). A layer is named either by a stage of the model
(`model.stage_names`, e.g. "blocks.5"; the gradient is taken through `model.logits_from`, see
`train_jax.models.base`) or, for anything finer, by its attribute path ("blocks.3.dw",
"blocks.-1"): that sub-module's output is then captured by a probe swapped in inside the traced
function (the model object itself is never changed). A layer output of rank 3 ([B, T, D], ViT
tokens) is turned into the patch grid by dropping the leading class/register tokens
(`model.num_prefix_tokens` if the model has it, else a class token is inferred from the count) and
reshaping to [B, g, g, D]: gradient-weighted token maps.

Maps are upsampled to the input size with constant bilinear matrices (`bilinear_matrix`;
`jax.image.resize` itself does not export with a symbolic batch), with each cell placed where it
sits in the input (`cell_alignment`: "corner" for the CNNs, whose k // 2 padding centres cell j
of a stride-s map on pixel s * j; "center", the half-pixel convention of `jax.image.resize`, for
ViT patches), and then normalised per image and class by their maximum:
`cam / max(max(cam), EPS)`.
A map whose maximum is below `EPS` (in particular an all-zero map: no positive evidence for the
class anywhere) is not blown up from rounding noise; it stays (near) zero.

    from train_jax.cam import make_cam_fn, with_cam
    probs, cam = with_cam(model)(images)                    # export path, [B,3], [B,3,H,W]
    cam_fn = make_cam_fn(model, method="gradcam++", layer="blocks.10")
    probs, cam = cam_fn(images)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

EPS = 1e-8
METHODS = ("cam", "gradcam", "gradcam++")
ALIGNS = ("center", "corner")

CamFn = Callable[[jax.Array], tuple[jax.Array, jax.Array]]


# --------------------------------------------------------------------------- upsampling


def bilinear_matrix(in_size: int, out_size: int, align: str = "center") -> np.ndarray:
    """Bilinear interpolation matrix R [out, in] (float32); `align` says where cell j sits.

    * "center": cell j covers output pixels [j*s, (j+1)*s) and sits at its centre
      (`(j + 0.5) * s - 0.5`, s = out / in): `R @ v == jax.image.resize(v, (out,), "bilinear")`
      (triangle kernel, widened when shrinking as jax's antialias does, edges clamped). Right for
      ViT patch tokens.
    * "corner": cell j sits at output pixel `j * s`: the receptive-field centre of a CNN whose
      convolutions pad symmetrically by k // 2 (each stride-2 layer maps output j to input 2j).
      Beyond the last cell the map is clamped.

    >>> bilinear_matrix(2, 4).tolist()
    [[1.0, 0.0], [0.75, 0.25], [0.25, 0.75], [0.0, 1.0]]
    >>> bilinear_matrix(2, 4, "corner").tolist()
    [[1.0, 0.0], [0.5, 0.5], [0.0, 1.0], [0.0, 1.0]]
    """
    if in_size < 1 or out_size < 1:
        raise ValueError(f"sizes must be >= 1, got in_size={in_size}, out_size={out_size}")
    if align not in ALIGNS:
        raise ValueError(f"unknown align {align!r}; choose one of {sorted(ALIGNS)}")
    if align == "corner":
        u = np.clip(np.arange(out_size, dtype=np.float64) * in_size / out_size, 0, in_size - 1)
        lo = np.floor(u).astype(int)
        hi = np.minimum(lo + 1, in_size - 1)
        frac = u - lo
        r = np.zeros((out_size, in_size), np.float64)
        r[np.arange(out_size), lo] += 1.0 - frac
        r[np.arange(out_size), hi] += frac
        return r.astype(np.float32)
    f32 = np.float32
    inv_scale = f32(1.0 / (out_size / in_size))
    kernel_scale = max(inv_scale, f32(1.0))
    sample = (np.arange(out_size, dtype=f32) + f32(0.5)) * inv_scale - f32(0.5)
    dist = np.abs(sample[None, :] - np.arange(in_size, dtype=f32)[:, None]) / kernel_scale
    weights = np.maximum(f32(0.0), f32(1.0) - dist).astype(f32)
    total = weights.sum(axis=0, keepdims=True)
    ok = np.abs(total) > 1000.0 * np.finfo(np.float32).eps
    weights = np.where(ok, weights / np.where(total != 0, total, 1), 0)
    inside = (sample >= -0.5) & (sample <= in_size - 0.5)
    weights = np.where(inside[None, :], weights, 0)
    return np.ascontiguousarray(weights.T, dtype=f32)


def upsample_maps(maps: jax.Array, size: Sequence[int], align: str = "center") -> jax.Array:
    """Bilinear-resize maps [B, C, h, w] to [B, C, H, W] with constant matrices (exportable)."""
    h, w = int(maps.shape[-2]), int(maps.shape[-1])
    out_h, out_w = int(size[0]), int(size[1])
    if (h, w) == (out_h, out_w):
        return maps
    ry = jnp.asarray(bilinear_matrix(h, out_h, align))
    rx = jnp.asarray(bilinear_matrix(w, out_w, align))
    return jnp.einsum("yh,bchw,xw->bcyx", ry, maps, rx, precision=jax.lax.Precision.HIGHEST)


def normalize_maps(maps: jax.Array) -> jax.Array:
    """Scale each map [..., H, W] to [0, 1] by its maximum; maps with max < EPS stay near zero."""
    peak = jnp.max(maps, axis=(-2, -1), keepdims=True)
    return maps / jnp.maximum(peak, EPS)


# --------------------------------------------------------------------------- maps from weights


def class_activation_map(features: jax.Array, kernel: jax.Array) -> jax.Array:
    """CAM of a GAP + linear head: ReLU(sum_k kernel[k, c] * A[..., k]), [B,h,w,K] -> [B,C,h,w]."""
    cam = jnp.einsum("bhwk,kc->bchw", features, kernel, precision=jax.lax.Precision.HIGHEST)
    return jax.nn.relu(cam)


def gradcam_weights(acts: jax.Array, grads: jax.Array) -> jax.Array:
    """Grad-CAM channel weights: spatial mean of the gradient, [B,h,w,K] -> [B,K]."""
    return jnp.mean(grads, axis=(1, 2))


def gradcampp_weights(acts: jax.Array, grads: jax.Array) -> jax.Array:
    """Grad-CAM++ channel weights (Chattopadhay et al. 2018, exp-score closed form), [B,K].

    alpha = g^2 / (2 g^2 + sum_ij(A) g^3), weight = sum_ij alpha * ReLU(g); alpha = 0 where g = 0.
    """
    g2 = grads * grads
    g3 = g2 * grads
    sum_acts = jnp.sum(acts, axis=(1, 2), keepdims=True)
    denom = 2.0 * g2 + sum_acts * g3
    safe = jnp.where(denom != 0, denom, 1.0)
    alpha = jnp.where((grads != 0) & (denom != 0), g2 / safe, 0.0)
    return jnp.sum(alpha * jax.nn.relu(grads), axis=(1, 2))


def weighted_map(acts: jax.Array, weights: jax.Array) -> jax.Array:
    """ReLU(sum_k weights[b, k] * A[b, :, :, k]) -> [B, h, w]."""
    return jax.nn.relu(jnp.einsum("bhwk,bk->bhw", acts, weights, precision="highest"))


_WEIGHT_FNS = {"gradcam": gradcam_weights, "gradcam++": gradcampp_weights}


# --------------------------------------------------------------------------- in-graph CAM


def cell_alignment(model: nnx.Module) -> str:
    """Where a feature cell sits in the input: "center" for patch models (a `patch_embed`
    stage, ViT), else "corner" (CNNs here pad every convolution symmetrically by k // 2)."""
    return "center" if "patch_embed" in getattr(model, "stage_names", ()) else "corner"


class CamModel(nnx.Module):
    """A model plus its CAM: `__call__(x) -> (probs [B,C] sigmoid, cam [B,C,H,W] in [0,1])`."""

    def __init__(self, model: nnx.Module, align: str | None = None):
        if not hasattr(model, "features") or not isinstance(
            getattr(model, "head", None), nnx.Linear
        ):
            raise ValueError(
                f"{type(model).__name__}: with_cam needs `features(x)` and `head: nnx.Linear` "
                "(a GAP + linear head)"
            )
        self.model = model
        self.align = align or cell_alignment(model)
        if self.align not in ALIGNS:
            raise ValueError(f"unknown align {self.align!r}; choose one of {sorted(ALIGNS)}")

    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        feats = self.model.features(x).astype(jnp.float32)
        logits = self.model.head(jnp.mean(feats, axis=(1, 2)))
        cam = class_activation_map(feats, self.model.head.kernel[...].astype(jnp.float32))
        cam = upsample_maps(cam, x.shape[1:3], self.align)
        return jax.nn.sigmoid(logits.astype(jnp.float32)), normalize_maps(cam)


def with_cam(model: nnx.Module, *, align: str | None = None) -> CamModel:
    """Wrap a GAP + linear-head model so it returns `(probs, cam)`; shares the model's state.

    `align` ("center" or "corner", see `bilinear_matrix`) defaults to `cell_alignment(model)`.
    """
    return CamModel(model, align)


# --------------------------------------------------------------------------- gradient maps


class _Slot:
    """Plain holder the probe talks through (not a pytree, so NNX keeps it static)."""

    def __init__(self) -> None:
        self.mode = "record"
        self.value: Any = None


class _Probe(nnx.Module):
    """Stands in for a sub-module: records its output, or replaces it with a given array."""

    def __init__(self, inner: Any, slot: _Slot):
        self.inner = inner
        self.slot = slot

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.slot.mode == "replace":
            return self.slot.value
        out = self.inner(*args, **kwargs)
        self.slot.value = out
        return out


def _split_path(layer: str) -> list[str | int]:
    parts: list[str | int] = []
    for p in layer.replace("/", ".").split("."):
        if not p:
            raise ValueError(f"bad layer path {layer!r}: empty component")
        parts.append(int(p) if p.lstrip("-").isdigit() else p)
    return parts


def _child(node: Any, key: str | int, layer: str) -> Any:
    try:
        return node[key] if isinstance(key, int) else getattr(node, key)
    except (AttributeError, IndexError, KeyError, TypeError):
        names = (
            sorted(k for k in vars(node) if not k.startswith("_"))
            if hasattr(node, "__dict__")
            else []
        )
        raise ValueError(
            f"layer {layer!r}: {type(node).__name__} has no child {key!r}; children: {names}"
        ) from None


def _install_probe(model: nnx.Module, layer: str, slot: _Slot) -> None:
    parts = _split_path(layer)
    parent = model
    for key in parts[:-1]:
        parent = _child(parent, key, layer)
    last = parts[-1]
    inner = _child(parent, last, layer)
    if isinstance(last, int):
        parent[last] = _Probe(inner, slot)
    else:
        setattr(parent, last, _Probe(inner, slot))


def tokens_to_grid(tokens: jax.Array, num_prefix: int | None = None) -> jax.Array:
    """ViT tokens [B, T, D] -> patch grid [B, g, g, D], dropping `num_prefix` leading tokens.

    `num_prefix=None` guesses: 0 if T is a square, else 1 (a class token) if T - 1 is.
    """
    t = int(tokens.shape[1])
    candidates = (0, 1) if num_prefix is None else (int(num_prefix),)
    for prefix in candidates:
        g = int(round(max(t - prefix, 0) ** 0.5))
        if g > 0 and g * g == t - prefix:
            return tokens[:, prefix:, :].reshape(tokens.shape[0], g, g, tokens.shape[2])
    raise ValueError(
        f"cannot arrange {t} tokens into a square patch grid (prefix tokens tried: {candidates})"
    )


def _as_grid(act: jax.Array, num_prefix: int | None) -> jax.Array:
    if act.ndim == 4:
        return act
    if act.ndim == 3:
        return tokens_to_grid(act, num_prefix)
    raise ValueError(f"CAM layer output must be [B,h,w,K] or [B,T,D], got shape {act.shape}")


def make_cam_fn(
    model: nnx.Module,
    *,
    method: str = "gradcam",
    layer: str | None = None,
    upsample: bool = True,
    align: str | None = None,
) -> CamFn:
    """Jitted `fn(x [B,H,W,3]) -> (probs [B,C], cam [B,C,H,W] in [0,1])` for every class.

    `method` is one of METHODS; `layer` is a stage name or sub-module path ("blocks.5",
    "blocks.3.dw"; None = the last feature map `model.features`). With `upsample=False` maps
    stay at the layer's resolution; `align` as in `with_cam`.
    Gradients are of the logits (pre-sigmoid). Each call uses the model's current parameters;
    its structure and train/eval mode are fixed when `make_cam_fn` is called.
    """
    align = _check_cam_args(model, method, layer, align)
    graphdef = nnx.graphdef(model)

    @jax.jit
    def cam_fn(state: Any, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        m = nnx.merge(graphdef, state, copy=True)
        if method == "cam":
            logits, cam = _head_cam(m, x)
        else:
            act, tail = _layer_and_tail(m, x, layer)
            logits, grads = _class_gradients(tail, act)
            num_prefix = getattr(m, "num_prefix_tokens", None)
            cam = _gradient_maps(act, grads, _WEIGHT_FNS[method], num_prefix)
        if upsample:
            cam = upsample_maps(cam, x.shape[1:3], align)
        return jax.nn.sigmoid(logits.astype(jnp.float32)), normalize_maps(cam)

    def run(x: jax.Array) -> tuple[jax.Array, jax.Array]:
        return cam_fn(nnx.state(model), jnp.asarray(x, jnp.float32))

    return run


def _check_cam_args(model: nnx.Module, method: str, layer: str | None, align: str | None) -> str:
    """Validate the arguments of `make_cam_fn`; returns the alignment to use."""
    if method not in METHODS:
        raise ValueError(f"unknown CAM method {method!r}; choose one of {sorted(METHODS)}")
    if method == "cam" and layer is not None:
        raise ValueError("method 'cam' uses the last feature map only; pass layer=None")
    if layer is not None:
        _split_path(layer)
    align = align or cell_alignment(model)
    if align not in ALIGNS:
        raise ValueError(f"unknown align {align!r}; choose one of {sorted(ALIGNS)}")
    return align


def _head_cam(m: nnx.Module, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(logits [B,C], CAM [B,C,h,w]) of the GAP + linear head on the last feature map."""
    feats = m.features(x).astype(jnp.float32)
    logits = m.head(jnp.mean(feats, axis=(1, 2)))
    return logits, class_activation_map(feats, m.head.kernel[...].astype(jnp.float32))


def _layer_and_tail(
    m: nnx.Module, x: jax.Array, layer: str | None
) -> tuple[jax.Array, Callable[[jax.Array], jax.Array]]:
    """The output of `layer` on `x` and the function from that output to the logits."""
    if layer is None:
        act = m.features(x)

        def tail(a: jax.Array) -> jax.Array:
            return m.head(jnp.mean(a.astype(jnp.float32), axis=(1, 2)))

    elif layer in getattr(m, "stage_names", ()):
        _, inter = m.features(x, return_intermediates=True)
        act = inter[layer]

        def tail(a: jax.Array) -> jax.Array:
            return m.logits_from(layer, a)

    else:
        slot = _Slot()
        _install_probe(m, layer, slot)
        m(x)
        act = slot.value
        if not isinstance(act, jax.Array):
            raise ValueError(f"layer {layer!r} output is {type(act).__name__}, not an array")

        def tail(a: jax.Array) -> jax.Array:
            slot.mode, slot.value = "replace", a
            return m(x)

    return act, tail


def _class_gradients(
    tail: Callable[[jax.Array], jax.Array], act: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """(logits [B,C], d logit_c / d act for every class c, [C, *act.shape])."""
    logits, pullback = jax.vjp(tail, act)
    num_classes = logits.shape[-1]
    cotangents = jnp.broadcast_to(
        jnp.eye(num_classes, dtype=logits.dtype)[:, None, :], (num_classes, *logits.shape)
    )
    (grads,) = jax.vmap(pullback)(cotangents)  # [C, *act.shape]
    return logits, grads


def _gradient_maps(
    act: jax.Array,
    grads: jax.Array,
    weight_fn: Callable[[jax.Array, jax.Array], jax.Array],
    num_prefix: int | None,
) -> jax.Array:
    """Gradient-weighted maps [B, C, h, w] of a layer output and its per-class gradients."""
    acts_g = _as_grid(act.astype(jnp.float32), num_prefix)
    maps = []
    for c in range(grads.shape[0]):
        g = _as_grid(grads[c].astype(jnp.float32), num_prefix)
        maps.append(weighted_map(acts_g, weight_fn(acts_g, g)))
    return jnp.stack(maps, axis=1)  # [B, C, h, w]
