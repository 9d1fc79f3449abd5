"""benchmarks/ood_rates.py on tiny sets of real photos shipped in wheels (linked, not copied)."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from tests.benchmark_loader import load_benchmark

orates = load_benchmark("ood_rates")


def _dataset(root: Path, rows: list[tuple[Path, str]]) -> Path:
    """A canonical-dataset folder whose images are symlinks to real photos."""
    (root / "images").mkdir(parents=True)
    lines = ["image,split"]
    for photo, split in rows:
        (root / "images" / photo.name).symlink_to(photo)
        lines.append(f"images/{photo.name},{split}")
    (root / "metadata.csv").write_text("\n".join(lines) + "\n")
    return root


def _run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = orates.main(argv)
    return code, out.getvalue(), err.getvalue()


def _package_photo(package: str, rel: str) -> Path:
    import importlib

    return Path(importlib.import_module(package).__file__).parent / rel


def test_counts_every_analysed_face_of_each_set(tmp_path: Path) -> None:
    astronaut = _package_photo("skimage", "data/astronaut.png")
    group = _package_photo("insightface", "data/images/t1.jpg")
    hanks = _package_photo("insightface", "data/images/Tom_Hanks_54745.png")
    faces = _dataset(tmp_path / "faces", [(astronaut, "val"), (group, "train"), (hanks, "train")])
    synthetic = _dataset(tmp_path / "synthetic", [(hanks, "test")])
    argv = ["--faces", str(faces), "--synthetic", str(synthetic), "--train-limit", "1", "--json"]
    code, out, _ = _run(argv)
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
def test_a_folder_without_metadata_names_the_file_and_exits_2(tmp_path: Path, missing) -> None:
    hanks = _package_photo("insightface", "data/images/Tom_Hanks_54745.png")
    folders = {
        "faces": _dataset(
            tmp_path / "faces", [(hanks, "val"), (hanks.with_name("t1.jpg"), "train")]
        ),
        "synthetic": _dataset(tmp_path / "synthetic", [(hanks, "test")]),
    }
    (folders[missing] / "metadata.csv").unlink()
    argv = ["--faces", str(folders["faces"]), "--synthetic", str(folders["synthetic"])]
    code, _, err = _run(argv)
    assert code == 2
    assert str(folders[missing] / "metadata.csv") in err
