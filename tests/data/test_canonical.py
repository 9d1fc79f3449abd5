"""Tests of data.canonical: loader, validator, coverage table; data.splits: assign_splits."""

from __future__ import annotations

import csv
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.schema import CONDITIONS, REQUIRED_COLUMNS
from data.canonical import (
    MSG_EMPTY_FILE,
    MSG_MISSING_COLUMN,
    MSG_NO_ROWS,
    DatasetError,
    Problem,
    coverage_table,
    load_metadata,
    split_table,
    validate_dataset,
)
from data.splits import assign_splits, strata_keys
from tests.data.conftest import FIXTURES, write_image, write_mask

# (CSV line, column) of every problem planted in fixtures/canonical_broken/metadata.csv.
BROKEN_EXPECTED = {
    (1, "source"),  # required column missing
    (3, "acne"),  # 2
    (4, "hyperpigmentation"),  # 'yes'
    (4, "acne_severity"),  # 5
    (4, "fitzpatrick"),  # 7
    (5, "fitzpatrick_group"),  # III-IV with fitzpatrick 2
    (5, "split"),  # 'training'
    (6, "image"),  # same path as line 2
    (7, "image"),  # same bytes as ok2.jpg
    (8, "image"),  # file missing
    (9, "image"),  # not an image
    (10, "subject_id"),  # s1 also in train on line 2
    (11, "mask"),  # mask file missing
    (12, "mask"),  # one-channel mask
    (13, "image"),  # absolute path
    (13, "fitzpatrick"),  # 1.5
    (14, None),  # wrong number of fields
    (15, "image"),  # empty path
    (15, "fitzpatrick_group"),  # 'V'
    (16, "image"),  # truncated JPEG
}


def make_broken(tmp_path: Path) -> Path:
    """The broken fixture CSV with the image files it refers to (good and bad)."""
    root = tmp_path / "broken"
    root.mkdir()
    shutil.copy(FIXTURES / "canonical_broken" / "metadata.csv", root / "metadata.csv")
    for i, name in enumerate(["ok1", "ok2", "ok3", "ok4", "ok5", "ok6", "ok7", "ok9"]):
        write_image(root / "images" / f"{name}.jpg", seed=100 + i)
    shutil.copy(root / "images" / "ok2.jpg", root / "images" / "copy_of_ok2.jpg")
    (root / "images" / "garbage.jpg").write_bytes(b"this is not a jpeg")
    data = (root / "images" / "ok3.jpg").read_bytes()
    (root / "images" / "truncated.jpg").write_bytes(data[: len(data) // 2])
    write_mask(root / "masks" / "ok1.png")
    write_mask(root / "masks" / "onechannel.png", channels=1)
    return root


def test_good_dataset_has_no_problems(good_dataset: Path) -> None:
    assert validate_dataset(good_dataset) == []


def test_load_metadata_types_and_unknowns(good_dataset: Path) -> None:
    df = load_metadata(good_dataset / "metadata.csv")
    raw = pd.read_csv(good_dataset / "metadata.csv", dtype=str, keep_default_na=False)
    assert len(df) == len(raw) == 24
    for cond in CONDITIONS:
        assert df[cond].dtype == np.float64
        assert df[cond].isna().sum() == (raw[cond] == "").sum()
    assert str(df["fitzpatrick"].dtype) == "Int64"
    unknown = raw["fitzpatrick"] == ""
    assert df["fitzpatrick"].isna().tolist() == unknown.tolist()
    assert df.loc[unknown.to_numpy(), "group"].isna().all()
    known = df[~unknown.to_numpy()]
    expected = {1: "I-II", 2: "I-II", 3: "III-IV", 4: "III-IV", 5: "V-VI", 6: "V-VI"}
    assert [expected[int(f)] for f in known["fitzpatrick"]] == known["group"].tolist()


def test_broken_csv_lists_every_problem(tmp_path: Path) -> None:
    root = make_broken(tmp_path)
    problems = validate_dataset(root)
    found = {(p.row, p.column) for p in problems}
    assert found == BROKEN_EXPECTED
    csv_path = str(root / "metadata.csv")
    assert all(p.file == csv_path for p in problems)
    by_where = {(p.row, p.column): p.message for p in problems}
    assert "images/nothere.jpg" in by_where[(8, "image")]
    assert "images/ok2.jpg" in by_where[(7, "image")] and "row 3" in by_where[(7, "image")]
    assert "row 2" in by_where[(6, "image")]
    assert "masks/missing.png" in by_where[(11, "mask")]
    assert "'s1'" in by_where[(10, "subject_id")]
    assert by_where[(1, "source")] == MSG_MISSING_COLUMN


def test_table_checks_without_images(tmp_path: Path) -> None:
    root = make_broken(tmp_path)
    found = {(p.row, p.column) for p in validate_dataset(root, check_images=False)}
    file_checks = {
        (7, "image"),
        (8, "image"),
        (9, "image"),
        (11, "mask"),
        (12, "mask"),
        (16, "image"),
    }
    assert found == BROKEN_EXPECTED - file_checks


def test_load_metadata_raises_with_all_problems(tmp_path: Path) -> None:
    root = make_broken(tmp_path)
    with pytest.raises(DatasetError) as info:
        load_metadata(root, check_images=True)
    assert {(p.row, p.column) for p in info.value.problems} == BROKEN_EXPECTED
    assert "metadata.csv:3:acne:" in str(info.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", MSG_EMPTY_FILE),
        ("\n\n", MSG_EMPTY_FILE),
        (",".join(REQUIRED_COLUMNS) + "\n", MSG_NO_ROWS),
    ],
)
def test_empty_csv(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "metadata.csv"
    path.write_text(text)
    problems = validate_dataset(path)
    assert [p.message for p in problems] == [message]
    assert problems[0].row is None


def test_missing_csv_is_a_problem(tmp_path: Path) -> None:
    problems = validate_dataset(tmp_path / "nope.csv")
    assert len(problems) == 1 and "not found" in problems[0].message


def test_problem_format() -> None:
    assert str(Problem("a.csv", 3, "acne", "bad")) == "a.csv:3:acne: bad"
    assert str(Problem("a.csv", 4, None, "bad")) == "a.csv:4: bad"
    assert str(Problem("a.csv", None, None, "bad")) == "a.csv: bad"


def test_fitzpatrick_group_column_is_accepted(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    write_image(root / "images" / "a.jpg", seed=1)
    write_image(root / "images" / "b.jpg", seed=2)
    (root / "metadata.csv").write_text(
        "image,acne,hyperpigmentation,wrinkles,fitzpatrick,fitzpatrick_group,split,source\n"
        "images/a.jpg,1,,,,V-VI,train,x\n"
        "images/b.jpg,0,,,3,III-IV,test,x\n"
    )
    df = load_metadata(root, check_images=True)
    assert df["group"].tolist() == ["V-VI", "III-IV"]
    assert coverage_table(df).loc["images", "V-VI"] == 1
    assert coverage_table(df).loc["images", "FST?"] == 1


def test_coverage_table_counts() -> None:
    df = pd.DataFrame(
        {
            "acne": [1, 0, np.nan, 1],
            "hyperpigmentation": [np.nan, np.nan, 1, 0],
            "wrinkles": [0, 0, 0, 1],
            "fitzpatrick": [1, 1, np.nan, 6],
            "split": ["train"] * 4,
        }
    )
    table = coverage_table(df)
    assert table.loc["images"].to_dict() == {
        "FST1": 2,
        "FST2": 0,
        "FST3": 0,
        "FST4": 0,
        "FST5": 0,
        "FST6": 1,
        "FST?": 1,
        "I-II": 2,
        "III-IV": 0,
        "V-VI": 1,
        "group?": 1,
        "total": 4,
    }
    assert table.loc["acne +", "FST1"] == 1 and table.loc["acne labelled", "FST1"] == 2
    assert table.loc["acne labelled", "total"] == 3
    assert table.loc["hyperpigmentation +", "FST?"] == 1
    assert table.loc["wrinkles +", "V-VI"] == 1
    assert split_table(df).loc["train", "total"] == 4


# ---------------------------------------------------------------------------------------------
# assign_splits


def random_frame(n: int, seed: int, subject_size: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "image": [f"{i}.jpg" for i in range(n)],
            "acne": rng.integers(0, 2, n).astype(float),
            "hyperpigmentation": rng.integers(0, 2, n).astype(float),
            "wrinkles": rng.integers(0, 2, n).astype(float),
            "fitzpatrick": rng.choice([1, 2, 3, 4, 5, 6, np.nan], n),
            "subject_id": [f"s{i // subject_size}" if i % 4 else "" for i in range(n)],
        }
    )
    df.loc[rng.random(n) < 0.2, "wrinkles"] = np.nan
    return df


def test_assign_splits_is_grouped_by_subject() -> None:
    out = assign_splits(random_frame(900, seed=0, subject_size=4), seed=5)
    with_subject = out[out["subject_id"] != ""]
    assert with_subject.groupby("subject_id")["split"].nunique().max() == 1


def test_assign_splits_is_stratified() -> None:
    df = random_frame(1200, seed=1)
    out = assign_splits(df, seed=3)
    fractions = out["split"].value_counts(normalize=True)
    assert abs(fractions["train"] - 0.7) < 0.01
    assert abs(fractions["val"] - 0.15) < 0.01 and abs(fractions["test"] - 0.15) < 0.01
    strata = pd.Series(strata_keys(out))
    # Each stratum (group x labels) keeps the split fractions up to a few rows.
    for key, part in out.groupby(strata.to_numpy()):
        counts = Counter(part["split"])
        for split, frac in zip(("train", "val", "test"), (0.7, 0.15, 0.15), strict=True):
            assert abs(counts[split] - frac * len(part)) <= 3, (key, counts, len(part))


def test_assign_splits_is_deterministic() -> None:
    df = random_frame(300, seed=2)
    a = assign_splits(df, seed=11)["split"]
    b = assign_splits(df, seed=11)["split"]
    c = assign_splits(df, seed=12)["split"]
    assert a.tolist() == b.tolist()
    assert a.tolist() != c.tolist()
    assert df.index.equals(assign_splits(df, seed=11).index)


def test_assign_splits_small_strata_spread() -> None:
    # 20 rows, each its own stratum: naive per-stratum rounding would put all in train.
    df = pd.DataFrame(
        {
            "acne": [i % 2 for i in range(20)],
            "hyperpigmentation": [(i // 2) % 2 for i in range(20)],
            "wrinkles": [(i // 4) % 2 for i in range(20)],
            "fitzpatrick": [i % 6 + 1 for i in range(20)],
        }
    )
    counts = Counter(assign_splits(df, seed=0)["split"])
    assert counts == {"train": 14, "val": 3, "test": 3}


def test_assign_splits_zero_fraction_and_bad_fractions() -> None:
    df = random_frame(100, seed=4)
    out = assign_splits(df, seed=0, fractions=(0.8, 0.2, 0.0))
    assert set(out["split"]) == {"train", "val"}
    with pytest.raises(ValueError, match="fractions"):
        assign_splits(df, seed=0, fractions=(0.8, 0.3, 0.1))
    with pytest.raises(ValueError, match="fractions"):
        assign_splits(df, seed=0, fractions=(1.0, 0.0))


def test_assign_splits_uses_fitzpatrick_group_when_type_unknown() -> None:
    df = pd.DataFrame(
        {
            "acne": [1.0] * 4,
            "hyperpigmentation": [np.nan] * 4,
            "wrinkles": [np.nan] * 4,
            "fitzpatrick": [np.nan] * 4,
            "fitzpatrick_group": ["V-VI", "V-VI", "I-II", None],
        }
    )
    assert [k.split("|")[0] for k in strata_keys(df)] == ["V-VI", "V-VI", "I-II", "?"]


def test_assigned_splits_pass_validation(tmp_path: Path) -> None:
    df = random_frame(60, seed=6)
    root = tmp_path / "ds"
    for i in range(len(df)):
        write_image(root / "images" / f"{i}.jpg", seed=1000 + i, size=8)
    df["image"] = [f"images/{i}.jpg" for i in range(len(df))]
    df["source"] = "unit"
    out = assign_splits(df, seed=0)
    out["fitzpatrick"] = out["fitzpatrick"].astype("Int64")
    out.to_csv(root / "metadata.csv", index=False, quoting=csv.QUOTE_MINIMAL)
    assert validate_dataset(root) == []


def test_mask_file_checks(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    good = write_mask(root / "masks" / "good.png").read_bytes()
    (root / "masks" / "truncated.png").write_bytes(good[: len(good) - 20])
    corrupt = bytearray(good)
    corrupt[60] ^= 0xFF  # inside the image data chunk: its checksum no longer matches
    (root / "masks" / "corrupt.png").write_bytes(bytes(corrupt))
    write_image(root / "masks" / "photo.jpg", seed=9)
    write_mask(root / "masks" / "rgba.png", channels=4)
    names = ["good.png", "truncated.png", "corrupt.png", "photo.jpg", "rgba.png"]
    lines = ["image,acne,hyperpigmentation,wrinkles,fitzpatrick,split,source,mask"]
    for i, name in enumerate(names):
        write_image(root / "images" / f"{i}.jpg", seed=20 + i)
        lines.append(f"images/{i}.jpg,1,0,0,3,train,x,masks/{name}")
    (root / "metadata.csv").write_text("\n".join(lines) + "\n")
    problems = {p.row: p.message for p in validate_dataset(root)}
    assert sorted(problems) == [3, 4, 5, 6]
    assert "truncated PNG" in problems[3]
    assert "checksum" in problems[4]
    assert "must be a PNG" in problems[5]
    assert "got 4" in problems[6]


def test_lesion_count_is_a_whole_number_in_its_severity_band(
    good_dataset: Path, tmp_path: Path
) -> None:
    """`acne_lesion_count`: empty or a whole number >= 0 whose ACNE04 band is `acne_severity`;
    each bad cell is named by its line and column, and good counts load as integers."""
    root = tmp_path / "counted"
    shutil.copytree(good_dataset, root)
    raw = pd.read_csv(root / "metadata.csv", dtype=str, keep_default_na=False)
    band_of = {"0": "2", "1": "9", "2": "33", "3": "70", "": ""}
    raw["acne_lesion_count"] = [band_of[s] for s in raw["acne_severity"]]
    graded = raw.index[raw["acne_severity"] != ""]
    bad = {graded[0]: "-2", graded[1]: "3.5", graded[2]: "seven"}
    wrong_band = graded[3]
    bad[wrong_band] = "60" if raw.loc[wrong_band, "acne_severity"] != "3" else "4"
    for i, value in bad.items():
        raw.loc[i, "acne_lesion_count"] = value
    raw.to_csv(root / "metadata.csv", index=False)
    problems = validate_dataset(root)
    assert {(p.row, p.column) for p in problems} == {(i + 2, "acne_lesion_count") for i in bad}
    by_line = {p.row: p.message for p in problems}
    assert "whole number >= 0" in by_line[graded[0] + 2]
    assert "whole number >= 0" in by_line[graded[2] + 2]
    assert "but acne_severity is" in by_line[wrong_band + 2]

    raw.loc[list(bad), "acne_lesion_count"] = ""
    raw.to_csv(root / "metadata.csv", index=False)
    df = load_metadata(root)
    assert str(df["acne_lesion_count"].dtype) == "Int64"
    assert df["acne_lesion_count"].isna().sum() == (raw["acne_lesion_count"] == "").sum()
