"""The evaluation's summaries on hand-made arrays, its goal check, table and CLI errors."""

from __future__ import annotations

import numpy as np
import pytest

from core.schema import GROUPS
from explain.evaluate import (
    EXIT_RUN,
    faithfulness_summary,
    format_table,
    goal_check,
    localisation_summary,
    main,
    make_predict_fn,
    standard_tolerance,
)

N, S = 6, 16


def _arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    masks = np.zeros((N, S, S, 3), bool)
    cams = np.zeros((N, 3, S, S), np.float32)
    labels = np.zeros((N, 3), np.float32)
    groups = [GROUPS[i // 2] for i in range(N)]  # two images per group
    for i in range(N):
        masks[i, 2:6, 2:6, 0] = True  # acne lesion top left in every image
        labels[i, 0] = 1
        cams[i, 0, 3, 3] = 1.0  # peak inside the lesion
        cams[i, 0, 12, 12] = 0.5  # some mass outside
    cams[5, 0, 12, 12] = 2.0  # image 5 (group V-VI) points outside
    labels[:, 1] = np.nan  # hyperpigmentation unknown everywhere
    labels[0, 2] = 1  # wrinkles present but no mask: counted, not scored
    return cams, masks, labels, groups


def test_localisation_summary_by_group() -> None:
    cams, masks, labels, groups = _arrays()
    loc = localisation_summary(cams, masks, labels, groups, num_boot=200)
    pg = loc["acne"]["pointing_game"]
    assert pg["overall"]["value"] == pytest.approx(5 / 6) and pg["overall"]["n"] == 6
    assert {g: v["value"] for g, v in pg["by_group"].items()} == {
        "I-II": 1.0,
        "III-IV": 1.0,
        "V-VI": 0.5,
    }
    assert pg["spread"] == pytest.approx(0.5)
    lo, hi = pg["overall"]["ci95"]
    assert lo <= 5 / 6 <= hi and hi <= 1.0
    energy = loc["acne"]["energy_in_mask"]["by_group"]["I-II"]["value"]
    assert energy == pytest.approx(1.0 / 1.5)
    assert loc["acne"]["mask_area_fraction"] == pytest.approx(16 / S**2)
    chance = loc["acne"]["pointing_game_chance"]  # strict: a random peak hits the mask's area
    assert chance["overall"]["value"] == pytest.approx(16 / S**2)
    assert loc["hyperpigmentation"]["pointing_game"]["overall"]["n"] == 0
    assert loc["wrinkles"]["n_present_without_mask"] == 1
    # a 2x2 map grid upsampled to 16 px peaks at pixels 3/4 or 11/12: the 2:6 lesion holds (3, 3)
    ceiling = localisation_summary(cams, masks, labels, groups, grid=(2, 2), num_boot=50)
    assert ceiling["acne"]["pointing_ceiling"]["overall"]["value"] == 1.0
    assert "pointing_ceiling" not in loc["acne"]


def test_faithfulness_summary_toy_model() -> None:
    cams, masks, labels, _ = _arrays()
    lesion = masks[0, ..., 0]
    images = np.full((N, S, S, 3), 50, np.uint8)
    images[:, lesion, 0] = 255  # the evidence: a red lesion

    def predict(batch: np.ndarray) -> np.ndarray:
        score = batch[:, lesion, 0].mean(axis=1) / 255.0
        return np.stack([score, score, score], axis=1)

    cams[:, 0] = masks[..., 0] + 0.01  # maps cover exactly the lesion
    for sigma in (0.0, 0.5):  # mean-colour baseline, then a strong blur
        fai = faithfulness_summary(
            images, cams, labels, predict, num_steps=16, blur_sigma_frac=sigma
        )
        assert fai["acne"]["n"] == N
        assert fai["acne"]["deletion_ratio"] < 0.5
        assert fai["acne"]["insertion_ratio"] > 1.3
    # a map pointing away from the lesion removes the evidence last: worse than random
    cams[:, 0] = 1.0 - cams[:, 0]
    fai = faithfulness_summary(images, cams, labels, predict, num_steps=16)
    assert fai["acne"]["deletion_ratio"] > 1.2
    assert fai["hyperpigmentation"]["n"] == 0 and fai["hyperpigmentation"]["deletion_ratio"] is None


def test_goal_check_and_table() -> None:
    cams, masks, labels, groups = _arrays()
    loc = localisation_summary(cams, masks, labels, groups, num_boot=100)
    fai = {c: {"deletion_ratio": r} for c, r in (("acne", 0.6), ("wrinkles", 1.2))}
    goal = goal_check(loc, fai)
    assert goal["acne"]["pointing_game_worst_group"] == 0.5
    assert not goal["acne"]["pointing_ok"] and not goal["acne"]["spread_ok"]
    assert goal["acne"]["deletion_ok"] and not goal["wrinkles"]["deletion_ok"]
    full = {
        c: {
            "deletion_auc": 0.2,
            "deletion_random_auc": 0.4,
            "deletion_ratio": 0.5,
            "insertion_auc": 0.6,
            "insertion_random_auc": 0.4,
            "insertion_ratio": 1.5,
        }
        for c in ("acne", "hyperpigmentation", "wrinkles")
    }
    table = format_table({"localisation": loc, "faithfulness": full})
    assert "| acne | 0.83 [" in table and "0.200 / 0.400 = 0.50" in table


def test_cli_missing_run_is_one_line(tmp_path, capsys) -> None:
    code = main(["--run", str(tmp_path / "nope"), "--data", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == EXIT_RUN
    assert err.startswith("error: ") and "config.json" in err and "\n" not in err


def test_cli_rejects_bad_limit(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--run", "r", "--data", "d", "--limit", "0"])
    assert exc.value.code == 2
    assert "--limit must be >= 1" in capsys.readouterr().err


def test_lesion_reliance_separates_lesion_from_control() -> None:
    from explain.evaluate import lesion_reliance

    _, masks, labels, _ = _arrays()
    lesion = masks[0, ..., 0]
    images = np.full((N, S, S, 3), 50, np.uint8)
    images[:, lesion, 0] = 255

    def predict(batch: np.ndarray) -> np.ndarray:
        score = batch[:, lesion, 0].mean(axis=1) / 255.0
        return np.stack([score, score, score], axis=1)

    rel = lesion_reliance(images, masks, labels, predict)
    assert rel["acne"]["n"] == N and rel["acne"]["prob"] == pytest.approx(1.0)
    assert rel["acne"]["prob_lesion_removed"] < 0.5 < rel["acne"]["prob_control"]
    assert rel["wrinkles"]["n"] == 0  # present, but no mask


def test_tolerant_pointing_game_is_reported_beside_the_strict_one() -> None:
    cams, masks, labels, groups = _arrays()
    # image 5 peaks at (12, 12); the nearest lesion pixel (5, 5) is sqrt(98) = 9.9 px away
    loc = localisation_summary(cams, masks, labels, groups, tolerance_px=10.0, num_boot=50)
    assert loc["acne"]["pointing_game"]["overall"]["value"] == pytest.approx(5 / 6)  # strict
    assert loc["acne"]["pointing_game_tolerant"]["overall"]["value"] == 1.0
    assert loc["acne"]["pointing_game_tolerant"]["spread"] == 0.0
    near = localisation_summary(cams, masks, labels, groups, tolerance_px=9.0, num_boot=50)
    assert near["acne"]["pointing_game_tolerant"]["overall"]["value"] == pytest.approx(5 / 6)
    assert (
        "pointing_game_tolerant"
        not in localisation_summary(cams, masks, labels, groups, num_boot=50)["acne"]
    )
    assert standard_tolerance(224) == 15.0 and standard_tolerance(96) == pytest.approx(6.43, 0.01)


def test_predict_fn_in_chunks_equals_one_call(tiny_cnn) -> None:
    """Chunked prediction (the last chunk padded) gives the one-call probabilities, in order."""
    x = np.random.default_rng(0).uniform(0, 255, (11, 32, 32, 3)).astype(np.float32)
    whole = make_predict_fn(tiny_cnn, batch_size=64)(x)
    chunked = make_predict_fn(tiny_cnn, batch_size=4)(x)
    assert chunked.shape == (11, 3)
    np.testing.assert_allclose(chunked, whole, atol=1e-6)
    assert not np.allclose(chunked[0], chunked[1])  # rows differ, so order is checked
