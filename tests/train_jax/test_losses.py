"""Losses: masked labels, focal vs BCE, group reweighting, GroupDRO weights, localisation."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from train_jax import losses


def _batch(labels, mask, groups, weight=None):
    n = len(groups)
    return {
        "labels": jnp.asarray(labels, jnp.float32),
        "label_mask": jnp.asarray(mask, jnp.float32),
        "group": jnp.asarray(groups, jnp.int32),
        "weight": jnp.ones(n, jnp.float32) if weight is None else jnp.asarray(weight, jnp.float32),
    }


def test_bce_matches_the_formula() -> None:
    logits = jnp.array([[2.0, -1.0, 0.0]])
    labels = jnp.array([[1.0, 1.0, 0.0]])
    p = 1 / (1 + np.exp(-np.array([2.0, -1.0, 0.0])))
    expected = -np.array([np.log(p[0]), np.log(p[1]), np.log(1 - p[2])])
    np.testing.assert_allclose(losses.bce_elementwise(logits, labels)[0], expected, rtol=1e-6)


def test_masked_labels_do_not_count() -> None:
    logits = jnp.array([[2.0, -1.0, 0.5], [0.3, 0.1, -2.0]])
    mask = [[1, 0, 1], [1, 1, 0]]
    a, _ = losses.compute_loss(
        "bce", logits, _batch([[1, 0, 0], [0, 1, 0]], mask, [0, 1]), num_groups=3
    )
    b, _ = losses.compute_loss(
        "bce", logits, _batch([[1, 1, 0], [0, 1, 1]], mask, [0, 1]), num_groups=3
    )
    assert float(a) == pytest.approx(float(b))
    # By hand: mean over known labels per example, then over examples.
    e = np.asarray(losses.bce_elementwise(logits, jnp.array([[1.0, 0, 0], [0, 1, 0]])))
    expected = ((e[0, 0] + e[0, 2]) / 2 + (e[1, 0] + e[1, 1]) / 2) / 2
    assert float(a) == pytest.approx(expected, rel=1e-6)


def test_padding_and_all_unknown_rows_are_ignored() -> None:
    logits = jnp.array([[1.0, 1.0, 1.0], [-5.0, 5.0, -5.0], [3.0, 3.0, 3.0]])
    labels = [[1, 0, 1], [1, 0, 1], [0, 0, 0]]
    full, _ = losses.compute_loss(
        "bce", logits[:1], _batch(labels[:1], [[1, 1, 1]], [0]), num_groups=3
    )
    padded, _ = losses.compute_loss(
        "bce",
        logits,
        _batch(labels, [[1, 1, 1], [0, 0, 0], [1, 1, 1]], [0, 1, 2], [1, 1, 0]),
        num_groups=3,
    )
    assert float(padded) == pytest.approx(float(full))


@pytest.mark.parametrize("logit", [-3.0, -0.2, 0.0, 1.5, 4.0])
def test_focal_reduces_to_bce_at_gamma_zero_and_downweights_easy(logit: float) -> None:
    logits = jnp.full((1, 3), logit)
    labels = jnp.array([[1.0, 0.0, 1.0]])
    bce = losses.bce_elementwise(logits, labels)
    np.testing.assert_allclose(losses.focal_elementwise(logits, labels, 0.0), bce, rtol=1e-6)
    assert np.all(np.asarray(losses.focal_elementwise(logits, labels, 2.0)) <= np.asarray(bce))


def test_inverse_frequency_weights_by_hand() -> None:
    # N = 100 over 3 present groups: w_g = 100 / (3 n_g).
    np.testing.assert_allclose(
        losses.inverse_frequency_weights(np.array([60.0, 30.0, 10.0])),
        [100 / 180, 100 / 90, 100 / 30],
    )
    np.testing.assert_allclose(
        losses.inverse_frequency_weights(np.array([50.0, 0.0, 50.0])), [1.0, 0.0, 1.0]
    )


def test_reweight_emphasises_the_rare_group() -> None:
    logits = jnp.array([[3.0, 3.0, 3.0], [3.0, 3.0, 3.0]])
    batch = _batch([[1, 1, 1], [0, 0, 0]], np.ones((2, 3)), [0, 2])  # group 2 is badly wrong
    plain, _ = losses.compute_loss("bce", logits, batch, num_groups=3)
    rew, _ = losses.compute_loss(
        "reweight", logits, batch, num_groups=3, group_weights=jnp.array([0.5, 1.0, 3.0])
    )
    bad = float(losses.bce_elementwise(jnp.array(3.0), jnp.array(0.0)))
    good = float(losses.bce_elementwise(jnp.array(3.0), jnp.array(1.0)))
    assert float(rew) == pytest.approx((0.5 * good + 3.0 * bad) / 3.5, rel=1e-6)
    assert float(rew) > float(plain)


def test_groupdro_weights_move_toward_the_worst_group() -> None:
    logits = jnp.array([[3.0] * 3, [3.0] * 3, [-3.0] * 3, [0.0] * 3])
    batch = _batch([[1] * 3, [1] * 3, [1] * 3, [1] * 3], np.ones((4, 3)), [0, 0, 1, 2])
    q = jnp.full(3, 1 / 3)
    for _ in range(5):
        loss, aux = losses.compute_loss(
            "groupdro", logits, batch, num_groups=3, dro_q=q, groupdro_eta=0.5
        )
        q_new = aux["dro_q"]
        assert float(q_new.sum()) == pytest.approx(1.0, abs=1e-6)
        assert float(q_new[1]) > float(q[1])  # group 1 has the largest loss
        assert float(q_new[0]) < float(q[0])
        q = q_new
    np.testing.assert_allclose(float(loss), float((q * aux["group_loss"]).sum()), rtol=1e-6)


def test_groupdro_keeps_absent_groups_relative_weight() -> None:
    logits = jnp.zeros((2, 3))
    batch = _batch(np.ones((2, 3)), np.ones((2, 3)), [0, 0])  # only group 0 present
    q = jnp.array([0.2, 0.3, 0.5])
    _, aux = losses.compute_loss("groupdro", logits, batch, num_groups=3, dro_q=q, groupdro_eta=1.0)
    new = np.asarray(aux["dro_q"])
    assert new[2] / new[1] == pytest.approx(0.5 / 0.3, rel=1e-5)
    assert new[0] > 0.2


def test_unknown_loss_name() -> None:
    with pytest.raises(ValueError, match="loss must be one of"):
        losses.compute_loss(
            "hinge", jnp.zeros((1, 3)), _batch([[0, 0, 0]], [[1, 1, 1]], [0]), num_groups=3
        )


# --- localisation loss ---------------------------------------------------------------------


def test_mask_at_cells_corner_reads_the_pixel_each_cell_is_centred_on() -> None:
    masks = np.zeros((1, 8, 8, 3), np.uint8)
    masks[0, 4, 2, 0] = 255  # pixel (4, 2) = cell (2, 1) of a stride-2 grid
    masks[0, 5, 5, 1] = 255  # an odd pixel: between cells, no cell is centred on it
    cells = np.asarray(losses.mask_at_cells(jnp.asarray(masks), (4, 4), "corner"))
    assert cells.shape == (1, 4, 4, 3)
    assert cells[0, :, :, 0].sum() == 1 and cells[0, 2, 1, 0] == 1
    assert cells[0, :, :, 1].sum() == 0


def test_mask_at_cells_center_reads_the_central_pixels_of_each_patch() -> None:
    masks = np.zeros((1, 8, 8, 1), np.uint8)
    masks[0, 2, 6, 0] = 1  # a central pixel of patch (0, 1) of a 4-px patch grid
    masks[0, 4, 4, 0] = 1  # a corner pixel of patch (1, 1): not central
    cells = np.asarray(losses.mask_at_cells(jnp.asarray(masks), (2, 2), "center"))
    np.testing.assert_array_equal(cells[0, :, :, 0], [[0, 1], [0, 0]])
    with pytest.raises(ValueError, match="not a multiple"):
        losses.mask_at_cells(jnp.asarray(masks), (3, 3), "corner")


def test_localisation_loss_by_hand() -> None:
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(2, 3, 3, 2)).astype(np.float32)
    cells = np.zeros((2, 3, 3, 2), np.float32)
    cells[0, 0, :2, 0] = 1  # image 0, condition 0: two lesion cells
    cells[1, 2, 2, 1] = 1  # image 1, condition 1: one lesion cell, but the label is unknown
    labels = np.array([[1, 0], [1, 1]], np.float32)
    label_mask = np.array([[1, 1], [1, 0]], np.float32)
    loss, pairs = losses.localisation_loss(
        jnp.asarray(scores), jnp.asarray(cells), labels, label_mask, jnp.ones(2)
    )
    s = scores[0, :, :, 0].ravel()
    expected = -np.log(np.exp(s[:2]).sum() / np.exp(s).sum())
    assert int(pairs) == 1  # image 1's condition 0 has no lesion cell, condition 1 is unknown
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    # Temperature T: T * the same loss on scores / T.
    loss_t, _ = losses.localisation_loss(
        jnp.asarray(scores), jnp.asarray(cells), labels, label_mask, jnp.ones(2), temperature=0.5
    )
    expected_t = -0.5 * np.log(np.exp(s[:2] / 0.5).sum() / np.exp(s / 0.5).sum())
    assert float(loss_t) == pytest.approx(expected_t, rel=1e-5)


def test_localisation_loss_is_lower_when_the_map_peaks_inside_and_zero_without_pairs() -> None:
    import jax

    cells = np.zeros((1, 4, 4, 1), np.float32)
    cells[0, 1, 1, 0] = 1
    inside = np.zeros((1, 4, 4, 1), np.float32)
    inside[0, 1, 1, 0] = 3.0
    outside = np.zeros((1, 4, 4, 1), np.float32)
    outside[0, 3, 3, 0] = 3.0
    args = (jnp.ones((1, 1)), jnp.ones((1, 1)), jnp.ones(1))
    hit, _ = losses.localisation_loss(jnp.asarray(inside), jnp.asarray(cells), *args)
    miss, _ = losses.localisation_loss(jnp.asarray(outside), jnp.asarray(cells), *args)
    assert float(hit) < float(miss)
    # A padding row, an absent condition or an empty mask gives 0 and finite (zero) gradients.
    for labels, weight, mask in [(1.0, 0.0, cells), (0.0, 1.0, cells), (1.0, 1.0, cells * 0)]:

        def f(s, labels=labels, weight=weight, mask=mask):
            loss, _ = losses.localisation_loss(
                s, jnp.asarray(mask), jnp.full((1, 1), labels), jnp.ones((1, 1)),
                jnp.full(1, weight),
            )  # fmt: skip
            return loss

        value, grad = jax.value_and_grad(f)(jnp.asarray(outside))
        assert float(value) == 0.0
        assert np.all(np.asarray(grad) == 0.0)


def test_mask_at_cells_block_reaches_a_lesion_between_the_centre_pixels() -> None:
    masks = np.zeros((1, 8, 8, 2), np.uint8)
    masks[0, 5, 5, 0] = 255  # between cells: "pixel" misses it
    masks[0, 0, 7, 1] = 255  # the last column: past the block of the last cell (pixels 5-6)
    pixel = np.asarray(losses.mask_at_cells(jnp.asarray(masks), (4, 4), "corner"))
    block = np.asarray(losses.mask_at_cells(jnp.asarray(masks), (4, 4), "corner", "block"))
    assert pixel[..., 0].sum() == 0
    # stride 2, corner: cell j covers pixels 2j - 1 and 2j; pixel 5 -> cell 3 on both axes
    assert block[0, :, :, 0].sum() == 1 and block[0, 3, 3, 0] == 1
    # pixel 0 -> cell 0 (rows); pixel 7 -> cell 4 would be off the grid: it reaches no cell
    assert block[0, :, :, 1].sum() == 0
    masks[0, 0, 6, 1] = 255  # pixel 6 -> cell 3
    block = np.asarray(losses.mask_at_cells(jnp.asarray(masks), (4, 4), "corner", "block"))
    assert block[0, 0, 3, 1] == 1 and block[0, :, :, 1].sum() == 1


def test_mask_at_cells_block_center_is_any_pixel_of_the_patch() -> None:
    masks = np.zeros((1, 8, 8, 1), np.uint8)
    masks[0, 4, 4, 0] = 1  # a corner pixel of patch (1, 1): "pixel" misses it
    cells = np.asarray(losses.mask_at_cells(jnp.asarray(masks), (2, 2), "center", "block"))
    np.testing.assert_array_equal(cells[0, :, :, 0], [[0, 0], [0, 1]])
    with pytest.raises(ValueError, match="mode must be one of"):
        losses.mask_at_cells(jnp.asarray(masks), (2, 2), "center", "any")


def test_block_cells_equal_a_pixel_by_pixel_reference() -> None:
    rng = np.random.default_rng(1)
    masks = (rng.random((2, 16, 16, 3)) > 0.97).astype(np.uint8)
    s = 4
    got = np.asarray(losses.mask_at_cells(jnp.asarray(masks), (4, 4), "corner", "block"))
    want = np.zeros((2, 4, 4, 3), np.float32)
    for b, y, x, c in zip(*np.nonzero(masks), strict=True):
        j, i = (y + s // 2) // s, (x + s // 2) // s  # the cell whose block holds the pixel
        if j < 4 and i < 4:
            want[b, j, i, c] = 1
    np.testing.assert_array_equal(got, want)
