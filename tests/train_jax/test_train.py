"""End to end: the CLI on a tiny synthetic set writes every output; resume is exact."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.schema import CONDITIONS, GROUPS, PREDICTION_COLUMNS, PREDICTION_OPTIONAL_COLUMNS
from tests.train_jax.conftest import quick_args
from train_jax import main as main_lib

ROOT = Path(__file__).resolve().parents[2]
ALL_COLUMNS = (*PREDICTION_COLUMNS, *PREDICTION_OPTIONAL_COLUMNS)
SEVERITY_PROBS = [f"acne_severity_prob_{k}" for k in range(4)]


@pytest.fixture(scope="module")
def runs(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Output root holding the uninterrupted quick run `full` (MLflow on)."""
    out = tmp_path_factory.mktemp("outputs")
    # EMA on, so the resume tests also cover the averaged weights in the checkpoint.
    assert main_lib.main(quick_args(tiny_dataset, out, "full", "--ema", "0.5")) == 0
    return out


def _metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def test_run_folder_holds_every_output(runs: Path, tiny_dataset: Path) -> None:
    run = runs / "full"
    for name in ("config.json", "metrics.json", "predictions_val.csv", "predictions_test.csv"):
        assert (run / name).is_file(), name
    assert any((run / "checkpoints" / "best").iterdir())
    assert any((run / "checkpoints" / "latest").iterdir())
    meta = pd.read_csv(tiny_dataset / "metadata.csv")
    for split in ("val", "test"):
        pred = pd.read_csv(run / f"predictions_{split}.csv")
        assert tuple(pred.columns) == ALL_COLUMNS
        expected = meta[meta["split"] == split]
        assert list(pred["image"]) == list(expected["image"])  # metadata.csv order
        for cond in CONDITIONS:
            np.testing.assert_array_equal(
                pred[cond].to_numpy(float), expected[cond].to_numpy(float)
            )
            assert pred[f"{cond}_prob"].between(0, 1).all()
        assert set(pred["group"].dropna()) <= set(GROUPS)
        assert (pred["split"] == split).all()
        # Acne severity: the label, the predicted grade (median) and the class probabilities.
        from core.severity import severity_grade

        np.testing.assert_array_equal(pred["acne_severity"], expected["acne_severity"])
        probs = pred[SEVERITY_PROBS].to_numpy()
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
        np.testing.assert_array_equal(pred["acne_severity_grade"], severity_grade(probs))
        assert (pred["tone_source"] == "labelled").all()  # synthetic: true skin types


def test_metrics_json(runs: Path) -> None:
    m = _metrics(runs / "full")
    assert m["status"] == "completed" and m["epochs_completed"] == 2
    assert m["synthetic"] is True and "not a diagnosis" in m["disclaimer"]
    assert [e["epoch"] for e in m["history"]] == [1, 2]
    for key in ("val/macro_f1", "val/worst_group_f1", "val/f1/V-VI", "val/f1/acne", "train/loss"):
        assert key in m["history"][0], key
    # The ordinal severity head is trained and evaluated (demo default severity_weight > 0).
    for key in ("val/acne_severity_qwk", "val/acne_severity_mae", "train/severity_loss"):
        assert key in m["history"][0], key
    assert 0 < m["history"][0]["train/severity_loss"] < 5
    assert 0 <= m["test"]["test/acne_severity_mae"] <= 3
    sev = m["acne_severity"]["test"]
    assert sev["n"] == sev["overall"]["n"] > 0 and set(sev["by_group"]) == set(GROUPS)
    assert sev["overall"]["mae"]["value"] == pytest.approx(m["test"]["test/acne_severity_mae"])
    best = max(
        m["history"], key=lambda e: e["val/macro_f1"] if e["val/macro_f1"] is not None else -1
    )
    assert m["best"]["val/macro_f1"] == best["val/macro_f1"]
    assert "test/macro_f1" in m["test"] and m["timing"]["train_img_per_s"] > 0
    assert m["code_version"] != "unknown"  # the tests run from a git checkout
    assert len(m["code_digest"]) == 12


def test_mlflow_run_has_params_metrics_tags_artifacts(runs: Path, tiny_dataset: Path) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{runs / 'mlflow.db'}")
    exp = client.get_experiment_by_name("face-skin-analysis")
    (run,) = client.search_runs([exp.experiment_id], filter_string="attributes.run_name = 'full'")
    assert run.info.status == "FINISHED"
    assert run.data.tags["model_arch"] == "small_cnn"
    config = json.loads((runs / "full" / "config.json").read_text())
    assert (run.data.tags["balance_skin_tones"], run.data.tags["loss"]) == (
        config["data"]["balance"],
        config["loss"],
    )
    assert (config["data"]["balance"], config["loss"]) == ("group", "groupdro")  # demo defaults
    assert run.data.tags["dataset"] == tiny_dataset.name
    assert run.data.tags["code_version"] == _metrics(runs / "full")["code_version"]
    assert run.data.params["model.name"] == "small_cnn"
    assert run.data.params["batch_size"] == "8"
    history = client.get_metric_history(run.info.run_id, "val/macro_f1")
    m = _metrics(runs / "full")
    assert [h.step for h in history] == [e["step"] for e in m["history"]]
    assert [h.value for h in history] == pytest.approx([e["val/macro_f1"] for e in m["history"]])
    assert len(client.get_metric_history(run.info.run_id, "val/f1/V-VI")) == 2
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.json", "metrics.json"} <= artifacts


def test_load_model_reproduces_the_predictions(runs: Path) -> None:
    from data.tfds_builder import build_dataset
    from train_jax.checkpoints import load_model
    from train_jax.input import split_metadata
    from train_jax.predict import predict_probs

    model, config = load_model(runs / "full", which="best")
    assert config.model.name == "small_cnn" and config.name == "demo-quick"
    builder = build_dataset(config.data.data_dir, crop_size=config.model.image_size)
    meta = split_metadata(builder, "val")
    probs = predict_probs(model, builder.as_data_source(split="val"), batch_size=16)
    pred = pd.read_csv(runs / "full" / "predictions_val.csv").set_index("image")
    csv_probs = pred.loc[meta.ids, [f"{c}_prob" for c in CONDITIONS]].to_numpy()
    np.testing.assert_allclose(probs, csv_probs, atol=2e-6)
    with pytest.raises(ValueError, match="which must be one of"):
        load_model(runs / "full", which="worst")


def test_predict_cli_reproduces_the_trainers_csv_and_rejects_bad_input(
    runs: Path, tiny_dataset: Path, tmp_path: Path, capsys
) -> None:
    from data.synthetic import SynthConfig, generate_dataset
    from data.tfds_builder import build_dataset
    from train_jax import predict
    from train_jax.checkpoints import load_model
    from train_jax.input import split_metadata
    from train_jax.predict import predict_probs

    out = tmp_path / "pred_val.csv"
    argv = ["--run", str(runs / "full"), "--data", str(tiny_dataset), "--split", "val"]
    assert predict.main([*argv, "--out", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["rows"] == len(
        pd.read_csv(out)
    )
    got = pd.read_csv(out)
    want = pd.read_csv(runs / "full" / "predictions_val.csv")
    assert list(got.columns) == list(ALL_COLUMNS)
    probs = [f"{c}_prob" for c in CONDITIONS] + SEVERITY_PROBS
    pd.testing.assert_frame_equal(got.drop(columns=probs), want.drop(columns=probs))
    np.testing.assert_allclose(got[probs], want[probs], atol=2e-6)

    # The mirror-image average on request: the same as the model with it switched on, and not
    # the trainer's one-view numbers.
    flipped = tmp_path / "pred_val_flip.csv"
    assert predict.main([*argv, "--out", str(flipped), "--test-time-flip", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["test_time_flip"] is True
    model, config = load_model(runs / "full", which="best")
    assert model.test_time_flip is False
    model.test_time_flip = True
    builder = build_dataset(config.data.data_dir, crop_size=config.model.image_size)
    mirror = predict_probs(model, builder.as_data_source(split="val"), batch_size=16)
    ids = split_metadata(builder, "val").ids
    got_flip = pd.read_csv(flipped).set_index("image").loc[ids]
    np.testing.assert_allclose(got_flip[[f"{c}_prob" for c in CONDITIONS]], mirror, atol=2e-6)
    one_view = got.set_index("image").loc[ids]
    assert np.abs(got_flip[probs].to_numpy() - one_view[probs].to_numpy()).max() > 1e-4

    # Bad input: exit code and one message naming the problem; nothing written.
    assert (
        predict.main(
            [
                "--run",
                str(tmp_path / "none"),
                "--data",
                str(tiny_dataset),
                "--out",
                str(tmp_path / "a.csv"),
            ]
        )
        == 4
    )
    assert (
        predict.main(
            ["--run", str(runs / "full"), "--data", str(tmp_path), "--out", str(tmp_path / "a.csv")]
        )
        == 3
    )
    only_test = tmp_path / "only_test"
    generate_dataset(
        only_test, SynthConfig(n=6, seed=9, size=64), progress=False, splits=(0.0, 0.0, 1.0)
    )
    assert (
        predict.main(
            [
                "--run",
                str(runs / "full"),
                "--data",
                str(only_test),
                "--split",
                "val",
                "--out",
                str(tmp_path / "a.csv"),
            ]
        )
        == 3
    )
    err = capsys.readouterr().err
    assert "no metadata.csv" in err and "no 'val' split" in err and "none" in err
    assert not (tmp_path / "a.csv").exists()


def _assert_same_results(a: dict, b: dict) -> None:
    assert len(a["history"]) == len(b["history"])
    for ea, eb in zip(a["history"], b["history"], strict=True):
        for key in ea:
            if key.startswith(("val/", "train/")) or key in ("epoch", "step"):
                assert eb[key] == pytest.approx(ea[key], abs=1e-6, nan_ok=True), key
    assert b["test"] == pytest.approx(a["test"], abs=1e-6, nan_ok=True)
    assert b["best"]["step"] == a["best"]["step"]


def test_stop_and_resume_matches_uninterrupted(runs: Path, tiny_dataset: Path) -> None:
    assert (
        main_lib.main(quick_args(tiny_dataset, runs, "cut", "--ema", "0.5", "--max-steps", "3"))
        == 0
    )
    assert _metrics(runs / "cut")["status"] == "stopped_at_max_steps"
    assert main_lib.main(["--resume", "--run", "cut", "--out", str(runs), "--no-progress"]) == 0
    _assert_same_results(_metrics(runs / "full"), _metrics(runs / "cut"))
    a = pd.read_csv(runs / "full" / "predictions_test.csv")
    b = pd.read_csv(runs / "cut" / "predictions_test.csv")
    pd.testing.assert_frame_equal(a, b, atol=1e-6)


def test_sigkill_and_resume_matches_uninterrupted(runs: Path, tiny_dataset: Path) -> None:
    """A real `kill -9` mid-training, then `--resume`: same metrics as the uninterrupted run."""
    args = quick_args(
        tiny_dataset,
        runs,
        "killed",
        "--no-mlflow",
        "--ema",
        "0.5",
        "--set",
        "checkpoint_every_steps=1",
    )
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    proc = subprocess.Popen(
        [sys.executable, "train_jax/main.py", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    steps_per_epoch = _metrics(runs / "full")["history"][0]["step"]
    latest = runs / "killed" / "checkpoints" / "latest"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        steps = [int(p.name) for p in latest.glob("*") if p.name.isdigit()]
        if steps and max(steps) > steps_per_epoch:  # inside the second (last) epoch
            break
        time.sleep(0.02)
    assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    assert not (runs / "killed" / "metrics.json").exists()
    resume = ["--resume", "--run", "killed", "--out", str(runs), "--no-progress", "--no-mlflow"]
    assert main_lib.main(resume) == 0
    _assert_same_results(_metrics(runs / "full"), _metrics(runs / "killed"))


def test_existing_run_needs_resume_and_resume_cannot_change_the_recipe(
    runs: Path, tiny_dataset: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main_lib.main(quick_args(tiny_dataset, runs, "full")) == main_lib.EXIT_EXISTS
    assert "resume it or choose a new run" in capsys.readouterr().err
    code = main_lib.main(["--resume", "--run", "full", "--out", str(runs), "--lr", "0.5"])
    assert code == main_lib.EXIT_CONFIG
    assert "cannot change 'optim.learning_rate' when resuming" in capsys.readouterr().err


def test_non_finite_loss_names_the_step(tiny_dataset: Path, tmp_path: Path, monkeypatch) -> None:
    import jax.numpy as jnp

    from train_jax import config as C
    from train_jax import losses, train
    from train_jax.configs.demo import get_config

    real = losses.compute_loss

    def patched(name, logits, batch, **kw):  # a loss that overflows to NaN
        loss, aux = real(name, logits, batch, **kw)
        return loss * jnp.nan, aux

    monkeypatch.setattr(losses, "compute_loss", patched)
    config = C.override(
        get_config("quick"), **{"data.data_dir": str(tiny_dataset), "mlflow": False}
    )
    with pytest.raises(RuntimeError, match=r"non-finite loss nan at step 1 \(epoch 1\)"):
        train.train_and_evaluate(config, tmp_path / "nan", progress=False)


def test_ema_update_by_hand() -> None:
    from train_jax.train import ema_update

    ema = {"w": np.array([1.0, 2.0]), "b": np.array(4.0)}
    params = {"w": np.array([3.0, 0.0]), "b": np.array(0.0)}
    out = ema_update(ema, params, 0.75)
    np.testing.assert_allclose(out["w"], [1.5, 1.5])
    np.testing.assert_allclose(out["b"], 3.0)


def test_json_stdout_is_one_document_even_when_the_cache_is_built(
    tiny_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    # A crop size no other test uses, so the TFDS cache is prepared here (TFDS prints to stdout).
    args = quick_args(tiny_dataset, tmp_path, "json", "--image-size", "24", "--epochs", "1")
    assert main_lib.main([*args, "--max-steps", "1", "--no-mlflow", "--json"]) == 0
    out = capsys.readouterr().out
    assert json.loads(out)["run"] == "json"


def test_model_flag_drops_the_config_models_overrides() -> None:
    from train_jax.checkpoints import build_model
    from train_jax.configs.demo import get_config

    args = main_lib.parse_args(["--model", "efficientnet_b0", "--image-size", "32", "--run", "x"])
    config, _ = main_lib.resolve(args)
    assert config.model.overrides == {}  # the demo's small_cnn `width` does not reach B0
    assert type(build_model(config)).__name__ == "EfficientNet"
    kept = main_lib.parse_args(["--model", "small_cnn", "--run", "x"])
    assert main_lib.resolve(kept)[0].model.overrides == get_config().model.overrides


def test_localisation_loss_is_trained_and_logged(tiny_dataset: Path, tmp_path: Path) -> None:
    args = quick_args(tiny_dataset, tmp_path, "loc", "--epochs", "1", "--no-mlflow")
    assert main_lib.main([*args, "--set", "loc_weight=1.0"]) == 0
    history = _metrics(tmp_path / "loc")["history"]
    loc = [e["train/loc_loss"] for e in history]
    assert len(loc) == 1 and 0 < loc[0] < 50
    # The total loss holds the localisation term on top of the BCE (about 0.7 at the start).
    assert history[0]["train/loss"] > loc[0]
    plain_args = quick_args(tiny_dataset, tmp_path, "plain", "--epochs", "1", "--no-mlflow")
    assert main_lib.main([*plain_args, "--set", "loc_weight=0"]) == 0
    plain = _metrics(tmp_path / "plain")["history"][0]
    assert "train/loc_loss" not in plain
    assert history[0]["train/loss"] > plain["train/loss"] + 0.5 * loc[0]


def test_localisation_loss_without_masks_warns(tiny_dataset: Path, tmp_path: Path, caplog) -> None:
    import shutil

    import pandas as pd

    from train_jax import config as C
    from train_jax import train
    from train_jax.configs.demo import get_config

    data = tmp_path / "no_masks"
    shutil.copytree(tiny_dataset, data, ignore=shutil.ignore_patterns("tfds"))
    meta = pd.read_csv(data / "metadata.csv")
    meta["mask"] = ""  # a real dataset without lesion masks
    meta.to_csv(data / "metadata.csv", index=False)
    config = C.override(
        get_config("quick"), **{"data.data_dir": str(data), "mlflow": False, "epochs": 1}
    )
    assert config.loc_weight > 0
    with caplog.at_level("WARNING", logger="train_jax.train"):
        result = train.train_and_evaluate(config, tmp_path / "run", progress=False)
    assert result["history"][0]["train/loc_loss"] == 0.0
    assert "no training image of epoch 1 has a lesion mask" in caplog.text


def test_code_version_is_the_commit_and_marks_uncommitted_changes(tmp_path: Path) -> None:
    import subprocess

    from train_jax.tracking import code_version

    assert code_version(tmp_path) == "unknown"  # not a git checkout
    env = ["-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "train_jax").mkdir()
    (tmp_path / "train_jax" / "a.py").write_text("x = 1\n")
    (tmp_path / "README.md").write_text("docs\n")
    subprocess.run(["git", "-C", str(tmp_path), "add", "."], check=True)
    subprocess.run(["git", "-C", str(tmp_path), *env, "commit", "-qm", "a"], check=True)
    sha = subprocess.run(
        ["git", "-C", str(tmp_path), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    assert code_version(tmp_path) == sha[:12]
    (tmp_path / "new.txt").write_text("untracked files do not count\n")
    assert code_version(tmp_path) == sha[:12]
    (tmp_path / "README.md").write_text("edited docs do not count either\n")
    assert code_version(tmp_path) == sha[:12]
    (tmp_path / "train_jax" / "a.py").write_text("x = 2\n")
    assert code_version(tmp_path) == sha[:12] + "+dirty"


def test_code_digest_follows_the_training_code_only(tmp_path: Path) -> None:
    from train_jax.tracking import code_digest

    (tmp_path / "train_jax").mkdir()
    (tmp_path / "docs").mkdir()
    (tmp_path / "train_jax" / "train.py").write_text("x = 1\n")
    before = code_digest(tmp_path)
    (tmp_path / "docs" / "notes.py").write_text("not training code\n")
    assert code_digest(tmp_path) == before
    (tmp_path / "train_jax" / "train.py").write_text("x = 2\n")
    assert code_digest(tmp_path) != before
