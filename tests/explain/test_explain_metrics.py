"""Explanation metrics on hand-made maps, masks and toy predictors with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from explain.metrics import (
    bootstrap_ci,
    curve_auc,
    energy_in_mask,
    perturbation_curve,
    pointing_ceiling,
    pointing_chance,
    pointing_game,
    pointing_game_dilated,
    random_order,
    saliency_order,
    spread,
)


def _hand_made() -> tuple[np.ndarray, np.ndarray]:
    mask = np.zeros((10, 10), bool)
    mask[2:5, 6:9] = True  # 9 lesion pixels, top right
    cam = np.zeros((10, 10))
    cam[3, 7] = 1.0  # peak inside the lesion
    cam[2, 6] = 0.5  # inside
    cam[8, 1] = 0.5  # outside
    return cam, mask


def test_pointing_game_hit_miss_and_tolerance() -> None:
    cam, mask = _hand_made()
    assert pointing_game(cam, mask)
    moved = np.zeros_like(cam)
    moved[6, 7] = 1.0  # two rows below the lesion (its last row is 4)
    assert not pointing_game(moved, mask)
    assert not pointing_game(moved, mask, tolerance_px=1.5)
    assert pointing_game(moved, mask, tolerance_px=2.0)


def test_pointing_game_degenerate_inputs() -> None:
    cam, mask = _hand_made()
    assert not pointing_game(np.zeros_like(cam), mask)  # constant map points nowhere
    assert not pointing_game(cam, np.zeros_like(mask))  # no lesion to point at
    tie = np.zeros_like(cam)
    tie[0, 0] = tie[3, 7] = 1.0  # one of two equal maxima lies in the lesion
    assert pointing_game(tie, mask)
    with pytest.raises(ValueError, match="same shape"):
        pointing_game(cam, mask[:5])


def test_energy_in_mask() -> None:
    cam, mask = _hand_made()
    assert energy_in_mask(cam, mask) == pytest.approx(1.5 / 2.0)
    assert energy_in_mask(np.ones((10, 10)), mask) == pytest.approx(9 / 100)  # chance level
    assert np.isnan(energy_in_mask(np.zeros((10, 10)), mask))


def _region_mean_predictor(region: np.ndarray):
    """A 'model' whose score is the mean intensity of a fixed region (the evidence)."""

    def predict(images: np.ndarray) -> np.ndarray:
        return images[:, region].mean(axis=1)

    return predict


def test_deletion_and_insertion_known_answer() -> None:
    # 10x10 image of ones, evidence = 20 pixels (fraction f = 0.2); 10 steps of 10 pixels.
    # Salient-first deletion: scores 1, 0.5, 0, ..., 0 -> AUC = f / 2 = 0.1; insertion: 1 - 0.1.
    region = np.zeros((10, 10), bool)
    region[3:5, :] = True
    image = np.ones((10, 10))
    saliency = region.astype(float) + np.linspace(0, 0.1, 100).reshape(10, 10)
    predict = _region_mean_predictor(region)
    order = saliency_order(saliency)
    base = np.zeros_like(image)
    deletion = perturbation_curve(image, order, predict, baseline=base, num_steps=10)
    np.testing.assert_allclose(deletion, [1, 0.5, 0, 0, 0, 0, 0, 0, 0, 0, 0])
    assert curve_auc(deletion) == pytest.approx(0.1)
    insertion = perturbation_curve(
        image, order, predict, baseline=base, mode="insertion", num_steps=10
    )
    assert curve_auc(insertion) == pytest.approx(0.9)
    # A random order removes evidence at the average rate: expected AUC 0.5.
    rng = np.random.default_rng(0)
    aucs = [
        curve_auc(
            perturbation_curve(image, random_order(100, rng), predict, baseline=base, num_steps=10)
        )
        for _ in range(50)
    ]
    assert np.mean(aucs) == pytest.approx(0.5, abs=0.05)


def test_perturbation_curve_rejects_bad_input() -> None:
    image = np.ones((4, 4))
    with pytest.raises(ValueError, match="unknown mode"):
        perturbation_curve(image, np.arange(16), np.mean, baseline=image, mode="blur")
    with pytest.raises(ValueError, match="16 pixel indices"):
        perturbation_curve(image, np.arange(15), np.mean, baseline=image)


def test_curve_auc() -> None:
    assert curve_auc([1.0, 1.0]) == 1.0
    assert curve_auc([0.0, 1.0, 0.0]) == pytest.approx(0.5)


def test_bootstrap_ci_bernoulli_width() -> None:
    values = np.array([1.0] * 200 + [0.0] * 200)
    lo, hi = bootstrap_ci(values, num_boot=2000, seed=1)
    # normal approximation: 0.5 +- 1.96 * sqrt(0.25 / 400) = 0.5 +- 0.049
    assert lo == pytest.approx(0.451, abs=0.012) and hi == pytest.approx(0.549, abs=0.012)
    assert bootstrap_ci(values, seed=3) == bootstrap_ci(values, seed=3)
    assert bootstrap_ci([0.7, 0.7]) == (0.7, 0.7)
    assert all(np.isnan(bootstrap_ci([np.nan])))


def test_spread() -> None:
    assert spread({"I-II": 0.9, "III-IV": 0.8, "V-VI": 0.85}) == pytest.approx(0.1)
    assert np.isnan(spread({"I-II": 0.9, "III-IV": float("nan")}))


def test_pointing_ceiling() -> None:
    mask = np.zeros((64, 64), bool)
    mask[34:38, 34:38] = True  # between the nodes of a 4x4 grid (pixels 39/40), on an 8x8 node
    assert not pointing_ceiling(mask, (4, 4))
    assert pointing_ceiling(mask, (8, 8))
    mask[40, 40] = True
    assert pointing_ceiling(mask, (4, 4))


def test_pointing_game_dilated_box_known_answer() -> None:
    """A 96 px crop holds a 64 px wide face (margin 0.25): 2% of it is 1.28 px of allowance."""
    box = np.zeros((96, 96), bool)
    box[30:50, 40:60] = True  # a filled lesion box, columns 40..59
    one_out = np.zeros((96, 96))
    one_out[40, 60] = 1.0  # 1 px right of the box
    two_out = np.zeros((96, 96))
    two_out[40, 61] = 1.0  # 2 px right of the box
    assert not pointing_game_dilated(one_out, box, face_width_px=64.0, dilate=0.0)
    assert pointing_game_dilated(one_out, box, face_width_px=64.0, dilate=0.02)
    assert pointing_game_dilated(one_out, box, face_width_px=64.0)  # default 0.02
    assert not pointing_game_dilated(two_out, box, face_width_px=64.0, dilate=0.02)
    assert pointing_game_dilated(two_out, box, face_width_px=64.0, dilate=0.04)  # 2.56 px
    # the allowance scales with the face: the same 2% on a 128 px wide face is 2.56 px
    assert pointing_game_dilated(two_out, box, face_width_px=128.0, dilate=0.02)
    corner = np.zeros((96, 96))
    corner[29, 39] = 1.0  # diagonal neighbour of the box's corner: sqrt(2) = 1.41 > 1.28 px
    assert not pointing_game_dilated(corner, box, face_width_px=64.0, dilate=0.02)
    with pytest.raises(ValueError, match="dilate must be >= 0"):
        pointing_game_dilated(one_out, box, face_width_px=64.0, dilate=-0.01)
    with pytest.raises(ValueError, match="face_width_px > 0"):
        pointing_game_dilated(one_out, box, face_width_px=0.0)


def test_pointing_chance_known_answer_and_matches_random_peaks() -> None:
    """The chance level is the hit rate of a one-pixel peak drawn uniformly at random, with the
    same Euclidean tolerance as `pointing_game`."""
    mask = np.zeros((32, 32), bool)
    mask[10:13, 20:24] = True  # 12 pixels
    assert pointing_chance(mask) == pytest.approx(12 / 1024)
    # tolerance 1: each side grows by one row or column (no corners): 12 + 2*4 + 2*3 = 26
    assert pointing_chance(mask, tolerance_px=1.0) == pytest.approx(26 / 1024)
    assert pointing_chance(np.zeros((8, 8), bool), tolerance_px=3.0) == 0.0
    for tol in (0.0, 2.5):  # every one-pixel peak, scored by the pointing game itself
        hits = [
            pointing_game(np.eye(1, 1024, k).reshape(32, 32), mask, tolerance_px=tol)
            for k in range(1024)
        ]
        assert pointing_chance(mask, tolerance_px=tol) == pytest.approx(np.mean(hits))
    with pytest.raises(ValueError, match="tolerance_px"):
        pointing_chance(mask, tolerance_px=-1.0)
