"""Config keys of the crop cache: `data.tfds_dir` (where) and `data.tfds_build` (may build)."""

from __future__ import annotations

import pytest

from train_jax import config as config_lib


def test_defaults_keep_the_cache_beside_the_data_and_build_it() -> None:
    data = config_lib.TrainConfig().data
    assert data.tfds_dir == "" and data.tfds_build is True
    assert {"data.tfds_dir", "data.tfds_build"} <= set(config_lib.valid_keys())


def test_cli_strings_override_and_round_trip_through_config_json(tmp_path) -> None:
    config = config_lib.override(
        config_lib.TrainConfig(), **{"data.tfds_dir": "outputs/x/tfds", "data.tfds_build": "false"}
    )
    assert (config.data.tfds_dir, config.data.tfds_build) == ("outputs/x/tfds", False)
    config_lib.save(config, tmp_path / "config.json")
    assert config_lib.load(tmp_path / "config.json") == config


def test_tfds_build_must_be_a_boolean() -> None:
    with pytest.raises(config_lib.ConfigError, match="'data.tfds_build' must be true or false"):
        config_lib.override(config_lib.TrainConfig(), **{"data.tfds_build": "sometimes"})
