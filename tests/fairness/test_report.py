"""The report CLI end to end on generated predictions and bad inputs (MLflow logging:
tests/train_jax/test_report_mlflow.py)."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from core.thresholds import load_thresholds
from fairness.model_card import read_model_card
from fairness.report import EXIT_BAD_INPUT, main
from fairness.thresholds import fit_thresholds

EXPECTED_FILES = (
    "metrics.json",
    "thresholds.json",
    "calibration.json",
    "report.md",
    "report.html",
    "group_metrics.png",
    "roc.png",
    "reliability.png",
    "coverage.png",
    "selective.png",
    "model_card.md",
    "model_card.json",
)


def test_report_end_to_end(run_dir, tmp_path, capsys):
    out = tmp_path / "report"
    code = main(
        [
            "--predictions",
            str(run_dir),
            "--out",
            str(out),
            "--json",
            "--n-boot",
            "60",
            "--no-progress",
        ]
    )
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    for name in EXPECTED_FILES:
        assert (out / name).stat().st_size > 0, name
    assert (out / "group_metrics.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # thresholds.json is fitted on val: refit independently and compare.
    val = pd.read_csv(run_dir / "predictions_val.csv", keep_default_na=True)
    conds = ["acne", "hyperpigmentation", "wrinkles"]
    groups = [g if isinstance(g, str) else None for g in val["group"]]
    refit = fit_thresholds(
        val[conds].to_numpy(float), val[[f"{c}_prob" for c in conds]].to_numpy(), groups
    )
    loaded = load_thresholds(out / "thresholds.json")
    for cond in conds:
        assert loaded.global_threshold(cond) == pytest.approx(refit.global_threshold(cond))

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["data"]["kind"] == "synthetic"
    assert metrics["test"]["n"] == 600
    # The simulated model is noisier on V-VI, so dark skin must come out worse.
    signed = metrics["test"]["summary"]["gap_dark_vs_medium_f1"]["signed"]
    assert signed["value"] < 0 and signed["ci_high"] < 0
    assert summary["summary"]["macro_f1"] == metrics["test"]["summary"]["macro_f1"]

    card = json.loads((out / "model_card.json").read_text())
    assert read_model_card(out) == card  # the one schema, checked on reading
    assert card["schema_version"] == 2 and card["version"] is None
    assert card["medical_device"] is False
    assert card["disclaimer"] == "research aid, not a diagnosis"
    assert card["data"]["kind"] == "synthetic"
    assert card["evaluation"]["per_group"]["acne"]["V-VI"]["n"] > 0
    md = (out / "model_card.md").read_text()
    assert "not a medical device" in md and "Known limitations" in md
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 5 and "<img" in html  # 4 + selective.png
    assert not re.search(r"\bNaN\b", (out / "metrics.json").read_text())


def _write(df: pd.DataFrame, path):
    df.to_csv(path, index=False)
    return path


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (lambda df: df.drop(columns=["wrinkles_prob"]), r"missing column\(s\) \['wrinkles_prob'\]"),
        (
            lambda df: df.assign(acne_prob=df["acne_prob"].where(df.index != 3, np.nan)),
            r"column 'acne_prob', line 5: probability must be a number in \[0, 1\]",
        ),
        (
            lambda df: df.assign(acne=df["acne"].astype(str).where(df.index != 0, "2")),
            r"column 'acne', line 2: label must be 0, 1 or empty",
        ),
        (
            lambda df: df.assign(group=df["group"].where(df.index != 1, "VII")),
            r"column 'group', line 3",
        ),
    ],
)
def test_bad_test_file_gives_clear_message_and_exit_code(
    run_dir, tmp_path, capsys, corrupt, message
):
    test = pd.read_csv(run_dir / "predictions_test.csv", dtype=str, keep_default_na=False)
    bad = _write(corrupt(test), tmp_path / "predictions_test.csv")
    code = main(
        [
            "--predictions",
            str(run_dir / "predictions_val.csv"),
            str(bad),
            "--out",
            str(tmp_path / "out"),
            "--n-boot",
            "10",
            "--no-progress",
        ]
    )
    err = capsys.readouterr().err
    assert code == EXIT_BAD_INPUT
    assert str(bad) in err and re.search(message, err), err
    assert "Traceback" not in err
    assert not (tmp_path / "out" / "metrics.json").exists()


def test_one_class_group_reads_insufficient_evidence(run_dir, tmp_path):
    test = pd.read_csv(run_dir / "predictions_test.csv", dtype=str, keep_default_na=False)
    test.loc[test["group"] == "V-VI", "acne"] = "0"
    _write(test, run_dir / "predictions_test.csv")
    out = tmp_path / "out"
    assert (
        main(["--predictions", str(run_dir), "--out", str(out), "--n-boot", "20", "--no-progress"])
        == 0
    )
    metrics = json.loads((out / "metrics.json").read_text())
    cell = metrics["test"]["conditions"]["acne"]["by_group"]["V-VI"]
    assert cell["positives"] == 0 and cell["f1"]["status"] == "insufficient evidence"
    assert "insufficient evidence" in (out / "report.md").read_text()


def test_missing_run_folder_files(tmp_path, capsys):
    code = main(["--predictions", str(tmp_path), "--out", str(tmp_path / "o")])
    assert code == EXIT_BAD_INPUT
    assert "predictions_val.csv" in capsys.readouterr().err


def test_model_card_names_the_training_recipe(tmp_path):
    from data.run import Run

    config = {
        "model": {"name": "small_cnn", "image_size": 96, "overrides": {"width": 0.5}},
        "data": {"balance": "group"},
        "loss": "groupdro",
        "loc_weight": 0.01,
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    info = Run(tmp_path).model_info()
    assert info["name"] == "small_cnn" and info["image_size"] == 96
    assert info["training_balance"] == "group" and info["training_loss"] == "groupdro"
    assert info["training_loc_weight"] == 0.01


def test_training_recipe_reads_the_run_config_and_code_version():
    config = {
        "epochs": 24,
        "batch_size": 32,
        "loss": "groupdro",
        "loc_weight": 0.01,
        "seed": 3,
        "data": {"balance": "group", "data_dir": "d"},
        "optim": {"learning_rate": 0.003, "warmup_steps": 30},
        "model": {"name": "small_cnn", "overrides": {"width": 1.0}},
    }
    from data.run import training_recipe

    recipe = training_recipe(config, {"code_version": "abc123", "code_digest": "f00", "x": 1})
    assert recipe == {
        "epochs": 24,
        "batch_size": 32,
        "loss": "groupdro",
        "loc_weight": 0.01,
        "seed": 3,
        "model_overrides": {"width": 1.0},
        "balance": "group",
        "learning_rate": 0.003,
        "code_version": "abc123",
        "code_digest": "f00",
    }
    assert training_recipe({}, None) == {}
    lite = {"model": {"name": "efficientnet_lite0", "init_from": "imagenet:efficientnet_lite0"}}
    assert training_recipe(lite) == {"init_from": "imagenet:efficientnet_lite0"}
