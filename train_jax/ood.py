"""Fit the out-of-distribution score of an exported model (writes MODEL_DIR/ood.json).

    python -m train_jax.ood --model-dir outputs/pipeline/model \\
        --fit-data data/acne-new-plus-synth --fit-tfds outputs/pipeline/tfds/combined \\
        --calibrate-data data/acne-new-v36 --calibrate-tfds outputs/pipeline/tfds/real [--json]

The exported model's `features` output is computed on the face crops of the fit dataset's
train split (the crops serving makes: data.tfds_builder uses preprocessing.pipeline); a
Gaussian with a Ledoit-Wolf shrunk covariance is fitted to them; the limit is the --quantile
(0.95) of the Mahalanobis distances of the calibration dataset's val faces (client/ood.py).
Exit codes: 0 ok, 2 bad arguments or a model without a `features` output, 3 dataset problem.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from client.ood import FILENAME, OodModel, mahalanobis, write_ood
from data.run import ModelDir
from fairness.model_card import ModelCardError, read_model_card

EXIT_ARGS, EXIT_DATA = 2, 3
FEATURES = "features"


def onnx_features(model_path: Path, source, *, batch_size: int = 64, progress: bool) -> np.ndarray:
    """The `features` output [N, C] of the ONNX model on every crop of a data source."""
    import onnxruntime as ort

    from train_jax.input import eval_batches

    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    if FEATURES not in {o.name for o in session.get_outputs()}:
        raise ValueError(f"{model_path}: the model has no {FEATURES!r} output (re-export it)")
    out = []
    bar = tqdm(total=len(source), desc="features", unit="img", disable=None if progress else True)
    for batch in eval_batches(source, batch_size=batch_size):
        keep = batch["weight"] > 0
        images = np.asarray(batch["image"], np.float32)[keep]
        out.append(session.run([FEATURES], {"image": images})[0])
        bar.update(len(images))
    bar.close()
    return np.concatenate(out)[: len(source)]


def fit_ood(train: np.ndarray, calibration: np.ndarray, *, quantile: float) -> OodModel:
    """Gaussian (Ledoit-Wolf) on `train` features, limit = `quantile` of calibration distances."""
    from sklearn.covariance import LedoitWolf

    estimator = LedoitWolf().fit(np.asarray(train, np.float64))
    distances = mahalanobis(calibration, estimator.location_, estimator.precision_)
    limit = float(np.quantile(distances, quantile))
    return OodModel(estimator.location_, estimator.precision_, limit, quantile)


def _split_features(model_path, data, tfds_dir, split, crop_size, progress) -> np.ndarray:
    from data.tfds_builder import build_dataset

    builder = build_dataset(data, crop_size=crop_size, cache_dir=tfds_dir)
    if split not in builder.info.splits:
        raise ValueError(f"{data}: no {split!r} split; has {sorted(builder.info.splits)}")
    return onnx_features(model_path, builder.as_data_source(split=split), progress=progress)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, required=True, help="model.onnx + card")
    parser.add_argument("--fit-data", type=Path, required=True, help="dataset fitted (train)")
    parser.add_argument("--fit-tfds", type=Path, default=None, help="its crop cache folder")
    parser.add_argument("--calibrate-data", type=Path, required=True, help="dataset (val)")
    parser.add_argument("--calibrate-tfds", type=Path, default=None, help="its crop cache")
    parser.add_argument("--quantile", type=float, default=0.95, help="val faces that pass")
    parser.add_argument("--json", action="store_true", help="print a JSON summary")
    args = parser.parse_args(argv)
    exported = ModelDir(args.model_dir)
    model_path, card_path = exported.model_path, exported.card_path
    if not model_path.is_file() or not card_path.is_file():
        print(f"error: {args.model_dir}: needs model.onnx and model_card.json", file=sys.stderr)
        return EXIT_ARGS
    if not 0.5 <= args.quantile < 1.0:
        print(f"error: --quantile must be in [0.5, 1), got {args.quantile}", file=sys.stderr)
        return EXIT_ARGS
    try:
        size = int(read_model_card(card_path)["input_size"])
    except ModelCardError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ARGS
    progress = not args.json
    try:
        train = _split_features(model_path, args.fit_data, args.fit_tfds, "train", size, progress)
        val = _split_features(
            model_path, args.calibrate_data, args.calibrate_tfds, "val", size, progress
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ARGS if FEATURES in str(exc) else EXIT_DATA
    model = fit_ood(train, val, quantile=args.quantile)
    model = OodModel(
        model.mean,
        model.precision,
        model.limit,
        model.quantile,
        fitted_on=f"{args.fit_data.name} train ({len(train)} crops)",
        calibrated_on=f"{args.calibrate_data.name} val ({len(val)} faces)",
    )
    path = write_ood(model, exported.root / FILENAME)
    summary = {
        "out": str(path),
        "limit": round(model.limit, 4),
        "quantile": model.quantile,
        "fitted_on": model.fitted_on,
        "calibrated_on": model.calibrated_on,
        "feature_dim": int(model.mean.shape[0]),
    }
    print(json.dumps(summary) if args.json else f"wrote {path}: limit {model.limit:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
