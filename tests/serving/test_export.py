"""ONNX export of with_cam(model): the contract, a dynamic batch, and parity with JAX."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
from flax import nnx

from explain.cam import with_cam
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
    assert [o.name for o in session.get_outputs()] == ["probs", "cam"]


@pytest.mark.parametrize("batch", [1, 3])
def test_onnx_matches_jax_within_1e4(exported, batch):
    model, out = exported
    x = np.random.default_rng(batch).uniform(0, 255, (batch, SIZE, SIZE, 3)).astype(np.float32)
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    probs, cam = session.run(["probs", "cam"], {"image": x})
    jax_probs, jax_cam = with_cam(model)(x)
    assert probs.shape == (batch, 3) and cam.shape == (batch, 3, SIZE, SIZE)
    assert np.abs(probs - np.asarray(jax_probs)).max() <= 1e-4
    assert np.abs(cam - np.asarray(jax_cam)).max() <= 1e-4


def test_model_card_describes_the_graph(exported):
    _, out = exported
    card = json.loads((out / "model_card.json").read_text())
    assert card["input_size"] == SIZE and card["architecture"] == "small_cnn"
    assert card["conditions"] == ["acne", "hyperpigmentation", "wrinkles"]
    assert card["input"]["range"] == "RGB 0..255"
    assert card["training_data"]["synthetic"] is True
    assert "synthetic" in card["training_data"]["note"]
    assert card["intended_use"] == "research aid, not a diagnosis"


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
