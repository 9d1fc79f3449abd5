"""ONNX export of with_cam(model) plus severity: the contract, a dynamic batch, parity with JAX."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
from flax import nnx

from train_jax.cam import with_cam
from train_jax.export import export_model
from train_jax.models import create_model

SIZE = 32


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model = create_model("small_cnn", rngs=nnx.Rngs(1), width=0.25)
    out = tmp_path_factory.mktemp("export")
    export_model(model, out, architecture="small_cnn", input_size=SIZE, dataset="synthskin-v1")
    return model, out


def test_graph_follows_the_contract(exported):
    _, out = exported
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    assert (inp.name, inp.type) == ("image", "tensor(float)")
    assert inp.shape[1:] == [SIZE, SIZE, 3] and isinstance(inp.shape[0], str)
    assert [o.name for o in session.get_outputs()] == ["probs", "cam", "severity", "features"]
    severity, features = session.get_outputs()[2:]
    assert severity.type == "tensor(float)" and severity.shape[1:] == [4]
    card = json.loads((out / "model_card.json").read_text())
    assert features.shape[1:] == [card["outputs"]["features"]["shape"][1]]


@pytest.mark.parametrize("batch", [1, 3])
def test_onnx_matches_jax_within_1e4(exported, batch):
    model, out = exported
    x = np.random.default_rng(batch).uniform(0, 255, (batch, SIZE, SIZE, 3)).astype(np.float32)
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    probs, cam, severity, features = session.run(
        ["probs", "cam", "severity", "features"], {"image": x}
    )
    jax_probs, jax_cam = with_cam(model)(x)
    jax_features = np.asarray(model.features(x)).mean(axis=(1, 2))
    assert np.abs(features - jax_features).max() <= 1e-4
    assert probs.shape == (batch, 3) and cam.shape == (batch, 3, SIZE, SIZE)
    assert np.abs(probs - np.asarray(jax_probs)).max() <= 1e-4
    assert np.abs(cam - np.asarray(jax_cam)).max() <= 1e-4
    assert severity.shape == (batch, 4) and severity.dtype == np.float32
    assert np.abs(severity - np.asarray(model.severity_probs(x))).max() <= 1e-4
    np.testing.assert_allclose(severity.sum(axis=1), 1.0, atol=1e-5)


def test_severity_output_follows_the_head(exported, tmp_path):
    """Parity is not vacuous: a head pushed towards grade 3 moves the exported output."""
    model, _ = exported
    x = np.random.default_rng(7).uniform(0, 255, (2, SIZE, SIZE, 3)).astype(np.float32)
    bias = model.severity_head.bias[...]
    try:
        model.severity_head.bias[...] = bias + 20.0
        export_model(model, tmp_path, architecture="small_cnn", input_size=SIZE, dataset="x")
        session = ort.InferenceSession(
            str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"]
        )
        (severity,) = session.run(["severity"], {"image": x})
        assert np.all(severity[:, 3] > 0.99)
        card = json.loads((tmp_path / "model_card.json").read_text())
        assert card["export_parity_max_abs_diff"]["severity"] <= 1e-4
    finally:
        model.severity_head.bias[...] = bias


def test_model_card_describes_the_graph(exported):
    _, out = exported
    card = json.loads((out / "model_card.json").read_text())
    assert card["input_size"] == SIZE and card["architecture"] == "small_cnn"
    assert card["conditions"] == ["acne", "hyperpigmentation", "wrinkles"]
    assert card["input"]["range"] == "RGB 0..255"
    assert card["training_data"]["synthetic"] is True
    assert "synthetic" in card["training_data"]["note"]
    assert card["disclaimer"] == "research aid, not a diagnosis"
    assert card["schema_version"] == 2 and card["medical_device"] is False
    assert list(card["outputs"]) == ["probs", "cam", "severity", "features"]
    assert card["outputs"]["severity"]["shape"] == ["B", 4]


def test_model_card_names_the_models_input_normalisation(tmp_path):
    from train_jax.models.input_norm import describe

    model = create_model("small_cnn", rngs=nnx.Rngs(2), width=0.25, input_norm="tone")
    export_model(model, tmp_path, architecture="small_cnn", input_size=SIZE, dataset="x")
    card = json.loads((tmp_path / "model_card.json").read_text())
    assert card["input"]["normalisation"] == describe("tone") != describe("imagenet")
    assert card["graph_optimisation"].startswith("onnxruntime basic")


def test_model_card_carries_the_training_recipe(tmp_path):
    model = create_model("small_cnn", rngs=nnx.Rngs(3), width=0.25)
    recipe = {"epochs": 2, "balance": "group", "loss": "groupdro"}
    export_model(
        model, tmp_path, architecture="small_cnn", input_size=SIZE, dataset="x", training=recipe
    )
    card = json.loads((tmp_path / "model_card.json").read_text())
    assert card["training"] == recipe


def test_test_time_flip_is_exported_with_parity(tmp_path):
    """The exported graph averages with the mirror image as the JAX model does."""
    model = create_model("small_cnn", rngs=nnx.Rngs(1), width=0.25, test_time_flip=True)
    export_model(model, tmp_path, architecture="small_cnn", input_size=SIZE, dataset="synthskin-v1")
    x = np.random.default_rng(5).uniform(0, 255, (2, SIZE, SIZE, 3)).astype(np.float32)
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    probs, cam, features = session.run(["probs", "cam", "features"], {"image": x})
    mirror_probs, mirror_features = session.run(
        ["probs", "features"], {"image": x[:, :, ::-1].copy()}
    )
    jax_probs, jax_cam = with_cam(model)(x)
    assert np.abs(probs - np.asarray(jax_probs)).max() <= 1e-4
    assert np.abs(cam - np.asarray(jax_cam)).max() <= 1e-4
    assert np.abs(probs - mirror_probs).max() <= 1e-5
    assert np.abs(features - mirror_features).max() <= 1e-5
    plain = create_model("small_cnn", rngs=nnx.Rngs(1), width=0.25)
    plain.eval()
    plain_probs, _ = with_cam(plain)(x)  # the same weights, one view: other probabilities
    assert np.abs(probs - np.asarray(plain_probs)).max() > 1e-4


def test_a_count_head_exports_with_parity_and_says_so_in_the_card(tmp_path):
    """The lesion-count head (Poisson tails summed in the graph) keeps the contract and the
    1e-4 parity, with rates that differ per image and span the grade bands."""
    import jax.numpy as jnp

    model = create_model("small_cnn", rngs=nnx.Rngs(3), width=0.25, severity_head="count")
    head = model.severity_head
    rng = np.random.default_rng(0)
    head.linear.kernel[...] = jnp.asarray(rng.normal(0, 0.5, head.linear.kernel.shape))
    head.linear.bias[...] = jnp.asarray([1.5])
    export_model(model, tmp_path, architecture="small_cnn", input_size=SIZE, dataset="x")
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    x = rng.uniform(0, 255, (6, SIZE, SIZE, 3)).astype(np.float32)
    x[3:] = x[3:] * 0.2  # dark images: other features, other rates
    (severity,) = session.run(["severity"], {"image": x})
    assert severity.shape == (6, 4)
    assert np.abs(severity - np.asarray(model.severity_probs(x))).max() <= 1e-4
    np.testing.assert_allclose(severity.sum(axis=1), 1.0, atol=1e-5)
    assert np.ptp(severity[:, 0]) > 0.05  # the output follows the image
    card = json.loads((tmp_path / "model_card.json").read_text())
    assert card["export_parity_max_abs_diff"]["severity"] <= 1e-4
    assert card["outputs"]["severity"]["head"] == "count"
    assert "Poisson lesion count" in card["outputs"]["severity"]["meaning"]
