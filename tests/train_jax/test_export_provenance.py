"""train_jax/export.py: the card's training_data (datasets, licences, evidence per condition)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fairness.model_card import SCHEMA_VERSION, read_model_card, write_model_card
from train_jax.export import exported_model_card, make_training_data, training_evidence
from train_jax.registry import model_tags

ACNE_NEW = {
    "name": "acne-new v36",
    "licence": "CC BY 4.0",
    "attribution": "acne-new v36 by buyumedatasets on Roboflow Universe, "
    "https://universe.roboflow.com/buyumedatasets/acne-new/dataset/36, licence CC BY 4.0",
    "url": "https://universe.roboflow.com/buyumedatasets/acne-new/dataset/36",
    "tone_source": "estimated",
}
COLUMNS = ["image", "acne", "hyperpigmentation", "wrinkles", "split", "source"]


def test_training_evidence_counts_labelled_train_rows_by_kind():
    frame = pd.DataFrame(
        [
            # acne: a real and a synthetic train label; hyperpigmentation: real only (the
            # synthetic label is in val); wrinkles: synthetic only ("" and NaN are unknown).
            ["a.jpg", "1", "0", "", "train"],
            ["b.jpg", "0", "", "1", "train"],
            ["c.jpg", "", "1", np.nan, "train"],
            ["d.jpg", "", "1", "", "val"],
            ["e.jpg", "", "", "1", "test"],
        ],
        columns=["image", "acne", "hyperpigmentation", "wrinkles", "split"],
    )
    synthetic = [False, True, False, True, False]
    assert training_evidence(frame, synthetic) == {
        "acne": "real+synthetic",
        "hyperpigmentation": "real",
        "wrinkles": "synthetic",
    }
    # The same rows all real, wrinkles unlabelled in train: real / none.
    assert training_evidence(frame.assign(wrinkles=""), [False] * 5) == {
        "acne": "real",
        "hyperpigmentation": "real",
        "wrinkles": "none",
    }
    assert training_evidence(frame, synthetic, split="test")["wrinkles"] == "real"
    with pytest.raises(ValueError, match="4 rows"):
        training_evidence(frame, synthetic[:4])


def _write(folder: Path, name: str, doc: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(json.dumps(doc))


@pytest.fixture
def combined(tmp_path: Path) -> Path:
    """The layout `data.combine` writes: OUT/<input>/ with each input's provenance files."""
    out = tmp_path / "acne-new-plus-synth"
    rows = [
        ["acne-new-v36/images/a.jpg", 1, 1, "", "train", "acne-new-v36"],
        ["acne-new-v36/images/b.jpg", 0, 1, "", "val", "acne-new-v36"],
        ["synthskin-v1/images/c.jpg", 1, 0, 1, "train", "synthskin-v1"],
        ["synthskin-v1/images/d.jpg", 0, 0, 0, "test", "synthskin-v1"],
    ]
    out.mkdir()
    pd.DataFrame(rows, columns=COLUMNS).to_csv(out / "metadata.csv", index=False)
    inputs = {"acne-new-v36": {"synthetic": False}, "synthskin-v1": {"synthetic": True}}
    _write(out, "dataset.json", {"combined": list(inputs), "synthetic": False, "inputs": inputs})
    _write(out / "acne-new-v36", "datacard.json", ACNE_NEW)
    _write(out / "acne-new-v36", "dataset.json", {"synthetic": False})
    _write(out / "synthskin-v1", "dataset.json", {"generator": "data.synthetic"})
    return out


def test_combined_dataset_names_each_input_and_its_evidence(combined: Path):
    data = make_training_data(str(combined))
    acne_new = {k: ACNE_NEW[k] for k in ("name", "licence", "attribution", "url")}
    assert data == {
        "dataset": str(combined),
        "synthetic": False,
        "datasets": [
            {**acne_new, "folder": "acne-new-v36", "synthetic": False},
            {
                "name": "synthskin-v1",  # no datacard: the folder name
                "folder": "synthskin-v1",
                "licence": None,
                "attribution": None,
                "url": None,
                "synthetic": True,  # the combined dataset.json's inputs say so
            },
        ],
        "evidence": {
            "acne": "real+synthetic",
            "hyperpigmentation": "real+synthetic",
            "wrinkles": "synthetic",
        },
        "test_split": "synthetic",
        "note": "trained on real photos (acne-new v36, CC BY 4.0) and synthetic faces "
        "(synthskin-v1); wrinkles: synthetic data only",
    }
    card = exported_model_card(
        architecture="small_cnn", input_size=32, opset=18, version="v", dataset=str(combined),
        metrics=None, run=None, parity=None, normalisation="n", training_data=data,
    )  # fmt: skip
    assert card["metrics_note"] == "measured on synthetic data"  # the test split is synthetic
    assert card["schema_version"] == SCHEMA_VERSION and card["training_data"] == data
    config = {"data": {"data_dir": str(combined)}}
    assert model_tags(config, card)["synthetic_data"] == "false"  # registry reads the bool


def test_combined_before_dataset_json_groups_rows_by_source(combined: Path):
    """A combined folder without provenance files (made before they existed): one dataset per
    `source` with a folder of its own, synthetic by the source name."""
    for path in [combined / "dataset.json", *combined.glob("*/*.json")]:
        path.unlink()
    data = make_training_data(str(combined))
    assert [(d["name"], d["synthetic"]) for d in data["datasets"]] == [
        ("acne-new-v36", False),
        ("synthskin-v1", True),
    ]
    assert data["evidence"]["wrinkles"] == "synthetic"
    assert data["evidence"]["acne"] == "real+synthetic"
    assert data["note"].startswith("trained on real photos (acne-new-v36) and synthetic faces")


def test_synthetic_only_dataset_and_unknown_folder(tmp_path: Path):
    synth = tmp_path / "synthskin-v1"
    synth.mkdir()
    rows = [["images/a.jpg", 1, 0, 1, "train", "synthskin-v1"]]
    pd.DataFrame(rows, columns=COLUMNS).to_csv(synth / "metadata.csv", index=False)
    data = make_training_data(str(synth))
    assert data["synthetic"] is True and data["test_split"] == "none"
    assert data["evidence"] == dict.fromkeys(("acne", "hyperpigmentation", "wrinkles"), "synthetic")
    assert data["note"] == "trained on synthetic faces (synthskin-v1), demonstration only"
    # No such folder (a card exported without its data): the name decides, no evidence.
    missing = make_training_data("gone/real-faces")
    assert (missing["synthetic"], missing["evidence"]) == (False, None)
    assert missing["datasets"][0]["name"] == "real-faces"


def test_bad_datacard_names_its_file(combined: Path):
    from fairness.model_card import DatacardError

    _write(combined / "acne-new-v36", "datacard.json", {"name": "x", "licence": 4})
    with pytest.raises(DatacardError, match=r"acne-new-v36/datacard.json.*licence"):
        make_training_data(str(combined))


def test_compact_metrics_reads_the_split_the_report_evaluated(tmp_path) -> None:
    from data.run import Run
    from train_jax.export import compact_metrics

    cell = {"n": 10, "f1": {"value": 0.5}, "auroc": {"value": 0.8}}
    conditions = {"acne": {"overall": cell, "by_group": {"V-VI": cell}}}
    val_only = {
        "evaluated_split": "val",
        "evaluation": "val, 2-fold cross-fitted thresholds (no test split)",
        "val": {"conditions": conditions},
    }
    out = compact_metrics(val_only)
    assert out["split"] == "val" and out["evaluation"].startswith("val, 2-fold")
    assert out["per_group"]["acne"]["V-VI"] == {"n": 10, "f1": 0.5, "auroc": 0.8}
    assert isinstance(out["per_group"]["acne"]["V-VI"]["n"], int)  # a count stays a count
    assert compact_metrics({"test": {"conditions": conditions}})["split"] == "test"
    (tmp_path / "metrics.json").write_text(json.dumps(val_only))
    run = Run(tmp_path / "run", report=tmp_path)
    assert run.report_files()[1] == tmp_path / "metrics.json"
    (tmp_path / "metrics.json").write_text(json.dumps({"evaluated_split": "val"}))  # no metrics
    assert run.report_files()[1] is None


def test_the_report_is_read_from_one_folder_only(tmp_path) -> None:
    from data.run import Run

    run = tmp_path / "run"
    (run / "fairness").mkdir(parents=True)
    (run / "thresholds.json").write_text("{}")  # beside the run: not the report, not used
    assert Run(run).report_files() == (None, None)
    (run / "fairness" / "thresholds.json").write_text("{}")
    assert Run(run).report_files()[0] == run / "fairness" / "thresholds.json"
    assert Run(run, report=tmp_path / "elsewhere").report_files() == (None, None)


def test_exported_card_is_written_and_read_back_through_the_one_schema(tmp_path) -> None:
    card = exported_model_card(
        architecture="small_cnn", input_size=32, opset=18, version="abc", dataset=None,
        metrics={"split": "test", "per_group": {"acne": {"V-VI": {"n": 9, "f1": 0.5}}}},
        run="outputs/run", parity={"probs": 1e-7}, normalisation="n", feature_dim=16,
    )  # fmt: skip
    _, path = write_model_card(card, tmp_path, markdown=False)
    assert not (tmp_path / "model_card.md").exists()
    back = read_model_card(path)
    assert back == json.loads(path.read_text())
    assert (back["name"], back["version"], back["input_size"]) == ("small_cnn-unknown", "abc", 32)
    assert back["outputs"]["features"]["shape"] == ["B", 16]
    assert back["model"] == {"name": "small_cnn"} and back["medical_device"] is False
