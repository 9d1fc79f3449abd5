"""Test-time tiles: the exported classifier on each face and on 2x-zoomed tiles of it.

    python benchmarks/tile_views.py --data data/acne-new-v36 --split val \
        [--model-dir models/default] [--grid 3] --out outputs/tile_views [--json]

Each photo of the split is cropped as for training and serving
(`preprocessing.pipeline.first_face_crop`, the first verified face) at the model's input size S
(the face view) and at 2S. The 2S crop gives grid x grid tiles of S px, each a quarter of the
face at twice the resolution (grid 2: the four quadrants; grid 3: also the centre and the four
edge midpoints). The exported ONNX model scores every view (with its own mirror averaging when
it was exported with it). One predictions CSV is written per way of combining the views, in a
folder named for it under --out:

- `face/`: the face view alone (the served prediction);
- `tiles/`: the mean probability of the tiles;
- `face_and_tiles/`: the mean of the face view's probability and the tiles' mean.

`python benchmarks/compare_runs.py --data DATA OUT/face OUT/tiles OUT/face_and_tiles` and
`python -m fairness.by_eye --predictions OUT/<folder>/predictions_<split>.csv --labels ...`
then score them with the code that scores training runs. Photos are read, never written or
logged; a photo without a verified face is left out and counted. Research aid, not a diagnosis.
Exit codes: 0 ok, 2 bad arguments or dataset.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from core.atomic import write_text  # noqa: E402
from core.schema import CONDITIONS  # noqa: E402

ZOOM = 2  # the tiles come from a crop of ZOOM x the model's input size
VARIANTS = ("face", "tiles", "face_and_tiles")
BATCH = 32


def tile_origins(size: int, grid: int) -> list[tuple[int, int]]:
    """(row, col) of the top-left corners of grid x grid tiles of `size` px in a ZOOM x `size`
    crop, evenly spaced from edge to edge (grid 2: the four quadrants)."""
    if grid < 2:
        raise ValueError(f"grid must be at least 2, got {grid}")
    span = (ZOOM - 1) * size
    steps = [round(k * span / (grid - 1)) for k in range(grid)]
    return [(y, x) for y in steps for x in steps]


def cut_tiles(crop: np.ndarray, size: int, grid: int) -> np.ndarray:
    """The tiles [grid * grid, size, size, 3] of one ZOOM x `size` crop."""
    if crop.shape[:2] != (ZOOM * size, ZOOM * size):
        raise ValueError(f"expected a {ZOOM * size} px crop, got shape {crop.shape}")
    return np.stack([crop[y : y + size, x : x + size] for y, x in tile_origins(size, grid)])


def combine_views(face: np.ndarray, tiles: np.ndarray) -> dict[str, np.ndarray]:
    """Probabilities [N, C] per variant from the face view's [N, C] and the tiles' [N, T, C]."""
    face = np.asarray(face, np.float64)
    tile_mean = np.asarray(tiles, np.float64).mean(axis=1)
    return {"face": face, "tiles": tile_mean, "face_and_tiles": (face + tile_mean) / 2}


class OnnxProbs:
    """`probs` of an exported model on batches of uint8 crops, and its input size."""

    def __init__(self, model_path: Path) -> None:
        import onnxruntime as ort

        self.session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
        self.size = int(self.session.get_inputs()[0].shape[1])

    def __call__(self, images: np.ndarray) -> np.ndarray:
        out = [
            self.session.run(["probs"], {"image": images[i : i + BATCH].astype(np.float32)})[0]
            for i in range(0, len(images), BATCH)
        ]
        return np.concatenate(out)


def score_photo(image_rgb: np.ndarray, model: OnnxProbs, grid: int):
    """(face probs [C], tile probs [T, C]) of the first verified face; None without one."""
    from preprocessing.pipeline import first_face_crop

    face = first_face_crop(image_rgb, size=model.size)
    zoomed = first_face_crop(image_rgb, size=ZOOM * model.size)
    if face is None or zoomed is None:
        return None
    # The face alone, as served (one face per call); the tiles in one batch.
    return model(face[0][None])[0], model(cut_tiles(zoomed[0], model.size, grid))


def prediction_frames(
    meta: pd.DataFrame, data: Path, model: OnnxProbs, grid: int, split: str, *, progress: bool
) -> tuple[dict[str, pd.DataFrame], list[str]]:
    """({variant: predictions frame}, images without a verified face)."""
    from preprocessing.image_io import load_image

    rows, faces, tiles, missed = [], [], [], []
    for _, row in tqdm(
        meta.iterrows(), total=len(meta), desc="views", disable=None if progress else True
    ):
        scored = score_photo(load_image(data / row["image"]), model, grid)
        if scored is None:
            missed.append(str(row["image"]))
            continue
        rows.append(row)
        faces.append(scored[0])
        tiles.append(scored[1])
    if not rows:
        raise ValueError(f"{data}: no verified face in split {split!r}")
    variants = combine_views(np.stack(faces), np.stack(tiles))
    base = pd.DataFrame(
        {
            "image": [r["image"] for r in rows],
            "fitzpatrick": [r.get("fitzpatrick") for r in rows],
            "group": [r.get("group") for r in rows],
            "split": split,
            **{c: [r.get(c) for r in rows] for c in CONDITIONS},
        }
    )
    frames = {}
    for name, probs in variants.items():
        frame = base.copy()
        for k, cond in enumerate(CONDITIONS):
            frame[f"{cond}_prob"] = probs[:, k]
        frames[name] = frame
    return frames, missed


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    """Write a predictions CSV atomically (`core.atomic`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, frame.to_csv(index=False, float_format="%.6f"))


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    from sklearn.metrics import roc_auc_score

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, required=True, help="canonical dataset folder")
    p.add_argument("--split", default="val", choices=["train", "val", "test"])
    p.add_argument("--model-dir", type=Path, default=ROOT / "models" / "default")
    p.add_argument("--grid", type=int, default=3, help="tiles per side (2: the quadrants)")
    p.add_argument("--out", type=Path, required=True, help="folder for the predictions CSVs")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = p.parse_args(argv)
    from data.canonical import load_metadata

    try:
        tile_origins(1, args.grid)
        meta = load_metadata(args.data / "metadata.csv")
        meta = meta[meta["split"] == args.split]
        if meta.empty:
            raise ValueError(f"{args.data}: no rows in split {args.split!r}")
        model_path = args.model_dir / "model.onnx"
        if not model_path.is_file():
            raise FileNotFoundError(f"{model_path}: not found")
        frames, missed = prediction_frames(
            meta, args.data, OnnxProbs(model_path), args.grid, args.split, progress=not args.json
        )
    except (FileNotFoundError, ValueError) as e:
        print(f"tile_views: {e}", file=sys.stderr)
        return 2
    summary = {"data": str(args.data), "split": args.split, "grid": args.grid, "zoom": ZOOM,
               "photos": len(meta), "no_face": missed, "auroc": {}, "folders": {}}  # fmt: skip
    for name, frame in frames.items():
        csv = args.out / name / f"predictions_{args.split}.csv"
        write_csv(frame, csv)
        summary["folders"][name] = str(csv.parent)
        summary["auroc"][name] = {
            c: round(float(roc_auc_score(frame[c], frame[f"{c}_prob"])), 3)
            for c in CONDITIONS
            if frame[c].notna().any() and frame[c].dropna().nunique() == 2
        }
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"{len(meta)} photos, {len(missed)} without a verified face; AUROC (no intervals: "
          "benchmarks/compare_runs.py on the folders gives them):")  # fmt: skip
    for name, cells in summary["auroc"].items():
        text = "  ".join(f"{c} {v:.3f}" for c, v in cells.items())
        print(f"  {name:15s} {text}   {summary['folders'][name]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
