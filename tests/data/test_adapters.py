"""Tests of data/adapters on fixture files written in each dataset's documented format.

The CSV/list fixtures are committed under fixtures/; the images they name are written here
(tiny noise JPEG/PNGs), leaving out or corrupting some on purpose: missing image, unreadable
image, duplicate content, unknown tone, unmapped label.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from data.adapters import acne04, ddi, fitzpatrick17k, folder, scin
from data.adapters.common import conditions_of, labels_from_names, severity_from_count
from data.canonical import load_metadata, validate_dataset
from tests.data.conftest import write_image

F17K_MD5 = {i: f"a{i:031d}" for i in range(1, 13)}


def run(
    main_fn: Callable[[list[str]], int], capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, dict]:
    """Run an adapter CLI in-process with --json; (exit code, summary or {})."""
    code = main_fn([*args, "--json"])
    out = capsys.readouterr().out
    return code, (json.loads(out) if code == 0 else {})


def labels(df: pd.DataFrame, key: str, column: str = "diagnosis") -> list[float]:
    row = df[df[column] == key].iloc[0]
    return [row["acne"], row["hyperpigmentation"], row["wrinkles"]]


def same(a: list[float], b: list[float]) -> bool:
    return all((math.isnan(x) and math.isnan(y)) or x == y for x, y in zip(a, b, strict=True))


def skipped_rows(summary: dict) -> dict[str, str]:
    return {s["row"]: s["reason"].split(":")[0] for s in summary["skipped"]}


# ---------------------------------------------------------------------------------------------
# Fitzpatrick17k


@pytest.fixture
def f17k_src(fixtures_dir: Callable[[str], Path]) -> Path:
    src = fixtures_dir("fitzpatrick17k")
    images = src / "images"
    for i in (1, 2, 3, 4, 5, 6, 9, 12):  # 7: missing image; 8: qc 'wrongly labelled'
        write_image(images / f"{F17K_MD5[i]}.jpg", seed=i)
    shutil.copy(images / f"{F17K_MD5[1]}.jpg", images / f"{F17K_MD5[10]}.jpg")  # duplicate
    (images / f"{F17K_MD5[11]}.jpg").write_bytes(b"not a jpeg")  # unreadable
    return src


def test_fitzpatrick17k(f17k_src: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    code, summary = run(fitzpatrick17k.main, capsys, "--src", str(f17k_src), "--out", str(out))
    assert code == 0
    assert (summary["rows_in"], summary["rows_out"]) == (12, 8)
    assert skipped_rows(summary) == {
        "fitzpatrick17k.csv:8": "missing image",
        "fitzpatrick17k.csv:9": "qc",
        "fitzpatrick17k.csv:11": "duplicate image",
        "fitzpatrick17k.csv:12": "unreadable image",
    }
    assert summary["warnings"] == {"unknown_tone": 1, "unmapped_label": 3}
    assert validate_dataset(out) == []
    df = load_metadata(out)
    nan = math.nan
    assert same(labels(df, "acne vulgaris"), [1, nan, nan])
    assert same(labels(df, "melasma"), [nan, 1, nan])
    assert same(labels(df, "post-inflammatory hyperpigmentation"), [nan, 1, nan])
    for unmapped in ("psoriasis", "lentigo maligna", "acne keloidalis nuchae"):
        assert same(labels(df, unmapped), [nan, nan, nan]), unmapped
    by_image = df.set_index("image")
    # fitzpatrick_scale -1 falls back to fitzpatrick_centaur; both -1 is unknown.
    assert by_image.loc[f"images/{F17K_MD5[4]}.jpg", "fitzpatrick"] == 4
    assert by_image.loc[f"images/{F17K_MD5[4]}.jpg", "fitzpatrick_source"] == "fitzpatrick_centaur"
    assert pd.isna(by_image.loc[f"images/{F17K_MD5[6]}.jpg", "fitzpatrick"])
    assert by_image.loc[f"images/{F17K_MD5[3]}.jpg", "fitzpatrick"] == 2
    assert set(df["source"]) == {"fitzpatrick17k"}
    assert not any((out / "images").glob(f"{F17K_MD5[7]}*"))


def test_fitzpatrick17k_assume_negative_and_link(f17k_src: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    code, _ = run(
        fitzpatrick17k.main,
        capsys,
        "--src",
        str(f17k_src),
        "--out",
        str(out),
        "--assume-negative",
        "--link",
    )
    assert code == 0
    df = load_metadata(out, check_images=True)
    nan = math.nan
    assert same(labels(df, "psoriasis"), [0, 0, nan])  # wrinkles never assumed
    assert same(labels(df, "melasma"), [0, 1, nan])
    image = out / df["image"].iloc[0]
    assert image.is_symlink() and image.resolve().parent == (f17k_src / "images").resolve()


def test_adapter_output_is_deterministic_and_not_overwritten(
    f17k_src: Path, tmp_path: Path, capsys
) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    assert run(fitzpatrick17k.main, capsys, "--src", str(f17k_src), "--out", str(a))[0] == 0
    assert run(fitzpatrick17k.main, capsys, "--src", str(f17k_src), "--out", str(b))[0] == 0
    assert (a / "metadata.csv").read_bytes() == (b / "metadata.csv").read_bytes()
    # An existing output folder is kept unless --force.
    assert fitzpatrick17k.main(["--src", str(f17k_src), "--out", str(a), "--seed", "3"]) == 2
    assert "--force" in capsys.readouterr().err
    assert (a / "metadata.csv").read_bytes() == (b / "metadata.csv").read_bytes()
    code, _ = run(
        fitzpatrick17k.main,
        capsys,
        "--src",
        str(f17k_src),
        "--out",
        str(a),
        "--seed",
        "3",
        "--force",
    )
    assert code == 0 and validate_dataset(a) == []
    assert not list(tmp_path.glob(".a.*"))  # no temporary folders left behind


def test_adapter_bad_source(tmp_path: Path, capsys) -> None:
    (tmp_path / "fitzpatrick17k.csv").write_text("md5hash,label\nabc,acne\n")
    assert fitzpatrick17k.main(["--src", str(tmp_path), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "fitzpatrick17k.csv" in err and "fitzpatrick_scale" in err and "Traceback" not in err
    assert fitzpatrick17k.main(["--src", str(tmp_path / "nope"), "--out", str(tmp_path)]) == 2
    assert ddi.main(["--src", str(tmp_path), "--out", str(tmp_path / "o")]) == 1
    assert "ddi_metadata.csv: file not found" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# DDI


def test_ddi(fixtures_dir: Callable[[str], Path], tmp_path: Path, capsys) -> None:
    src = fixtures_dir("ddi")
    for i in (1, 2, 3, 4, 6, 7, 8, 9):  # 5: missing image
        write_image(src / f"{i:06d}.png", seed=50 + i)
    out = tmp_path / "out"
    code, summary = run(ddi.main, capsys, "--src", str(src), "--out", str(out))
    assert code == 0
    assert (summary["rows_in"], summary["rows_out"]) == (9, 8)
    assert skipped_rows(summary) == {"ddi_metadata.csv:6": "missing image"}
    assert summary["warnings"]["unknown_tone"] == 2  # empty and 78
    df = load_metadata(out).set_index("image")
    assert df["fitzpatrick"].isna().all()  # DDI gives only the group
    assert df.loc["images/000001.png", "fitzpatrick_group"] == "I-II"
    assert df.loc["images/000003.png", "group"] == "III-IV"
    assert df.loc["images/000009.png", "group"] == "V-VI"
    assert pd.isna(df.loc["images/000004.png", "group"])
    assert pd.isna(df.loc["images/000008.png", "group"])
    assert df.loc["images/000001.png", "acne"] == 1  # 'acne-cystic'
    assert df.loc["images/000008.png", "hyperpigmentation"] == 1  # 'melasma'
    assert (
        df.loc[
            ["images/000002.png", "images/000007.png"], ["acne", "hyperpigmentation", "wrinkles"]
        ]
        .isna()
        .all()
        .all()
    )


# ---------------------------------------------------------------------------------------------
# SCIN


def test_scin(fixtures_dir: Callable[[str], Path], tmp_path: Path, capsys) -> None:
    src = fixtures_dir("scin")
    for name in ("1001", "1002", "2001", "3001", "3002", "3003", "4001", "6001", "7001", "8001"):
        write_image(src / "dataset" / "images" / f"{name}.png", seed=int(name))  # 6002 missing
    out = tmp_path / "out"
    code, summary = run(scin.main, capsys, "--src", str(src), "--out", str(out))
    assert code == 0
    assert (summary["rows_in"], summary["rows_out"]) == (12, 10)
    assert skipped_rows(summary) == {
        "scin_cases.csv:6": "missing image",
        "scin_cases.csv:7:image_2_path": "missing image",
    }
    assert summary["warnings"]["malformed_weighted_label"] == 1
    assert summary["warnings"]["case_without_labels"] == 1
    assert summary["warnings"]["unknown_tone"] == 3  # the three images of c003
    df = load_metadata(out)
    assert df.groupby("subject_id")["split"].nunique().max() == 1
    case = df.groupby("subject_id").first()
    assert df["subject_id"].value_counts()["c003"] == 3
    # Tone: self-report first (c001 FST2 although dermatologists said FST3), else the
    # dermatologists' lower median (c002: FST4, FST5, FST4 -> 4), else unknown (c003).
    assert case.loc["c001", "fitzpatrick"] == 2 and case.loc["c001", "fitzpatrick_source"] == (
        "self_reported"
    )
    assert case.loc["c002", "fitzpatrick"] == 4 and case.loc["c002", "fitzpatrick_source"] == (
        "dermatologist"
    )
    assert pd.isna(case.loc["c003", "fitzpatrick"])
    assert case.loc["c002", "monk_skin_tone"] == "7"
    nan = math.nan
    got = {
        c: [case.loc[c, k] for k in ("acne", "hyperpigmentation", "wrinkles")] for c in case.index
    }
    assert same(got["c001"], [1, nan, nan])  # Acne 0.67
    assert same(got["c002"], [nan, 1, nan])  # Melasma 0.34 + PIH 0.33
    assert same(got["c003"], [nan, nan, nan])  # Eczema only
    assert same(got["c004"], [1, nan, nan])  # no label row, self-reported ACNE category
    assert same(got["c006"], [1, nan, nan])  # malformed label, self-reported ACNE
    assert same(got["c007"], [nan, 1, nan])  # Solar Lentigo 0.5
    assert same(got["c008"], [nan, 1, nan])  # Acne 0.25 is uncertain, Melasma 0.75
    assert case.loc["c004", "label_source"] == "self_reported_category"


def test_scin_parsers() -> None:
    assert scin.parse_fst("FST5") == 5
    assert scin.parse_fst("NONE_SELECTED") is None and scin.parse_fst("") is None
    assert scin.parse_weighted_label("{'Acne': 0.5, 'Eczema': 0.5}") == {"Acne": 0.5, "Eczema": 0.5}
    assert scin.parse_weighted_label("{'Acne': 0.5") is None
    assert scin.parse_weighted_label("__import__('os')") is None
    assert scin.fitzpatrick_of(
        {
            "fitzpatrick_skin_type": "NONE_SELECTED",
            "dermatologist_fitzpatrick_skin_type_label_1": "FST6",
            "dermatologist_fitzpatrick_skin_type_label_2": "FST2",
        }
    ) == (2, "dermatologist")


# ---------------------------------------------------------------------------------------------
# ACNE04

ACNE04_IMAGES = (
    "levle0_1",
    "levle0_2",
    "levle1_1",
    "levle1_2",
    "levle2_1",
    "levle2_2",
    "levle3_1",
    "levle3_2",
    "levle0_3",
    "levle1_3",
    "levle0_4",
    "levle1_4",
    "levle3_3",
    "levle2_4",
    "levle2_3",
)  # levle1_9 is missing


@pytest.fixture
def acne04_src(fixtures_dir: Callable[[str], Path]) -> Path:
    src = fixtures_dir("acne04")
    for i, name in enumerate(ACNE04_IMAGES):
        write_image(src / "JPEGImages" / f"{name}.jpg", seed=200 + i)
    return src


def test_acne04(acne04_src: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    code, summary = run(acne04.main, capsys, "--src", str(acne04_src), "--out", str(out))
    assert code == 0
    assert (summary["rows_in"], summary["rows_out"]) == (17, 14)
    assert skipped_rows(summary) == {
        "NNEW_trainval_0.txt:12": "malformed line",
        "NNEW_trainval_0.txt:11": "missing image",
        "NNEW_test_0.txt:6": "duplicate image",
    }
    assert summary["warnings"] == {"grade_differs_from_count": 1}  # levle1_3: grade 2, 12 lesions
    df = load_metadata(out).set_index("image")
    test_list = {"levle0_4", "levle1_4", "levle3_3", "levle2_4"}
    for image, split in df["split"].items():
        assert (split == "test") == (Path(image).stem in test_list), image
    assert set(df["split"]) == {"train", "val", "test"}
    assert (df["acne"] == 1).all()
    assert df["hyperpigmentation"].isna().all() and df["wrinkles"].isna().all()
    assert df["fitzpatrick"].isna().all()
    severity = df["acne_severity"].astype(int).to_dict()
    expected = {
        "levle0_2": 0,
        "levle1_1": 1,
        "levle1_2": 1,
        "levle2_1": 2,
        "levle2_2": 2,
        "levle3_1": 3,
        "levle1_3": 1,
        "levle3_3": 3,
    }
    assert {k: severity[f"images/{k}.jpg"] for k in expected} == expected
    # the list's lesion count is kept (levle1_3: 12 lesions, grade 1 by the count)
    assert df.loc["images/levle1_3.jpg", "acne_lesion_count"] == 12
    assert df["acne_lesion_count"].notna().all()


def test_acne04_other_fold(acne04_src: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    code, summary = run(
        acne04.main, capsys, "--src", str(acne04_src), "--out", str(out), "--fold", "1"
    )
    assert code == 0 and summary["rows_out"] == 6
    df = load_metadata(out)
    assert sorted(df.loc[df["split"] == "test", "image"]) == [
        "images/levle0_1.jpg",
        "images/levle1_1.jpg",
    ]
    assert acne04.main(["--src", str(acne04_src), "--out", str(tmp_path / "o"), "--fold", "2"]) == 1
    assert "NNEW_trainval_2.txt: file not found" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# Generic folder

FOLDER_FLAGS = (
    "--image-col",
    "file",
    "--acne-col",
    "has_acne",
    "--hyperpigmentation-col",
    "pigment",
    "--wrinkles-col",
    "lines",
    "--severity-col",
    "grade",
    "--fitzpatrick-col",
    "fst",
    "--subject-col",
    "patient",
    "--split-col",
    "set",
)


def test_folder(fixtures_dir: Callable[[str], Path], tmp_path: Path, capsys) -> None:
    src = fixtures_dir("folder")
    for i, name in enumerate(("p1_a", "p1_b", "p2_a", "p3_a", "p4_a", "p6_a", "p8_a", "p9_a")):
        write_image(src / "faces" / f"{name}.jpg", seed=300 + i)
    out = tmp_path / "out"
    code, summary = run(
        folder.main,
        capsys,
        "--src",
        str(src),
        "--out",
        str(out),
        "--source-name",
        "clinic",
        *FOLDER_FLAGS,
    )
    assert code == 0
    assert (summary["rows_in"], summary["rows_out"]) == (10, 8)
    assert skipped_rows(summary) == {
        "labels.csv:7": "missing image",
        "labels.csv:9": "bad image path",
    }
    assert summary["warnings"]["unreadable_fitzpatrick"] == 1  # 'seven'
    assert summary["warnings"]["unreadable_hyperpigmentation"] == 1  # 'maybe'
    df = load_metadata(out).set_index("subject_id")
    assert set(df["source"]) == {"clinic"}
    nan = math.nan
    row = {
        s: [df.loc[s, c] for c in ("acne", "hyperpigmentation", "wrinkles")]
        for s in ("p2", "p3", "p4", "p6", "p8", "p9")
    }
    assert same(row["p2"], [0, 1, 1]) and same(row["p3"], [1, 0, 0])
    assert same(row["p4"], [0, nan, 1]) and same(row["p6"], [nan, nan, nan])
    assert same(row["p8"], [0, 0, 0]) and same(row["p9"], [1, 0, 0])
    fitz = df["fitzpatrick"].to_dict()
    assert fitz["p2"] == 5 and fitz["p3"] == 2 and fitz["p8"] == 6 and pd.isna(fitz["p4"])
    assert df.loc["p3", "split"] == "val" and df.loc["p8", "split"] == "test"  # given splits kept
    assert (out / "images" / "faces" / "p1_a.jpg").is_file()


def test_folder_subject_without_split_follows_its_subject(tmp_path: Path, capsys) -> None:
    src = tmp_path / "src"
    for i in range(6):
        write_image(src / f"{i}.jpg", seed=400 + i)
    (src / "labels.csv").write_text(
        "image,acne,subject_id,split\n0.jpg,1,a,test\n1.jpg,1,a,\n2.jpg,0,b,\n3.jpg,0,c,\n"
        "4.jpg,1,d,\n5.jpg,0,e,\n"
    )
    code, _ = run(folder.main, capsys, "--src", str(src), "--out", str(tmp_path / "out"))
    assert code == 0
    df = load_metadata(tmp_path / "out").set_index("image")
    assert df.loc["images/1.jpg", "split"] == "test"
    (src / "labels.csv").write_text(
        "image,acne,subject_id,split\n0.jpg,1,a,test\n1.jpg,1,a,train\n"
    )
    assert folder.main(["--src", str(src), "--out", str(tmp_path / "o2")]) == 1
    assert "subject 'a'" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# Label mapping and grading


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("acne vulgaris", {"acne"}),
        ("Acne-Cystic", {"acne"}),
        ("acne_conglobata", {"acne"}),
        ("acne keloidalis nuchae", set()),
        ("acne rosacea", set()),
        ("rosacea", set()),
        ("melasma", {"hyperpigmentation"}),
        ("Post-inflammatory hyperpigmentation", {"hyperpigmentation"}),
        ("solar lentigo", {"hyperpigmentation"}),
        ("lentigo maligna", set()),
        ("Café-au-lait macule", {"hyperpigmentation"}),
        ("solar elastosis", {"wrinkles"}),
        ("psoriasis", set()),
        ("melanoma", set()),
    ],
)
def test_conditions_of(name: str, expected: set[str]) -> None:
    assert conditions_of(name) == expected


def test_labels_from_names_unknown_is_not_zero() -> None:
    values, mapped = labels_from_names(["psoriasis"])
    assert not mapped and all(math.isnan(v) for v in values.values())
    values, mapped = labels_from_names(["psoriasis"], assume_negative=True)
    assert values["acne"] == 0 and values["hyperpigmentation"] == 0
    assert math.isnan(values["wrinkles"])


@pytest.mark.parametrize(
    ("count", "grade"), [(0, 0), (5, 0), (6, 1), (20, 1), (21, 2), (50, 2), (51, 3), (300, 3)]
)
def test_severity_from_count(count: int, grade: int) -> None:
    assert severity_from_count(count) == grade
