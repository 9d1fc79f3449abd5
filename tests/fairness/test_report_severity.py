"""The report's acne-severity cutpoints: fitted on val, applied to test or cross-fitted, shipped."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import cohen_kappa_score

from core.severity import severity_grade
from core.thresholds import load_thresholds
from fairness import crossfit
from fairness.report import main
from fairness.severity import fit_severity_cutpoints

PROB_COLUMNS = [f"acne_severity_prob_{k}" for k in range(4)]


def _with_planted_severity(df: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Grades 0/1/2 at 80/15/5%, a few unknown; P(grade > 0) rises with the grade but stays
    below 0.5, so the model's own (median) grade is 0 everywhere. Every P(grade > 0) distinct."""
    rng = np.random.default_rng(seed)
    n = len(df)
    y = rng.choice(3, size=n, p=[0.8, 0.15, 0.05]).astype(float)
    a0 = np.clip(0.1 + 0.12 * y + rng.normal(0, 0.04, n), 0.01, 0.49)
    a0 += np.arange(n) * 1e-7  # distinct: a row is named by its P(grade > 0)
    a1 = np.clip(np.where(y == 2, 0.2, 0.03) + rng.normal(0, 0.02, n), 0.0, a0)
    a2 = a1 * 0.1
    probs = np.stack([1 - a0, a0 - a1, a1 - a2, a2], axis=1)
    y[rng.random(n) < 0.05] = np.nan
    out = df.assign(
        acne_severity=pd.array([None if np.isnan(v) else int(v) for v in y], "Int64"),
        acne_severity_grade=severity_grade(probs),
    )
    for k, col in enumerate(PROB_COLUMNS):
        out[col] = probs[:, k]
    return out


def _labels_probs(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    return df["acne_severity"].to_numpy(dtype=float, na_value=np.nan), df[PROB_COLUMNS].to_numpy()


def _report(predictions: list[str], out, *extra: str) -> int:
    return main(
        ["--predictions", *predictions, "--out", str(out), "--n-boot", "20", "--no-progress",
         *extra]
    )  # fmt: skip


def test_cutpoints_fitted_on_val_raise_test_qwk_and_are_shipped(tmp_path, simulate):
    val = _with_planted_severity(simulate(400, 1, split="val"), 11)
    test = _with_planted_severity(simulate(400, 2, split="test"), 12)
    assert (val["acne_severity_grade"] == 0).all() and (test["acne_severity_grade"] == 0).all()
    val.to_csv(tmp_path / "predictions_val.csv", index=False)
    test.to_csv(tmp_path / "predictions_test.csv", index=False)
    out = tmp_path / "out"
    assert _report([str(tmp_path)], out) == 0

    fit = fit_severity_cutpoints(*_labels_probs(val))
    shipped = load_thresholds(out / "thresholds.json")
    assert shipped.severity_cutpoints == pytest.approx(fit["cutpoints"])
    assert json.loads((out / "thresholds.json").read_text())["acne_severity"] == fit

    severity = json.loads((out / "metrics.json").read_text())["severity"]
    rule = severity["grade_rule"]
    assert rule["name"] == "cutpoints fitted on val"
    assert rule["cutpoints"] == pytest.approx(fit["cutpoints"])
    y, probs = _labels_probs(test)
    known = np.isfinite(y)
    grade = severity_grade(probs, fit["cutpoints"])[known]
    qwk = cohen_kappa_score(y[known].astype(int), grade, labels=[0, 1, 2, 3], weights="quadratic")
    assert severity["overall"]["qwk"]["value"] == pytest.approx(qwk)
    assert severity["default_rule"]["qwk"] == pytest.approx(0.0)  # the median rule: all 0
    assert qwk > 0.5  # the planted signal, recovered by the cutpoints
    assert severity["distribution"]["predicted"] == {
        str(k): int((grade == k).sum()) for k in range(4)
    }

    report = (out / "report.md").read_text()
    assert "Grade rule: cutpoints fitted on val (QWK-optimal), applied to test" in report
    assert "Acne-severity cutpoints (thresholds.json acne_severity, shipped)" in report
    card = json.loads((out / "model_card.json").read_text())
    assert card["severity"]["grade_rule"]["name"] == "cutpoints fitted on val"


def test_val_only_cross_fits_the_cutpoints_on_the_other_fold(tmp_path, simulate, monkeypatch):
    val = _with_planted_severity(simulate(300, 5, split="val"), 13)
    val["subject_id"] = [f"s{i // 3}" for i in range(len(val))]
    path = tmp_path / "predictions_val.csv"
    val.to_csv(path, index=False)
    y_all, p_all = _labels_probs(val)
    key = np.round(1 - p_all[:, 0], 9)  # P(grade > 0) names the row
    row_of = {v: i for i, v in enumerate(key.tolist())}
    assert len(row_of) == len(val)

    fitted_on: dict[int, set[int]] = {}  # id(cutpoints) -> rows the fit saw
    graded: list[tuple[set[int], set[int], np.ndarray]] = []
    real_fit, real_grade = crossfit.fit_severity_cutpoints, crossfit.severity_grade

    def spy_fit(y, p, **options):
        fit = real_fit(y, p, **options)
        fitted_on[id(fit["cutpoints"])] = {row_of[v] for v in np.round(1 - p[:, 0], 9).tolist()}
        return fit

    def spy_grade(p, cutpoints=None):
        rows = [row_of[v] for v in np.round(1 - p[:, 0], 9).tolist()]
        grades = real_grade(p, cutpoints)
        graded.append((set(rows), fitted_on[id(cutpoints)], np.array(rows), grades))
        return grades

    monkeypatch.setattr(crossfit, "fit_severity_cutpoints", spy_fit)
    monkeypatch.setattr(crossfit, "severity_grade", spy_grade)
    out = tmp_path / "out"
    assert _report([str(path)], out) == 0

    assert len(graded) == 2
    subject = val["subject_id"].to_numpy()
    oof = np.full(len(val), -1)
    for rows, seen, order, grades in graded:
        assert rows and seen and not rows & seen  # never fitted on its own rows
        assert rows | seen == set(range(len(val)))  # K = 2: fitted on exactly the other fold
        assert not set(subject[list(rows)]) & set(subject[list(seen)])  # subjects kept whole
        oof[order] = grades
    assert (oof >= 0).all()

    metrics = json.loads((out / "metrics.json").read_text())
    severity = metrics["severity"]
    assert severity["split"] == "val"
    assert severity["grade_rule"]["name"] == "cross-fitted cutpoints"
    assert len(metrics["cross_fitting"]["severity_cutpoints_per_fold"]) == 2
    known = np.isfinite(y_all)
    qwk = cohen_kappa_score(
        y_all[known].astype(int), oof[known], labels=[0, 1, 2, 3], weights="quadratic"
    )
    assert severity["overall"]["qwk"]["value"] == pytest.approx(qwk)
    assert qwk > severity["default_rule"]["qwk"] + 0.3
    # what is shipped: fitted on all validation rows
    fit = real_fit(y_all, p_all)
    assert load_thresholds(out / "thresholds.json").severity_cutpoints == pytest.approx(
        fit["cutpoints"]
    )
    assert (
        "Grade rule: cutpoints cross-fitted on val (2 folds by subject"
        in (out / "report.md").read_text()
    )


def test_without_probabilities_the_model_grade_is_used_and_nothing_is_shipped(tmp_path, simulate):
    for split, seed in (("val", 1), ("test", 2)):
        df = _with_planted_severity(simulate(200, seed, split=split), seed).drop(
            columns=PROB_COLUMNS
        )
        df.to_csv(tmp_path / f"predictions_{split}.csv", index=False)
    out = tmp_path / "out"
    assert _report([str(tmp_path)], out) == 0
    severity = json.loads((out / "metrics.json").read_text())["severity"]
    assert severity["grade_rule"]["name"] == "default" and "default_rule" not in severity
    assert severity["distribution"]["predicted"]["0"] == severity["n"]
    assert load_thresholds(out / "thresholds.json").severity_cutpoints is None
    assert "Grade rule: default rule" in (out / "report.md").read_text()
