"""Config dataclasses: overrides, validation, and clear errors for unknown keys or bad values."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from train_jax import config as C
from train_jax import main as main_lib
from train_jax.configs.demo import get_config


def test_unknown_key_names_it_and_lists_valid_keys() -> None:
    with pytest.raises(C.ConfigError) as e:
        C.override(C.TrainConfig(), **{"optim.learnig_rate": 0.1})
    msg = str(e.value)
    assert "'optim.learnig_rate'" in msg
    assert "optim.learning_rate" in msg and "data.balance" in msg and "batch_size" in msg


def test_unknown_section_and_top_level_key() -> None:
    with pytest.raises(C.ConfigError, match="'bogus.x'"):
        C.override(C.TrainConfig(), **{"bogus.x": 1})
    with pytest.raises(C.ConfigError, match="'epoch'"):
        C.from_dict({"epoch": 3})


def test_bad_values_name_the_field_and_choices() -> None:
    with pytest.raises(C.ConfigError, match=r"'data.balance' must be one of \['group', "):
        C.override(C.TrainConfig(), **{"data.balance": "tone"})
    with pytest.raises(C.ConfigError, match="'batch_size' must be int"):
        C.override(C.TrainConfig(), batch_size="many")
    with pytest.raises(C.ConfigError, match=r"'model.name' must be one of \[.*'small_cnn'"):
        C.override(C.TrainConfig(), **{"model.name": "resnet50"})
    with pytest.raises(C.ConfigError, match="'max_steps'"):
        C.override(C.TrainConfig(), max_steps=0)
    with pytest.raises(C.ConfigError, match="'loc_weight' must be >= 0"):
        C.override(C.TrainConfig(), loc_weight=-0.1)
    with pytest.raises(C.ConfigError, match="'loc_temperature' must be > 0"):
        C.override(C.TrainConfig(), loc_temperature=0)
    with pytest.raises(C.ConfigError, match="'loc_cells' must be one of pixel, block"):
        C.override(C.TrainConfig(), loc_cells="box")
    assert C.override(C.TrainConfig(), loc_cells="block").loc_cells == "block"
    with pytest.raises(C.ConfigError, match="'severity_weight' must be >= 0"):
        C.override(C.TrainConfig(), severity_weight=-0.5)
    assert C.override(C.TrainConfig(), severity_weight="0").severity_weight == 0.0


def test_override_coerces_strings_and_keeps_frozen_original() -> None:
    base = C.TrainConfig()
    new = C.override(base, **{"optim.learning_rate": "0.01", "mlflow": "false", "epochs": "3"})
    assert (new.optim.learning_rate, new.mlflow, new.epochs) == (0.01, False, 3)
    assert base.optim.learning_rate != 0.01
    with pytest.raises(AttributeError):
        new.epochs = 4  # type: ignore[misc]


def test_model_overrides_from_the_command_line_are_a_json_object() -> None:
    new = C.override(C.TrainConfig(), **{"model.overrides": '{"output_stride": 16}'})
    assert new.model.overrides == {"output_stride": 16}
    with pytest.raises(C.ConfigError, match="'model.overrides' must be a mapping"):
        C.override(C.TrainConfig(), **{"model.overrides": "output_stride=16"})


def test_json_round_trip_and_file_errors(tmp_path: Path) -> None:
    config = get_config("quick,group")
    path = tmp_path / "config.json"
    C.save(config, path)
    assert C.load(path) == config
    values = json.loads(path.read_text())
    values["model"]["widht"] = 2
    path.write_text(json.dumps(values))
    with pytest.raises(C.ConfigError, match=r"config\.json: unknown config key 'model.widht'"):
        C.load(path)


def test_demo_variants() -> None:
    quick = get_config("quick")
    assert quick.model.image_size < get_config().model.image_size
    assert get_config("group_label").data.balance == "group_label"
    wide = get_config("os16,wide")
    assert wide.model.overrides["width"] == 1.0 and wide.model.overrides["output_stride"] == 16
    with pytest.raises(ValueError, match="unknown demo variant 'fast'"):
        get_config("fast")


def test_cli_unknown_key_is_one_line_and_exit_code_2(capsys: pytest.CaptureFixture) -> None:
    code = main_lib.main(["--set", "optim.momentum=0.9", "--no-mlflow"])
    err = capsys.readouterr().err
    assert code == main_lib.EXIT_CONFIG
    assert err.startswith("error: unknown config key 'optim.momentum'")
    assert len(err.strip().splitlines()) == 1


def test_real_photos_averages_the_mirror_image_unless_single_view():
    from train_jax.checkpoints import build_model
    from train_jax.configs import real_photos

    shipped, single = real_photos.get_config("quick"), real_photos.get_config("single_view,quick")
    assert shipped.model.overrides["test_time_flip"] is True
    assert single.model.overrides["test_time_flip"] is False
    model = build_model(shipped)
    assert model.test_time_flip and not model.deterministic  # built for training
    assert not build_model(single).test_time_flip
    with pytest.raises(ValueError, match="unknown real_photos variant"):
        real_photos.get_config("mirror")
