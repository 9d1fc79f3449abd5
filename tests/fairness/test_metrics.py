"""Metric functions: hand-computed cases, scikit-learn and fairlearn agreement, batched form."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn import metrics as skm

from fairness import metrics as fm


def _as_list(x):
    return np.asarray(x).tolist()


def _as_jax(x):
    import jax.numpy as jnp

    return jnp.asarray(np.asarray(x))


CONVERTERS = {"list": _as_list, "ndarray": np.asarray, "jax": _as_jax}


@pytest.fixture(params=sorted(CONVERTERS))
def convert(request):
    return CONVERTERS[request.param]


# y = 1 1 1 1 0 0 0 0 0 0, pred = 1 1 1 0 1 0 0 0 0 0 -> tp 3, fn 1, fp 1, tn 5
Y_HAND = [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
P_HAND = [1, 1, 1, 0, 1, 0, 0, 0, 0, 0]


def test_threshold_metrics_hand_computed(convert):
    y, p = convert(Y_HAND), convert(P_HAND)
    assert fm.precision(y, p) == pytest.approx(3 / 4)
    assert fm.recall(y, p) == pytest.approx(3 / 4)
    assert fm.specificity(y, p) == pytest.approx(5 / 6)
    assert fm.false_positive_rate(y, p) == pytest.approx(1 / 6)
    assert fm.f1(y, p) == pytest.approx(2 * 3 / (2 * 3 + 1 + 1))
    assert fm.prevalence(y) == pytest.approx(0.4)


def test_score_metrics_hand_computed(convert):
    # Pairs (pos, neg): 0.8 beats both negatives; 0.35 beats 0.1 only -> 3 of 4 pairs.
    y, s = convert([0, 0, 1, 1]), convert([0.1, 0.4, 0.35, 0.8])
    assert fm.auroc(y, s) == pytest.approx(0.75)
    # Ranked: 0.8(+) P=1 R=.5; 0.4(-); 0.35(+) P=2/3 R=1 -> AP = .5*1 + .5*2/3
    assert fm.average_precision(y, s) == pytest.approx(0.5 + 0.5 * 2 / 3)
    # A tie between a positive and a negative counts one half.
    assert fm.auroc([0, 1], [0.5, 0.5]) == pytest.approx(0.5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_agrees_with_sklearn(seed, convert):
    rng = np.random.default_rng(seed)
    y = (rng.random(200) < 0.3).astype(int)
    score = np.round(rng.random(200) * 0.6 + 0.4 * y, 2)  # rounding creates ties
    pred = (score >= 0.5).astype(int)
    w = rng.integers(0, 4, size=200).astype(float)
    for weights in (None, w):
        kw = {} if weights is None else {"sample_weight": convert(weights)}
        skw = {} if weights is None else {"sample_weight": weights}
        yy, pp, ss = convert(y), convert(pred), convert(score)
        assert fm.precision(yy, pp, **kw) == pytest.approx(skm.precision_score(y, pred, **skw))
        assert fm.recall(yy, pp, **kw) == pytest.approx(skm.recall_score(y, pred, **skw))
        assert fm.f1(yy, pp, **kw) == pytest.approx(skm.f1_score(y, pred, **skw))
        assert fm.specificity(yy, pp, **kw) == pytest.approx(
            skm.recall_score(1 - y, 1 - pred, **skw)
        )
        assert fm.auroc(yy, ss, **kw) == pytest.approx(skm.roc_auc_score(y, score, **skw))
        assert fm.average_precision(yy, ss, **kw) == pytest.approx(
            skm.average_precision_score(y, score, **skw)
        )


def test_undefined_cases_follow_the_documented_rule():
    assert math.isnan(fm.recall([0, 0], [1, 0]))
    assert math.isnan(fm.specificity([1, 1], [1, 0]))
    assert math.isnan(fm.auroc([1, 1], [0.2, 0.9]))
    assert math.isnan(fm.average_precision([0, 0], [0.2, 0.9]))
    assert math.isnan(fm.f1([0, 0], [0, 0]))
    assert fm.f1([0, 0], [1, 0]) == 0.0
    assert fm.precision([1, 0], [0, 0]) == 0.0


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="y_true must be 0/1"):
        fm.recall([0, 2], [0, 1])
    with pytest.raises(ValueError, match="non-finite value at index 1"):
        fm.auroc([0, 1], [0.3, float("nan")])
    with pytest.raises(ValueError, match="y_true has 2 values but y_pred has 3"):
        fm.f1([0, 1], [0, 1, 1])


def test_batched_rows_equal_single_weighted_calls():
    rng = np.random.default_rng(3)
    y = (rng.random(50) < 0.4).astype(float)
    s = rng.random(50)
    d = (s > 0.5).astype(float)
    weights = rng.integers(0, 3, size=(4, 50)).astype(float)
    batched = fm.batched_metrics(y, s, d, weights)
    for b in range(4):
        assert batched["f1"][b] == pytest.approx(fm.f1(y, d, sample_weight=weights[b]))
        assert batched["auroc"][b] == pytest.approx(fm.auroc(y, s, sample_weight=weights[b]))
        assert batched["ap"][b] == pytest.approx(
            fm.average_precision(y, s, sample_weight=weights[b])
        )


def test_metric_frame_matches_sklearn_per_group():
    rng = np.random.default_rng(4)
    y = (rng.random(300) < 0.4).astype(int)
    pred = (rng.random(300) < 0.5).astype(int)
    groups = rng.choice(["I-II", "III-IV", "V-VI", None], size=300).tolist()
    frame = fm.make_metric_frame(y, pred, groups)
    for g in ("I-II", "III-IV", "V-VI"):
        rows = np.asarray([x == g for x in groups])
        assert frame.by_group.loc[g, "f1"] == pytest.approx(skm.f1_score(y[rows], pred[rows]))
    assert "unknown" in frame.by_group.index
    assert frame.group_min()["f1"] == pytest.approx(frame.by_group["f1"].min())


def test_epoch_metrics_against_direct_computation():
    rng = np.random.default_rng(5)
    n = 120
    y = (rng.random((n, 3)) < 0.4).astype(float)
    y[::7, 1] = np.nan
    probs = rng.random((n, 3))
    groups = rng.choice(["I-II", "III-IV", "V-VI"], size=n).tolist()
    out = fm.epoch_metrics(y, probs, groups)
    per_group = {}
    for g in ("I-II", "III-IV", "V-VI"):
        vals = []
        for c in range(3):
            rows = np.isfinite(y[:, c]) & (np.asarray(groups) == g)
            vals.append(skm.f1_score(y[rows, c], probs[rows, c] >= 0.5))
        per_group[g] = np.mean(vals)
        assert out[f"f1/{g}"] == pytest.approx(per_group[g])
    cond_f1 = []
    for c, cond in enumerate(("acne", "hyperpigmentation", "wrinkles")):
        rows = np.isfinite(y[:, c])
        cond_f1.append(skm.f1_score(y[rows, c], probs[rows, c] >= 0.5))
        assert out[f"f1/{cond}"] == pytest.approx(cond_f1[-1])
    assert out["macro_f1"] == pytest.approx(np.mean(cond_f1))
    assert out["worst_group_f1"] == pytest.approx(min(per_group.values()))
    assert out["gap_dark_vs_medium_f1"] == pytest.approx(
        abs(per_group["V-VI"] - per_group["III-IV"])
    )
