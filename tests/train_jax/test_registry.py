"""train_jax.registry: flat per-group metrics, plot tables, and a real MLflow SQLite registry."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import exported_card
from train_jax import registry

CELL = {"f1": {"value": 0.5}, "recall": {"value": None}, "precision": 0.25, "auroc": {}}
REPORT = {
    "summary": {"macro_f1": {"value": 0.7}, "gap_dark_vs_medium_f1": {"value": None}},
    "conditions": {
        "acne": {
            "overall": {"f1": {"value": 0.6}},
            "by_group": {"V-VI": CELL, "I-II": {"f1": {"value": float("nan")}}},
            "gaps": {"tpr": {"value": 0.1}},
        }
    },
}


def test_fairness_metrics_are_flat_and_skip_missing_numbers() -> None:
    assert registry.fairness_metrics(REPORT) == {
        "eval/macro_f1": 0.7,
        "eval/f1/overall/acne": 0.6,
        "eval/f1/V-VI/acne": 0.5,
        "eval/precision/V-VI/acne": 0.25,
        "eval/gap/acne/tpr": 0.1,
    }


def test_explain_metrics_per_group_and_ratios() -> None:
    report = {
        "localisation": {
            "wrinkles": {
                "pointing_game": {
                    "overall": {"value": 0.2},
                    "by_group": {"III-IV": {"value": 0.3}, "unknown": {"value": None}},
                    "spread": None,
                },
                "energy_in_mask": {"overall": {"value": 0.4}, "by_group": {}, "spread": 0.05},
            }
        },
        "faithfulness": {"wrinkles": {"deletion_ratio": 0.8, "insertion_ratio": None}},
    }
    assert registry.explain_metrics(report) == {
        "explain/pointing_game/overall/wrinkles": 0.2,
        "explain/pointing_game/III-IV/wrinkles": 0.3,
        "explain/energy_in_mask/overall/wrinkles": 0.4,
        "explain/energy_in_mask/spread/wrinkles": 0.05,
        "explain/deletion_ratio/wrinkles": 0.8,
    }


def test_history_and_reliability_tables() -> None:
    history = registry.history_rows(
        {"history": [{"epoch": 1, "val/macro_f1": 0.5}, {"epoch": 2, "train/dro_q/I-II": 0.3}]}
    )
    assert history == [
        {"epoch": 1, "val/macro_f1": 0.5, "train/dro_q/I-II": ""},
        {"epoch": 2, "val/macro_f1": "", "train/dro_q/I-II": 0.3},
    ]
    curve = {
        "bin_edges": [0.0, 0.5, 1.0],
        "count": [0.0, 4.0],
        "mean_predicted": [None, 0.8],
        "fraction_positive": [None, 0.75],
    }
    rows = registry.reliability_rows({"conditions": {"acne": {"V-VI": {"reliability": curve}}}})
    assert rows == [
        {
            "condition": "acne",
            "group": "V-VI",
            "bin_center": 0.75,
            "mean_predicted": 0.8,
            "fraction_positive": 0.75,
            "count": 4,
        }
    ]


def _tiny_onnx(path: Path) -> Path:
    """A real ONNX graph image [B,8,8,3] -> probs [B,3] (mean over pixels, then sigmoid)."""
    import onnx
    from onnx import TensorProto, helper

    axes = helper.make_tensor("axes", TensorProto.INT64, [2], [1, 2])
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["image", "axes"], ["mean"], keepdims=0),
            helper.make_node("Sigmoid", ["mean"], ["probs"]),
        ],
        "tiny",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["B", 8, 8, 3])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["B", 3])],
        initializer=[axes],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.fixture()
def run_folder(tmp_path: Path) -> Path:
    """A run folder with what the evaluate and register commands read (no training needed)."""
    run = tmp_path / "outputs" / "demo-run"
    (run / "fairness").mkdir(parents=True)
    (run / "explain").mkdir()
    (run / "model").mkdir()
    config = {
        "experiment": "registry-test",
        "model": {"name": "small_cnn"},
        "data": {"data_dir": "data/synthskin-v1", "balance": "group"},
    }
    (run / "config.json").write_text(json.dumps(config))
    (run / "metrics.json").write_text(json.dumps({"history": [{"epoch": 1, "val/f1/V-VI": 0.4}]}))
    (run / "fairness" / "metrics.json").write_text(json.dumps({"test": REPORT}))
    (run / "fairness" / "calibration.json").write_text(json.dumps({"conditions": {}}))
    (run / "fairness" / "roc.png").write_bytes(b"\x89PNG aggregate plot")
    (run / "fairness" / "face.jpg").write_bytes(b"not allowed in MLflow")
    (run / "explain" / "explain_test.json").write_text(
        json.dumps({"localisation": {}, "faithfulness": {"acne": {"deletion_ratio": 0.6}}})
    )
    (run / "explain" / "cam_examples_V-VI.png").write_bytes(b"\x89PNG faces")
    _tiny_onnx(run / "model" / "model.onnx")
    card = exported_card(
        training_data={"synthetic": True, "evidence": None, "note": None},
        parity={"probs": 1e-7},
        metrics={"per_group": {"acne": {"V-VI": {"n": 5, "f1": 0.5, "auroc": None}}}},
    )
    (run / "model" / "model_card.json").write_text(json.dumps(card))
    (run / "model" / "thresholds.json").write_text("{}")
    return run


def test_evaluate_and_register_into_a_real_mlflow_store(
    run_folder: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow import MlflowClient

    uri = f"sqlite:///{run_folder.parent / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # for models:/ URIs (never ./mlflow.db)
    metrics_out = run_folder.parent / "metrics" / "evaluate.json"
    plots = run_folder.parent / "plots"
    args = ["--run", str(run_folder), "--uri", uri]
    code = registry.main(
        ["evaluate", *args, "--metrics-out", str(metrics_out), "--plots-dir", str(plots)]
    )
    assert code == 0, capsys.readouterr().err
    written = json.loads(metrics_out.read_text())
    assert written["eval/f1/V-VI/acne"] == 0.5
    assert written["explain/deletion_ratio/acne"] == 0.6
    with open(plots / "history.csv") as f:
        assert list(csv.DictReader(f)) == [{"epoch": "1", "val/f1/V-VI": "0.4"}]
    header = (plots / "reliability.csv").read_text().splitlines()
    assert header == [",".join(registry.RELIABILITY_COLUMNS)]

    export_out = run_folder.parent / "metrics" / "export.json"
    code = registry.main(
        ["register", *args, "--model-dir", str(run_folder / "model"), "--name", "tiny"]
        + ["--metrics-out", str(export_out)]
    )
    assert code == 0, capsys.readouterr().err
    client = MlflowClient(tracking_uri=uri)
    version = client.get_model_version_by_alias("tiny", "champion")
    assert {k: version.tags[k] for k in ("model_arch", "balance_skin_tones", "dataset")} == {
        "model_arch": "small_cnn",
        "balance_skin_tones": "group",
        "dataset": "synthskin-v1",
    }
    assert version.tags["skin_tone_groups"] == "I-II,III-IV,V-VI"
    assert client.get_registered_model("tiny").aliases == {"champion": version.version}
    # One MLflow run holds the evaluation metrics and the model (created: no training run).
    run = client.get_run(version.run_id)
    assert run.info.run_name == "demo-run"
    assert run.data.metrics["eval/f1/V-VI/acne"] == 0.5
    assert json.loads(export_out.read_text())["export/parity_max_abs_diff/probs"] == 1e-7

    # The registered model runs: same numbers as the ONNX file through onnxruntime.
    import mlflow.pyfunc

    x = np.random.default_rng(0).uniform(0, 1, (2, 8, 8, 3)).astype(np.float32)
    loaded = mlflow.pyfunc.load_model("models:/tiny@champion")
    probs = loaded.predict({"image": x})["probs"]
    np.testing.assert_allclose(probs, 1 / (1 + np.exp(-x.mean(axis=(1, 2)))), rtol=1e-5)

    # A second registration moves the alias to the new version.
    assert registry.main(["register", *args, "--model-dir", str(run_folder / "model")]) == 0
    assert registry.main(["register", *args, "--model-dir", str(run_folder / "model")]) == 0
    assert str(client.get_model_version_by_alias("skin-classifier", "champion").version) == "2"

    # Privacy: an allow-list of report files; no face image reaches the store.
    names = {p.name for p in (run_folder.parent / "mlartifacts").rglob("*") if p.is_file()}
    assert {"roc.png", "metrics.json", "explain_test.json", "model.onnx"} <= names
    assert not {"face.jpg", "cam_examples_V-VI.png"} & names


def test_missing_model_is_exit_2_with_one_line(
    run_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = registry.main(
        ["register", "--run", str(run_folder), "--model-dir", str(run_folder), "--no-mlflow"]
    )
    err = capsys.readouterr().err
    assert code == registry.EXIT_INPUT
    assert err.startswith("error: ") and "model.onnx" in err and err.count("\n") == 1


def test_unreachable_store_is_exit_3(run_folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = registry.main(
        ["evaluate", "--run", str(run_folder), "--uri", "sqlite:////proc/no/such/mlflow.db"]
        + ["--metrics-out", str(run_folder / "m.json")]
    )
    assert code == registry.EXIT_MLFLOW
    assert "MLflow store sqlite:////proc/no/such/mlflow.db" in capsys.readouterr().err
