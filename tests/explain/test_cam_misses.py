"""benchmarks/cam_misses.py: the miss table on hand-made maps and masks."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from explain.metrics import pointing_game

ROOT = Path(__file__).resolve().parents[2]


def _module():
    spec = importlib.util.spec_from_file_location("cam_misses", ROOT / "benchmarks/cam_misses.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_miss_table_splits_by_the_other_condition_and_finds_peaks_on_its_mask() -> None:
    n, s = 3, 8
    masks = np.zeros((n, s, s, 3), bool)
    masks[:, 1, 1, 0] = True  # acne at (1, 1)
    masks[:, 6, 6, 1] = True  # hyperpigmentation at (6, 6)
    labels = np.array([[1, 1, 0], [1, 1, 0], [0, 1, 0]], np.float32)
    cams = np.zeros((n, 3, s, s), np.float32)
    cams[0, 1, 1, 1] = 1.0  # image 0: the hyperpigmentation map peaks on the acne -> miss
    cams[1, 1, 6, 6] = 1.0  # image 1: hit
    cams[2, 1, 6, 6] = 1.0  # image 2 (no acne): hit
    cams[:2, 0, 1, 1] = 1.0  # acne maps hit
    probs = np.array([[0.9, 0.2, 0], [0.8, 0.6, 0], [0.1, 0.7, 0]], np.float32)
    rows = _module().miss_table(cams, masks, labels, ["V-VI"] * n, probs, pointing_game)
    hyper = next(r for r in rows if r["group"] == "V-VI" and r["condition"] == "hyperpigmentation")
    assert hyper["n"] == 3 and hyper["n_with_other"] == 2
    assert hyper["pointing_game"] == 2 / 3
    assert (hyper["pg_with_other"], hyper["pg_without_other"]) == (0.5, 1.0)
    assert hyper["misses_on_other_mask"] == 1.0
    assert np.isclose(hyper["prob_miss"], 0.2) and np.isclose(hyper["prob_hit"], 0.65)
    acne = next(r for r in rows if r["group"] == "V-VI" and r["condition"] == "acne")
    assert acne["pointing_game"] == 1.0 and acne["misses_on_other_mask"] is None
    assert next(r for r in rows if r["group"] == "I-II")["n"] == 0


def test_lesion_visibility_is_a_step_in_log_colour_over_the_surround_noise() -> None:
    m = _module()
    rng = np.random.default_rng(0)
    lesion = np.zeros((40, 40), bool)
    lesion[16:24, 16:24] = True
    scores = []
    for skin in (200.0, 60.0):
        noise = rng.normal(0.0, 1.0, (40, 40, 3))
        image = skin * np.exp(0.02 * noise)
        image[lesion] *= 0.7  # the lesion darkens the skin by the same factor on both tones
        scores.append(m.lesion_visibility(np.clip(image, 0, 255).astype(np.uint8), lesion))
    # Same factor, same relative noise: the same visibility on light and dark skin (up to the
    # 8-bit rounding and the +8 offset, which weigh more on dark skin).
    assert scores[0] > 5 and abs(scores[0] - scores[1]) / scores[0] < 0.35, scores
    faint = np.full((40, 40, 3), 150, np.uint8)
    faint[lesion] = 149
    assert m.lesion_visibility(faint, lesion) < scores[1]
    red = np.full((40, 40, 3), 150, np.uint8) + rng.integers(0, 3, (40, 40, 3)).astype(np.uint8)
    red[lesion, 0] = 190  # a colour step the mean of the channels would mostly average away
    assert m.lesion_visibility(red, lesion) > 5
    other = np.zeros((40, 40), bool)
    other[10:30, 10:30] = True  # another lesion covering the whole surround
    assert np.isnan(m.lesion_visibility(faint, lesion, other & ~lesion))
    assert np.isnan(m.lesion_visibility(faint, np.zeros_like(lesion)))


def test_visibility_table_standardises_each_group_to_the_pooled_mix() -> None:
    m = _module()
    # Hits depend only on visibility (hit iff visibility > 1); V-VI has mostly faint lesions.
    vis = np.array([0.4, 2.1, 2.2, 2.3, 0.5, 0.6, 0.7, 2.4, np.nan])
    groups = np.array(["I-II"] * 4 + ["V-VI"] * 4 + ["I-II"])
    hits = vis > 1
    t = m.visibility_table(hits, vis, groups, bins=2)
    i, v = t["groups"]["I-II"], t["groups"]["V-VI"]
    assert (i["n"], v["n"]) == ([1, 3], [3, 1])  # the NaN row is left out
    assert (i["pointing_game"], v["pointing_game"]) == (0.75, 0.25)
    assert t["spread_pointing_game"] == 0.5
    assert i["standardised"] == v["standardised"] == 0.5 and t["spread_standardised"] == 0.0
    # One to three images per cell: the intervals are wide, even where every image is a hit.
    low, high = i["standardised_ci"]
    assert low < 0.4 and high > 0.6
    assert t["spread_standardised_ci"][0] < 0.05 < 0.3 < t["spread_standardised_ci"][1]
    mixed = m.visibility_table(np.arange(9) % 2 == 0, vis, groups, bins=2, n_boot=400)
    low, high = mixed["groups"]["I-II"]["standardised_ci"]
    assert low < mixed["groups"]["I-II"]["standardised"] < high
    assert t["groups"]["III-IV"]["standardised"] is None  # no III-IV image: not in the spread
    one_bin_short = m.visibility_table(hits[:6], vis[:6], groups[:6], bins=2)
    assert one_bin_short["groups"]["V-VI"]["standardised"] is None  # no visible V-VI lesion
    assert one_bin_short["spread_standardised"] is None
    assert "spread_standardised_ci" not in one_bin_short
