"""The ordinal acne-severity head: cumulative -> class probabilities, grade, loss, training."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from core.severity import severity_grade as numpy_grade
from train_jax import losses
from train_jax.models import create_model
from train_jax.models.ordinal import (
    OrdinalHead,
    cumulative_to_class_probs,
    ordinal_targets,
    severity_grade,
    severity_probs,
)

ARRAY_TYPES = [list, np.asarray, jnp.asarray]


@pytest.mark.parametrize("as_array", ARRAY_TYPES)
def test_class_probs_by_hand(as_array) -> None:
    # c = P(grade > k) = (0.9, 0.6, 0.2): p = (1 - 0.9, 0.9 - 0.6, 0.6 - 0.2, 0.2)
    p = cumulative_to_class_probs(jnp.asarray(as_array([[0.9, 0.6, 0.2]])))
    np.testing.assert_allclose(p, [[0.1, 0.3, 0.4, 0.2]], atol=1e-6)


def test_class_probs_clip_and_renormalise_inconsistent_cumulatives() -> None:
    # c = (0.5, 0.7, 0.1) is not non-increasing: raw p = (0.5, -0.2, 0.6, 0.1) -> clipped
    # (0.5, 0, 0.6, 0.1), sum 1.2 -> (5/12, 0, 6/12, 1/12).
    p = cumulative_to_class_probs(jnp.array([0.5, 0.7, 0.1]))
    np.testing.assert_allclose(p, [5 / 12, 0.0, 0.5, 1 / 12], atol=1e-6)
    assert float(p.sum()) == pytest.approx(1.0, abs=1e-6)


def test_severity_probs_of_logits() -> None:
    logits = jnp.array([[math.log(9.0), 0.0, -math.log(3.0)]])  # sigmoid: 0.9, 0.5, 0.25
    np.testing.assert_allclose(severity_probs(logits), [[0.1, 0.4, 0.25, 0.25]], atol=1e-6)


@pytest.mark.parametrize(
    ("probs", "grade"),
    [
        ([0.1, 0.3, 0.4, 0.2], 2),  # cumsum 0.1, 0.4, 0.8: median in grade 2
        ([0.5, 0.2, 0.2, 0.1], 0),  # P(grade > 0) = 0.5 is not > 0.5
        ([0.0, 0.0, 0.0, 1.0], 3),
        ([0.2, 0.2, 0.2, 0.4], 2),  # the median (2), not the argmax (3)
    ],
)
def test_grade_is_the_median_in_jax_and_numpy(probs, grade) -> None:
    assert int(severity_grade(jnp.array(probs))) == grade
    assert int(numpy_grade(np.array(probs))) == grade


def test_grade_equals_the_count_of_cumulatives_above_half() -> None:
    c = jnp.sort(jax.random.uniform(jax.random.key(0), (64, 3)), axis=1)[:, ::-1]
    expected = (c > 0.5).sum(axis=1)
    np.testing.assert_array_equal(severity_grade(cumulative_to_class_probs(c)), expected)


def test_ordinal_targets() -> None:
    np.testing.assert_array_equal(
        ordinal_targets(jnp.array([0, 1, 2, 3])),
        [[0, 0, 0], [1, 0, 0], [1, 1, 0], [1, 1, 1]],
    )


def test_ordinal_loss_by_hand_and_masked() -> None:
    logits = jnp.array([[2.0, 0.0, -1.0], [5.0, 5.0, 5.0], [0.0, 0.0, 0.0]])
    grades = jnp.array([1, 3, 0])
    # Row 0: targets (1, 0, 0): -log s(2) - log(1 - s(0)) - log(1 - s(-1)), mean over 3.
    s = lambda z: 1 / (1 + math.exp(-z))  # noqa: E731
    row0 = -(math.log(s(2.0)) + math.log(1 - s(0.0)) + math.log(1 - s(-1.0))) / 3
    row2 = math.log(2.0)  # targets (0, 0, 0) at logits 0
    loss, n = losses.ordinal_loss(logits, grades, jnp.array([1.0, 0.0, 1.0]))
    assert float(loss) == pytest.approx((row0 + row2) / 2, rel=1e-6) and int(n) == 2
    none, n0 = losses.ordinal_loss(logits, grades, jnp.zeros(3))
    assert float(none) == 0.0 and int(n0) == 0


def test_head_starts_rank_consistent_and_counts_c_plus_3_parameters() -> None:
    head = OrdinalHead(16, rngs=nnx.Rngs(0))
    n = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(nnx.state(head, nnx.Param)))
    assert n == 16 + 3  # one shared weight vector + one bias per cumulative event
    pooled = jax.random.normal(jax.random.key(1), (5, 16))
    c = jax.nn.sigmoid(head(pooled))
    assert c.shape == (5, 3) and bool(jnp.all(c[:, :-1] >= c[:, 1:]))


@pytest.mark.parametrize("name", ["small_cnn", "vit_tiny"])
def test_every_model_has_the_severity_head_beside_the_condition_head(name) -> None:
    kw = {"width": 0.25} if name == "small_cnn" else {"image_size": 32}
    model = nnx.eval_shape(lambda: create_model(name, rngs=nnx.Rngs(0), **kw))
    x = jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.float32)
    graphdef, state = nnx.split(model)

    def shapes(state, x):
        m = nnx.merge(graphdef, state)
        return m(x), m.severity_logits(x), m.severity_probs(x)

    logits, sev_logits, sev_probs = jax.eval_shape(shapes, state, x)
    assert logits.shape == (2, 3) and sev_logits.shape == (2, 3) and sev_probs.shape == (2, 4)


def test_a_few_train_steps_lower_the_severity_loss() -> None:
    """The trainer's step with severity labels (a few unknown): its severity loss goes down."""
    from tests.train_jax.conftest import severity_batch, train_on_one_batch

    rng = np.random.default_rng(0)
    b = 8
    # Severity follows the image's brightness, so the head can learn it from pooled features.
    grades = np.arange(b) % 4
    images = np.stack([np.full((32, 32, 3), 40 + 60 * g, np.uint8) for g in grades])
    images = np.clip(images + rng.integers(-10, 10, images.shape), 0, 255).astype(np.uint8)
    known = np.array([1, 1, 1, 1, 1, 1, 0, 0], np.float32)
    batch = severity_batch(images, severity=grades.astype(np.int32), severity_mask=known)
    model = create_model("small_cnn", rngs=nnx.Rngs(0), width=0.25)
    _, history = train_on_one_batch(model, batch, steps=12, total_steps=40)
    assert all(np.isfinite(history))
    assert history[-1] < 0.7 * history[0], history
