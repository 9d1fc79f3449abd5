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
