"""benchmarks/tile_views.py: tile geometry, the combination of views, and a run on real photos."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.benchmark_loader import linked_dataset, load_benchmark, run_main

ROOT = Path(__file__).resolve().parents[1]
MODEL_DIR = ROOT / "models" / "default"


@pytest.fixture(scope="module")
def tiles():
    return load_benchmark("tile_views")


def test_tile_origins_span_the_zoomed_crop(tiles) -> None:
    assert tiles.tile_origins(128, 2) == [(0, 0), (0, 128), (128, 0), (128, 128)]
    nine = tiles.tile_origins(128, 3)
    assert len(nine) == 9 and (64, 64) in nine and nine[-1] == (128, 128)
    assert all(0 <= y <= 128 and 0 <= x <= 128 for y, x in tiles.tile_origins(96, 4))
    with pytest.raises(ValueError, match="grid must be at least 2"):
        tiles.tile_origins(128, 1)


def test_cut_tiles_are_the_slices_of_the_crop(tiles) -> None:
    crop = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    out = tiles.cut_tiles(crop, 32, 3)
    assert out.shape == (9, 32, 32, 3)
    np.testing.assert_array_equal(out[4], crop[16:48, 16:48])
    np.testing.assert_array_equal(out[8], crop[32:, 32:])
    with pytest.raises(ValueError, match="expected a 64 px crop"):
        tiles.cut_tiles(crop[:60], 32, 3)


def test_combine_views_means(tiles) -> None:
    face = np.array([[0.2, 0.8, 0.5]])
    views = np.array([[[0.0, 1.0, 0.5], [0.4, 0.6, 0.5]]])
    out = tiles.combine_views(face, views)
    assert set(out) == set(tiles.VARIANTS)
    np.testing.assert_allclose(out["face"], face)
    np.testing.assert_allclose(out["tiles"], [[0.2, 0.8, 0.5]])
    np.testing.assert_allclose(out["face_and_tiles"], [[0.2, 0.8, 0.5]])
    np.testing.assert_allclose(
        tiles.combine_views([[0.0, 0.0, 0.0]], [[[1.0, 0.5, 0.0]]])["face_and_tiles"],
        [[0.5, 0.25, 0.0]],
    )


def _dataset(root: Path, photos: list[tuple[Path, int]]) -> Path:
    labels = [label for _, label in photos]
    columns = {"acne": labels, "hyperpigmentation": [1 - v for v in labels],
               "wrinkles": [None] * len(photos), "fitzpatrick": [None] * len(photos),
               "source": ["test"] * len(photos)}  # fmt: skip
    return linked_dataset(root, [(photo, "val") for photo, _ in photos], columns)


def test_real_photos_give_three_prediction_files(
    tiles, tmp_path, astronaut_path, group_photo_path, grayscale_photo_path
) -> None:
    from fairness.io import read_predictions
    from preprocessing.image_io import load_image
    from preprocessing.pipeline import first_face_crop

    noise = tmp_path / "noise.png"
    import cv2

    cv2.imwrite(str(noise), np.random.default_rng(1).integers(0, 256, (200, 200, 3), np.uint8))
    data = _dataset(
        tmp_path / "data",
        [(astronaut_path, 1), (group_photo_path, 0), (grayscale_photo_path, 1), (noise, 0)],
    )
    out = tmp_path / "out"
    code, stdout, err = run_main(
        tiles.main, ["--data", str(data), "--out", str(out), "--grid", "2", "--json"]
    )
    assert code == 0, err
    summary = json.loads(stdout)
    assert summary["photos"] == 4 and summary["no_face"] == ["images/noise.png"]
    assert set(summary["auroc"]) == set(tiles.VARIANTS)
    frames = {v: read_predictions(out / v / "predictions_val.csv") for v in tiles.VARIANTS}
    assert all(len(f) == 3 for f in frames.values())
    # The face view is the exported model on the training/serving crop of the first face.
    model = tiles.OnnxProbs(MODEL_DIR / "model.onnx")
    crop, _ = first_face_crop(load_image(astronaut_path), size=model.size)
    expected = model(crop[None])[0]
    row = frames["face"].set_index("image").loc["images/astronaut.png"]
    np.testing.assert_allclose(
        [row[f"{c}_prob"] for c in ("acne", "hyperpigmentation", "wrinkles")], expected, atol=2e-6
    )
    mixed = (frames["face"]["acne_prob"] + frames["tiles"]["acne_prob"]) / 2
    np.testing.assert_allclose(frames["face_and_tiles"]["acne_prob"], mixed, atol=2e-6)
    assert not np.allclose(frames["tiles"]["acne_prob"], frames["face"]["acne_prob"])


def test_bad_arguments_exit_2(tiles, tmp_path, astronaut_path) -> None:
    data = _dataset(tmp_path / "data", [(astronaut_path, 1)])
    code, _, err = run_main(tiles.main, ["--data", str(tmp_path / "none"), "--out", "x"])
    assert code == 2 and "tile_views:" in err
    code, _, err = run_main(
        tiles.main, ["--data", str(data), "--out", str(tmp_path / "o"), "--split", "test"]
    )
    assert code == 2 and "no rows in split 'test'" in err
    code, _, err = run_main(
        tiles.main, ["--data", str(data), "--out", str(tmp_path / "o"), "--grid", "1"]
    )
    assert code == 2 and "grid must be at least 2" in err
    code, _, err = run_main(
        tiles.main,
        ["--data", str(data), "--out", str(tmp_path / "o"), "--model-dir", str(tmp_path)],
    )
    assert code == 2 and "model.onnx: not found" in err
    assert not (tmp_path / "o").exists()
