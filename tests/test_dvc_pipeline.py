"""The real DVC pipeline end to end on a tiny copy of the repository.

Copies the repository's files (tracked and not ignored) into a temporary git repository, writes
a tiny YOLO export in place of the real photos (noise images and the three example face photos,
with lesion boxes), shrinks params.yaml (120 synthetic images of 64 px, 32 px crops, one epoch
of the quick config, few bootstrap replicates), runs `dvc repro` twice, and checks the outputs
of every stage, that the second run skips everything, the per-group metrics in `dvc metrics
show`, `dvc params diff`, and the MLflow registry (model with the alias `champion` and its
tags). No mocks: real DVC, real training, real MLflow SQLite store.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from core.schema import CONDITIONS, GROUPS
from tests.repo_copy import REPO, copy_repository, run

STAGES = (
    "generate",
    "convert",
    "tone_real",
    "combine",
    "build",
    "train",
    "evaluate_real",
    "by_eye_real",
    "evaluate",
    "export",
    "audit",
    "triton_repo",
)
TINY_YOLO = "tiny-yolo"  # written by `_write_tiny_yolo` inside the copy
TINY = {
    "real": {"src": TINY_YOLO, "tone_labels": f"{TINY_YOLO}/tone_labels.csv"},
    "generate": {"n": 120, "size": 64, "workers": 1},
    "build": {"image_size": 32},
    "train": {"variant": "quick", "batch": 8, "epochs": 1},
    "evaluate": {
        "n_boot": 20,
        "min_positives": 1,
        "min_negatives": 1,
        "explain_num_boot": 20,
        "explain_curve_images": 4,
    },
}


def _write_tiny_yolo(root: Path) -> None:
    """A YOLOv8-layout export: 16 train + 8 valid JPEGs (noise, and the example face photos
    first in valid), boxes of acne, pimple and spot."""
    import cv2
    import numpy as np

    names = ["acne", "mole1", "mole2", "pimple", "scar", "spot"]
    root.mkdir(parents=True)
    (root / "data.yaml").write_text(yaml.safe_dump({"nc": len(names), "names": names}))
    rng = np.random.default_rng(0)
    # Real face photos first in valid (the audit stage analyses faces); noise everywhere else.
    faces = sorted((REPO / "docs" / "examples").glob("*.jpg"))
    for split, count in (("train", 16), ("valid", 8)):
        for i in range(count):
            image = rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)
            if split == "valid" and i < len(faces):
                image = cv2.resize(
                    cv2.imread(str(faces[i])), (160, 160), interpolation=cv2.INTER_AREA
                )
            (root / split / "images").mkdir(parents=True, exist_ok=True)
            (root / split / "labels").mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / split / "images" / f"{split}{i:02d}_jpg.rf.{i:04x}.jpg"), image)
            lines = []
            if i % 2:
                lines.append(f"{0 if i % 4 == 1 else 3} 0.4 0.5 0.1 0.1")
            if i % 3 == 0:
                lines.append("5 0.6 0.3 0.08 0.06")
            label = root / split / "labels" / f"{split}{i:02d}_jpg.rf.{i:04x}.txt"
            label.write_text("".join(f"{line}\n" for line in lines))
    (root / "tone_labels.csv").write_text(
        "image,tone_by_eye\nimages/valid00_jpg.rf.0000.jpg,I-II\n"
        "images/valid01_jpg.rf.0001.jpg,between\n"
    )


def _dvc(*args: str, cwd: Path) -> str:
    proc = run([sys.executable, "-m", "dvc", *args], cwd)
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A tiny copy of the repo after two `dvc repro` runs: its path and the second run's log."""
    params: dict = {}

    def shrink(root: Path) -> None:
        params.update(yaml.safe_load((root / "params.yaml").read_text()))
        for section, values in TINY.items():
            assert set(values) <= set(params[section]), f"params.yaml lost a key of {section}"
            params[section].update(values)
        (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        _write_tiny_yolo(root / TINY_YOLO)

    root = copy_repository(tmp_path_factory.mktemp("pipeline"), edit=shrink)
    first = _dvc("repro", cwd=root)
    second = _dvc("repro", cwd=root)
    return {"root": root, "params": params, "first": first, "second": second}


def test_every_stage_ran_and_wrote_its_outputs(pipeline: dict) -> None:
    root = pipeline["root"]
    for stage in STAGES:
        assert f"Running stage '{stage}'" in pipeline["first"], stage
    lock = yaml.safe_load((root / "dvc.lock").read_text())["stages"]
    assert set(lock) == set(STAGES)
    for stage, entry in lock.items():
        for out in entry.get("outs", []):
            assert (root / out["path"]).exists(), f"{stage}: {out['path']} missing"
    run_dir = root / "outputs" / "pipeline"
    for rel in (
        "predictions_test.csv",
        "real/predictions_val.csv",
        "real/fairness/report.html",
        "real/fairness/thresholds.json",
        "real/explain/explain_val.json",
        "synthetic/fairness/report.html",
        "synthetic/explain/explain_test.json",
        "model/model.onnx",
        "model/model_card.json",
        "triton_repo/classify/1/model.onnx",
        "audit/counterfactual_real.csv",
        "audit/real/report.html",
        "audit/synthetic/report.html",
        "metrics/by_eye_real.json",
        "triton_repo/skin_analysis/1/thresholds.json",
        "plots/history.csv",
        "plots/reliability.csv",
    ):
        assert (run_dir / rel).is_file(), rel
    audit = (run_dir / "audit" / "synthetic" / "report.html").read_text()
    assert "Counterfactual robustness" in audit and "Selective prediction" in audit
    # The dataset folders hold no crop cache: the build stage wrote them outside.
    for section in ("generate", "real", "combine"):
        data_dir = root / pipeline["params"][section]["out"]
        assert (data_dir / "metadata.csv").is_file() and not (data_dir / "tfds").exists()
    assert any((root / pipeline["params"]["build"]["tfds_dir"]).rglob("*.array_record*"))


def test_exported_model_card_names_the_training_recipe_of_params_yaml(pipeline: dict) -> None:
    card = json.loads(
        (pipeline["root"] / "outputs" / "pipeline" / "model" / "model_card.json").read_text()
    )
    train = pipeline["params"]["train"]
    recipe = card["training"]
    assert (recipe["epochs"], recipe["balance"], recipe["loss"], recipe["seed"]) == (
        train["epochs"],
        train["balance"],
        train["loss"],
        train["seed"],
    )
    assert recipe["code_digest"] and recipe["epochs_completed"] == train["epochs"]
    assert recipe["model_overrides"]["width"] == 0.25  # the `quick` variant TINY asks for


def test_second_repro_skips_every_stage(pipeline: dict) -> None:
    second = pipeline["second"]
    assert "Running stage" not in second
    for stage in STAGES:
        assert f"Stage '{stage}' didn't change, skipping" in second
    status = json.loads(_dvc("status", "--json", cwd=pipeline["root"]).strip() or "{}")
    assert status == {}


def test_metrics_show_lists_per_group_metrics(pipeline: dict) -> None:
    shown = json.loads(_dvc("metrics", "show", "--json", cwd=pipeline["root"]))
    files = shown[""]["data"]
    assert all("error" not in v for v in files.values()), files
    evaluate = files["outputs/pipeline/metrics/evaluate.json"]["data"]
    for group in GROUPS:
        per_group = [k for k in evaluate if k.split("/")[0::2] == ["eval", group]]
        assert per_group, f"no per-group test metric for {group}"
    assert {f"explain/pointing_game/overall/{c}" for c in CONDITIONS} <= set(evaluate)
    real = files["outputs/pipeline/metrics/evaluate_real.json"]["data"]
    assert any(k.startswith("eval/auroc/") for k in real), sorted(real)[:20]
    counterfactual = files["outputs/pipeline/metrics/counterfactual_synthetic.json"]["data"]
    assert counterfactual["photos"] > 0 and "tone_change_rate" in counterfactual
    train = files["outputs/pipeline/metrics.json"]["data"]
    assert {f"test/f1/{g}" for g in GROUPS} <= set(train["test"])


def test_params_diff_sees_a_changed_knob(pipeline: dict) -> None:
    root = pipeline["root"]
    params_file = root / "params.yaml"
    original = params_file.read_text()
    params = yaml.safe_load(original)
    params["evaluate"]["n_boot"] = 21
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        diff = json.loads(_dvc("params", "diff", "--json", cwd=root))
        status = json.loads(_dvc("status", "--json", cwd=root))
    finally:
        params_file.write_text(original)
    change = diff["params.yaml"]["evaluate.n_boot"]
    assert (change["old"], change["new"]) == (20, 21)
    # only the stages that read the knob
    assert set(status) == {"evaluate", "evaluate_real", "by_eye_real", "audit"}


def test_mlflow_registry_has_the_champion_with_tags_and_group_metrics(pipeline: dict) -> None:
    from mlflow import MlflowClient

    root = pipeline["root"]
    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'outputs' / 'mlflow.db'}")
    version = client.get_model_version_by_alias("skin-classifier", "champion")
    assert version.tags["model_arch"] == "small_cnn"
    assert version.tags["balance_skin_tones"] == pipeline["params"]["train"]["balance"]
    assert version.tags["skin_tone_groups"] == ",".join(GROUPS)
    assert version.tags["dataset"] == Path(pipeline["params"]["combine"]["out"]).name
    run = client.get_run(version.run_id)
    assert run.info.run_name == "pipeline"
    # The registered metrics are the real data's (mostly noise images here).
    assert any(k.startswith("eval/auroc/") for k in run.data.metrics)
    # Real data: the pointing game of the conditions with boxes (wrinkles have no ground truth).
    real_conditions = ("acne", "hyperpigmentation")
    assert {f"explain/pointing_game/overall/{c}" for c in real_conditions} <= set(run.data.metrics)
    assert "explain/pointing_game/overall/wrinkles" not in run.data.metrics


def test_no_image_of_a_face_reaches_mlflow(pipeline: dict) -> None:
    artifacts = pipeline["root"] / "outputs" / "mlartifacts"
    files = [p for p in artifacts.rglob("*") if p.is_file()]
    assert any(p.name == "model.onnx" for p in files)
    images = {p.name for p in files if p.suffix.lower() in (".png", ".jpg", ".jpeg")}
    assert images <= {"group_metrics.png", "roc.png", "reliability.png", "coverage.png"}
