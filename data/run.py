"""The layout of a training run's folder and of an exported model's folder, in one place.

A run folder (``outputs/RUN``, written by ``python -m train_jax.main``)::

    config.json                  the training config (train_jax.config)
    metrics.json                 the training metrics, with the per-epoch ``history``
    checkpoints/best, latest     orbax checkpoints (train_jax.checkpoints)
    predictions_<split>.csv      python -m train_jax.predict
    fairness/                    python -m fairness.report: metrics.json, thresholds.json,
                                 calibration.json, model_card.json / .md, report.html, plots
    explain/explain_<split>.json python -m explain.evaluate
    model/                       python -m train_jax.export (the pipeline's export)

An exported model folder (``models/default``, ``outputs/pipeline/model``) holds model.onnx,
model_card.json, thresholds.json and, optionally, ood.json and model.int8.onnx.

`Run` and `ModelDir` give these paths and read the JSON files; every module that reads or
writes a run's files takes its paths from here. Standard library only, so every package
(fairness included) can use it without importing the trainer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["TRAINING_KEYS", "ModelDir", "Run", "read_json_object", "training_recipe"]

# Training-config keys the model card repeats (the recipe a reader needs to reproduce the run).
TRAINING_KEYS = ("epochs", "batch_size", "loss", "loc_weight", "groupdro_eta", "select", "seed")


def read_json_object(path: str | Path) -> dict[str, Any]:
    """The JSON object in `path`; FileNotFoundError / ValueError name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: invalid JSON ({err})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(value).__name__}")
    return value


def _optional_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in `path`; None when it is missing, unreadable or not an object."""
    try:
        return read_json_object(path)
    except (OSError, ValueError):
        return None


def training_recipe(config: dict, run_metrics: dict | None = None) -> dict:
    """How a run was trained, for the model card: recipe keys of its config.json, model
    overrides, the starting weights (``init_from``), sampling balance and learning rate, and the
    code version from its metrics.json.

    >>> training_recipe({"epochs": 2, "data": {"balance": "group"}}, {"code_version": "abc"})
    {'epochs': 2, 'balance': 'group', 'code_version': 'abc'}
    """
    recipe = {key: config.get(key) for key in TRAINING_KEYS if key in config}
    data, optim, model = (
        config.get(key) if isinstance(config.get(key), dict) else {}
        for key in ("data", "optim", "model")
    )
    if model.get("overrides"):
        recipe["model_overrides"] = model["overrides"]  # e.g. width, output stride
    if model.get("init_from"):
        recipe["init_from"] = model["init_from"]  # the starting weights, e.g. imagenet:...
    if "balance" in data:
        recipe["balance"] = data["balance"]
    if "learning_rate" in optim:
        recipe["learning_rate"] = optim["learning_rate"]
    for key in ("code_version", "code_digest", "epochs_completed"):
        if run_metrics and run_metrics.get(key) is not None:
            recipe[key] = run_metrics[key]
    return recipe


@dataclass(frozen=True)
class Run:
    """A training run's folder. `report` moves the fairness report elsewhere (default
    RUN/fairness), `explain` the explanation reports (default RUN/explain)."""

    root: Path
    report: Path | None = None
    explain: Path | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))
        for name in ("report", "explain"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, Path(getattr(self, name)))

    @property
    def name(self) -> str:
        """The run's name: its folder's name."""
        return self.root.resolve().name

    @property
    def config_path(self) -> Path:
        """config.json: the training config."""
        return self.root / "config.json"

    @property
    def metrics_path(self) -> Path:
        """metrics.json: the training metrics and the per-epoch history."""
        return self.root / "metrics.json"

    @property
    def checkpoints_dir(self) -> Path:
        """The orbax checkpoints (``best`` and ``latest`` inside)."""
        return self.root / "checkpoints"

    def checkpoint(self, which: str) -> Path:
        """The folder of one checkpoint: ``best`` or ``latest``."""
        return self.checkpoints_dir / which

    def predictions(self, split: str) -> Path:
        """predictions_<split>.csv (python -m train_jax.predict)."""
        return self.root / f"predictions_{split}.csv"

    @property
    def fairness_dir(self) -> Path:
        """The fairness report's folder."""
        return self.report if self.report is not None else self.root / "fairness"

    @property
    def thresholds_path(self) -> Path:
        """The report's thresholds.json (what is served)."""
        return self.fairness_dir / "thresholds.json"

    @property
    def report_metrics_path(self) -> Path:
        """The report's metrics.json."""
        return self.fairness_dir / "metrics.json"

    @property
    def calibration_path(self) -> Path:
        """The report's calibration.json."""
        return self.fairness_dir / "calibration.json"

    @property
    def report_card_path(self) -> Path:
        """The report's model_card.json."""
        return self.fairness_dir / "model_card.json"

    @property
    def explain_dir(self) -> Path:
        """The explanation reports' folder."""
        return self.explain if self.explain is not None else self.root / "explain"

    def explain_report(self, split: str) -> Path:
        """explain_<split>.json (python -m explain.evaluate)."""
        return self.explain_dir / f"explain_{split}.json"

    @property
    def export_dir(self) -> Path:
        """The exported model's folder inside the run (the pipeline's export)."""
        return self.root / "model"

    def load_config(self) -> dict[str, Any]:
        """config.json as a dict; FileNotFoundError / ValueError name the file."""
        return read_json_object(self.config_path)

    def config_or_none(self) -> dict[str, Any] | None:
        """config.json as a dict; None when the folder has none (or an unreadable one)."""
        return _optional_json(self.config_path)

    def load_metrics(self) -> dict[str, Any] | None:
        """The training metrics.json; None when there is none."""
        return _optional_json(self.metrics_path)

    def history(self) -> list[dict[str, Any]]:
        """The per-epoch entries of metrics.json ([] without)."""
        return list((self.load_metrics() or {}).get("history") or [])

    def training_recipe(self) -> dict:
        """`training_recipe` of config.json and metrics.json ({} without a config)."""
        return training_recipe(self.config_or_none() or {}, self.load_metrics())

    def model_info(self) -> dict | None:
        """The model card's ``model``: the config's model fields, the run's name and the
        training recipe a reader needs (sampling, loss, localisation weight); None without a
        readable config.json."""
        config = self.config_or_none()
        if config is None:
            return None
        model = config.get("model")
        info: dict[str, Any] = {"run": self.root.name}
        if isinstance(model, dict):
            info |= {k: v for k, v in model.items() if isinstance(v, str | int | float | bool)}
            info.setdefault("name", str(model.get("name", self.root.name)))
        else:
            info["name"] = str(model) if model else self.root.name
        recipe = training_recipe(config)
        if "balance" in recipe:
            info["training_balance"] = recipe["balance"]
        for key in ("loss", "loc_weight"):
            if isinstance(recipe.get(key), str | int | float):
                info[f"training_{key}"] = recipe[key]
        return info

    def evaluated_report(self) -> dict[str, Any] | None:
        """The report's metrics.json when it holds the metrics of the split it evaluated."""
        report = _optional_json(self.report_metrics_path)
        if report is None or report.get("evaluated_split", "test") not in report:
            return None
        return report

    def report_files(self) -> tuple[Path | None, Path | None]:
        """(thresholds.json, metrics.json) of the fairness report, each None when missing
        (a metrics.json without evaluated metrics counts as missing)."""
        thresholds = self.thresholds_path
        return (
            thresholds if thresholds.is_file() else None,
            self.report_metrics_path if self.evaluated_report() is not None else None,
        )


@dataclass(frozen=True)
class ModelDir:
    """An exported model's folder: model.onnx, model_card.json, thresholds.json, ood.json."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def model_path(self) -> Path:
        """model.onnx: the served graph."""
        return self.root / "model.onnx"

    @property
    def card_path(self) -> Path:
        """model_card.json (`fairness.model_card.read_model_card` reads it)."""
        return self.root / "model_card.json"

    @property
    def thresholds_path(self) -> Path:
        """thresholds.json, copied from the run's fairness report."""
        return self.root / "thresholds.json"

    @property
    def ood_path(self) -> Path:
        """ood.json (python -m train_jax.ood), optional."""
        return self.root / "ood.json"

    @property
    def int8_path(self) -> Path:
        """model.int8.onnx (``--int8``)."""
        return self.root / "model.int8.onnx"

    @property
    def float32_path(self) -> Path:
        """model.float32.onnx: the float model once the INT8 one replaced model.onnx."""
        return self.root / "model.float32.onnx"
