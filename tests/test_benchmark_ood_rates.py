"""benchmarks/ood_rates.py on tiny sets of real photos shipped in wheels (linked, not copied)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.benchmark_loader import linked_dataset, load_benchmark, run_main

orates = load_benchmark("ood_rates")


def test_counts_every_analysed_face_of_each_set(
    tmp_path: Path, astronaut_path: Path, group_photo_path: Path, grayscale_photo_path: Path
) -> None:
    faces = linked_dataset(
        tmp_path / "faces",
        [(astronaut_path, "val"), (group_photo_path, "train"), (grayscale_photo_path, "train")],
    )
    synthetic = linked_dataset(tmp_path / "synthetic", [(grayscale_photo_path, "test")])
    argv = ["--faces", str(faces), "--synthetic", str(synthetic), "--train-limit", "1", "--json"]
    code, out, _ = run_main(orates.main, argv)
    assert code == 0
    result = json.loads(out)
    sets = result["sets"]
    assert (sets["acne-new valid"]["images"], sets["acne-new valid"]["faces"]) == (1, 1)
    assert (sets["acne-new train"]["images"], sets["acne-new train"]["faces"]) == (1, 6)  # t1.jpg
    assert sets["package faces"]["faces"] == 8
    assert sets["non-faces as skin regions"]["faces"] == sets["non-faces as skin regions"]["images"]
    whole = sets["non-faces as skin regions"]
    assert len(whole["not_flagged"]) == whole["faces"] - whole["flagged"]
    assert all(d <= result["limit"] for d in whole["not_flagged"].values())
    limit = result["limit"]
    for row in sets.values():
        assert 0 <= row["flagged"] <= row["faces"]
        if row["flagged"] == 0:
            assert row["distance_max"] <= limit
        if row["flagged"] == row["faces"]:
            assert row["distance_min"] > limit


@pytest.mark.parametrize("missing", ["faces", "synthetic"])
def test_a_folder_without_metadata_names_the_file_and_exits_2(
    tmp_path: Path, missing: str, group_photo_path: Path, grayscale_photo_path: Path
) -> None:
    folders = {
        "faces": linked_dataset(
            tmp_path / "faces", [(grayscale_photo_path, "val"), (group_photo_path, "train")]
        ),
        "synthetic": linked_dataset(tmp_path / "synthetic", [(grayscale_photo_path, "test")]),
    }
    (folders[missing] / "metadata.csv").unlink()
    argv = ["--faces", str(folders["faces"]), "--synthetic", str(folders["synthetic"])]
    code, _, err = run_main(orates.main, argv)
    assert code == 2
    assert str(folders[missing] / "metadata.csv") in err
