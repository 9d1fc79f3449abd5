"""Acne lesion-count head: a Poisson rate from a density map, and the severity it implies.

The acne grades are bands of the lesion count (ACNE04: <=5, 6-20, 21-50, >50;
`core.schema.SEVERITY_COUNT_BANDS`). A grade label keeps only the band a count of 3 or 11
lesions falls in; the count keeps the number. `CountHead` scores every cell of the last feature map,
``s = w . f + b``, and models the image's acne lesion count as Poisson with the rate
``lambda = mean over cells of exp(s)`` (a density map; the mean, not the sum, so the rate does
not depend on the crop size). It is trained on the count (`train_jax.losses.poisson_count_loss`)
and serves the same output as the CORAL head: the cumulative logits ``logit P(grade > k)``,
here ``logit P(N > band_k)`` for ``N ~ Poisson(lambda)`` (`poisson_exceedance_logits`). So the
exported ``severity`` class probabilities, the grade rule and the cutpoints fitted on
validation stay as they are.

`make_severity_head` builds the head a model's ``severity_head`` option names: ``"ordinal"``
(CORAL on the pooled features, `train_jax.models.ordinal`) or ``"count"``.

Pure `jax.numpy` maths (max, exp, log, sums: what ONNX export supports), tested on
hand-computed Poisson tails.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from core.schema import SEVERITY_COUNT_BANDS
from train_jax.models.ordinal import OrdinalHead

SEVERITY_HEADS = ("ordinal", "count")
# The rate is clipped to [exp(-12), 200] lesions: the Poisson sums below stop at MAX_COUNT, where
# a rate of 200 leaves a tail of about 1e-17.
LOG_RATE_RANGE = (-12.0, math.log(200.0))
MAX_COUNT = 320
INIT_RATE = 2.0  # the head starts at a rate of about two lesions


def _logsumexp(x: jax.Array, axis: int = -1) -> jax.Array:
    """log(sum(exp(x))) along `axis` for finite `x` (no infinity handling, so ONNX-exportable)."""
    m = jnp.max(x, axis=axis, keepdims=True)
    return jnp.squeeze(m, axis) + jnp.log(jnp.sum(jnp.exp(x - m), axis=axis))


def poisson_log_pmf(log_rate: jax.Array, max_count: int = MAX_COUNT) -> jax.Array:
    """``log P(N = k)``, k = 0..max_count, of ``N ~ Poisson(exp(log_rate))``: [...] -> [..., K+1].

    `log_rate` is clipped to `LOG_RATE_RANGE` first.
    """
    lr = jnp.clip(log_rate.astype(jnp.float32), *LOG_RATE_RANGE)[..., None]
    k = np.arange(max_count + 1, dtype=np.float32)
    log_factorial = np.array([math.lgamma(i + 1.0) for i in range(max_count + 1)], np.float32)
    return k * lr - jnp.exp(lr) - log_factorial


def poisson_exceedance_logits(
    log_rate: jax.Array, bands: tuple[int, ...] = SEVERITY_COUNT_BANDS
) -> jax.Array:
    """``logit P(N > n)`` for each n in `bands`, ``N ~ Poisson(exp(log_rate))``: [...] -> [..., 3].

    Both tails are summed in log space, so a rate far below or above a band keeps a finite,
    ordered logit (a rate of 0.1 lesions gives logit P(N > 5) of about -20, not -inf).

    >>> [round(float(v), 3) for v in poisson_exceedance_logits(jnp.log(jnp.float32(5.0)))]
    [-0.472, -16.328, -75.227]
    """
    log_pmf = poisson_log_pmf(log_rate)
    out = [_logsumexp(log_pmf[..., n + 1 :]) - _logsumexp(log_pmf[..., : n + 1]) for n in bands]
    return jnp.stack(out, axis=-1)


class CountHead(nnx.Module):
    """Density map ``w . f + b`` per cell -> Poisson log rate [B] -> cumulative logits [B, 3]."""

    def __init__(self, in_features: int, *, rngs: nnx.Rngs):
        # Zero weights: every image starts at the rate INIT_RATE, whatever its features.
        self.linear = nnx.Linear(
            in_features,
            1,
            kernel_init=nnx.initializers.zeros_init(),
            bias_init=nnx.initializers.constant(math.log(INIT_RATE)),
            rngs=rngs,
        )

    def log_rate(self, feat: jax.Array) -> jax.Array:
        """Feature map [B, h, w, C] -> log of the expected lesion count [B], float32."""
        scores = self.linear(feat.astype(jnp.float32))[..., 0]
        cells = scores.reshape(scores.shape[0], -1)
        return _logsumexp(cells, axis=-1) - math.log(cells.shape[-1])

    def __call__(self, feat: jax.Array) -> jax.Array:
        """Feature map [B, h, w, C] -> cumulative logits ``logit P(grade > k)`` [B, 3]."""
        return poisson_exceedance_logits(self.log_rate(feat))


def make_severity_head(kind: str, in_features: int, *, rngs: nnx.Rngs) -> OrdinalHead | CountHead:
    """The severity head a model's ``severity_head`` option names (`SEVERITY_HEADS`)."""
    if kind == "ordinal":
        return OrdinalHead(in_features, rngs=rngs)
    if kind == "count":
        return CountHead(in_features, rngs=rngs)
    raise ValueError(f"severity_head must be one of {list(SEVERITY_HEADS)}, got {kind!r}")
