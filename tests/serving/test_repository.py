"""The model repository: configs parse, the builder fills it, the local copy swaps ONNX models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import json_format
from tritonclient.grpc import model_config_pb2

from client.triton_client import model_info_from_config
from triton_models.build import (
    DEFAULT_MODEL_DIR,
    MODELS,
    BuildError,
    build_repository,
    model_parameters,
)
from triton_models.local_repo import prepare_local_repo, read_config

TEMPLATE = Path(__file__).resolve().parents[2] / "triton_models"
MIXED = {"acne": "real+synthetic", "hyperpigmentation": "real", "wrinkles": "synthetic"}


def _fake_model_dir(
    tmp_path: Path,
    size: int,
    *,
    severity: bool = False,
    training_data: dict | None = None,
    features: int | None = None,
) -> Path:
    model_dir = tmp_path / "model"
    model_dir.mkdir(exist_ok=True)
    (model_dir / "model.onnx").write_bytes(b"onnx bytes")
    (model_dir / "thresholds.json").write_text("{}")
    card = {"name": "tiny-synthskin-v1", "version": "abc123", "input_size": size}
    card["outputs"] = {"probs": {}, "cam": {}, **({"severity": {}} if severity else {})}
    if features:
        card["outputs"]["features"] = {"shape": ["B", features]}
    if training_data is not None:
        card["training_data"] = training_data
    (model_dir / "model_card.json").write_text(json.dumps(card))
    return model_dir


@pytest.mark.parametrize("name", MODELS)
def test_committed_configs_parse(name):
    config = read_config(TEMPLATE / name / "config.pbtxt")
    assert config.name == name


def test_classify_uses_the_onnxruntime_backend_with_batching_and_warmup():
    config = read_config(TEMPLATE / "classify" / "config.pbtxt")
    assert config.backend == "onnxruntime" and config.max_batch_size > 0
    assert config.HasField("dynamic_batching") and len(config.model_warmup) == 1


def test_skin_analysis_is_a_python_model_that_calls_classify():
    """One python model takes the request's IMAGE (+ FITZPATRICK) and calls the `classify`
    model through BLS: no ensemble of python steps."""
    config = read_config(TEMPLATE / "skin_analysis" / "config.pbtxt")
    assert config.backend == "python" and not config.HasField("ensemble_scheduling")
    assert [i.name for i in config.input] == ["IMAGE", "FITZPATRICK"]
    assert config.parameters["classifier_model"].string_value == "classify"
    classify = read_config(TEMPLATE / "classify" / "config.pbtxt")
    assert config.parameters["classifier_max_batch_size"].string_value == str(
        classify.max_batch_size
    )  # larger face batches are split into calls of that size
    assert "classifier_onnx" not in config.parameters  # the local launcher sets it
    assert (TEMPLATE / "skin_analysis" / "1" / "thresholds.json").is_file()
    assert set(MODELS) == {p.parent.name for p in TEMPLATE.glob("*/config.pbtxt")}


def test_build_sets_sizes_and_model_name(tmp_path):
    repo = tmp_path / "repo"
    build_repository(_fake_model_dir(tmp_path, 64), repo)
    classify = read_config(repo / "classify" / "config.pbtxt")
    assert list(classify.input[0].dims) == [64, 64, 3]
    assert list(classify.output[1].dims) == [3, 64, 64]
    assert list(classify.model_warmup[0].inputs["image"].dims) == [64, 64, 3]
    analysis = read_config(repo / "skin_analysis" / "config.pbtxt")
    assert analysis.parameters["crop_size"].string_value == "64"
    assert analysis.parameters["model_name"].string_value == "tiny-synthskin-v1"
    assert analysis.parameters["model_version"].string_value == "abc123"
    assert (repo / "classify" / "1" / "model.onnx").read_bytes() == b"onnx bytes"
    assert (repo / "skin_analysis" / "1" / "thresholds.json").is_file()


def test_build_names_missing_files(tmp_path):
    with pytest.raises(BuildError, match="thresholds.json"):
        model_dir = _fake_model_dir(tmp_path, 64)
        (model_dir / "thresholds.json").unlink()
        build_repository(model_dir, tmp_path / "repo")


def test_local_copy_runs_the_classifier_inside_skin_analysis(tmp_path):
    repo = tmp_path / "repo"
    model_dir = _fake_model_dir(tmp_path, 64)
    (model_dir / "model.onnx.data").write_bytes(b"external weights")
    build_repository(model_dir, repo)
    local = prepare_local_repo(repo, tmp_path / "local")
    config = read_config(local / "skin_analysis" / "config.pbtxt")
    assert config.parameters["classifier_onnx"].string_value == "classifier/model.onnx"
    inlined = local / "skin_analysis" / "1" / "classifier"
    assert (inlined / "model.onnx").read_bytes() == b"onnx bytes"
    assert (inlined / "model.onnx.data").read_bytes() == b"external weights"
    assert not (local / "classify").exists()  # nothing calls it any more
    assert "classifier_onnx" not in read_config(repo / "skin_analysis" / "config.pbtxt").parameters


def test_local_copy_swaps_onnx_models_for_python(tmp_path):
    repo = tmp_path / "repo"
    build_repository(_fake_model_dir(tmp_path, 64), repo)
    local = prepare_local_repo(repo, tmp_path / "local", classifier_in_process=False)
    assert "classifier_onnx" not in read_config(local / "skin_analysis" / "config.pbtxt").parameters
    config = read_config(local / "classify" / "config.pbtxt")
    assert config.backend == "python" and not config.default_model_filename
    assert config.parameters["onnx_filename"].string_value == "model.onnx"
    assert (local / "classify" / "1" / "model.py").is_file()
    assert config.max_batch_size > 0 and config.HasField("dynamic_batching")
    assert read_config(repo / "classify" / "config.pbtxt").backend == "onnxruntime"


def _asked_for(repo: Path) -> list[str]:
    """The optional classifier outputs skin_analysis asks for."""
    config = read_config(repo / "skin_analysis" / "config.pbtxt")
    return [n for n in config.parameters["classifier_outputs"].string_value.split(",") if n]


def test_severity_output_is_wired_only_when_the_card_lists_it(tmp_path):
    repo = tmp_path / "repo"
    for severity in (True, False, True):  # rebuilding switches either way
        summary = build_repository(_fake_model_dir(tmp_path, 64, severity=severity), repo)
        assert summary["severity"] is severity
        classify = read_config(repo / "classify" / "config.pbtxt")
        names = [o.name for o in classify.output]
        assert names == (["probs", "cam", "severity"] if severity else ["probs", "cam"])
        if severity:
            assert list(classify.output[2].dims) == [4]
        assert _asked_for(repo) == (["severity"] if severity else [])
        # Static: skin_analysis always answers SEVERITY (NaN rows without the output) and
        # SEVERITY_GRADE (-1 without it).
        outputs = {
            o.name: list(o.dims)
            for o in read_config(repo / "skin_analysis" / "config.pbtxt").output
        }
        assert outputs["SEVERITY"] == [-1, 4]
        assert outputs["SEVERITY_GRADE"] == [-1]


def test_features_output_and_ood_json_are_wired_only_when_present(tmp_path):
    from client.ood import OodModel, write_ood

    repo = tmp_path / "repo"
    model_dir = _fake_model_dir(tmp_path, 64, severity=True, features=24)
    write_ood(OodModel(np.zeros(24), np.eye(24), 5.0, 0.95), model_dir / "ood.json")
    summary = build_repository(model_dir, repo)
    assert summary["features"] and summary["ood"]
    classify = read_config(repo / "classify" / "config.pbtxt")
    assert [o.name for o in classify.output] == ["probs", "cam", "severity", "features"]
    assert list(classify.output[3].dims) == [24]
    assert _asked_for(repo) == ["severity", "features"]
    assert (repo / "skin_analysis" / "1" / "ood.json").is_file()
    # Rebuilt from a model without them: the output, the request for it and the ood.json go.
    (model_dir / "ood.json").unlink()
    summary = build_repository(_fake_model_dir(tmp_path, 64, severity=True), repo)
    assert not summary["features"] and not summary["ood"]
    classify = read_config(repo / "classify" / "config.pbtxt")
    assert [o.name for o in classify.output] == ["probs", "cam", "severity"]
    assert _asked_for(repo) == ["severity"]
    assert not (repo / "skin_analysis" / "1" / "ood.json").exists()


def test_committed_skin_analysis_answers_severity_and_its_grade():
    config = read_config(TEMPLATE / "skin_analysis" / "config.pbtxt")
    (fitzpatrick,) = [i for i in config.input if i.name == "FITZPATRICK"]
    assert fitzpatrick.optional
    assert [list(o.dims) for o in config.output if o.name == "SEVERITY"] == [[-1, 4]]
    (grade,) = [o for o in config.output if o.name == "SEVERITY_GRADE"]
    assert list(grade.dims) == [-1]
    assert model_config_pb2.DataType.Name(grade.data_type) == "TYPE_INT32"


def _parameters(repo: Path) -> dict[str, str]:
    config = read_config(repo / "skin_analysis" / "config.pbtxt")
    return {k: v.string_value for k, v in config.parameters.items()}


def test_build_writes_evidence_and_training_note_that_the_client_reads(tmp_path):
    repo = tmp_path / "repo"
    note = 'trained on "real" photos (a\\b; CC BY 4.0); wrinkles: synthetic data only'
    cards = [
        {"synthetic": False, "evidence": MIXED, "note": note},
        {"synthetic": True},  # no evidence block: synthetic for every condition
        {"synthetic": False},  # no evidence, not synthetic: unknown ("")
    ]
    expected = [MIXED, dict.fromkeys(MIXED, "synthetic"), dict.fromkeys(MIXED)]
    for training_data, evidence in zip(cards, expected, strict=True):  # rebuilt in place
        build_repository(_fake_model_dir(tmp_path, 64, training_data=training_data), repo)
        params = _parameters(repo)
        assert {c: params[f"evidence_{c}"] or None for c in MIXED} == evidence
        assert params["training_data"] == training_data.get("note", "")
        text = (repo / "skin_analysis" / "config.pbtxt").read_text()
        assert text.count('key: "evidence_acne"') == text.count('key: "training_data"') == 1
        # What the client makes of the config JSON (tritonclient's get_model_config).
        config = read_config(repo / "skin_analysis" / "config.pbtxt")
        as_json = json_format.MessageToDict(config, preserving_proto_field_name=True)
        info = model_info_from_config(as_json, "triton-grpc")
        assert info.evidence == evidence
        assert info.training_data == (training_data.get("note") or None)
        assert (info.name, info.version) == ("tiny-synthskin-v1", "abc123")


def test_committed_parameters_describe_the_shipped_model():
    card = json.loads((DEFAULT_MODEL_DIR / "model_card.json").read_text())
    params = _parameters(TEMPLATE)
    assert {k: params[k] for k in model_parameters(card)} == model_parameters(card)
    assert params["crop_size"] == str(card["input_size"])
    assert _parameters(TEMPLATE)["evidence_wrinkles"] in ("real", "synthetic", "real+synthetic")


def test_cli_refuses_to_replace_the_shipped_repository_with_another_model(tmp_path, capsys):
    from triton_models.build import main

    model_dir = _fake_model_dir(tmp_path, 64)
    before = (TEMPLATE / "classify" / "config.pbtxt").read_text()
    assert main(["--model-dir", str(model_dir)]) == 2
    assert "--repo DIR" in capsys.readouterr().err
    assert (TEMPLATE / "classify" / "config.pbtxt").read_text() == before
    assert main(["--model-dir", str(model_dir), "--repo", str(tmp_path / "repo"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["input_size"] == 64
    assert main(["--model-dir", str(model_dir), "--repo", str(tmp_path / "repo")]) == 0
    assert capsys.readouterr().out.startswith(f"filled {tmp_path / 'repo'} with tiny-synthskin-v1")


def test_build_edits_configs_through_protobuf_and_keeps_their_comment_block(tmp_path):
    repo = tmp_path / "repo"
    build_repository(_fake_model_dir(tmp_path, 48), repo)
    for name in MODELS:
        template = (TEMPLATE / name / "config.pbtxt").read_text()
        header = [line for line in template.splitlines() if line.startswith("#")]
        built = (repo / name / "config.pbtxt").read_text().splitlines()
        assert header and built[: len(header)] == header, name
        read_config(repo / name / "config.pbtxt")  # parses
    classify = read_config(repo / "classify" / "config.pbtxt")
    assert list(classify.input[0].dims) == [48, 48, 3]


@pytest.mark.parametrize("name", MODELS)
def test_format_config_round_trips_every_committed_config(name):
    from triton_models.local_repo import format_config, read_config_text

    config = read_config(TEMPLATE / name / "config.pbtxt")
    assert read_config_text(format_config(config)) == config
