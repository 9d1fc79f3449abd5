"""fairness.flatten: the one flattener of a report's nested metrics, and its users."""

from __future__ import annotations

import math

from fairness.flatten import estimate_value, flatten_report, report_cells
from fairness.report_goals import flatten_goals

EST = {"value": 0.5, "ci_low": 0.4, "ci_high": 0.6}
BLOCK = {
    "summary": {"macro_f1": EST, "f1/V-VI": {"value": None}},
    "conditions": {
        "acne": {
            "overall": {"n": 20, "f1": EST, "auroc": 0.9},
            "by_group": {"V-VI": {"n": 7, "f1": {"value": math.nan}, "auroc": {"value": 0.7}}},
            "gaps": {"f1_worst_best": EST},
        }
    },
}


def test_values_and_intervals_with_one_key_scheme() -> None:
    assert flatten_report(BLOCK, "eval", metrics=("f1", "auroc")) == {
        "eval/macro_f1": 0.5,
        "eval/f1/overall/acne": 0.5,
        "eval/auroc/overall/acne": 0.9,
        "eval/auroc/V-VI/acne": 0.7,
        "eval/gap/acne/f1_worst_best": 0.5,
    }
    flat = flatten_report(BLOCK, "fairness", metrics=("f1",), intervals=True)
    assert flat["fairness/macro_f1_ci_low"] == 0.4 and flat["fairness/macro_f1_ci_high"] == 0.6
    assert flat["fairness/gap/acne/f1_worst_best_ci_high"] == 0.6
    assert "fairness/f1/V-VI/acne" not in flat  # NaN: no number
    assert "eval/auroc/overall/acne_ci_low" not in flatten_report(BLOCK, "eval", intervals=True)


def test_nested_cells_keep_counts_as_integers() -> None:
    cells = report_cells(BLOCK, ("n", "f1"))
    assert cells == {"acne": {"overall": {"n": 20, "f1": 0.5}, "V-VI": {"n": 7, "f1": None}}}
    assert isinstance(cells["acne"]["overall"]["n"], int)
    assert estimate_value(True) is None and estimate_value(EST, "ci_low") == 0.4


def test_goals_go_through_the_same_flattener() -> None:
    goals = {
        "acne_auroc": EST,
        "hyperpigmentation_auroc": {"value": 0.8},
        "acne_auroc_by_group": {g: {"auroc": {"value": 0.7}} for g in ("I-II", "III-IV", "V-VI")},
        "acne_auroc_gap": {"value": 0.1, "ci_low": None, "ci_high": 0.2},
        "not_analysed": {"share": 0.25},
    }
    flat = flatten_goals(goals, "g")
    assert flat["g/acne_auroc_ci_low"] == 0.4 and flat["g/acne_auroc/V-VI"] == 0.7
    assert flat["g/acne_auroc_gap_ci_high"] == 0.2 and "g/acne_auroc_gap_ci_low" not in flat
    assert flat["g/not_analysed_share"] == 0.25
