"""Fixtures for fairness tests: predictions drawn from a known model, written as real CSVs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.schema import CONDITIONS, PREDICTION_COLUMNS, fitzpatrick_to_group

PREVALENCE = (0.35, 0.25, 0.3)
EV, JPEG = "+0.5 EV", "JPEG q60"  # two changes of fairness.counterfactual.CHANGES


def simulate_predictions(
    n: int, seed: int, *, split: str, dark_noise: float = 1.5, unknown_fraction: float = 0.05
) -> pd.DataFrame:
    """Labels ~ Bernoulli(prevalence); logit = +-1.5 + noise, noisier for types V-VI."""
    rng = np.random.default_rng(seed)
    fitz = rng.integers(1, 7, size=n)
    labels = (rng.random((n, len(CONDITIONS))) < PREVALENCE).astype(float)
    scale = np.where(fitz >= 5, dark_noise, 1.0)[:, None]
    logits = np.where(labels > 0, 1.5, -1.5) + rng.normal(size=labels.shape) * scale
    probs = 1.0 / (1.0 + np.exp(-logits))
    rows = []
    unknown_label = rng.random(labels.shape) < unknown_fraction
    unknown_type = rng.random(n) < unknown_fraction
    for i in range(n):
        f = None if unknown_type[i] else int(fitz[i])
        row = {
            "image": f"img_{split}_{i:05d}.jpg",
            "fitzpatrick": "" if f is None else f,
            "group": fitzpatrick_to_group(f) or "",
            "split": split,
            "source": "synthskin-v1",
        }
        for c, cond in enumerate(CONDITIONS):
            row[cond] = "" if unknown_label[i, c] else int(labels[i, c])
            row[f"{cond}_prob"] = float(probs[i, c])
        rows.append(row)
    df = pd.DataFrame(rows)
    return df[[*PREDICTION_COLUMNS, "source"]]


@pytest.fixture()
def run_dir(tmp_path: Path) -> Path:
    """A training-run-like folder holding predictions_val.csv and predictions_test.csv."""
    folder = tmp_path / "run"
    folder.mkdir()
    simulate_predictions(600, 1, split="val").to_csv(folder / "predictions_val.csv", index=False)
    simulate_predictions(600, 2, split="test").to_csv(folder / "predictions_test.csv", index=False)
    return folder


@pytest.fixture()
def simulate():
    """`simulate_predictions` itself, for tests that build their own predictions files."""
    return simulate_predictions


def _row(
    image,
    group,
    change,
    cond,
    prob,
    prob_changed,
    *,
    tone="",
    tone_changed=None,
    threshold=0.5,
    face=True,
    source="estimated",
) -> dict:
    """One planted CSV row; decisions follow prob >= threshold."""
    return {
        "image": image,
        "group": group,
        "tone_source": source,
        "estimated_group": tone if tone or source == "labelled" else group,
        "change": change,
        "condition": cond,
        "prob": prob,
        "prob_changed": prob_changed if face else None,
        "threshold": threshold,
        "threshold_changed": threshold if face else None,
        "decision": prob >= threshold,
        "decision_changed": (prob_changed >= threshold) if face else None,
        "group_changed": (group if tone_changed is None else tone_changed) if face else "",
        "face_changed": face,
        "uncertain": False,
        "uncertain_changed": False if face else None,
    }


def planted_rows() -> list[dict]:
    """Six photos, two changes, two conditions, with known flips per group.

    I-II: a flips acne under +0.5 EV; b loses its face under JPEG. V-VI: c flips acne and
    hyperpigmentation under +0.5 EV and its tone moves to III-IV; d flips hyperpigmentation
    under JPEG; e's tone estimate abstains under +0.5 EV. No estimate: f flips acne under
    +0.5 EV and gains the estimate I-II.
    """
    rows = []
    # (image, group, {(change, cond): (prob, prob_changed)}, extra per change)
    plan = {
        "a": ("I-II", {(EV, "acne"): (0.6, 0.4)}, {}),
        "b": ("I-II", {}, {JPEG: {"face": False}}),
        "c": (
            "V-VI",
            {(EV, "acne"): (0.4, 0.7), (EV, "hyperpigmentation"): (0.7, 0.3)},
            {EV: {"tone_changed": "III-IV"}},
        ),
        "d": ("V-VI", {(JPEG, "hyperpigmentation"): (0.3, 0.6)}, {}),
        "e": ("V-VI", {(EV, "acne"): (0.45, 0.35)}, {EV: {"tone_changed": ""}}),
        "f": ("", {(EV, "acne"): (0.8, 0.2)}, {EV: {"tone_changed": "I-II"}}),
    }
    for image, (group, probs, extra) in plan.items():
        for change in (EV, JPEG):
            for cond in ("acne", "hyperpigmentation"):
                prob, changed = probs.get((change, cond), (0.2, 0.25))
                rows.append(
                    _row(image, group, change, cond, prob, changed, **extra.get(change, {}))
                )
    return rows
