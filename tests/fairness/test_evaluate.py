"""evaluate_predictions: guard, gaps vs fairlearn, CIs, determinism, no NaN in the output."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fairlearn.metrics import (
    MetricFrame,
    equalized_odds_difference,
    true_positive_rate,
)
from sklearn.metrics import f1_score, roc_auc_score

from core.thresholds import apply_thresholds
from fairness.evaluate import INSUFFICIENT, evaluate_predictions
from fairness.metrics import evaluate_predictions as evaluate_from_metrics
from fairness.thresholds import fit_thresholds

GROUPS = ("I-II", "III-IV", "V-VI")


def _data(seed: int, n: int = 900):
    rng = np.random.default_rng(seed)
    fitz = rng.integers(1, 7, size=n)
    groups = [GROUPS[(f - 1) // 2] for f in fitz]
    y = (rng.random((n, 3)) < 0.35).astype(float)
    noise = np.where(fitz >= 5, 1.6, 1.0)[:, None]
    logits = np.where(y > 0, 1.2, -1.2) + rng.normal(size=y.shape) * noise
    probs = 1 / (1 + np.exp(-logits))
    y[rng.random(y.shape) < 0.05] = np.nan
    return y, probs, groups, fitz


def test_point_estimates_and_gaps_match_sklearn_and_fairlearn():
    y, p, g, f = _data(0)
    th = fit_thresholds(*_data(1)[:3])
    out = evaluate_predictions((y, p, g, f), th, n_boot=50, seed=0)
    decisions, _ = apply_thresholds(p, g, th)
    garr = np.asarray(g)
    for c, cond in enumerate(("acne", "hyperpigmentation", "wrinkles")):
        known = np.isfinite(y[:, c])
        yc, dc, pc, gc = y[known, c], decisions[known, c], p[known, c], garr[known]
        entry = out["conditions"][cond]
        for name in GROUPS:
            rows = gc == name
            assert entry["by_group"][name]["f1"]["value"] == pytest.approx(
                f1_score(yc[rows], dc[rows])
            )
            assert entry["by_group"][name]["auroc"]["value"] == pytest.approx(
                roc_auc_score(yc[rows], pc[rows])
            )
        frame = MetricFrame(
            metrics={"f1": f1_score, "tpr": true_positive_rate},
            y_true=yc,
            y_pred=dc,
            sensitive_features=gc,
        )
        gaps = entry["gaps"]
        assert gaps["f1_worst_best"]["value"] == pytest.approx(frame.difference()["f1"])
        assert gaps["tpr"]["value"] == pytest.approx(frame.difference()["tpr"])
        assert entry["group_min"]["f1"]["value"] == pytest.approx(frame.group_min()["f1"])
        assert gaps["equalized_odds"]["value"] == pytest.approx(
            equalized_odds_difference(yc, dc, sensitive_features=gc)
        )
        signed = frame.by_group["f1"]["V-VI"] - frame.by_group["f1"]["III-IV"]
        assert gaps["f1_dark_vs_medium"]["signed"]["value"] == pytest.approx(signed)
        assert gaps["f1_dark_vs_medium"]["value"] == pytest.approx(abs(signed))
        for est in gaps.values():
            assert est["ci_low"] <= est["ci_high"]
        overall = entry["overall"]["f1"]
        assert overall["ci_low"] <= overall["value"] <= overall["ci_high"]


def test_macro_summary_is_the_mean_over_conditions():
    y, p, g, f = _data(2)
    out = evaluate_predictions((y, p, g, f), n_boot=30, seed=1)
    per_cond = [
        out["conditions"][c]["overall"]["f1"]["value"]
        for c in ("acne", "hyperpigmentation", "wrinkles")
    ]
    assert out["summary"]["macro_f1"]["value"] == pytest.approx(np.mean(per_cond))
    by_group = {
        gr: np.mean(
            [
                out["conditions"][c]["by_group"][gr]["f1"]["value"]
                for c in ("acne", "hyperpigmentation", "wrinkles")
            ]
        )
        for gr in GROUPS
    }
    assert out["summary"]["worst_group_f1"]["value"] == pytest.approx(min(by_group.values()))
    assert out["summary"]["gap_dark_vs_medium_f1"]["value"] == pytest.approx(
        abs(by_group["V-VI"] - by_group["III-IV"])
    )


def test_seeded_and_wrapper_agree():
    y, p, g, f = _data(3, n=400)
    a = evaluate_predictions((y, p, g, f), n_boot=40, seed=5)
    b = evaluate_from_metrics((y, p, g, f), n_boot=40, seed=5)
    c = evaluate_predictions((y, p, g, f), n_boot=40, seed=6)
    assert a == b
    assert a["summary"]["macro_f1"]["ci_low"] != c["summary"]["macro_f1"]["ci_low"]


def test_guard_reports_insufficient_evidence_and_no_nan():
    y, p, g, f = _data(4, n=600)
    garr = np.asarray(g)
    # Leave only 4 acne positives in V-VI, and make hyperpigmentation one-class in I-II.
    dark_pos = np.flatnonzero((garr == "V-VI") & (y[:, 0] == 1))
    y[dark_pos[4:], 0] = 0
    y[garr == "I-II", 1] = 0
    out = evaluate_predictions((y, p, g, f), n_boot=20, seed=0)
    acne_dark = out["conditions"]["acne"]["by_group"]["V-VI"]
    assert acne_dark["positives"] == 4
    assert acne_dark["f1"]["status"] == INSUFFICIENT and acne_dark["f1"]["value"] is None
    assert "4 positives" in acne_dark["f1"]["reason"]
    assert out["conditions"]["acne"]["gaps"]["f1_dark_vs_medium"]["status"] == INSUFFICIENT
    light = out["conditions"]["hyperpigmentation"]["by_group"]["I-II"]
    assert light["auroc"]["status"] == INSUFFICIENT and light["positives"] == 0
    # Gaps still computed over the groups that have evidence.
    assert out["conditions"]["hyperpigmentation"]["gaps"]["f1_worst_best"]["status"] == "ok"
    assert out["summary"]["macro_f1"]["status"] == "ok"
    assert out["macro"]["by_group"]["V-VI"]["f1"]["status"] == INSUFFICIENT
    json.dumps(out, allow_nan=False)  # raises if any NaN slipped through


def test_unknown_groups_count_only_in_overall():
    y, p, g, f = _data(5, n=500)
    g = [None if i % 5 == 0 else x for i, x in enumerate(g)]
    f = np.where(np.arange(500) % 5 == 0, 0, f)
    out = evaluate_predictions((y, p, g, f), n_boot=10, seed=0)
    acne = out["conditions"]["acne"]
    assert acne["overall"]["n"] == int(np.isfinite(y[:, 0]).sum())
    assert sum(acne["by_group"][x]["n"] for x in GROUPS) < acne["overall"]["n"]
    assert sum(acne["by_type"][str(t)]["n"] for t in range(1, 7)) == sum(
        acne["by_group"][x]["n"] for x in GROUPS
    )


def test_condition_without_labels_reads_no_ground_truth_and_leaves_the_macro():
    """Wrinkles unlabelled everywhere (acne-new): "no ground truth", macro over the other two."""
    from fairness.evaluate import NO_GROUND_TRUTH

    y, p, g, f = _data(6, n=600)
    y[:, 2] = np.nan
    out = evaluate_predictions((y, p, g, f), n_boot=20, seed=0)
    wrinkles = out["conditions"]["wrinkles"]
    assert wrinkles["overall"]["n"] == 0 and wrinkles["overall"]["status"] == NO_GROUND_TRUTH
    assert wrinkles["by_group"]["V-VI"]["f1"]["status"] == NO_GROUND_TRUTH
    assert wrinkles["gaps"]["f1_dark_vs_medium"]["status"] == NO_GROUND_TRUTH
    assert out["summary"]["f1/wrinkles"]["value"] is None
    assert out["no_ground_truth"] == ["wrinkles"]
    assert out["macro"]["conditions"] == ["acne", "hyperpigmentation"]
    two = [out["conditions"][c]["overall"]["f1"]["value"] for c in ("acne", "hyperpigmentation")]
    assert out["summary"]["macro_f1"]["status"] == "ok"
    assert out["summary"]["macro_f1"]["value"] == pytest.approx(np.mean(two))
    assert out["summary"]["gap_dark_vs_medium_f1"]["status"] == "ok"
    # with every condition labelled nothing is left out
    full = evaluate_predictions(_data(6, n=600)[:4], n_boot=0)
    assert full["no_ground_truth"] == [] and len(full["macro"]["conditions"]) == 3
    json.dumps(out, allow_nan=False)
