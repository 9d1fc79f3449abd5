"""Predictions of a trained model on a split, written as `predictions_{split}.csv`.

Columns (docs/architecture.md, "Predictions"; `core.schema.PREDICTION_COLUMNS`): `image`,
`fitzpatrick` (1-6 or empty), `group` (I-II, III-IV, V-VI or empty), `split`, each condition's
label (0/1 or empty) and `<cond>_prob`; then `core.schema.PREDICTION_OPTIONAL_COLUMNS`:
`tone_source` (labelled, estimated or empty), `acne_severity` (the label, 0-3 or empty),
`acne_severity_grade` (the predicted grade, `core.severity.severity_grade`) and
`acne_severity_prob_0` .. `acne_severity_prob_3` (class probabilities of the severity head).
Rows follow metadata.csv order.

The trainer writes them for its own val and test splits. For another dataset (a held-out draw,
a clinic's own test set in the canonical format)::

    python -m train_jax.predict --run outputs/RUN --data DIR [--split test] [--tfds-dir D]
        --out predictions_test.csv [--json]

then ``python -m fairness.report --predictions outputs/RUN/predictions_val.csv
predictions_test.csv --out DIR`` fits the thresholds on the run's validation split and reports
on the new test set. Exit codes: 0 ok, 2 bad arguments, 3 dataset problem, 4 run problem.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import jax
import numpy as np
import pandas as pd
from flax import nnx
from tqdm import tqdm

from core.schema import (
    CONDITIONS,
    GROUPS,
    PREDICTION_COLUMNS,
    PREDICTION_OPTIONAL_COLUMNS,
    SEVERITY_GRADES,
)
from core.severity import severity_grade
from train_jax.host_malloc import keep_freed_memory
from train_jax.input import SplitMeta, eval_batches


def predictions_frame(
    meta: SplitMeta, probs: np.ndarray, split: str, *, severity: np.ndarray | None = None
) -> pd.DataFrame:
    """One row per example of `meta` with labels and probabilities, in metadata.csv order.

    `severity` holds the severity class probabilities [N, 4]; without it (a model without the
    severity head) the grade and probability columns are empty.
    """
    probs = np.asarray(probs, np.float64)
    if probs.shape != (len(meta), len(CONDITIONS)):
        raise ValueError(f"probs has shape {probs.shape}, expected {(len(meta), len(CONDITIONS))}")
    num_grades = len(SEVERITY_GRADES)
    if severity is not None and np.shape(severity) != (len(meta), num_grades):
        raise ValueError(
            f"severity has shape {np.shape(severity)}, expected {(len(meta), num_grades)}"
        )
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
    frame["tone_source"] = list(meta.tone_source)
    frame["acne_severity"] = pd.array(
        [int(s) if s >= 0 else None for s in meta.severity], dtype="Int64"
    )
    if severity is None:
        frame["acne_severity_grade"] = pd.array([None] * len(meta), dtype="Int64")
        for k in SEVERITY_GRADES:
            frame[f"acne_severity_prob_{k}"] = np.nan
    else:
        severity = np.asarray(severity, np.float64)
        frame["acne_severity_grade"] = pd.array(severity_grade(severity), dtype="Int64")
        for k in SEVERITY_GRADES:
            frame[f"acne_severity_prob_{k}"] = severity[:, k]
    order = np.argsort(meta.rows, kind="stable")
    columns = [*PREDICTION_COLUMNS, *PREDICTION_OPTIONAL_COLUMNS]
    return frame.iloc[order].reset_index(drop=True)[columns]


def write_predictions(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write a predictions CSV atomically (temp file, then rename)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    frame.to_csv(tmp, index=False, float_format="%.6f")
    tmp.replace(path)
    return path


def model_outputs(model: nnx.Module, images: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The model's served outputs on float RGB `images`: (sigmoid probabilities [B, 3],
    acne-severity grade probabilities [B, 4]). Every jitted prediction path calls this."""
    from train_jax.models.ordinal import severity_probs

    feats = model.features(images.astype(np.float32))
    probs = jax.nn.sigmoid(model.pool_and_classify(feats).astype(np.float32))
    return probs, severity_probs(model.severity_from_features(feats))


def predict_probs(
    model: nnx.Module, source, *, batch_size: int = 64, progress: bool = False
) -> np.ndarray:
    """Sigmoid probabilities [N, 3] of `model` (eval mode) on every example of `source`."""
    return predict_outputs(model, source, batch_size=batch_size, progress=progress)[0]


def predict_outputs(
    model: nnx.Module, source, *, batch_size: int = 64, progress: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """(sigmoid probabilities [N, 3], severity class probabilities [N, 4]) of `model` (eval
    mode) on every example of `source`."""
    graphdef, state = nnx.split(model)

    @jax.jit
    def forward(state, images):
        return model_outputs(nnx.merge(graphdef, state), images)

    out = []
    bar = tqdm(total=len(source), desc="predict", unit="img", disable=None if progress else True)
    for batch in eval_batches(source, batch_size=batch_size):
        keep = batch["weight"] > 0
        out.append(tuple(np.asarray(a)[keep] for a in forward(state, batch["image"])))
        bar.update(len(out[-1][0]))
    bar.close()
    probs, severity = (np.concatenate(parts)[: len(source)] for parts in zip(*out, strict=True))
    return probs, severity


EXIT_ARGS, EXIT_DATA, EXIT_RUN = 2, 3, 4


def main(argv: list[str] | None = None) -> int:
    """CLI: a run's best checkpoint on one split of a canonical dataset -> predictions CSV."""
    p = argparse.ArgumentParser(
        prog="python -m train_jax.predict",
        description="Predict with a training run's best checkpoint on a split of a canonical "
        "dataset and write predictions_<split>.csv. Exit codes: 0 ok, 2 bad arguments, "
        "3 dataset problem, 4 run problem.",
    )
    p.add_argument("--run", required=True, help="training run folder (outputs/RUN)")
    p.add_argument("--data", required=True, help="canonical dataset folder (metadata.csv)")
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    p.add_argument("--tfds-dir", help="crop cache folder (default DATA/tfds)")
    p.add_argument("--out", required=True, help="predictions CSV to write (atomically)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument(
        "--test-time-flip",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="average each face with its mirror image (--no-test-time-flip: one view); "
        "default: as the run's config says",
    )
    p.add_argument("--json", action="store_true", help="print a summary as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    keep_freed_memory()  # before the first JAX computation (train_jax/host_malloc.py)
    from data.tfds_builder import build_dataset
    from train_jax.checkpoints import load_model
    from train_jax.input import split_metadata

    out = Path(args.out)
    if not out.parent.is_dir():
        print(f"error: --out {out}: folder {out.parent} does not exist", file=sys.stderr)
        return EXIT_ARGS
    try:
        model, config = load_model(Path(args.run), which="best")
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {args.run}: {err}", file=sys.stderr)
        return EXIT_RUN
    if args.test_time_flip is not None:
        model.test_time_flip = args.test_time_flip
    data = Path(args.data)
    if not (data / "metadata.csv").is_file():
        print(f"error: {data}: no metadata.csv (not a canonical dataset)", file=sys.stderr)
        return EXIT_DATA
    size = int(config.model.image_size)
    try:
        builder = build_dataset(data, crop_size=size, cache_dir=args.tfds_dir or None)
    except (ValueError, OSError) as err:
        print(f"error: {data}: {err}", file=sys.stderr)
        return EXIT_DATA
    if args.split not in builder.info.splits:
        have = sorted(builder.info.splits)
        print(f"error: {data}: no {args.split!r} split; has {have}", file=sys.stderr)
        return EXIT_DATA
    meta = split_metadata(builder, args.split)
    source = builder.as_data_source(split=args.split)
    probs, severity = predict_outputs(
        model, source, batch_size=args.batch_size, progress=not args.no_progress
    )
    frame = predictions_frame(meta, probs, args.split, severity=severity)
    write_predictions(frame, out)
    summary = {"out": str(out), "rows": len(frame), "run": str(args.run), "data": str(data)}
    summary["split"] = args.split
    summary["image_size"] = size
    summary["test_time_flip"] = bool(model.test_time_flip)
    print(json.dumps(summary) if args.json else f"wrote {len(frame)} predictions to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
