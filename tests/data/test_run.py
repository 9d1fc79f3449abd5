"""data.run: one owner of a run folder's and an exported model folder's layout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from data.run import ModelDir, Run, read_json_object


def test_run_paths_follow_the_layout(tmp_path: Path) -> None:
    run = Run(tmp_path / "run")
    root = tmp_path / "run"
    assert (run.config_path, run.metrics_path) == (root / "config.json", root / "metrics.json")
    assert run.checkpoint("best") == root / "checkpoints" / "best"
    assert run.predictions("val") == root / "predictions_val.csv"
    assert run.thresholds_path == root / "fairness" / "thresholds.json"
    assert run.report_card_path == root / "fairness" / "model_card.json"
    assert run.explain_report("test") == root / "explain" / "explain_test.json"
    assert run.export_dir == root / "model"
    moved = Run(str(root), report=str(tmp_path / "r"), explain=tmp_path / "e")
    assert moved.calibration_path == tmp_path / "r" / "calibration.json"
    assert moved.explain_report("val") == tmp_path / "e" / "explain_val.json"
    model = ModelDir(tmp_path / "m")
    assert model.card_path == tmp_path / "m" / "model_card.json"
    assert model.float32_path.name == "model.float32.onnx" and model.ood_path.name == "ood.json"


def test_run_loaders_read_config_metrics_and_the_recipe(tmp_path: Path) -> None:
    run = Run(tmp_path)
    assert run.config_or_none() is None and run.model_info() is None and run.history() == []
    with pytest.raises(FileNotFoundError, match="config.json: file not found"):
        run.load_config()
    config = {"model": {"name": "small_cnn", "image_size": 96}, "epochs": 3, "loss": "bce"}
    run.config_path.write_text(json.dumps(config))
    run.metrics_path.write_text(json.dumps({"history": [{"epoch": 1}], "code_version": "c1"}))
    assert run.load_config() == config and run.history() == [{"epoch": 1}]
    assert run.training_recipe() == {"epochs": 3, "loss": "bce", "code_version": "c1"}
    info = run.model_info()
    assert info["name"] == "small_cnn" and info["run"] == tmp_path.name
    assert info["training_loss"] == "bce"
    run.config_path.write_text("[1]")
    with pytest.raises(ValueError, match="config.json: expected a JSON object"):
        read_json_object(run.config_path)
    assert run.config_or_none() is None


def test_report_files_need_an_evaluated_metrics_json(tmp_path: Path) -> None:
    run = Run(tmp_path)
    assert run.report_files() == (None, None) and run.evaluated_report() is None
    run.fairness_dir.mkdir()
    run.report_metrics_path.write_text(json.dumps({"evaluated_split": "val"}))
    run.thresholds_path.write_text("{}")
    assert run.report_files() == (run.thresholds_path, None)
    run.report_metrics_path.write_text(json.dumps({"evaluated_split": "val", "val": {}}))
    assert run.report_files() == (run.thresholds_path, run.report_metrics_path)
