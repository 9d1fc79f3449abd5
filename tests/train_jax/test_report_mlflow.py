"""python -m train_jax.report: the fairness report logged into a real MLflow SQLite store."""

from __future__ import annotations

import json

import pytest

from tests.fairness.conftest import simulate_predictions
from train_jax import report, tracking


@pytest.fixture()
def run_dir(tmp_path):
    """A run-like folder holding predictions_val.csv and predictions_test.csv."""
    folder = tmp_path / "run"
    folder.mkdir()
    simulate_predictions(600, 1, split="val").to_csv(folder / "predictions_val.csv", index=False)
    simulate_predictions(600, 2, split="test").to_csv(folder / "predictions_test.csv", index=False)
    return folder


def test_logs_the_report_into_a_real_mlflow_sqlite_store(run_dir, tmp_path, capsys):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment(
        "fairness-test", artifact_location=(tmp_path / "artifacts").as_uri()
    )
    run = client.create_run(exp)
    out = tmp_path / "report"
    argv = ["--predictions", str(run_dir), "--out", str(out), "--n-boot", "20", "--no-progress"]
    code = report.main([*argv, "--json", "--mlflow-run", run.info.run_id, "--mlflow-uri", uri])
    assert code == 0, capsys.readouterr().err
    summary = json.loads(capsys.readouterr().out)  # stdout: the report's summary only
    assert summary["out"] == str(out)
    logged = client.get_run(run.info.run_id).data.metrics
    metrics = json.loads((out / "metrics.json").read_text())
    test = metrics["test"]
    assert logged["fairness/macro_f1"] == pytest.approx(test["summary"]["macro_f1"]["value"])
    assert "fairness/gap_dark_vs_medium_f1_ci_high" in logged
    cell = test["conditions"]["acne"]["by_group"]["V-VI"]["f1"]
    assert logged["fairness/f1/V-VI/acne"] == pytest.approx(cell["value"])
    assert logged["fairness/f1/V-VI/acne_ci_low"] == pytest.approx(cell["ci_low"])
    assert logged["fairness_goals/acne_auroc"] == pytest.approx(
        metrics["goals"]["acne_auroc"]["value"]
    )
    assert "fairness_global_threshold/macro_f1" in logged
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "fairness")}
    assert "fairness/model_card.json" in artifacts
    assert "fairness/report.md" not in artifacts  # an allow-list: report.html, not the rest


def test_bad_input_stops_before_mlflow_and_mlflow_errors_are_exit_3(run_dir, tmp_path, capsys):
    argv = ["--out", str(tmp_path / "r"), "--n-boot", "0", "--no-progress", "--mlflow-run", "x"]
    assert report.main(["--predictions", str(tmp_path / "none"), *argv]) == 2
    code = report.main(
        ["--predictions", str(run_dir), *argv, "--mlflow-uri", "sqlite:////proc/no/mlflow.db"]
    )
    assert code == report.EXIT_MLFLOW
    assert "MLflow store sqlite:////proc/no/mlflow.db" in capsys.readouterr().err


def test_fairness_report_metrics_flatten_every_section() -> None:
    est = {"value": 0.5, "ci_low": 0.4, "ci_high": 0.6}
    block = {"summary": {"macro_f1": est}, "conditions": {}}
    doc = {"evaluated_split": "val", "val": block, "val_global_threshold": block}
    assert tracking.fairness_report_metrics(doc) == {
        "fairness/macro_f1": 0.5,
        "fairness/macro_f1_ci_low": 0.4,
        "fairness/macro_f1_ci_high": 0.6,
        "fairness_global_threshold/macro_f1": 0.5,
        "fairness_global_threshold/macro_f1_ci_low": 0.4,
        "fairness_global_threshold/macro_f1_ci_high": 0.6,
    }
