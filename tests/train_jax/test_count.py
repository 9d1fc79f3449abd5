"""The lesion-count severity head: Poisson tails, the density map, its loss and its training."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from scipy.stats import poisson

from core.schema import SEVERITY_COUNT_BANDS
from core.severity import severity_from_count, severity_grade
from train_jax import losses
from train_jax.models import create_model
from train_jax.models.count import (
    INIT_RATE,
    CountHead,
    make_severity_head,
    poisson_exceedance_logits,
)
from train_jax.models.ordinal import OrdinalHead, severity_probs


@pytest.mark.parametrize("rate", [0.05, 0.7, 3.0, 5.5, 12.0, 25.0, 48.0, 90.0])
def test_exceedance_logits_match_scipys_poisson_tails(rate: float) -> None:
    logits = np.asarray(poisson_exceedance_logits(jnp.log(jnp.float32(rate))))
    expected = np.array(
        [poisson.logsf(n, rate) - poisson.logcdf(n, rate) for n in SEVERITY_COUNT_BANDS]
    )
    # float32 sums: a logit of 33 (a probability within 1e-14 of 1) is good to about 0.01
    np.testing.assert_allclose(logits, expected, rtol=1e-3, atol=2e-3)


def test_exceedance_logits_fall_with_the_band_and_rise_with_the_rate() -> None:
    rates = jnp.log(jnp.array([0.01, 0.5, 2.0, 6.0, 15.0, 40.0, 120.0], jnp.float32))
    logits = np.asarray(poisson_exceedance_logits(rates))
    assert np.isfinite(logits).all()
    assert (np.diff(logits, axis=1) < 0).all()  # P(N > 5) > P(N > 20) > P(N > 50)
    assert (np.diff(logits, axis=0) > 0).all()


def test_the_served_grade_of_a_count_head_is_the_band_of_its_rate() -> None:
    """Through the same class probabilities and median rule as the CORAL head: the grade of a
    rate well inside a band is that band."""
    counts = [1, 12, 35, 80]
    probs = severity_probs(poisson_exceedance_logits(jnp.log(jnp.array(counts, jnp.float32))))
    np.testing.assert_allclose(np.asarray(probs).sum(axis=1), 1.0, atol=1e-5)
    assert severity_grade(np.asarray(probs)).tolist() == [severity_from_count(c) for c in counts]


def test_count_head_starts_at_its_initial_rate_whatever_the_map_size() -> None:
    head = CountHead(16, rngs=nnx.Rngs(0))
    rng = np.random.default_rng(0)
    for side in (2, 5, 8):
        feat = jnp.asarray(rng.normal(size=(3, side, side, 16)), jnp.float32)
        np.testing.assert_allclose(np.exp(np.asarray(head.log_rate(feat))), INIT_RATE, rtol=1e-5)
    # The rate is the mean of the cells' densities: a 2x2 map with densities 9, 1, 1, 1 has the
    # rate (9 + 3) / 4 = 3.
    head.linear.kernel[...] = jnp.ones((16, 1)) / 16
    head.linear.bias[...] = jnp.zeros((1,))
    feat = jnp.zeros((1, 2, 2, 16)).at[0, 0, 0, :].set(jnp.log(9.0))
    assert float(jnp.exp(head.log_rate(feat))[0]) == pytest.approx(3.0, rel=1e-5)


def test_make_severity_head_builds_either_head_and_names_the_choices() -> None:
    assert isinstance(make_severity_head("ordinal", 8, rngs=nnx.Rngs(0)), OrdinalHead)
    assert isinstance(make_severity_head("count", 8, rngs=nnx.Rngs(0)), CountHead)
    with pytest.raises(ValueError, match=r"severity_head must be one of \['ordinal', 'count'\]"):
        make_severity_head("counts", 8, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="severity_head"):
        nnx.eval_shape(lambda: create_model("small_cnn", rngs=nnx.Rngs(0), severity_head="poisson"))


def test_poisson_count_loss_is_lowest_at_the_true_count_and_masks_rows() -> None:
    counts = jnp.array([0.0, 3.0, 17.0, 40.0])
    weight = jnp.array([1.0, 1.0, 1.0, 0.0])

    def loss_at(log_rate: jax.Array) -> jax.Array:
        return losses.poisson_count_loss(log_rate, counts, weight)[0]

    # At rate = count the gradient is 0 for every counted row (rate 0 is clipped, so its row
    # sits at the lowest allowed rate); the masked row has no gradient at all.
    grad = np.asarray(jax.grad(loss_at)(jnp.log(jnp.maximum(counts, 1e-9))))
    np.testing.assert_allclose(grad[1:], 0.0, atol=1e-5)
    assert abs(grad[0]) < 1e-5
    assert float(loss_at(jnp.log(jnp.array([0.5, 3.0, 17.0, 1.0])))) < float(
        loss_at(jnp.log(jnp.array([0.5, 6.0, 17.0, 1.0])))
    )
    _, n = losses.poisson_count_loss(jnp.zeros(4), counts, weight)
    assert int(n) == 3


@pytest.mark.parametrize("name", ["small_cnn", "efficientnet_b0", "vit_tiny"])
def test_models_with_a_count_head_give_the_severity_outputs(name: str) -> None:
    """Every model family takes the option; shapes only (abstract parameters, nothing computed)."""
    overrides = {"width": 0.25} if name == "small_cnn" else {}
    model = nnx.eval_shape(
        lambda: create_model(
            name, rngs=nnx.Rngs(0), severity_head="count", image_size=64, **overrides
        )
    )
    assert isinstance(model.severity_head, CountHead)
    x = jax.ShapeDtypeStruct((2, 64, 64, 3), jnp.float32)
    graphdef, state = nnx.split(model)

    def shapes(state, x):
        m = nnx.merge(graphdef, state)
        return m.severity_logits(x), m.severity_probs(x)

    logits, probs = jax.eval_shape(shapes, state, x)
    assert logits.shape == (2, 3) and probs.shape == (2, 4)


def test_a_few_train_steps_teach_the_count_head_to_count() -> None:
    """The trainer's step on images with 0-40 bright dots (a few counts unknown): the count loss
    falls and the predicted rates rank the images by their number of dots."""
    from tests.train_jax.conftest import severity_batch, train_on_one_batch

    rng = np.random.default_rng(0)
    b = 8
    counts = np.array([0, 2, 5, 9, 14, 20, 30, 40])
    images = np.full((b, 32, 32, 3), 60, np.uint8)
    for i, n in enumerate(counts):
        cells = rng.choice(16 * 16, size=n, replace=False)
        for c in cells:
            y, x = divmod(int(c), 16)
            images[i, 2 * y, 2 * x] = 250
    known = np.array([1, 1, 1, 1, 1, 1, 1, 0], np.float32)
    batch = severity_batch(
        images,
        severity=np.array([severity_from_count(int(c)) for c in counts], np.int32),
        severity_mask=np.ones(b, np.float32),
        lesion_count=counts.astype(np.float32),
        lesion_count_mask=known,
    )
    model = create_model("small_cnn", rngs=nnx.Rngs(0), width=0.25, severity_head="count")
    trained, history = train_on_one_batch(
        model, batch, steps=40, total_steps=60, learning_rate=1e-2
    )
    assert all(np.isfinite(history))
    assert history[-1] < 0.5 * history[0], history
    feats = trained.features(jnp.asarray(images, jnp.float32))
    rates = np.exp(np.asarray(trained.severity_head.log_rate(feats)))
    ranks = np.argsort(np.argsort(rates[:-1]))
    assert np.corrcoef(ranks, np.arange(b - 1))[0, 1] > 0.8, rates
