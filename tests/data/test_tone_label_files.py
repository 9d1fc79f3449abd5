"""The shipped by-eye tone label files (data/tone_labels): well-formed, disjoint, right splits."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from core.tone_labels import read_tone_labels
from data.adapters.tone_labels import checked_tone_labels

ROOT = Path(__file__).resolve().parents[2]
LABELS = ROOT / "data" / "tone_labels"
FILES = {"val": LABELS / "acne-new-v36-valid.csv", "train": LABELS / "acne-new-v36-train.csv"}
PAIRS = {"I-II|III-IV", "III-IV|V-VI"}


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("split", sorted(FILES))
def test_each_row_is_well_formed(split):
    read_tone_labels(FILES[split])  # columns, labels, no image twice (raises naming the line)
    rows = _rows(FILES[split])
    images = [r["image"] for r in rows]
    assert images == sorted(images)
    for line, row in enumerate(rows, start=2):
        where = f"{FILES[split].name}:{line}"
        assert row["image"].startswith("images/"), where
        assert (row["between"] in PAIRS) == (row["tone_by_eye"] == "between"), where


def test_train_rows_say_how_many_raters_and_which_sample():
    rows = _rows(FILES["train"])
    assert {r["raters"] for r in rows} <= {"1", "2"}
    samples = [r["sample"] for r in rows]
    assert set(samples) == {"random", "darker"} and samples.count("random") == 400


def test_the_two_files_share_no_photo():
    train = {r["image"] for r in _rows(FILES["train"])}
    assert not train & {r["image"] for r in _rows(FILES["val"])}


def test_every_label_names_a_photo_of_its_split():
    metadata = ROOT / "data" / "acne-new-v36" / "metadata.csv"
    if not metadata.is_file():
        pytest.skip("the converted acne-new v36 dataset is not here (dvc repro convert)")
    split_of = {r["image"]: r["split"] for r in _rows(metadata)}
    for split, path in FILES.items():
        checked_tone_labels(path, split_of)  # raises naming the file and line
        assert {split_of[r["image"]] for r in _rows(path)} == {split}
