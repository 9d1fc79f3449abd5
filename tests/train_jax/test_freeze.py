"""Fine-tuning with frozen first stages (`model.freeze`): which weights are frozen, that the
trainer leaves them and their BatchNorm statistics exactly as they were, and the CLI's error."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from tests.train_jax.conftest import quick_args
from train_jax import freeze
from train_jax import main as main_lib
from train_jax.models import create_model


def _abstract(name: str, **overrides):
    return nnx.eval_shape(lambda: create_model(name, rngs=nnx.Rngs(0), **overrides))


def test_each_family_names_the_weights_of_its_first_stages() -> None:
    lite0 = _abstract("efficientnet_lite0")
    assert freeze.frozen_owners(lite0, "blocks.1") == ("stem", "stem_bn", "blocks.0", "blocks.1")
    assert freeze.frozen_owners(lite0, "") == ()
    cnn = _abstract("small_cnn", image_size=64)
    assert freeze.frozen_owners(cnn, "stem") == ("stem", "stem_bn")
    vit = _abstract("vit_tiny", image_size=32)
    assert freeze.frozen_owners(vit, "blocks.0") == ("patch_embed", "pos_embed", "blocks.0")
    vit_cls = _abstract("vit_tiny", image_size=32, class_token=True)
    assert freeze.frozen_owners(vit_cls, "patch_embed") == ("patch_embed", "pos_embed", "cls_token")
    # The last stage freezes the whole network: the heads alone train (a linear probe).
    everything = freeze.frozen_owners(cnn, cnn.stage_names[-1])
    assert len(everything) == len(cnn.stage_names) + 1
    with pytest.raises(ValueError, match=r"one of the model's stages \(stem, blocks.0"):
        freeze.frozen_owners(cnn, "block.1")


def test_the_mask_and_the_gradient_stop_at_the_frozen_weights() -> None:
    ones = jnp.ones(2)
    params = {"stem": {"kernel": ones}, "blocks": {0: {"w": ones}, 1: {"w": ones}}}
    mask = freeze.trainable_mask(params, ("stem", "blocks.0"))
    assert mask == {"stem": {"kernel": False}, "blocks": {0: {"w": False}, 1: {"w": True}}}
    labels = freeze.optimizer_labels(mask)
    assert labels["blocks"][1]["w"] == freeze.TRAINABLE
    assert labels["stem"]["kernel"] == freeze.FROZEN

    def loss(p):
        p = freeze.stop_frozen(p, mask)
        return sum(jnp.sum(leaf**2) for leaf in jax.tree.leaves(p))

    grads = jax.grad(loss)(params)
    np.testing.assert_array_equal(grads["stem"]["kernel"], 0.0)
    np.testing.assert_array_equal(grads["blocks"][0]["w"], 0.0)
    np.testing.assert_array_equal(grads["blocks"][1]["w"], 2.0)


def _leaves(state, prefix: tuple[str, ...]) -> dict[tuple[str, ...], np.ndarray]:
    flat = jax.tree_util.tree_leaves_with_path(state)
    out = {}
    for path, leaf in flat:
        parts = freeze._path_parts(path)
        if parts[: len(prefix)] == prefix:
            out[parts] = np.asarray(leaf)
    return out


def test_training_leaves_frozen_weights_and_statistics_as_they_were(
    tiny_dataset: Path, tmp_path: Path
) -> None:
    from train_jax.checkpoints import build_model, load_model, split_model

    args = quick_args(tiny_dataset, tmp_path, "frozen", "--epochs", "1", "--no-mlflow")
    assert main_lib.main([*args, "--set", "model.freeze=blocks.0"]) == 0
    trained, config = load_model(tmp_path / "frozen", which="latest")
    assert config.model.freeze == "blocks.0"
    _, before = split_model(build_model(config))  # the same seed: the weights training started from
    _, after = split_model(trained)
    frozen = {"params": [("stem",), ("stem_bn",), ("blocks", "0")]}  # weights
    frozen["rest"] = frozen["params"][1:]  # BatchNorm running statistics
    for kind, prefixes in frozen.items():
        for prefix in prefixes:
            old, new = _leaves(before[kind], prefix), _leaves(after[kind], prefix)
            assert old and old.keys() == new.keys()
            for key, value in old.items():
                np.testing.assert_array_equal(new[key], value, err_msg=str(key))
        old, new = _leaves(before[kind], ("blocks", "1")), _leaves(after[kind], ("blocks", "1"))
        assert old and any(not np.array_equal(new[k], v) for k, v in old.items()), kind


def test_an_unknown_stage_is_a_config_error(tiny_dataset: Path, tmp_path: Path, capsys) -> None:
    args = quick_args(tiny_dataset, tmp_path, "bad", "--epochs", "1", "--no-mlflow")
    assert main_lib.main([*args, "--set", "model.freeze=blocks.99"]) == main_lib.EXIT_CONFIG
    assert "model.freeze must name one of the model's stages" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_the_throughput_benchmark_times_the_frozen_step_beside_the_full_one() -> None:
    import json

    from tests.benchmark_loader import load_benchmark, run_main

    bench = load_benchmark("train_throughput")
    args = ["--model", "small_cnn", "--image-size", "32", "--batch-size", "4", "--steps", "1"]
    args += ["--rounds", "2", "--warmup", "1", "--freeze", "blocks.0", "--json"]
    code, out, _ = run_main(bench.main, args)
    assert code == 0
    result = json.loads(out)
    assert set(result["img_per_s"]) == {"jax", "frozen to blocks.0"}
    assert len(result["img_per_s_rounds"]["frozen to blocks.0"]) == 2
    assert result["speedup_over_jax"]["frozen to blocks.0"] > 0
