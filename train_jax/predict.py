"""Predictions of a trained model on a split, written as `predictions_{split}.csv`.

Columns (ARCHITECTURE.md, "Predictions"; `data.schema.PREDICTION_COLUMNS`): `image`,
`fitzpatrick` (1-6 or empty), `group` (I-II, III-IV, V-VI or empty), `split`, each condition's
label (0/1 or empty) and `<cond>_prob`. Rows follow metadata.csv order.
"""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
import pandas as pd
from flax import nnx

from data.schema import CONDITIONS, GROUPS, PREDICTION_COLUMNS
from train_jax.input import SplitMeta, eval_batches


def predictions_frame(meta: SplitMeta, probs: np.ndarray, split: str) -> pd.DataFrame:
    """One row per example of `meta` with labels and probabilities, in metadata.csv order."""
    probs = np.asarray(probs, np.float64)
    if probs.shape != (len(meta), len(CONDITIONS)):
        raise ValueError(f"probs has shape {probs.shape}, expected {(len(meta), len(CONDITIONS))}")
    frame = pd.DataFrame(
        {
            "image": meta.ids,
            "fitzpatrick": pd.array(
                [int(f) if f > 0 else None for f in meta.fitzpatrick], dtype="Int64"
            ),
            "group": [GROUPS[g] if g >= 0 else "" for g in meta.groups],
            "split": split,
        }
    )
    for c, cond in enumerate(CONDITIONS):
        known = ~np.isnan(meta.labels[:, c])
        frame[cond] = pd.array(
            [int(v) if k else None for v, k in zip(meta.labels[:, c], known, strict=True)],
            dtype="Int64",
        )
    for c, cond in enumerate(CONDITIONS):
        frame[f"{cond}_prob"] = probs[:, c]
    order = np.argsort(meta.rows, kind="stable")
    return frame.iloc[order].reset_index(drop=True)[list(PREDICTION_COLUMNS)]


def write_predictions(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write a predictions CSV atomically (temp file, then rename)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    frame.to_csv(tmp, index=False, float_format="%.6f")
    tmp.replace(path)
    return path


def predict_probs(model: nnx.Module, source, *, batch_size: int = 64) -> np.ndarray:
    """Sigmoid probabilities [N, 3] of `model` (eval mode) on every example of `source`."""
    graphdef, state = nnx.split(model)

    @jax.jit
    def forward(state, images):
        return jax.nn.sigmoid(nnx.merge(graphdef, state)(images.astype(np.float32)))

    out = []
    for batch in eval_batches(source, batch_size=batch_size):
        probs = np.asarray(forward(state, batch["image"]))
        out.append(probs[batch["weight"] > 0])
    return np.concatenate(out)[: len(source)]
