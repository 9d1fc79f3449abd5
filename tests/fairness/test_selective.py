"""Selective prediction: deferral curves computed by hand on six rows in two groups."""

from __future__ import annotations

import numpy as np
import pytest

from fairness.selective import (
    balanced_accuracy,
    deferral_curve,
    labelled_cases,
    operating_index,
    selective_prediction,
)

# One condition. Rows A1-A3 in group A, B1-B3 in group B; threshold 0.5 everywhere.
#   row  label  prob  certainty  correct
#   A1   1      0.90  0.40       yes
#   A2   0      0.60  0.10       no
#   A3   1      0.70  0.20       yes
#   B1   0      0.20  0.30       yes
#   B2   1      0.45  0.05       no
#   B3   0      0.55  0.05       no      (tied with B2: deferred together)
# Deferring in order of certainty: {B2, B3}, A2, A3, B1, A1.
#   kept                 coverage  acc A  acc B  gap
#   all six              6/6       2/3    1/3    1/3
#   without B2, B3       4/6       2/3    1      1/3
#   without A2 too       3/6       1      1      0
#   without A3 too       2/6       1      1      0
#   only A1              1/6       1      -      undefined (B keeps none)
Y = np.array([[1.0], [0.0], [1.0], [0.0], [1.0], [0.0]])
P = np.array([[0.9], [0.6], [0.7], [0.2], [0.45], [0.55]])
T = np.full((6, 1), 0.5)
G = ["A", "A", "A", "B", "B", "B"]


def test_deferral_curve_by_hand():
    curve = deferral_curve(labelled_cases(Y, P, T, G), ["A", "B"], ["A", "B"], 1)
    assert curve["coverage"].tolist() == pytest.approx([1, 4 / 6, 3 / 6, 2 / 6, 1 / 6])
    assert curve["accuracy"]["A"].tolist() == pytest.approx([2 / 3, 2 / 3, 1, 1, 1])
    assert curve["accuracy"]["B"][:4].tolist() == pytest.approx([1 / 3, 1, 1, 1])
    assert np.isnan(curve["accuracy"]["B"][4])
    assert curve["gap"][:4].tolist() == pytest.approx([1 / 3, 1 / 3, 0, 0])
    assert np.isnan(curve["gap"][4])
    assert operating_index(curve, 0.05) == 2  # coverage 3/6
    assert operating_index(curve, 0.4) == 0  # already under 0.4 at full coverage


def test_operating_point_names_the_groups_deferred_most():
    out = selective_prediction(
        Y, P, T, G, conditions=["acne"], compared=["A", "B"], min_cases=1, n_boot=200, seed=0
    )
    variant = out["variants"]["decision"]
    point = variant["operating_point"]
    assert point["status"] == "ok"
    assert point["coverage"] == pytest.approx(0.5)
    assert (point["kept"], point["deferred"]) == (3, 3)
    assert point["gap"]["value"] == 0.0
    # A keeps A1 and A3 (both right), B keeps B1 (right): every replicate's gap is 0
    assert (point["gap"]["ci_low"], point["gap"]["ci_high"]) == (0.0, 0.0)
    assert point["deferred_share_by_group"] == pytest.approx({"A": 1 / 3, "B": 2 / 3})
    assert point["deferred_most"] == ["B", "A"]
    full = variant["full_coverage"]
    assert full["gap"]["value"] == pytest.approx(1 / 3)
    # balanced accuracy at full coverage: A sens 1, spec 0 -> 0.5; B sens 0, spec 1/2 -> 0.25
    assert full["balanced_accuracy"]["acne"] == pytest.approx({"A": 0.5, "B": 0.25})
    assert point["balanced_accuracy"]["acne"] == {"A": None, "B": None}  # one class kept
    assert "tone" not in out["variants"]


def test_the_row_threshold_decides_and_orders():
    # B's threshold 0.4: B2 (0.45) becomes right with certainty 0.05, B3 (0.55) wrong with
    # 0.15, B1 right with 0.2 (tied with A3). Order: B2, A2, B3, {A3, B1}, A1.
    #   kept          coverage  acc A  acc B  gap
    #   all           6/6       2/3    2/3    0
    #   without B2    5/6       2/3    1/2    1/6
    #   without A2    4/6       1      1/2    1/2
    #   without B3    3/6       1      1      0
    #   only A1       1/6       1      -      undefined
    t = np.array([[0.5], [0.5], [0.5], [0.4], [0.4], [0.4]])
    curve = deferral_curve(labelled_cases(Y, P, t, G), ["A", "B"], ["A", "B"], 1)
    assert curve["coverage"].tolist() == pytest.approx([1, 5 / 6, 4 / 6, 3 / 6, 1 / 6])
    assert curve["gap"][:4].tolist() == pytest.approx([0, 1 / 6, 1 / 2, 0])
    assert np.isnan(curve["gap"][4])


def test_tone_variant_defers_abstained_tone_first():
    # A2's tone estimate abstained (certainty 0): it goes first, then {B2, B3}, A3, B1, A1.
    #   kept              coverage  acc A  acc B  gap
    #   all               6/6       2/3    1/3    1/3
    #   without A2        5/6       1      1/3    2/3
    #   without B2, B3    3/6       1      1      0
    tone = np.array([1.0, 0.0, 1.0, 1.0, 1.0, 1.0])
    cases = labelled_cases(Y, P, T, G, tone_certainty=tone)
    curve = deferral_curve(cases, ["A", "B"], ["A", "B"], 1)
    assert curve["coverage"].tolist() == pytest.approx([1, 5 / 6, 3 / 6, 2 / 6, 1 / 6])
    assert curve["gap"][:4].tolist() == pytest.approx([1 / 3, 2 / 3, 0, 0])
    out = selective_prediction(
        Y,
        P,
        T,
        G,
        conditions=["acne"],
        compared=["A", "B"],
        tone_certainty=tone,
        min_cases=1,
        n_boot=0,
    )
    assert out["variants"]["tone"]["operating_point"]["coverage"] == pytest.approx(0.5)
    assert out["variants"]["tone"]["operating_point"]["deferred_most"] == ["B", "A"]


def test_a_group_below_min_cases_makes_the_gap_undefined():
    # min_cases 2: B keeps one case from coverage 4/6 down, so only full coverage has a gap.
    out = selective_prediction(
        Y, P, T, G, conditions=["acne"], compared=["A", "B"], min_cases=2, n_boot=0
    )
    point = out["variants"]["decision"]["operating_point"]
    assert point == {
        "status": "target not reached",
        "smallest_gap": pytest.approx(1 / 3),
        "at_coverage": 1.0,
    }


def test_unlabelled_cells_are_not_cases_and_bad_options_fail():
    y = Y.copy()
    y[0, 0] = np.nan
    cases = labelled_cases(y, P, T, G)
    assert cases.rank.size == 5 and 0 not in cases.row.tolist()
    assert balanced_accuracy(cases, np.ones(5, bool), 0, "B") == pytest.approx(0.25)
    with pytest.raises(ValueError, match="target"):
        selective_prediction(Y, P, T, G, conditions=["acne"], compared=["A"], target=0)
    with pytest.raises(ValueError, match="minimum cases"):
        selective_prediction(Y, P, T, G, conditions=["acne"], compared=["A"], min_cases=0)
