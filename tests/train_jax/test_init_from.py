"""`python train_jax/main.py --init-from`: a timm checkpoint, then the run it made, on real photos.

The data: the three real example photos of docs/examples (four variants each, through the folder
adapter) combined with the synthetic faces. The checkpoint: ViT-Ti with the random weights of
the parity fixture (tests/fixtures/timm/vit_tiny.json, timm's hub layout at 224 px).
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from tests.benchmark_loader import load_benchmark
from tests.train_jax.conftest import quick_args
from train_jax import config as config_lib
from train_jax import main as main_lib

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "timm" / "vit_tiny.json"


@pytest.fixture(scope="module")
def photos(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real photos (docs/examples: 2 variants each to train, 1 to validate, 1 to test) plus the
    synthetic faces, as one canonical dataset."""
    import cv2

    from data import combine
    from data.adapters import folder

    root = tmp_path_factory.mktemp("photos")
    (root / "src").mkdir()
    rows = []
    for j, path in enumerate(sorted((ROOT / "docs" / "examples").glob("*.jpg"))):
        img = cv2.imread(str(path))
        variants = [img, img[:, ::-1], cv2.convertScaleAbs(img, alpha=0.9, beta=10), img[::-1]]
        splits = ("train", "train", "val", "test")
        for i, (variant, split) in enumerate(zip(variants, splits, strict=True)):
            cv2.imwrite(str(root / "src" / f"p{j}_{i}.jpg"), variant)
            row = {"image": f"p{j}_{i}.jpg", "acne": (i + j) % 2, "hyperpigmentation": j % 2}
            rows.append({**row, "split": split})
    with open(root / "labels.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    args = ["--src", str(root / "src"), "--csv", str(root / "labels.csv"), "--out"]
    assert folder.main([*args, str(root / "real")]) == 0
    inputs = ["--data", str(root / "real"), "--data", str(tiny_dataset)]
    assert combine.main([*inputs, "--out", str(root / "combined"), "--json"]) == 0
    return root / "combined"


@pytest.fixture(scope="module")
def timm_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ViT-Ti weights in timm's layout (class token, 224 px position embedding)."""
    meta = json.loads(FIXTURE.read_text())
    fixtures = load_benchmark("timm_parity_fixtures")
    state = fixtures.synthetic_state_dict(meta["layout"], meta["seed"], meta["gain"])
    path = tmp_path_factory.mktemp("timm") / "model.safetensors"
    save_file(state, str(path))
    return path


def test_fine_tune_a_timm_checkpoint_then_its_run(
    photos: Path, timm_checkpoint: Path, tmp_path: Path
) -> None:
    out = tmp_path / "outputs"
    flags = quick_args(photos, out, "timm", "--init-from", str(timm_checkpoint), "--no-mlflow")
    done = subprocess.run(
        [sys.executable, "train_jax/main.py", *flags, "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads(done.stdout)
    assert metrics["status"] == "completed" and metrics["model"] == "vit_tiny"
    assert metrics["synthetic"] is False  # real photos in the data
    assert "198 arrays loaded" in done.stderr
    model = json.loads((out / "timm" / "config.json").read_text())["model"]
    # the architecture is read from the checkpoint; ImageNet input normalisation for timm weights
    assert model["overrides"] == {"class_token": True, "input_norm": "imagenet"}
    assert model["init_from"] == str(timm_checkpoint)
    report = json.loads((out / "timm" / "init_from.json").read_text())
    assert report["kind"] == "timm checkpoint" and len(report["loaded"]) == 198
    assert report["skipped"] == ["head.bias", "head.weight"] and report["missing"] == []
    assert "resized from 14x14 to 2x2" in report["notes"][0]

    # A run as the starting point, at another image size: the run's architecture and input
    # normalisation, the position embedding resized, fresh heads.
    flags = quick_args(photos, out, "again", "--init-from", str(out / "timm"), "--no-mlflow")
    assert main_lib.main([*flags, "--image-size", "48", "--max-steps", "2"]) == 0
    model = json.loads((out / "again" / "config.json").read_text())["model"]
    assert model["name"] == "vit_tiny" and model["image_size"] == 48
    assert model["overrides"] == {"class_token": True, "input_norm": "imagenet"}
    report = json.loads((out / "again" / "init_from.json").read_text())
    assert report["kind"] == "run (best checkpoint)" and report["missing"] == []
    assert set(report["fresh"]) == {
        "head.bias",
        "head.kernel",
        "severity_head.bias",
        "severity_head.linear.kernel",
    }
    assert "from 2x2 to 3x3" in report["notes"][0]


def test_init_from_picks_model_and_input_norm(
    timm_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    def resolved(*flags: str) -> config_lib.TrainConfig:
        return main_lib.resolve(main_lib.parse_args(["--out", str(tmp_path), *flags]))[0]

    ckpt = str(timm_checkpoint)
    config = resolved("--config", "train_jax/configs/demo.py:quick", "--init-from", ckpt)
    assert config.model.name == "vit_tiny"
    assert config.model.overrides == {"class_token": True, "input_norm": "imagenet"}
    config = resolved("--init-from", ckpt, "--input-norm", "tone", "--model", "vit_tiny")
    assert config.model.overrides["input_norm"] == "tone"
    with pytest.raises(config_lib.ConfigError, match="holds vit_tiny weights, not vit_small"):
        resolved("--init-from", ckpt, "--model", "vit_small")
    other = tmp_path / "other.safetensors"
    save_file({"fc.weight": np.zeros((3, 4), np.float32)}, str(other))
    with pytest.raises(config_lib.ConfigError, match="give --model if it is one"):
        resolved("--init-from", str(other))
    assert resolved("--input-norm", "imagenet").model.overrides["input_norm"] == "imagenet"
    assert main_lib.main(["--init-from", str(tmp_path / "missing"), "--out", str(tmp_path)]) == 2
    assert "not a checkpoint file, a run folder" in capsys.readouterr().err


def test_init_from_a_run_keeps_the_configs_evaluation_overrides(tmp_path: Path) -> None:
    """The source run's architecture, but the config's own mirror averaging, either way round."""
    from train_jax.configs import real_photos

    def resolved(config: str, source: Path) -> config_lib.TrainConfig:
        args = ["--out", str(tmp_path), "--config", config, "--init-from", str(source)]
        return main_lib.resolve(main_lib.parse_args(args))[0]

    pairs = (
        ("quick", "single_view,quick"),
        ("single_view,quick", "quick"),
        ("quick", "count_severity,quick"),  # the config's head, not the run's
    )
    for i, (variant, other) in enumerate(pairs):
        source = tmp_path / f"{i}_{variant.replace(',', '_')}"
        source.mkdir()
        config_lib.save(real_photos.get_config(variant), source / "config.json")
        config = resolved(f"train_jax/configs/real_photos.py:{other}", source)
        wanted = real_photos.get_config(other).model.overrides
        assert config.model.overrides == wanted
        assert config.model.overrides["test_time_flip"] is ("single_view" not in other)
        assert config.model.overrides.get("severity_head") == (
            "count" if "count_severity" in other else None
        )


def test_another_model_keeps_the_configs_evaluation_overrides(tmp_path: Path) -> None:
    """`--model` drops the config's architecture overrides, not its mirror averaging."""

    def resolved(variant: str) -> config_lib.TrainConfig:
        args = ["--out", str(tmp_path), "--config", f"train_jax/configs/real_photos.py:{variant}"]
        return main_lib.resolve(main_lib.parse_args([*args, "--model", "efficientnet_b0"]))[0]

    assert resolved("quick").model.overrides == {"test_time_flip": True}
    assert resolved("single_view,quick").model.overrides == {"test_time_flip": False}
    # the severity head is the config's too: it is not part of the backbone
    assert resolved("count_severity,quick").model.overrides == {
        "test_time_flip": True,
        "severity_head": "count",
    }
