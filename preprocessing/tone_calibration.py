"""The skin-tone estimate's confidence, calibrated against by-eye tone labels.

The served estimate (`preprocessing.tone.estimate_tone_in_regions`) reports as its confidence
the probability that a careful by-eye rating of the face puts it in the same group: a logistic
model of three numbers of the estimate itself, fitted on faces that carry by-eye labels:

- `ita`: the ITA in degrees (by-eye labels agreed more with light estimates than with dark
  ones on the data it was fitted on, so the confidence says so);
- `margin`: the distance of the ITA from the nearest group cut (degrees);
- `half_width`: the half width of the ITA interval over the skin regions (degrees;
  UNKNOWN_HALF_WIDTH when fewer than two regions gave an ITA).

The fitted coefficients ship in `preprocessing/assets/tone_calibration.json` with what they were
fitted on; `python -m preprocessing.tone_eval --lighting --labels CSV --fit-confidence OUT`
fits them again (scikit-learn, the `train` extra) and reports the cross-fitted agreement. The
maths here is numpy only, so serving needs nothing more.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core import atomic
from core.schema import ITA_CUTS

DEFAULT_PATH = Path(__file__).resolve().parent / "assets" / "tone_calibration.json"
FEATURES = ("ita", "margin", "half_width")
MIN_FACES_PER_OUTCOME = 5  # agreeing and disagreeing faces each, to fit and cross-fit (5 folds)
UNKNOWN_HALF_WIDTH = 10.0  # degrees: no interval (fewer than two regions) counts as a wide one


@dataclass(frozen=True)
class Calibration:
    """Logistic coefficients over FEATURES and where they came from."""

    coef: tuple[float, ...]
    intercept: float
    provenance: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.coef) != len(FEATURES):
            raise ValueError(f"expected {len(FEATURES)} coefficients {FEATURES}, got {self.coef}")


def confidence_features(ita: float, interval: Sequence[float] | None) -> np.ndarray:
    """[ita, margin, half_width] of one estimate (degrees).

    >>> confidence_features(30.0, (26.0, 34.0)).tolist()
    [30.0, 11.0, 4.0]
    """
    margin = min(abs(ita - cut) for cut in ITA_CUTS)
    half = UNKNOWN_HALF_WIDTH
    if interval is not None and np.all(np.isfinite(interval)):
        half = min(UNKNOWN_HALF_WIDTH, abs(float(interval[1]) - float(interval[0])) / 2.0)
    return np.array([ita, margin, half], np.float64)


def calibrated_confidence(
    ita: float, interval: Sequence[float] | None, calibration: Calibration
) -> float:
    """Probability that a by-eye rating agrees with the estimated group, in [0, 1].

    >>> cal = Calibration(coef=(0.05, 0.0, -0.2), intercept=0.0)
    >>> round(calibrated_confidence(60.0, (58.0, 62.0), cal), 3)  # sigmoid(3.0 - 0.4)
    0.931
    """
    z = float(np.dot(calibration.coef, confidence_features(ita, interval)) + calibration.intercept)
    return float(1.0 / (1.0 + np.exp(-z)))


def load_calibration(path: Path = DEFAULT_PATH) -> Calibration:
    """Read a calibration JSON; raises ValueError naming the file and the field."""
    try:
        data = json.loads(Path(path).read_text())
        if list(data["features"]) != list(FEATURES):
            raise ValueError(f"features {data['features']} are not {list(FEATURES)}")
        return Calibration(
            tuple(float(c) for c in data["coef"]),
            float(data["intercept"]),
            dict(data.get("provenance", {})),
        )
    except (OSError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: not a tone-confidence calibration: {exc}") from None


_DEFAULT: Calibration | None = None


def default_calibration() -> Calibration:
    """The shipped calibration (read once)."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = load_calibration(DEFAULT_PATH)
    return _DEFAULT


def fit_calibration(features: np.ndarray, agree: np.ndarray, provenance: dict) -> Calibration:
    """Logistic regression (scikit-learn, L2, C=1) of `agree` [N] on `features` [N, 3]."""
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=1.0, max_iter=1000).fit(features, np.asarray(agree, int))
    return Calibration(
        tuple(float(c) for c in model.coef_[0]), float(model.intercept_[0]), provenance
    )


def crossfit_confidence(
    features: np.ndarray, agree: np.ndarray, *, folds: int = 5, repeats: int = 5, seed: int = 0
) -> np.ndarray:
    """Each face's confidence from calibrations fitted without it (stratified K folds, averaged
    over `repeats` shuffles): the honest view of how the calibration does on new faces."""
    from sklearn.model_selection import StratifiedKFold

    agree = np.asarray(agree, int)
    out = np.zeros(len(agree))
    for r in range(repeats):
        splitter = StratifiedKFold(folds, shuffle=True, random_state=seed + r)
        for train, test in splitter.split(features, agree):
            cal = fit_calibration(features[train], agree[train], {})
            z = features[test] @ np.asarray(cal.coef) + cal.intercept
            out[test] += 1.0 / (1.0 + np.exp(-z)) / repeats
    return out


def write_calibration(calibration: Calibration, path: Path) -> None:
    """Write the calibration JSON atomically."""
    data = {
        "features": list(FEATURES),
        "coef": [round(c, 6) for c in calibration.coef],
        "intercept": round(calibration.intercept, 6),
        "provenance": calibration.provenance,
    }
    atomic.write_json(path, data)
