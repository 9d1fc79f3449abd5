"""The report's AUROC goals and acne-severity section, on planted inputs with known answers."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import cohen_kappa_score, roc_auc_score

from fairness.report import auroc_goals, main

NAN = float("nan")


def _planted_goals_input():
    """I-II: 40 faces ranked perfectly; III-IV: 40 faces at random; V-VI: 8 faces (< 10);
    5 faces of unknown group. Hyperpigmentation has unknown labels on every third row."""
    rng = np.random.default_rng(0)
    groups = ["I-II"] * 40 + ["III-IV"] * 40 + ["V-VI"] * 8 + [None] * 5
    n = len(groups)
    acne = np.array([i % 2 for i in range(n)], dtype=float)
    acne_p = rng.random(n)
    acne_p[:40] = np.where(acne[:40] == 1, 0.6 + 0.4 * rng.random(40), 0.5 * rng.random(40))
    hyper = (rng.random(n) < 0.4).astype(float)
    hyper[::3] = NAN
    y = np.stack([acne, hyper, np.full(n, NAN)], axis=1)
    p = np.stack([acne_p, rng.random(n), rng.random(n)], axis=1)
    return y, p, groups


def test_goals_known_answers():
    y, p, groups = _planted_goals_input()
    goals = auroc_goals(y, p, groups, n_boot=200, seed=0)
    known = ~np.isnan(y[:, 1])
    assert goals["acne_auroc"]["value"] == pytest.approx(roc_auc_score(y[:, 0], p[:, 0]))
    assert goals["hyperpigmentation_auroc"]["value"] == pytest.approx(
        roc_auc_score(y[known, 1], p[known, 1])
    )
    assert goals["hyperpigmentation_auroc"]["n"] == int(known.sum())
    by_group = goals["acne_auroc_by_group"]
    assert by_group["I-II"]["auroc"]["value"] == 1.0
    ci = (by_group["I-II"]["auroc"]["ci_low"], by_group["I-II"]["auroc"]["ci_high"])
    assert ci == pytest.approx((1.0, 1.0))
    mid = roc_auc_score(y[40:80, 0], p[40:80, 0])
    assert by_group["III-IV"]["auroc"]["value"] == pytest.approx(mid)
    assert by_group["III-IV"]["n"] == 40 and by_group["III-IV"]["positives"] == 20
    assert by_group["V-VI"]["n"] == 8
    assert by_group["V-VI"]["auroc"]["status"] == "insufficient evidence"
    assert "8 faces with an acne label; need at least 10" in by_group["V-VI"]["auroc"]["reason"]

    gap = goals["acne_auroc_gap"]
    assert gap["compared"] == ["I-II", "III-IV"]  # V-VI has too few faces
    assert (gap["best_group"], gap["worst_group"]) == ("I-II", "III-IV")
    assert gap["value"] == pytest.approx(1.0 - mid)
    assert gap["ci_low"] <= gap["value"] <= gap["ci_high"]
    assert gap["by_group"]["I-II"]["value"] == 0.0 and gap["min_faces"] == 10
    assert "not_analysed" not in goals  # the predictions do not mark it


def test_goals_leave_out_a_group_without_positives_and_count_faces_not_analysed():
    y, p, groups = _planted_goals_input()
    y[40:80, 0] = 0.0  # III-IV: 40 faces, no acne: AUROC undefined
    face_found = ["1"] * 80 + ["0"] * 3 + [""] * 10
    goals = auroc_goals(y, p, groups, n_boot=0, face_found=face_found)
    assert goals["acne_auroc_by_group"]["III-IV"]["auroc"]["status"] == "insufficient evidence"
    gap = goals["acne_auroc_gap"]
    assert gap["status"] == "insufficient evidence" and "need 2" in gap["reason"]
    assert goals["not_analysed"] == {"share": 3 / 83, "count": 3, "n": 83, "column": "face_found"}
    assert goals["acne_auroc"]["ci_low"] is None  # n_boot = 0: no interval


def _with_severity(df: pd.DataFrame) -> pd.DataFrame:
    """Label grade i % 4 (rows 0-4 unknown); predicted = label, one grade off where i % 10 == 5."""
    n = len(df)
    label = np.array([i % 4 for i in range(n)], dtype=float)
    grade = label.copy()
    off = np.arange(n) % 10 == 5
    grade[off] = np.where(label[off] == 3, 2, label[off] + 1)
    label[:5] = NAN
    return df.assign(
        acne_severity=pd.array([None if np.isnan(v) else int(v) for v in label], "Int64"),
        acne_severity_grade=grade.astype(int),
    )


def test_severity_section_known_answers(tmp_path, simulate):
    val = _with_severity(simulate(200, 1, split="val"))
    test = _with_severity(simulate(200, 2, split="test"))
    val.to_csv(tmp_path / "predictions_val.csv", index=False)
    test.to_csv(tmp_path / "predictions_test.csv", index=False)
    out = tmp_path / "out"
    code = main(["--predictions", str(tmp_path), "--out", str(out), "--n-boot", "50",
                 "--no-progress"])  # fmt: skip
    assert code == 0
    severity = json.loads((out / "metrics.json").read_text())["severity"]
    known = test["acne_severity"].notna().to_numpy()
    y = test["acne_severity"].to_numpy()[known].astype(int)
    g = test["acne_severity_grade"].to_numpy()[known]
    assert severity["split"] == "test" and severity["n"] == 195
    assert severity["overall"]["mae"]["value"] == pytest.approx(np.mean(np.abs(y - g)))
    assert severity["overall"]["mae"]["value"] == pytest.approx(20 / 195)  # 20 rows one off
    qwk = cohen_kappa_score(y, g, labels=[0, 1, 2, 3], weights="quadratic")
    assert severity["overall"]["qwk"]["value"] == pytest.approx(qwk)
    lo, hi = severity["overall"]["qwk"]["ci_low"], severity["overall"]["qwk"]["ci_high"]
    assert lo <= qwk <= hi
    assert severity["distribution"]["label"] == {str(k): int((y == k).sum()) for k in range(4)}
    assert severity["distribution"]["predicted"] == {str(k): int((g == k).sum()) for k in range(4)}
    groups = test["group"].fillna("").to_numpy()[known]
    for grp in ("I-II", "III-IV", "V-VI"):
        assert severity["by_group"][grp]["n"] == int((groups == grp).sum())

    report = (out / "report.md").read_text()
    assert "## Acne severity (grade 0-3)" in report and f"{qwk:.3f}" in report
    assert "Acne severity (grade 0-3)" in (out / "report.html").read_text()
    card = json.loads((out / "model_card.json").read_text())
    assert card["severity"]["overall"]["qwk"]["value"] == pytest.approx(qwk)
    assert "## Acne severity (grade 0-3)" in (out / "model_card.md").read_text()


def test_no_severity_section_without_predicted_grades(run_dir, tmp_path):
    test = pd.read_csv(run_dir / "predictions_test.csv")
    test.assign(acne_severity=1, acne_severity_grade="").to_csv(
        run_dir / "predictions_test.csv", index=False
    )
    out = tmp_path / "out"
    assert main(["--predictions", str(run_dir), "--out", str(out), "--n-boot", "10",
                 "--no-progress"]) == 0  # fmt: skip
    assert "severity" not in json.loads((out / "metrics.json").read_text())
    assert "Acne severity" not in (out / "report.md").read_text()
    assert "severity" not in json.loads((out / "model_card.json").read_text())


def test_goals_in_metrics_json_match_the_tables(run_dir, tmp_path):
    test = pd.read_csv(run_dir / "predictions_test.csv", dtype=str, keep_default_na=False)
    test["face_found"] = ["0" if i < 30 else "1" for i in range(len(test))]
    test.to_csv(run_dir / "predictions_test.csv", index=False)
    out = tmp_path / "out"
    assert main(["--predictions", str(run_dir), "--out", str(out), "--n-boot", "20",
                 "--no-progress"]) == 0  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())
    goals, table = metrics["goals"], metrics["test"]["conditions"]
    for cond in ("acne", "hyperpigmentation"):
        assert goals[f"{cond}_auroc"]["value"] == pytest.approx(
            table[cond]["overall"]["auroc"]["value"]
        )
    for g in ("I-II", "III-IV", "V-VI"):
        assert goals["acne_auroc_by_group"][g]["auroc"]["value"] == pytest.approx(
            table["acne"]["by_group"][g]["auroc"]["value"]
        )
    assert goals["not_analysed"]["share"] == pytest.approx(30 / 600)
    # the simulated model is noisier on V-VI: that group is the worst
    assert goals["acne_auroc_gap"]["worst_group"] == "V-VI"
    assert "## AUROC goals" in (out / "report.md").read_text()


def test_bad_face_found_value_is_named(run_dir, tmp_path, capsys):
    test = pd.read_csv(run_dir / "predictions_test.csv", dtype=str, keep_default_na=False)
    test["face_found"] = ["yes" if i == 2 else "1" for i in range(len(test))]
    test.to_csv(run_dir / "predictions_test.csv", index=False)
    code = main(["--predictions", str(run_dir), "--out", str(tmp_path / "o"), "--n-boot", "5",
                 "--no-progress"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "column 'face_found', line 4: must be 0, 1 or empty" in err


def test_dataset_json_beside_a_datacard_folder_names_the_data_kind(tmp_path):
    from fairness.io import read_dataset_info

    data = tmp_path / "acne-new"
    data.mkdir()
    (data / "dataset.json").write_text(json.dumps({"name": "acne-new v36", "synthetic": False}))
    run = tmp_path / "preds"  # a folder of predictions with no config.json
    run.mkdir()
    assert read_dataset_info(run)["kind"] == "unknown"
    info = read_dataset_info(run, data_dirs=[data])
    assert (info["kind"], info["name"]) == ("real", "acne-new v36")
