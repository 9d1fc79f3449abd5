"""The model repository: configs parse, the builder fills it, the local copy swaps ONNX models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from triton_models.build import MODELS, BuildError, build_repository
from triton_models.local_repo import prepare_local_repo, read_config

TEMPLATE = Path(__file__).resolve().parents[2] / "triton_models"


def _fake_model_dir(tmp_path: Path, size: int) -> Path:
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "model.onnx").write_bytes(b"onnx bytes")
    (model_dir / "thresholds.json").write_text("{}")
    card = {"name": "tiny-synthskin-v1", "version": "abc123", "input_size": size}
    (model_dir / "model_card.json").write_text(json.dumps(card))
    return model_dir


@pytest.mark.parametrize("name", MODELS)
def test_committed_configs_parse(name):
    config = read_config(TEMPLATE / name / "config.pbtxt")
    assert config.name == name


def test_onnx_models_use_the_onnxruntime_backend_with_batching_and_warmup():
    for name in ("face_detect", "classify"):
        config = read_config(TEMPLATE / name / "config.pbtxt")
        assert config.backend == "onnxruntime" and config.max_batch_size > 0
        assert config.HasField("dynamic_batching") and len(config.model_warmup) == 1


def test_build_sets_sizes_and_model_name(tmp_path):
    repo = tmp_path / "repo"
    build_repository(_fake_model_dir(tmp_path, 64), repo)
    classify = read_config(repo / "classify" / "config.pbtxt")
    assert list(classify.input[0].dims) == [64, 64, 3]
    assert list(classify.output[1].dims) == [3, 64, 64]
    assert list(classify.model_warmup[0].inputs["image"].dims) == [64, 64, 3]
    preprocess = read_config(repo / "preprocess" / "config.pbtxt")
    assert preprocess.parameters["crop_size"].string_value == "64"
    ensemble = read_config(repo / "skin_analysis" / "config.pbtxt")
    assert ensemble.parameters["model_name"].string_value == "tiny-synthskin-v1"
    assert ensemble.parameters["model_version"].string_value == "abc123"
    assert (repo / "classify" / "1" / "model.onnx").read_bytes() == b"onnx bytes"
    assert (repo / "face_detect" / "1" / "model.onnx").stat().st_size > 100_000
    assert (repo / "group_threshold" / "1" / "thresholds.json").is_file()


def test_build_names_missing_files(tmp_path):
    with pytest.raises(BuildError, match="thresholds.json"):
        model_dir = _fake_model_dir(tmp_path, 64)
        (model_dir / "thresholds.json").unlink()
        build_repository(model_dir, tmp_path / "repo")


def test_local_copy_swaps_onnx_models_for_python(tmp_path):
    repo = tmp_path / "repo"
    build_repository(_fake_model_dir(tmp_path, 64), repo)
    local = prepare_local_repo(repo, tmp_path / "local")
    for name in ("face_detect", "classify"):
        config = read_config(local / name / "config.pbtxt")
        assert config.backend == "python" and not config.default_model_filename
        assert config.parameters["onnx_filename"].string_value == "model.onnx"
        assert (local / name / "1" / "model.py").is_file()
        assert config.max_batch_size > 0 and config.HasField("dynamic_batching")
    assert read_config(repo / "classify" / "config.pbtxt").backend == "onnxruntime"
