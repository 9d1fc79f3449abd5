"""Tests of data/adapters/yolo.py on small YOLO exports written here (Roboflow YOLOv8 layout).

The images are tiny smooth JPEGs (random 8x8 colours upsampled) so that distinct images have
distinct perceptual hashes; they contain no face, so their tone is empty. One test uses a
real photo (scikit-image's astronaut) to check that a face gets an estimated group.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from core.schema import GROUPS
from data.adapters import yolo
from data.canonical import MSG_ESTIMATED_WITH_TYPE, load_metadata, validate_dataset
from data.validate import main as validate_main

NAMES = ["acne", "mole1", "mole2", "pimple", "scar", "spot"]
ACNE, MOLE1, MOLE2, PIMPLE, SCAR, SPOT = range(6)
WIDTH, HEIGHT = 64, 48  # not square: a swapped width/height shows in the masks


def smooth_image(seed: int) -> np.ndarray:
    """A smooth random BGR image (8x8 colours upsampled): distinct seeds give pHashes ~32 bits
    apart (>= 20 over seeds 1-39), a re-encoded copy <= 2 bits."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    return cv2.resize(small, (WIDTH, HEIGHT), interpolation=cv2.INTER_CUBIC)


def write_jpeg(path: Path, image: np.ndarray, quality: int = 95) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    path.write_bytes(buf.tobytes())


def box(class_id: int, cx: float, cy: float, w: float, h: float) -> str:
    return f"{class_id} {cx} {cy} {w} {h}"


def spread_boxes(class_id: int, n: int) -> list[str]:
    """`n` small boxes of one class, in a grid."""
    return [
        box(class_id, 0.05 + 0.1 * (i % 10), 0.05 + 0.1 * (i // 10), 0.04, 0.04) for i in range(n)
    ]


# A1 holds an acne box, a spot box and a mole box at known pixels (64 x 48 image):
# acne x 12..19, y 18..29; spot x 40..55, y 0..23; mole x 29..34, y 38..43.
A1_BOXES = [
    box(ACNE, 0.25, 0.5, 0.125, 0.25),
    box(SPOT, 0.75, 0.25, 0.25, 0.5),
    box(MOLE1, 0.5, 0.85, 0.1, 0.1),
]
# split folder -> [(file name, image seed, label lines or None = no label file)]
EXPORT = {
    "train": [
        ("a1_jpg.rf.111.jpg", 1, A1_BOXES),
        ("a2_jpg.rf.222.jpg", 2, [box(MOLE2, 0.3, 0.3, 0.2, 0.2), box(SCAR, 0.6, 0.6, 0.2, 0.2)]),
        ("a3_jpg.rf.333.jpg", 3, []),  # empty label file: no lesion
        ("a4_jpg.rf.444.jpg", 4, None),  # no label file: no lesion, counted
        ("sev_jpg.rf.555.jpg", 5, spread_boxes(PIMPLE, 7)),  # 7 lesions -> grade 1
        ("shared_jpg.rf.aaa.jpg", 6, [box(ACNE, 0.5, 0.5, 0.1, 0.1)]),
    ],
    "valid": [
        ("shared_jpg.rf.bbb.jpg", 7, []),  # same photo as a train file: dropped
        ("v1_jpg.rf.666.jpg", -1, A1_BOXES),  # A1 re-encoded and brighter: near-duplicate
        ("v2_jpg.rf.777.jpg", 8, spread_boxes(ACNE, 3) + spread_boxes(PIMPLE, 2)),  # 5 -> 0
    ],
    "test": [
        ("t1_jpg.rf.888.jpg", 9, spread_boxes(ACNE, 25)),  # grade 2
        ("t2_jpg.rf.999.jpg", 10, spread_boxes(ACNE, 30) + spread_boxes(PIMPLE, 21)),  # 51 -> 3
    ],
}


def write_export(
    root: Path, export: dict = EXPORT, names: object = NAMES, *, ultralytics: bool = False
) -> Path:
    """A YOLO export at `root`: data.yaml, <split>/images/*.jpg, <split>/labels/*.txt.

    `ultralytics`: images/<split>/ and labels/<split>/ instead.
    """
    root.mkdir(parents=True, exist_ok=True)
    (root / "data.yaml").write_text(
        f"train: ../train/images\nval: ../valid/images\nnc: {len(NAMES)}\nnames: {names!r}\n"
        "roboflow:\n  workspace: someone\n  project: faces\n  version: 3\n"
        "  license: CC BY 4.0\n  url: https://example.invalid/faces/3\n"
    )
    for split, files in export.items():
        images, labels = (
            (root / "images" / split, root / "labels" / split)
            if ultralytics
            else (root / split / "images", root / split / "labels")
        )
        for name, seed, lines in files:
            if seed == -1:  # near-duplicate of a1: brighter and re-encoded at another quality
                image = np.clip(smooth_image(1).astype(int) + 4, 0, 255).astype(np.uint8)
                write_jpeg(images / name, image, quality=80)
            else:
                write_jpeg(images / name, smooth_image(seed))
            if lines is not None:
                label = labels / Path(name).with_suffix(".txt")
                label.parent.mkdir(parents=True, exist_ok=True)
                label.write_text("".join(f"{line}\n" for line in lines))
    return root


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict, str]:
    """The CLI in-process with --json: (exit code, summary or {}, stderr)."""
    code = yolo.main([*args, "--json"])
    captured = capsys.readouterr()
    return code, (json.loads(captured.out) if code == 0 else {}), captured.err


@pytest.fixture(scope="module")
def default_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict, pd.DataFrame]:
    """(export, output, summary, metadata by file name) of one default conversion."""
    root = tmp_path_factory.mktemp("yolo")
    src = write_export(root / "faces-v3")
    out = root / "out"
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = yolo.main(["--src", str(src), "--out", str(out), "--json"])
    assert code == 0
    df = load_metadata(out, check_images=True)
    df.index = [Path(p).name for p in df["image"]]
    return src, out, json.loads(buffer.getvalue()), df


def nan_equal(a: list[float], b: list[float]) -> bool:
    return all((math.isnan(x) and math.isnan(y)) or x == y for x, y in zip(a, b, strict=True))


def conditions(df: pd.DataFrame, name: str) -> list[float]:
    return [float(df.loc[name, c]) for c in ("acne", "hyperpigmentation", "wrinkles")]


def read_mask_rgb(path: Path) -> np.ndarray:
    """The mask as data.tfds_builder._load_mask reads it (BGR decode, flipped to RGB)."""
    mask = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert mask is not None, path
    return cv2.cvtColor(mask, cv2.COLOR_BGR2RGB)


# ---------------------------------------------------------------------------------------------
# Default conversion: labels, boxes, masks, severity, subjects, near-duplicates, summary.


def test_default_mapping_labels(default_run) -> None:
    _, _, summary, df = default_run
    nan = math.nan
    assert nan_equal(conditions(df, "a1_jpg.rf.111.jpg"), [1, 1, nan])  # acne + spot
    assert nan_equal(conditions(df, "a2_jpg.rf.222.jpg"), [0, 0, nan])  # mole2 + scar only
    assert nan_equal(conditions(df, "a3_jpg.rf.333.jpg"), [0, 0, nan])  # empty label file
    assert nan_equal(conditions(df, "a4_jpg.rf.444.jpg"), [0, 0, nan])  # no label file
    assert nan_equal(conditions(df, "sev_jpg.rf.555.jpg"), [1, 0, nan])  # pimple is acne
    assert df["wrinkles"].isna().all()  # no --map covers wrinkles: unknown, never 0
    assert summary["mapping"] == {"acne": ["acne", "pimple"], "hyperpigmentation": ["spot"]}
    assert set(df["source"]) == {"faces-v3"}
    assert df.loc["a4_jpg.rf.444.jpg", "label_missing"] == "1"
    assert df.loc["a3_jpg.rf.333.jpg", "label_missing"] == "0"


def test_boxes_and_counts_keep_every_class(default_run) -> None:
    _, _, _, df = default_run
    a1 = json.loads(df.loc["a1_jpg.rf.111.jpg", "boxes"])
    assert a1 == [
        ["acne", 0.25, 0.5, 0.125, 0.25],
        ["spot", 0.75, 0.25, 0.25, 0.5],
        ["mole1", 0.5, 0.85, 0.1, 0.1],
    ]
    a2 = json.loads(df.loc["a2_jpg.rf.222.jpg", "boxes"])
    assert [b[0] for b in a2] == ["mole2", "scar"]
    assert json.loads(df.loc["a2_jpg.rf.222.jpg", "lesion_counts"]) == {"mole2": 1, "scar": 1}
    assert json.loads(df.loc["a1_jpg.rf.111.jpg", "lesion_counts"]) == {
        "acne": 1,
        "mole1": 1,
        "spot": 1,
    }
    assert df.loc["a3_jpg.rf.333.jpg", "boxes"] == "[]"


def test_masks_filled_at_the_box_pixels_per_channel(default_run) -> None:
    _, out, _, df = default_run
    mask = read_mask_rgb(out / df.loc["a1_jpg.rf.111.jpg", "mask"])
    assert mask.shape == (HEIGHT, WIDTH, 3)
    expected = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    expected[18:30, 12:20, 0] = 255  # acne -> channel 0 (R)
    expected[0:24, 40:56, 1] = 255  # spot -> channel 1 (G); the mole is in no channel
    np.testing.assert_array_equal(mask, expected)
    # No box of a mapped class: an all-zero mask is still written (ground truth "no lesion").
    for name in ("a2_jpg.rf.222.jpg", "a3_jpg.rf.333.jpg", "a4_jpg.rf.444.jpg"):
        empty = read_mask_rgb(out / df.loc[name, "mask"])
        assert empty.shape == (HEIGHT, WIDTH, 3) and not empty.any(), name


def test_severity_from_acne_and_pimple_counts(default_run) -> None:
    _, _, _, df = default_run
    expected = {  # name: (acne + pimple boxes, grade)
        "a3_jpg.rf.333.jpg": (0, 0),
        "v2_jpg.rf.777.jpg": (5, 0),
        "sev_jpg.rf.555.jpg": (7, 1),
        "t1_jpg.rf.888.jpg": (25, 2),
        "t2_jpg.rf.999.jpg": (51, 3),
    }
    got = {
        n: (int(df.loc[n, "acne_lesion_count"]), int(df.loc[n, "acne_severity"])) for n in expected
    }
    assert got == expected


def test_splits_subjects_and_near_duplicates(default_run) -> None:
    _, _, summary, df = default_run
    assert df.loc["a1_jpg.rf.111.jpg", "split"] == "train"
    assert df.loc["v2_jpg.rf.777.jpg", "split"] == "val"
    assert df.loc["t1_jpg.rf.888.jpg", "split"] == "test"
    assert df.loc["a1_jpg.rf.111.jpg", "subject_id"] == "a1_jpg"
    assert df.loc["shared_jpg.rf.aaa.jpg", "subject_id"] == "shared_jpg"
    assert "shared_jpg.rf.bbb.jpg" not in df.index and "v1_jpg.rf.666.jpg" not in df.index
    skipped = {s["row"]: s["reason"] for s in summary["skipped"]}
    assert set(skipped) == {"valid/images/shared_jpg.rf.bbb.jpg", "valid/images/v1_jpg.rf.666.jpg"}
    assert skipped["valid/images/shared_jpg.rf.bbb.jpg"].startswith("subject in another split:")
    assert "train/images/shared_jpg.rf.aaa.jpg" in skipped["valid/images/shared_jpg.rf.bbb.jpg"]
    near = skipped["valid/images/v1_jpg.rf.666.jpg"]
    assert near.startswith("near-duplicate:") and "train/images/a1_jpg.rf.111.jpg" in near
    nd = summary["near_duplicates"]
    assert nd["threshold_bits"] == yolo.NEAR_DUPLICATE_BITS
    assert [p[:2] for p in nd["cross_split_pairs"]] == [
        ["train/images/a1_jpg.rf.111.jpg", "valid/images/v1_jpg.rf.666.jpg"]
    ]
    assert sum(nd["cross_split_pairs_by_distance"].values()) >= 1
    assert summary["skipped_by_reason"] == {"near-duplicate": 1, "subject in another split": 1}


def test_summary_counts(default_run) -> None:
    _, _, summary, _ = default_run
    assert (summary["rows_in"], summary["rows_out"]) == (11, 9)
    assert summary["missing_label_files"] == 1
    assert summary["missing_label_file_list"] == ["train/images/a4_jpg.rf.444.jpg"]
    splits = summary["splits"]
    assert splits["train"]["images"] == 6 and splits["train"]["rows"] == 6
    assert splits["train"]["no_box"] == 2 and splits["train"]["label_missing"] == 1
    assert splits["val"]["images"] == 3 and splits["val"]["rows"] == 1
    assert splits["val"]["dropped_subject"] == 1 and splits["val"]["dropped_near_duplicate"] == 1
    assert splits["test"]["rows"] == 2 and splits["test"]["acne+"] == 2
    tone = summary["tone"]["by_split"]["train"]
    assert tone["faces_found"] == 0 and tone["no estimate"] == 6  # noise images: no face
    assert summary["attribution"] == (
        "faces v3 by someone on Roboflow Universe, https://example.invalid/faces/3, "
        "licence CC BY 4.0"
    )


def test_tone_columns_and_canonical_validity(default_run) -> None:
    _, out, _, df = default_run
    assert validate_dataset(out) == []
    assert (df["tone_source"] == "estimated").all()
    assert df["fitzpatrick"].isna().all() and df["fitzpatrick_group"].isna().all()
    assert (df["face_found"] == "0").all() and df["ita"].isna().all()
    assert (df["tone_reason"] == yolo.NO_FACE).all()
    info = json.loads((out / "dataset.json").read_text())
    assert info["roboflow"]["license"] == "CC BY 4.0" and info["classes"] == NAMES


def test_datacard_and_dataset_json_say_real_photos_and_credit(default_run) -> None:
    from fairness.io import read_dataset_info
    from fairness.model_card import find_datacards, read_datacard

    _, out, _, _ = default_run
    card = read_datacard(out / "datacard.json")  # the report's own reader accepts it
    assert {k: v for k, v in card.items() if k != "file"} == {
        "name": "faces v3",
        "licence": "CC BY 4.0",
        "url": "https://example.invalid/faces/3",
        "attribution": "faces v3 by someone on Roboflow Universe, "
        "https://example.invalid/faces/3, licence CC BY 4.0",
        "tone_source": "estimated",
    }
    info = json.loads((out / "dataset.json").read_text())
    assert info["synthetic"] is False and info["name"] == "faces v3"
    run = out.parent / "run"
    run.mkdir(exist_ok=True)
    (run / "config.json").write_text(json.dumps({"data": {"data_dir": str(out)}}))
    assert read_dataset_info(run)["kind"] == "real"
    assert [c["name"] for c in find_datacards(run)] == ["faces v3"]


def test_datacard_without_roboflow_block_or_tone(tmp_path: Path, capsys) -> None:
    src = write_export(tmp_path / "my-faces", export={"train": EXPORT["train"][:1]})
    (src / "data.yaml").write_text(f"nc: {len(NAMES)}\nnames: {NAMES!r}\n")
    out = tmp_path / "out"
    code, _, err = run(capsys, "--src", str(src), "--out", str(out), "--no-tone")
    assert code == 0, err
    assert json.loads((out / "datacard.json").read_text()) == {"name": "my-faces"}
    assert json.loads((out / "dataset.json").read_text())["synthetic"] is False


def test_validate_labels_the_tables_estimated_tone(default_run, capsys) -> None:
    _, out, _, _ = default_run
    assert validate_main([str(out)]) == 0
    text = capsys.readouterr().out
    assert "estimated tone" in text and "FST1" not in text and "est V-VI" in text
    assert validate_main([str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["estimated_tone_rows"] == 9 and "coverage" not in report
    assert report["coverage_estimated_tone"]["images"]["no estimate"] == 9


def test_output_is_deterministic(default_run, tmp_path: Path, capsys) -> None:
    src, out, _, df = default_run
    again = tmp_path / "again"
    assert run(capsys, "--src", str(src), "--out", str(again))[0] == 0
    assert (again / "metadata.csv").read_bytes() == (out / "metadata.csv").read_bytes()
    for mask in df["mask"]:
        assert (again / mask).read_bytes() == (out / mask).read_bytes()


# ---------------------------------------------------------------------------------------------
# --map


def test_custom_map_and_names_as_dict(tmp_path: Path, capsys) -> None:
    src = write_export(tmp_path / "src", names=dict(enumerate(NAMES)))
    out = tmp_path / "out"
    code, summary, err = run(
        capsys, "--src", str(src), "--out", str(out), "--map", "wrinkles=scar",
        "--map", "acne=pimple", "--no-tone",
    )  # fmt: skip
    assert code == 0, err
    df = load_metadata(out)
    df.index = [Path(p).name for p in df["image"]]
    nan = math.nan
    assert nan_equal(conditions(df, "a1_jpg.rf.111.jpg"), [0, nan, 0])  # acne class not mapped
    assert nan_equal(conditions(df, "a2_jpg.rf.222.jpg"), [0, nan, 1])  # scar -> wrinkles
    assert nan_equal(conditions(df, "sev_jpg.rf.555.jpg"), [1, nan, 0])
    assert df.loc["t2_jpg.rf.999.jpg", "acne_lesion_count"] == 21  # pimples only
    mask = read_mask_rgb(out / df.loc["a2_jpg.rf.222.jpg", "mask"])
    assert mask[..., 2].any() and not mask[..., :2].any()  # scar box in channel 2 (B)
    assert summary["mapping"] == {"acne": ["pimple"], "wrinkles": ["scar"]}
    assert "tone_source" not in df and summary["tone"] == {}  # --no-tone


def test_parse_map() -> None:
    assert yolo.parse_map(None) == yolo.DEFAULT_MAP
    assert yolo.parse_map(["acne=acne, pimple", "hyperpigmentation=spot"]) == {
        "acne": ("acne", "pimple"),
        "hyperpigmentation": ("spot",),
    }
    for bad, words in (
        ("acne", "COND=CLASS"),
        ("acne=", "COND=CLASS"),
        ("rosacea=acne", "unknown condition 'rosacea'"),
    ):
        with pytest.raises(ValueError, match=words):
            yolo.parse_map([bad])
    with pytest.raises(ValueError, match="given twice"):
        yolo.parse_map(["acne=acne", "acne=pimple"])


def test_map_errors_are_usage_errors(tmp_path: Path, capsys) -> None:
    src = write_export(tmp_path / "src", export={"train": EXPORT["train"][:1]})
    out = tmp_path / "out"
    code, _, err = run(capsys, "--src", str(src), "--out", str(out), "--map", "acne=acne,zit")
    assert code == 2
    assert "unknown class name(s) 'zit'" in err and "acne, mole1, mole2, pimple" in err
    assert not out.exists()
    with pytest.raises(SystemExit) as exc:
        yolo.main(["--src", str(src), "--out", str(out), "--map", "eczema=acne"])
    assert exc.value.code == 2 and "unknown condition 'eczema'" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# Bad input: file:line, exit 1, nothing written.


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("0 0.5 0.5 0.1", "expected 5 fields 'class cx cy w h', got 4"),
        ("0 0.5 0.5 0.1 0.1 0.2", "expected 5 fields 'class cx cy w h', got 6"),
        ("0 0.5 abc 0.1 0.1", "cy must be a number, got 'abc'"),
        ("zero 0.5 0.5 0.1 0.1", "class id must be an integer, got 'zero'"),
        ("6 0.5 0.5 0.1 0.1", "class id 6 out of range: data.yaml has 6 classes (0-5)"),
        ("-1 0.5 0.5 0.1 0.1", "class id -1 out of range"),
        ("0 1.2 0.5 0.1 0.1", "cx = 1.2 is outside 0..1"),
        ("0 0.5 0.5 0.1 -0.1", "h = -0.1 is outside 0..1"),
        ("0 0.98 0.5 0.1 0.1", "box extends past the image (x from 0.93 to 1.03)"),
        ("0 0.5 0.5 0 0.1", "box has zero width"),
    ],
)
def test_bad_label_line(tmp_path: Path, capsys, line: str, message: str) -> None:
    src = write_export(tmp_path / "src", export={"train": EXPORT["train"][:2]})
    label = src / "train" / "labels" / "a2_jpg.rf.222.txt"
    label.write_text(f"{box(ACNE, 0.5, 0.5, 0.1, 0.1)}\n{line}\n")
    out = tmp_path / "out"
    code, _, err = run(capsys, "--src", str(src), "--out", str(out))
    assert code == 1
    assert f"{label}:2: {message}" in err and "Traceback" not in err
    assert not out.exists() and not list(tmp_path.glob(".out*"))


def test_missing_or_bad_data_yaml(tmp_path: Path, capsys) -> None:
    src = write_export(tmp_path / "src", export={"train": EXPORT["train"][:1]})
    out = tmp_path / "out"
    (src / "data.yaml").write_text("nc: 6\n")
    code, _, err = run(capsys, "--src", str(src), "--out", str(out))
    assert code == 1 and f"{src / 'data.yaml'}: {yolo.MSG_NO_NAMES}" in err
    (src / "data.yaml").unlink()
    code, _, err = run(capsys, "--src", str(src), "--out", str(out))
    assert code == 1 and f"{src / 'data.yaml'}: file not found" in err
    assert not out.exists()


def test_unreadable_image_is_skipped(tmp_path: Path, capsys) -> None:
    src = write_export(tmp_path / "src", export={"train": EXPORT["train"][:3]})
    (src / "train" / "images" / "a2_jpg.rf.222.jpg").write_bytes(b"not a jpeg")
    code, summary, err = run(capsys, "--src", str(src), "--out", str(tmp_path / "out"), "--no-tone")
    assert code == 0, err
    assert summary["rows_out"] == 2
    assert summary["skipped_by_reason"] == {"unreadable image": 1}


# ---------------------------------------------------------------------------------------------
# Skin tone on a real face.


def test_tone_is_estimated_on_a_real_face(tmp_path: Path, capsys) -> None:
    from skimage import data as skdata

    src = tmp_path / "src"
    write_export(src, export={"train": [("noise_jpg.rf.1.jpg", 1, [])]})
    astronaut = cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2BGR)
    write_jpeg(src / "train" / "images" / "astronaut_jpg.rf.2.jpg", astronaut)
    out = tmp_path / "out"
    code, summary, err = run(capsys, "--src", str(src), "--out", str(out))
    assert code == 0, err
    df = load_metadata(out)
    df.index = [Path(p).name for p in df["image"]]
    face = df.loc["astronaut_jpg.rf.2.jpg"]
    assert face["tone_source"] == "estimated" and face["face_found"] == "1"
    assert face["fitzpatrick_group"] in GROUPS and face["group"] == face["fitzpatrick_group"]
    assert pd.isna(face["fitzpatrick"])  # an estimate is never a Fitzpatrick type
    assert -90 <= float(face["ita"]) <= 90 and 0 < float(face["tone_confidence"]) <= 1
    assert pd.isna(face["tone_reason"])
    assert df.loc["noise_jpg.rf.1.jpg", "face_found"] == "0"
    train = summary["tone"]["by_split"]["train"]
    assert train["faces_found"] == 1 and train[f"est {face['fitzpatrick_group']}"] == 1


# ---------------------------------------------------------------------------------------------
# The canonical format's tone_source column.


def test_tone_source_is_validated(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    root.mkdir()
    (root / "metadata.csv").write_text(
        "image,acne,hyperpigmentation,wrinkles,fitzpatrick,fitzpatrick_group,tone_source,split,"
        "source\n"
        "a.jpg,1,,,,III-IV,estimated,train,x\n"
        "b.jpg,1,,,3,III-IV,labelled,train,x\n"
        "c.jpg,1,,,,,,train,x\n"
        "d.jpg,1,,,,I-II,guessed,train,x\n"
        "e.jpg,1,,,4,III-IV,estimated,train,x\n"
    )
    problems = validate_dataset(root, check_images=False)
    assert [(p.row, p.column) for p in problems] == [(5, "tone_source"), (6, "tone_source")]
    assert "must be one of estimated, labelled or empty, got 'guessed'" in problems[0].message
    assert problems[1].message == MSG_ESTIMATED_WITH_TYPE


# ---------------------------------------------------------------------------------------------
# Pure functions: perceptual hash, box pixels, label paths, subjects.


def test_phash() -> None:
    # A constant image has only the DC coefficient non-zero: the median of the 8x8 block is 0,
    # so only bit 63 (the DC, most significant) is set.
    assert yolo.phash(np.full((20, 30), 100, np.uint8)) == 1 << 63
    image = cv2.cvtColor(smooth_image(1), cv2.COLOR_BGR2GRAY)
    h = yolo.phash(image)
    assert 0 <= h < 1 << 64 and h.bit_count() == 32  # median split: half the bits set
    ok, buf = cv2.imencode(".jpg", cv2.resize(image, (50, 37)), [cv2.IMWRITE_JPEG_QUALITY, 60])
    assert ok
    changed = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)
    assert yolo.hamming(h, yolo.phash(changed)) <= yolo.NEAR_DUPLICATE_BITS
    other = yolo.phash(cv2.cvtColor(smooth_image(2), cv2.COLOR_BGR2GRAY))
    assert yolo.hamming(h, other) > 3 * yolo.NEAR_DUPLICATE_BITS
    assert yolo.hamming(0b1011, 0b0001) == 2
    np.testing.assert_array_equal(yolo.distances([0b1011, 0], [0b0001, 0b1111]), [[2, 1], [1, 4]])
    with pytest.raises(ValueError, match="grayscale"):
        yolo.phash(np.zeros((8, 8, 3), np.uint8))


def test_box_pixels() -> None:
    # Float products land just off whole pixels; every pixel the box overlaps is filled, no
    # more. x from (0.3 - 0.1) * 10 = 1.9999999999999998 to 4: columns 2, 3 (not 1).
    assert yolo.box_pixels(yolo.Box(0, 0.3, 0.5, 0.2, 0.2), 10, 10) == (4, 6, 2, 4)
    # x from 0.1999999999999999 to (0.16 + 0.14) * 10 = 3.0000000000000004: columns 0..2 (not 3).
    assert yolo.box_pixels(yolo.Box(0, 0.16, 0.5, 0.28, 0.2), 10, 10) == (4, 6, 0, 3)
    # A box thinner than a pixel still covers the pixel it lies in.
    assert yolo.box_pixels(yolo.Box(0, 0.51, 0.51, 0.001, 0.001), 10, 10) == (5, 6, 5, 6)
    # Edges at 0 and 1 stay inside the image (height 7, width 9).
    assert yolo.box_pixels(yolo.Box(0, 0.5, 0.5, 1.0, 1.0), 7, 9) == (0, 7, 0, 9)


def test_label_path_and_subject() -> None:
    assert yolo.label_path_of(Path("x/images/train/images/a.b.jpg")) == Path(
        "x/images/train/labels/a.b.txt"
    )
    assert yolo.label_path_of(Path("d/images/val/a.png")) == Path("d/labels/val/a.txt")
    assert yolo.subject_of("img_01_jpg.rf.0a1b.jpg") == "img_01_jpg"
    assert yolo.subject_of("plain.photo.jpg") == "plain.photo"


def test_ultralytics_layout(tmp_path: Path, capsys) -> None:
    """images/<split>/ and labels/<split>/ (the Ultralytics layout) work the same way."""
    src = write_export(
        tmp_path / "src",
        export={"train": EXPORT["train"][:2], "val": EXPORT["valid"][2:]},
        ultralytics=True,
    )
    assert (src / "labels" / "val" / "v2_jpg.rf.777.txt").is_file()
    code, summary, err = run(capsys, "--src", str(src), "--out", str(tmp_path / "o"), "--no-tone")
    assert code == 0, err
    assert summary["splits"]["train"]["rows"] == 2 and summary["splits"]["val"]["rows"] == 1


# ---------------------------------------------------------------------------------------------
# By-eye tone labels shipped beside the converted dataset.


def test_tone_labels_are_checked_and_shipped(tmp_path, capsys) -> None:
    src = write_export(tmp_path / "faces-v3")
    labels = tmp_path / "labels.csv"
    labels.write_text(
        "image,tone_by_eye,between,note\n"
        "images/v2_jpg.rf.777.jpg,between,I-II|III-IV,dim\n"
        "images/a1_jpg.rf.111.jpg,V-VI,,\n"
    )
    out = tmp_path / "out"
    code, _, err = run(capsys, "--src", str(src), "--out", str(out), "--tone-labels", str(labels))
    assert code == 0, err
    assert (out / "tone_labels.csv").read_text() == labels.read_text()
    labels.write_text("image,tone_by_eye\nimages/a1_jpg.rf.111.jpg,dark\n")
    code, _, err = run(
        capsys, "--src", str(src), "--out", str(tmp_path / "o2"), "--tone-labels", str(labels)
    )
    assert code != 0 and f"{labels}:2" in err and "'dark'" in err
    labels.write_text("image,tone_by_eye\nimages/nope.jpg,I-II\n")
    code, _, err = run(
        capsys, "--src", str(src), "--out", str(tmp_path / "o3"), "--tone-labels", str(labels)
    )
    assert code != 0 and "nope.jpg" in err and "not in the dataset" in err
    assert not (tmp_path / "o3").exists()  # nothing half-written
