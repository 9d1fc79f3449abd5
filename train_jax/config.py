"""Training configuration: one frozen dataclass per concern, nested in `TrainConfig`.

Configs are built in `train_jax/configs/<name>.py` (`get_config(variant)`), overridden by dotted
keys (`"optim.learning_rate"`) or CLI flags, and saved to / loaded from `config.json`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BALANCE_MODES = ("group", "group_label", "none")
LOSSES = ("bce", "focal", "groupdro", "reweight")
SELECT_METRICS = ("macro_f1", "worst_group_f1")
DTYPES = ("bfloat16", "float32")


class ConfigError(ValueError):
    """A config key or value is not valid; the message names it and the valid choices."""


@dataclass(frozen=True)
class ModelConfig:
    """Which network to build (`train_jax.models.create_model`)."""

    name: str = "small_cnn"
    image_size: int = 64  # square input side; also the crop size of the TFDS build
    overrides: dict[str, Any] = field(default_factory=dict)  # extra create_model kwargs
    dtype: str = "float32"  # compute dtype; "bfloat16" is meant for GPUs
    # Initial weights (train_jax.pretrained): a timm checkpoint file (.safetensors, .pth, .bin),
    # a run folder or an exported model folder; "" = random. A resumed run ignores it.
    init_from: str = ""
    init_keep_head: bool = False  # keep the source's heads (a run's) instead of fresh ones
    # Last stage kept fixed in training (weights and BatchNorm statistics; train_jax.freeze),
    # e.g. "blocks.2": that stage and every one before it; "" = train every stage.
    freeze: str = ""


@dataclass(frozen=True)
class DataConfig:
    """Where the canonical dataset lives and how it is sampled and augmented."""

    data_dir: str = "data/synthskin-v1"
    generate_preset: str = (
        "synthskin-v1"  # generate the data with this preset if missing; "" = never
    )
    # TFDS cache of the face crops; "" = <data_dir>/tfds (beside the data). The DVC pipeline
    # keeps it outside the dataset folder (outputs/pipeline/tfds), built by its own stage.
    tfds_dir: str = ""
    tfds_build: bool = True  # build missing crops; false = fail instead (the cache is read-only)
    balance: str = "none"  # none | group (inverse group frequency) | group_label (group x labels)
    augment: bool = True
    num_threads: int = 1  # grain read threads; extra processes only slow a 2-core CPU down
    prefetch: int = 4


@dataclass(frozen=True)
class OptimConfig:
    """AdamW with linear warm-up and cosine decay, optional EMA of the weights."""

    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 20
    end_lr_factor: float = 0.02  # final learning rate = learning_rate * end_lr_factor
    grad_clip_norm: float = 1.0  # 0 = no clipping
    ema_decay: float = 0.0  # 0 = no EMA; e.g. 0.999 evaluates and saves the EMA weights


# How the localisation loss maps lesion masks to class-map cells (train_jax.losses.mask_at_cells).
LOC_CELLS = ("pixel", "block")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines one training run."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: str = "bce"  # bce | focal | reweight (inverse group frequency) | groupdro
    focal_gamma: float = 2.0
    groupdro_eta: float = 0.01  # step size of GroupDRO's exponentiated group weights
    # Weight of the lesion-localisation loss on the class activation map (losses.localisation_loss;
    # needs lesion masks in the data, images without masks add nothing); 0 = off.
    loc_weight: float = 0.0
    loc_temperature: float = 1.0  # softmax temperature of that loss (small: a hinge on the peak)
    # Which cells of the class map that loss counts as lesion (losses.mask_at_cells): "pixel" =
    # the cell's centre pixel is in a box, "block" = any pixel of the cell's block is (a box
    # smaller than the stride always reaches a cell).
    loc_cells: str = "pixel"
    # Weight of the ordinal acne-severity loss (losses.ordinal_loss on the CORAL head; rows without
    # `acne_severity` add nothing); 0 = the severity head is not trained.
    severity_weight: float = 0.5
    batch_size: int = 32  # global batch, split over all devices and processes
    eval_batch_size: int = 64
    epochs: int = 10
    max_steps: int = -1  # -1 = no limit; >0 stops (and checkpoints) early, schedule unchanged
    seed: int = 0
    select: str = "macro_f1"  # best checkpoint by macro_f1 | worst_group_f1
    threshold: float = 0.5  # decision threshold of the per-epoch validation F1
    checkpoint_every_steps: int = 0  # 0 = only at epoch ends (and at max_steps)
    mlflow: bool = True
    mlflow_uri: str = ""  # "" = sqlite:///<out>/mlflow.db
    experiment: str = "face-skin-analysis"
    name: str = "demo"  # config name, used in run names and tags


_SECTIONS = {"model": ModelConfig, "data": DataConfig, "optim": OptimConfig}


def valid_keys() -> list[str]:
    """All dotted keys a config accepts, sorted."""
    keys = [f.name for f in dataclasses.fields(TrainConfig) if f.name not in _SECTIONS]
    for section, cls in _SECTIONS.items():
        keys += [f"{section}.{f.name}" for f in dataclasses.fields(cls)]
    return sorted(keys)


def _unknown(key: str) -> ConfigError:
    return ConfigError(f"unknown config key {key!r}; valid keys: {', '.join(valid_keys())}")


def _coerce(key: str, value: Any, default: Any) -> Any:
    """Convert `value` to the type of the field's default, with a clear error."""
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"config key {key!r} must be true or false, got {value!r}")
    if isinstance(default, dict):
        if isinstance(value, str):  # from the command line: a JSON object
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                pass
        if not isinstance(value, dict):
            raise ConfigError(
                f"config key {key!r} must be a mapping (a JSON object), got {value!r}"
            )
        return dict(value)
    for typ in (int, float, str):
        if isinstance(default, typ):
            if typ is int and isinstance(value, float) and not value.is_integer():
                raise ConfigError(f"config key {key!r} must be an integer, got {value!r}")
            try:
                return typ(value)
            except (TypeError, ValueError):
                raise ConfigError(
                    f"config key {key!r} must be {typ.__name__}, got {value!r}"
                ) from None
    return value


def override(config: TrainConfig, **updates: Any) -> TrainConfig:
    """Return `config` with dotted keys replaced: `override(c, **{"optim.learning_rate": 1e-3})`."""
    top: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    for key, value in updates.items():
        section, _, name = key.partition(".")
        if name:
            cls = _SECTIONS.get(section)
            fields = {f.name for f in dataclasses.fields(cls)} if cls else set()
            if name not in fields:
                raise _unknown(key)
            default = getattr(getattr(config, section), name)
            nested.setdefault(section, {})[name] = _coerce(key, value, default)
        else:
            if key in _SECTIONS or key not in {f.name for f in dataclasses.fields(TrainConfig)}:
                raise _unknown(key)
            top[key] = _coerce(key, value, getattr(config, key))
    for section, values in nested.items():
        top[section] = dataclasses.replace(getattr(config, section), **values)
    return validate(dataclasses.replace(config, **top))


def validate(config: TrainConfig) -> TrainConfig:
    """Check values; raise `ConfigError` naming the field and the allowed values."""
    choices = {
        "data.balance": (config.data.balance, BALANCE_MODES),
        "loss": (config.loss, LOSSES),
        "select": (config.select, SELECT_METRICS),
        "model.dtype": (config.model.dtype, DTYPES),
    }
    from train_jax.models import MODEL_NAMES

    choices["model.name"] = (config.model.name, MODEL_NAMES)
    for key, (value, allowed) in choices.items():
        if value not in allowed:
            raise ConfigError(f"config key {key!r} must be one of {sorted(allowed)}, got {value!r}")
    positive = {
        "batch_size": config.batch_size,
        "eval_batch_size": config.eval_batch_size,
        "epochs": config.epochs,
        "model.image_size": config.model.image_size,
        "data.num_threads": config.data.num_threads,
    }
    for key, value in positive.items():
        if value <= 0:
            raise ConfigError(f"config key {key!r} must be > 0, got {value!r}")
    if config.max_steps == 0 or config.max_steps < -1:
        raise ConfigError(
            f"config key 'max_steps' must be -1 (no limit) or > 0, got {config.max_steps}"
        )
    if config.loc_temperature <= 0:
        raise ConfigError(f"config key 'loc_temperature' must be > 0, got {config.loc_temperature}")
    if config.loc_weight < 0:
        raise ConfigError(f"config key 'loc_weight' must be >= 0, got {config.loc_weight}")
    if config.loc_cells not in LOC_CELLS:
        raise ConfigError(
            f"config key 'loc_cells' must be one of {', '.join(LOC_CELLS)}, "
            f"got {config.loc_cells!r}"
        )
    if config.severity_weight < 0:
        raise ConfigError(
            f"config key 'severity_weight' must be >= 0, got {config.severity_weight}"
        )
    if not 0.0 <= config.optim.ema_decay < 1.0:
        raise ConfigError(
            f"config key 'optim.ema_decay' must be in [0, 1), got {config.optim.ema_decay}"
        )
    if config.optim.learning_rate <= 0:
        raise ConfigError(
            f"config key 'optim.learning_rate' must be > 0, got {config.optim.learning_rate}"
        )
    return config


def to_dict(config: TrainConfig) -> dict[str, Any]:
    """Nested plain-dict form (what `config.json` holds)."""
    return dataclasses.asdict(config)


def from_dict(values: dict[str, Any]) -> TrainConfig:
    """Build a config from a nested dict such as `config.json`; unknown keys raise `ConfigError`."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if key in _SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(f"config key {key!r} must be a mapping, got {value!r}")
            flat.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            flat[key] = value
    return override(TrainConfig(), **flat)


def save(config: TrainConfig, path: str | Path) -> None:
    """Write `config.json` atomically."""
    path = Path(path)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(to_dict(config), indent=2, sort_keys=True) + "\n")
    tmp.replace(path)


def load(path: str | Path) -> TrainConfig:
    """Read a config file: `.json` (nested dict) or a `.py` module with `get_config(variant)`.

    A `.py` path may carry a variant after a colon: `train_jax/configs/demo.py:quick`.
    """
    text = str(path)
    variant = None
    if ":" in Path(text).name:
        text, _, variant = text.rpartition(":")
    p = Path(text)
    if not p.is_file():
        raise ConfigError(f"config file {p} does not exist")
    if p.suffix == ".json":
        try:
            values = json.loads(p.read_text())
        except json.JSONDecodeError as e:
            raise ConfigError(f"config file {p}: invalid JSON ({e})") from None
        try:
            return from_dict(values)
        except ConfigError as e:
            raise ConfigError(f"config file {p}: {e}") from None
    if p.suffix == ".py":
        import importlib.util

        spec = importlib.util.spec_from_file_location(f"_train_config_{p.stem}", p)
        module = importlib.util.module_from_spec(spec)
        assert spec.loader is not None
        spec.loader.exec_module(module)
        if not hasattr(module, "get_config"):
            raise ConfigError(f"config file {p} defines no get_config(variant)")
        return validate(module.get_config(variant))
    raise ConfigError(f"config file {p}: expected .json or .py")
