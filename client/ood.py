"""Out-of-distribution score: how far a face's classifier features lie from the training data.

The score is the Mahalanobis distance of the classifier's pooled `features` output
(train_jax/export.py) to a Gaussian fitted on the training crops' features (shrunk covariance,
`python -m train_jax.ood`). The limit is the `quantile` (0.95) of the distances of the
validation faces, so 95 % of them pass; a face beyond it gets the `out_of_distribution`
warning and its conditions are reported as uncertain. `ood.json` sits beside model.onnx.

Pure numpy (numpy 1.26 compatible, no JAX): the Triton python model skin_analysis and the
embedded runner call the same `ood_step`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core import atomic

FILENAME = "ood.json"
WARNING = "out_of_distribution"


@dataclass(frozen=True, eq=False)  # holds arrays: compare fields explicitly
class OodModel:
    """Mean [C] and precision [C, C] of the training features, and the distance limit."""

    mean: np.ndarray
    precision: np.ndarray
    limit: float
    quantile: float
    fitted_on: str = ""
    calibrated_on: str = ""


@dataclass(frozen=True)
class OodResult:
    """Per face: the distance (NaN = not measured) and whether it is beyond the limit."""

    distance: np.ndarray  # float32 [F]
    flagged: np.ndarray  # bool [F]


def mahalanobis(features: np.ndarray, mean: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """Mahalanobis distance of each row of `features` [N, C] (float64 [N]).

    >>> float(mahalanobis(np.array([[3.0, 4.0]]), np.zeros(2), np.eye(2))[0])
    5.0
    """
    diff = np.asarray(features, np.float64) - np.asarray(mean, np.float64)
    squared = np.einsum("nc,cd,nd->n", diff, np.asarray(precision, np.float64), diff)
    return np.sqrt(np.maximum(squared, 0.0))


def ood_step(features: np.ndarray | None, num_faces: int, model: OodModel | None) -> OodResult:
    """Distances and flags of the F faces; all NaN / False without features or a model."""
    if features is None or model is None:
        return OodResult(np.full(num_faces, np.nan, np.float32), np.zeros(num_faces, bool))
    rows = np.asarray(features, np.float32).reshape(-1, model.mean.shape[0])[:num_faces]
    if rows.shape[0] != num_faces:
        raise ValueError(f"features has {rows.shape[0]} rows for {num_faces} faces")
    distance = mahalanobis(rows, model.mean, model.precision)
    return OodResult(distance.astype(np.float32), distance > model.limit)


def ood_to_dict(model: OodModel) -> dict:
    """The JSON form of `ood.json`."""
    return {
        "score": "Mahalanobis distance of the classifier's pooled features",
        "limit": float(model.limit),
        "quantile": float(model.quantile),
        "fitted_on": model.fitted_on,
        "calibrated_on": model.calibrated_on,
        "mean": [float(v) for v in model.mean],
        "precision": [[float(v) for v in row] for row in model.precision],
    }


def write_ood(model: OodModel, path: Path) -> Path:
    """Write `ood.json` atomically; returns the path."""
    return atomic.write_json(path, ood_to_dict(model), indent=None)


def load_ood(path: Path) -> OodModel | None:
    """The OOD model of `ood.json`, or None when the file does not exist; raises ValueError
    naming the file when it is malformed."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text())
        mean = np.asarray(doc["mean"], np.float64)
        precision = np.asarray(doc["precision"], np.float64)
        if mean.ndim != 1 or precision.shape != (mean.size, mean.size):
            raise ValueError(f"mean {mean.shape} and precision {precision.shape} do not match")
        return OodModel(
            mean,
            precision,
            float(doc["limit"]),
            float(doc["quantile"]),
            str(doc.get("fitted_on", "")),
            str(doc.get("calibrated_on", "")),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: not a valid {FILENAME}: {exc}") from None
