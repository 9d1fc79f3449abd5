"""The interface every classifier here shares: staged features, named intermediates, GAP + head.

A model is a sequence of named stages (``model.stage_names``). ``features(x)`` runs them all on
the normalised input and returns the last feature map ``[B, h, w, C]``;
``features(x, return_intermediates=True)`` also returns ``{stage_name: feature map}``.
``logits_from(name, a)`` continues the forward pass from the output ``a`` of stage ``name`` to the
logits, so Grad-CAM at any stage is ``jax.grad`` of ``logits_from`` with respect to ``a``.
``__call__(x) = head(mean(features(x), axis=(1, 2)))``.

Beside the condition head sits the ordinal acne-severity head (``severity_head``, CORAL,
``train_jax.models.ordinal``) on the same pooled features: ``severity_logits(x)`` gives the
3 cumulative logits ``logit P(grade > k)``, ``severity_from_features(feat)`` the same from a
feature map, and ``severity_probs(x)`` the 4 class probabilities. ``__call__``, ``logits_from``
and ``pool_and_classify`` stay the condition logits (CAM and Grad-CAM use them).

``test_time_flip`` (the ``create_model`` override; default off) averages, in evaluation mode
(``model.eval()``), the feature map of the image with the mirrored feature map of its mirror image
(``flip_averaged``). Everything pooled from ``features`` (probabilities, severity, the pooled
features) then treats a face and its mirror image alike; training (``model.train()``) and
``return_intermediates=True`` (Grad-CAM at a stage) see the image alone. The mirrored map is
first moved ``mirror_shift`` cells along the width (wrapping around, which keeps every pooled
mean exact): a CNN's convolutions pad ``k // 2`` on both sides, so with stride ``s`` cell ``i``
of the mirror pass sits at pixel ``s * i + s - 1`` of the face, not ``s * i``: about one cell
off, which would blur the class map (CAM).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from train_jax.models.count import CountHead
from train_jax.models.input_norm import normalize_input
from train_jax.models.ordinal import OrdinalHead
from train_jax.models.ordinal import severity_probs as _severity_probs

Stage = tuple[str, Callable[[jax.Array], jax.Array]]


def flip_averaged(
    features: Callable[[jax.Array], jax.Array], x: jax.Array, shift: int = 0
) -> jax.Array:
    """Mean of ``features(x)`` and the mirrored ``features`` of the mirrored ``x`` (NHWC, mirror
    = reversed width axis), the latter rolled ``shift`` cells along the width to line its cells
    up with those of ``x``. Its mean over the cells is the same for an image and its mirror."""
    mirrored = features(x[:, :, ::-1, :])[:, :, ::-1, :]
    if shift:
        mirrored = jnp.roll(mirrored, shift, axis=2)
    return (features(x) + mirrored) / 2


class StagedClassifier(nnx.Module):
    """Base class: subclasses set ``self.head``, ``self.severity_head`` and ``self.dtype`` and
    implement ``stages()``.

    ``self.input_norm`` (default "imagenet") picks the in-graph input normalisation.
    """

    head: nnx.Linear
    severity_head: OrdinalHead | CountHead
    dtype: jnp.dtype | None
    input_norm: str = "imagenet"  # see train_jax.models.input_norm.INPUT_NORMS
    test_time_flip: bool = False  # average with the mirror image in evaluation mode
    mirror_shift: int = 0  # cells the mirror pass's map is off by (flip_averaged); CNNs: 1
    deterministic: bool = False  # evaluation mode; model.eval() / model.train() set it

    def stages(self) -> Sequence[Stage]:
        """Return the ``(name, fn)`` pairs applied in order to the normalised image."""
        raise NotImplementedError

    def stage_owners(self) -> dict[str, tuple[str, ...]]:
        """Stage name -> the attribute paths of the sub-modules whose weights it uses
        (`train_jax.freeze`); by default a stage is the attribute of its own name."""
        return {name: (name,) for name in self.stage_names}

    @property
    def stage_names(self) -> tuple[str, ...]:
        """Names of the stages, in forward order (keys of the intermediates dict)."""
        return tuple(name for name, _ in self.stages())

    def features(
        self, x: jax.Array, return_intermediates: bool = False
    ) -> jax.Array | tuple[jax.Array, dict[str, jax.Array]]:
        """Last feature map ``[B, h, w, C]`` of float RGB ``x`` in [0, 255] (NHWC); flip-averaged
        in evaluation mode when ``test_time_flip`` is on (not with intermediates)."""
        if self.test_time_flip and self.deterministic and not return_intermediates:
            return flip_averaged(self._single_view_features, x, self.mirror_shift)
        return self._single_view_features(x, return_intermediates)

    def _single_view_features(
        self, x: jax.Array, return_intermediates: bool = False
    ) -> jax.Array | tuple[jax.Array, dict[str, jax.Array]]:
        h = normalize_input(x, self.input_norm, self.dtype)
        intermediates: dict[str, jax.Array] = {}
        for name, fn in self.stages():
            h = fn(h)
            if return_intermediates:
                intermediates[name] = h
        return (h, intermediates) if return_intermediates else h

    def logits_from(self, name: str, a: jax.Array) -> jax.Array:
        """Logits computed from ``a``, the output of stage ``name``."""
        stages = list(self.stages())
        names = [n for n, _ in stages]
        if name not in names:
            raise ValueError(f"unknown stage {name!r}; stages are {names}")
        for _, fn in stages[names.index(name) + 1 :]:
            a = fn(a)
        return self.pool_and_classify(a)

    def pool_and_classify(self, feat: jax.Array) -> jax.Array:
        """Global average pooling over (h, w), then the linear head, in float32."""
        pooled = jnp.mean(feat.astype(jnp.float32), axis=(1, 2))
        return self.head(pooled)

    def __call__(self, x: jax.Array) -> jax.Array:
        """Logits ``[B, num_classes]``."""
        return self.pool_and_classify(self.features(x))

    def severity_from_features(self, feat: jax.Array) -> jax.Array:
        """``[B, 3]`` cumulative logits ``logit P(grade > k)``, float32 (no dropout, unlike
        EfficientNet's class head): the ordinal head on the features pooled over (h, w), or the
        count head on the feature map itself (`train_jax.models.count`)."""
        if isinstance(self.severity_head, CountHead):
            return self.severity_head(feat)
        pooled = jnp.mean(feat.astype(jnp.float32), axis=(1, 2))
        return self.severity_head(pooled)

    def severity_logits(self, x: jax.Array) -> jax.Array:
        """Cumulative severity logits ``[B, 3]`` of images ``x``."""
        return self.severity_from_features(self.features(x))

    def severity_probs(self, x: jax.Array) -> jax.Array:
        """Severity class probabilities ``[B, 4]`` (grades 0-3) of images ``x``."""
        return _severity_probs(self.severity_logits(x))
