"""Ordinal acne-severity head (CORAL) and the maths from its cumulative logits to grades.

The grades 0-3 are ordered, so the head predicts the K - 1 = 3 cumulative events "grade > k"
(k = 0, 1, 2) instead of 4 unrelated classes. It is CORAL (Cao, Mirjalili & Raschka 2020,
"Rank consistent ordinal regression for neural networks"): one weight vector shared by the
three events and one bias per event, ``logit_k = w . pooled + b_k``. With shared weights the
three logits differ only by their biases, so ``P(grade > k)`` falls with k whenever the biases do
(CORAL's rank consistency); the biases start decreasing. The head has ``C + 3`` parameters.

From the cumulative probabilities ``c_k = P(grade > k)``:

* class probabilities ``p = [1 - c_0, c_0 - c_1, c_1 - c_2, c_2]``, clipped at 0 and renormalised
  (a no-op while the ``c_k`` are non-increasing; a guard otherwise);
* the grade is the median of ``p``: the number of k with ``P(grade > k) = 1 - cumsum(p)_k > 0.5``.
  For non-increasing ``c_k`` that is CORAL's rule, the count of ``c_k > 0.5``; computed from ``p``,
  it is what a client computes from the exported probabilities too
  (`core.severity.severity_grade`, the numpy twin of `severity_grade` here).

Pure functions, `jax.numpy` only; tested on hand-computed cases.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

NUM_GRADES = 4  # core.schema.SEVERITY_GRADES


def cumulative_to_class_probs(cumulative: jax.Array) -> jax.Array:
    """``P(grade > k)`` [..., K-1] -> class probabilities [..., K] (clipped >= 0, sum 1).

    >>> [round(float(p), 3) for p in cumulative_to_class_probs(jnp.array([0.9, 0.6, 0.2]))]
    [0.1, 0.3, 0.4, 0.2]
    """
    c = cumulative.astype(jnp.float32)
    ones = jnp.ones_like(c[..., :1])
    zeros = jnp.zeros_like(c[..., :1])
    upper = jnp.concatenate([ones, c], axis=-1)  # P(grade > k - 1), k = 0..K-1
    lower = jnp.concatenate([c, zeros], axis=-1)  # P(grade > k)
    p = jnp.maximum(upper - lower, 0.0)
    # Before clipping the terms telescope to 1, so the sum after clipping is >= 1: never 0.
    return p / jnp.sum(p, axis=-1, keepdims=True)


def severity_probs(logits: jax.Array) -> jax.Array:
    """Cumulative logits [..., K-1] -> class probabilities [..., K]."""
    return cumulative_to_class_probs(jax.nn.sigmoid(logits.astype(jnp.float32)))


def severity_grade(probs: jax.Array) -> jax.Array:
    """Median grade of class probabilities [..., K] -> int32 [...] (see the module docstring).

    >>> severity_grade(jnp.array([[0.1, 0.3, 0.4, 0.2], [0.5, 0.2, 0.2, 0.1]])).tolist()
    [2, 0]
    """
    above = 1.0 - jnp.cumsum(probs.astype(jnp.float32), axis=-1)[..., :-1]  # P(grade > k)
    return jnp.sum(above > 0.5, axis=-1).astype(jnp.int32)


def ordinal_targets(grades: jax.Array, num_grades: int = NUM_GRADES) -> jax.Array:
    """Grades [...] (int) -> cumulative 0/1 targets [..., K-1]: ``grade > k``.

    >>> ordinal_targets(jnp.array([0, 2, 3])).astype(int).tolist()
    [[0, 0, 0], [1, 1, 0], [1, 1, 1]]
    """
    k = jnp.arange(num_grades - 1)
    return (grades[..., None] > k).astype(jnp.float32)


class OrdinalHead(nnx.Module):
    """CORAL head: ``logits_k = pooled @ w + b_k`` -> [B, num_grades - 1] cumulative logits."""

    def __init__(self, in_features: int, num_grades: int = NUM_GRADES, *, rngs: nnx.Rngs):
        if num_grades < 2:
            raise ValueError(f"num_grades must be >= 2, got {num_grades}")
        self.num_grades = num_grades
        self.linear = nnx.Linear(
            in_features,
            1,
            use_bias=False,
            kernel_init=nnx.initializers.lecun_normal(),
            rngs=rngs,
        )
        # Decreasing biases (K-1)/(K-1), ..., 1/(K-1), as in the CORAL reference code: the
        # cumulative probabilities start non-increasing in k.
        steps = jnp.arange(num_grades - 1, 0, -1, dtype=jnp.float32)
        self.bias = nnx.Param(steps / (num_grades - 1))

    def __call__(self, pooled: jax.Array) -> jax.Array:
        """Pooled features [B, C] -> cumulative logits [B, num_grades - 1], float32."""
        x = pooled.astype(jnp.float32)
        return self.linear(x) + self.bias[...]
