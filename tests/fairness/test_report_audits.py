"""The report's selective-prediction and counterfactual sections, end to end through the CLI."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from fairness import crossfit
from fairness.counterfactual import write_counterfactual
from fairness.io import read_predictions, to_arrays
from fairness.report import EXIT_BAD_INPUT, _fold_row_thresholds, main
from tests.fairness.conftest import planted_rows


def _run(args: list[str]) -> int:
    return main([*args, "--n-boot", "30", "--no-progress"])


def test_report_has_both_sections_with_a_counterfactual_csv(run_dir, tmp_path):
    cf = write_counterfactual(tmp_path / "cf.csv", planted_rows())
    out = tmp_path / "report"
    assert (
        _run(["--predictions", str(run_dir), "--out", str(out), "--counterfactual", str(cf)]) == 0
    )
    html = (out / "report.html").read_text()
    assert "Selective prediction (the least certain decisions deferred to a human)" in html
    assert "Counterfactual robustness (the same photo under controlled changes)" in html
    assert "Decision flip rate" in html and "Operating point" in html
    assert html.count("data:image/png;base64,") == 6  # the four plots + selective + counterfactual
    metrics = json.loads((out / "metrics.json").read_text())
    selective = metrics["selective_prediction"]
    assert selective["target"] == 0.05 and "plot" not in selective["variants"]["decision"]
    assert selective["variants"]["decision"]["compared_groups"] == ["I-II", "III-IV", "V-VI"]
    assert "tone" not in selective["variants"]  # labelled types: no tone uncertainty
    cf_metrics = metrics["counterfactual"]
    assert cf_metrics["flip_rate"]["V-VI"]["+0.5 EV"]["acne"]["count"] == 1
    assert cf_metrics["photos_in_predictions"] == 0  # planted images are not in the predictions
    card = json.loads((out / "model_card.json").read_text())
    assert {"evaluation", "thresholds", "calibration", "limitations"} <= set(card)  # kept
    assert card["selective_prediction"]["variants"]["decision"]["operating_point"]["status"]
    assert card["counterfactual_robustness"]["tone_change"]["V-VI"]["+0.5 EV"]["count"] == 2
    md = (out / "model_card.md").read_text()
    assert "## Selective prediction" in md and "## Counterfactual robustness" in md


def test_report_without_counterfactual_has_selective_only(run_dir, tmp_path):
    out = tmp_path / "report"
    assert (
        _run(["--predictions", str(run_dir), "--out", str(out), "--selective-target", "0.2"]) == 0
    )
    html = (out / "report.html").read_text()
    assert "Selective prediction" in html and "Counterfactual robustness" not in html
    metrics = json.loads((out / "metrics.json").read_text())
    assert "counterfactual" not in metrics
    point = metrics["selective_prediction"]["variants"]["decision"]["operating_point"]
    assert metrics["selective_prediction"]["target"] == 0.2
    assert point["status"] != "ok" or point["gap"]["value"] < 0.2


def test_bad_counterfactual_csv_exits_2_naming_the_file(run_dir, tmp_path, capsys):
    rows = planted_rows()
    rows[0]["condition"] = "freckles"
    cf = write_counterfactual(tmp_path / "cf.csv", rows)
    out = tmp_path / "report"
    assert (
        _run(["--predictions", str(run_dir), "--out", str(out), "--counterfactual", str(cf)])
        == EXIT_BAD_INPUT
    )
    err = capsys.readouterr().err
    assert str(cf) in err and "line 2, column 'condition'" in err
    assert not (out / "metrics.json").exists()


def _estimated_predictions(simulate, path):
    """Validation predictions with an estimated tone: no types, some abstained groups."""
    df = simulate(400, 3, split="val")
    df["fitzpatrick"] = ""
    df["tone_source"] = "estimated"
    df.loc[df.index % 7 == 0, "group"] = ""
    df.to_csv(path, index=False)
    return path


def test_estimated_tone_gets_the_tone_variant_and_cross_fitted_thresholds(simulate, tmp_path):
    val = _estimated_predictions(simulate, tmp_path / "predictions_val.csv")
    out = tmp_path / "report"
    assert _run(["--predictions", str(val), "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    selective = metrics["selective_prediction"]
    assert set(selective["variants"]) == {"decision", "tone"}
    assert "no estimate" in selective["groups"] and "cross-fitted" in selective["thresholds"]
    tone = selective["variants"]["tone"]["curve"]
    # the tone variant defers the abstained rows (no group) before any other: once the
    # coverage is below the other rows' share of the decisions, none of them is kept
    full = selective["variants"]["tone"]["full_coverage"]["kept_by_group"]
    share = 1 - full["no estimate"] / sum(full.values())
    after = [p for p in tone if p["coverage"] <= share + 1e-9]
    before = [p for p in tone if p["coverage"] > share + 1e-9]
    assert after and all(p["accuracy"]["no estimate"] is None for p in after)
    assert before and all(p["accuracy"]["no estimate"] is not None for p in before)
    decision = selective["variants"]["decision"]["curve"]
    assert any(p["accuracy"]["no estimate"] is not None for p in decision if p["level"] < share)
    assert "Deferring on tone uncertainty first" in (out / "report.html").read_text()


def test_cross_fitted_row_thresholds_reproduce_the_cross_fitted_decisions(simulate, tmp_path):
    val = _estimated_predictions(simulate, tmp_path / "predictions_val.csv")
    arrays = to_arrays(read_predictions(val))
    keys = crossfit.subject_keys([f"i{k}" for k in range(len(arrays.groups))])
    folds = crossfit.subject_folds(keys, seed=0)
    decisions, fitted = crossfit.cross_fit_decisions(
        arrays.y_true, arrays.probs, arrays.groups, folds, min_positives=5
    )
    used = _fold_row_thresholds(arrays, folds, fitted)
    assert np.array_equal(arrays.probs >= used, np.asarray(decisions, bool))
    assert not np.allclose(used[folds == 0], used[folds == 0][0])  # per group, per fold
    assert pd.notna(used).all()


def test_cli_prints_a_target_that_is_not_reached(run_dir, tmp_path, capsys):
    out = tmp_path / "report"
    args = ["--predictions", str(run_dir), "--out", str(out), "--selective-min-cases", "100000"]
    assert _run(args) == 0  # no group has that many decisions: the gap is never defined
    assert "selective (decision): target not reached" in capsys.readouterr().out
    assert "No coverage brings the gap under 0.05" in (out / "report.md").read_text()
