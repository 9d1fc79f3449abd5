"""Model registry: ``create_model(name, *, num_classes=3, rngs, **overrides)``.

Every model takes float32 RGB in [0, 255], NHWC, normalises inside (ImageNet mean/std), and has
``features(x) -> [B, h, w, C]``, ``head: nnx.Linear(C, num_classes)`` and
``__call__(x) = head(mean(features(x), axis=(1, 2)))``. Named intermediates:
``features(x, return_intermediates=True) -> (feat, {stage: map})``, ``model.stage_names`` and
``model.logits_from(stage, a)`` (see ``train_jax.models.base``). Every model also has an
acne-severity head ``severity_head``: ``severity_logits(x) -> [B, 3]`` cumulative logits,
``severity_probs(x) -> [B, 4]``. The override ``severity_head`` picks it: ``"ordinal"`` (default;
CORAL on the pooled features, ``train_jax.models.ordinal``) or ``"count"`` (a Poisson lesion
count from a density map, trained on the count; ``train_jax.models.count``).

Overrides accepted by every model: ``dtype`` (compute dtype, e.g. ``jnp.bfloat16``; parameters
stay float32), ``image_size`` (only ViT needs it: it sizes the position embedding; default 224),
``depthwise_impl`` ("slices" to train, "conv" to export; CNNs only, ignored by ViT), ``input_norm``
("imagenet", "signed", "tone"; ``train_jax.models.input_norm``), ``test_time_flip`` (bool: in
evaluation mode the features are averaged with those of the mirror image;
``train_jax.models.base``).
After construction, ``set_depthwise_impl(model, "slices"|"conv")`` switches depthwise convs and
``set_conv_impl(model, "fast"|"conv")`` switches depthwise and 1x1 convs together ("conv" for
ONNX export: standard ``Conv`` nodes; same parameters, same outputs). Model
specific: ``width``, ``output_stride`` (16, 8, 4 for small_cnn; 32, 16, 8 for EfficientNet),
``drop_rate``/``drop_path_rate`` (EfficientNet), ``drop_path_rate`` and ``class_token`` (ViT).
EfficientNet and ViT have timm's layout: ``train_jax.pretrained`` loads timm checkpoints into
them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from flax import nnx

from train_jax.models.base import StagedClassifier
from train_jax.models.layers import CONV_IMPLS, DEPTHWISE_IMPLS, set_conv_impl, set_depthwise_impl

__all__ = [
    "CONV_IMPLS",
    "DEPTHWISE_IMPLS",
    "MODEL_NAMES",
    "StagedClassifier",
    "create_model",
    "set_conv_impl",
    "set_depthwise_impl",
]


def _small_cnn(num_classes: int, *, rngs: nnx.Rngs, **kw: Any) -> StagedClassifier:
    from train_jax.models.small_cnn import SmallCNN

    return SmallCNN(num_classes, rngs=rngs, **kw)


def _efficientnet(variant: str, num_classes: int, *, rngs: nnx.Rngs, **kw: Any):
    from train_jax.models.efficientnet import EfficientNet

    return EfficientNet(num_classes, variant=variant, rngs=rngs, **kw)


def _vit(variant: str, num_classes: int, *, rngs: nnx.Rngs, **kw: Any):
    from train_jax.models.vit import ViT

    kw.pop("depthwise_impl", None)  # no depthwise convolutions in a ViT
    return ViT(num_classes, variant=variant, rngs=rngs, **kw)


_REGISTRY: dict[str, Callable[..., StagedClassifier]] = {
    "small_cnn": _small_cnn,
    **{
        f"efficientnet_{v}": functools.partial(_efficientnet, v)
        for v in ("b0", "b1", "b2", "b3", "lite0")
    },
    "vit_tiny": functools.partial(_vit, "tiny"),
    "vit_small": functools.partial(_vit, "small"),
}
MODEL_NAMES: tuple[str, ...] = tuple(sorted(_REGISTRY))
# Overrides that change how a model evaluates, not its parameters: a config that starts from
# another run's weights (`--init-from`) keeps its own.
EVALUATION_OVERRIDES: tuple[str, ...] = ("test_time_flip",)
# Overrides every model takes that pick a head, not the backbone the weights come from: a config
# that starts from other weights keeps its own too (the heads start fresh unless kept).
HEAD_OVERRIDES: tuple[str, ...] = ("severity_head",)
# What a config keeps of its own overrides when `--init-from` or `--model` picks the backbone.
CONFIG_OVERRIDES: tuple[str, ...] = (*EVALUATION_OVERRIDES, *HEAD_OVERRIDES)


def create_model(
    name: str, *, num_classes: int = 3, rngs: nnx.Rngs, **overrides: Any
) -> StagedClassifier:
    """Build model ``name`` (one of ``MODEL_NAMES``) in training mode."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(_REGISTRY)}")
    test_time_flip = overrides.pop("test_time_flip", False)
    if not isinstance(test_time_flip, bool):
        raise ValueError(f"test_time_flip must be true or false, got {test_time_flip!r}")
    model = _REGISTRY[name](num_classes, rngs=rngs, **overrides)
    model.test_time_flip = test_time_flip
    return model
