"""data.combine: two canonical datasets become one, with splits, unknowns and tone columns kept."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pandas as pd

from data import combine
from data.canonical import load_metadata, validate_dataset
from tests.data.conftest import write_image, write_mask


def _estimated_dataset(root: Path) -> Path:
    """Four rows with an estimated tone group, wrinkles unknown, one subject in two rows."""
    rows = []
    for i in range(4):
        image = write_image(root / "images" / f"p{i}.jpg", seed=100 + i)
        mask = write_mask(root / "masks" / f"p{i}.png")
        rows.append({
            "image": image.relative_to(root).as_posix(), "acne": i % 2,
            "hyperpigmentation": 1 - i % 2, "wrinkles": "", "acne_severity": i % 4,
            "fitzpatrick": "", "fitzpatrick_group": "V-VI" if i < 2 else "I-II",
            "tone_source": "estimated", "split": "train" if i < 3 else "val",
            "source": "real", "subject_id": "s0" if i < 2 else f"s{i}",
            "mask": mask.relative_to(root).as_posix(), "boxes": "[]",
        })  # fmt: skip
    with open(root / "metadata.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return root


def test_combine_keeps_rows_splits_unknowns_and_tone(tmp_path: Path, good_dataset: Path) -> None:
    real = _estimated_dataset(tmp_path / "real")
    out = tmp_path / "mix"
    code = combine.main(["--data", str(real), "--data", str(good_dataset), "--out", str(out)])
    assert code == 0
    assert validate_dataset(out) == []
    df = load_metadata(out / "metadata.csv")
    a = pd.read_csv(real / "metadata.csv", dtype=str, keep_default_na=False)
    b = pd.read_csv(good_dataset / "metadata.csv", dtype=str, keep_default_na=False)
    assert len(df) == len(a) + len(b)
    mine = df[df["image"].str.startswith("real/")]
    assert list(mine["split"]) == list(a["split"])
    assert mine["wrinkles"].isna().all()  # unknown stays unknown, never 0
    assert set(mine["tone_source"]) == {"estimated"}
    assert mine["fitzpatrick"].isna().all()
    assert list(mine["group"]) == ["V-VI", "V-VI", "I-II", "I-II"]
    assert list(mine["subject_id"])[:2] == ["real:s0", "real:s0"]
    # The labelled input gets tone_source=labelled where it has a type, empty where not.
    theirs = df[df["image"].str.startswith("good/")]
    has_type = theirs["fitzpatrick"].notna()
    assert (theirs.loc[has_type, "tone_source"] == "labelled").all()
    assert theirs.loc[~has_type, "tone_source"].isna().all()
    assert theirs["boxes"].isna().all()  # a column only one input has is empty for the other
    # Files are there with the same bytes.
    first = mine.iloc[0]
    assert (out / first["image"]).read_bytes() == (real / a.iloc[0]["image"]).read_bytes()
    assert (out / first["mask"]).is_file()


def test_combine_refuses_existing_out_and_bad_input(tmp_path: Path, good_dataset: Path, capsys):
    real = _estimated_dataset(tmp_path / "real")
    out = tmp_path / "mix"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    assert combine.main(["--data", str(real), "--data", str(good_dataset), "--out", str(out)]) == 2
    assert (out / "keep.txt").read_text() == "x"
    # A broken input: a label outside 0/1. Nothing is written, the problem names the row.
    broken = tmp_path / "broken"
    shutil.copytree(real, broken)
    text = (broken / "metadata.csv").read_text().splitlines()
    fields = text[2].split(",")
    fields[1] = "7"
    text[2] = ",".join(fields)
    (broken / "metadata.csv").write_text("\n".join(text) + "\n")
    new_out = tmp_path / "mix2"
    code = combine.main(["--data", str(broken), "--data", str(good_dataset), "--out", str(new_out)])
    assert code == 1
    assert not new_out.exists()
    assert "metadata.csv:3:acne" in capsys.readouterr().err
    assert not list(tmp_path.glob(".mix2.tmp-*"))


def test_combine_json_summary_counts(tmp_path: Path, good_dataset: Path, capsys) -> None:
    real = _estimated_dataset(tmp_path / "real")
    out = tmp_path / "mix"
    argv = ["--data", str(real), "--data", str(good_dataset), "--out", str(out), "--json"]
    assert combine.main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["rows_by_source_split"]["real/train"] == 3
    assert summary["rows_by_source_split"]["real/val"] == 1
    assert summary["rows"] == 28


def test_combine_carries_provenance_and_says_whether_synthetic(
    tmp_path: Path, good_dataset: Path
) -> None:
    from fairness.io import read_dataset_info
    from fairness.model_card import find_datacards

    real = _estimated_dataset(tmp_path / "real")
    card = {"name": "real v1", "licence": "CC BY 4.0", "tone_source": "estimated"}
    (real / "datacard.json").write_text(json.dumps(card))
    (real / "dataset.json").write_text(json.dumps({"name": "real v1", "synthetic": False}))
    # good_dataset has no dataset.json; its source column is made synthetic.
    synth = tmp_path / "synth"
    shutil.copytree(good_dataset, synth)
    text = (synth / "metadata.csv").read_text().replace(",unit,", ",synthetic,")
    (synth / "metadata.csv").write_text(text)

    out = tmp_path / "mix"
    assert combine.main(["--data", str(real), "--data", str(synth), "--out", str(out)]) == 0
    assert json.loads((out / "real" / "datacard.json").read_text()) == card
    assert (out / "real" / "dataset.json").read_bytes() == (real / "dataset.json").read_bytes()
    assert not (out / "synth" / "datacard.json").exists()  # none to copy
    info = json.loads((out / "dataset.json").read_text())
    assert info["combined"] == ["real", "synth"]
    assert info["inputs"] == {"real": {"synthetic": False}, "synth": {"synthetic": True}}
    assert info["synthetic"] is False  # one input holds photographs
    assert validate_dataset(out) == []

    # A run trained on the combined set finds its kind and the input's datacard.
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"data": {"data_dir": str(out)}}))
    assert read_dataset_info(run)["kind"] == "real"  # not "synthetic", though names say synth
    assert [c["name"] for c in find_datacards(run)] == ["real v1"]

    # Two synthetic inputs: the combination is synthetic.
    synth2 = tmp_path / "synth2"
    shutil.copytree(synth, synth2)
    for i, image in enumerate(sorted((synth2 / "images").iterdir())):
        write_image(image, seed=1000 + i)  # other bytes: the validator refuses duplicates
    out2 = tmp_path / "mix2"
    assert combine.main(["--data", str(synth), "--data", str(synth2), "--out", str(out2)]) == 0
    assert json.loads((out2 / "dataset.json").read_text())["synthetic"] is True


def test_input_is_synthetic_prefers_the_dataset_json_key(tmp_path: Path) -> None:
    frame = pd.DataFrame({"source": ["synthskin-v1", "synthskin-v1"]})
    (tmp_path / "dataset.json").write_text(json.dumps({"synthetic": False}))
    assert combine.input_is_synthetic(tmp_path, frame) is False
    (tmp_path / "dataset.json").unlink()
    assert combine.input_is_synthetic(tmp_path, frame) is True
    assert combine.input_is_synthetic(tmp_path, frame.assign(source=["a", "synth"])) is False


def test_combine_unknown_makes_one_inputs_condition_unknown(
    tmp_path: Path, good_dataset: Path, capsys
) -> None:
    real = _estimated_dataset(tmp_path / "real")
    out = tmp_path / "mix"
    argv = ["--data", str(real), "--data", str(good_dataset), "--out", str(out), "--json",
            "--unknown", "good:hyperpigmentation", "--unknown", "real:acne"]  # fmt: skip
    assert combine.main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["unknown_labels"] == {"good": ["hyperpigmentation"], "real": ["acne"]}
    assert validate_dataset(out) == []
    df = load_metadata(out / "metadata.csv")
    good = pd.read_csv(good_dataset / "metadata.csv", dtype=str, keep_default_na=False)
    theirs, mine = df[df["image"].str.startswith("good/")], df[df["image"].str.startswith("real/")]
    assert theirs["hyperpigmentation"].isna().all()
    assert list(theirs["acne"].astype(int).astype(str)) == list(good["acne"])  # others kept
    assert mine["acne"].isna().all() and mine["acne_severity"].isna().all()
    assert mine["hyperpigmentation"].notna().all()
    info = json.loads((out / "dataset.json").read_text())
    assert info["unknown_labels"] == {"good": ["hyperpigmentation"], "real": ["acne"]}


def test_combine_unknown_rejects_a_bad_value(tmp_path: Path, good_dataset: Path, capsys) -> None:
    real = _estimated_dataset(tmp_path / "real")
    for value in ("good:moles", "other:acne", "hyperpigmentation"):
        out = tmp_path / "mix"
        argv = ["--data", str(real), "--data", str(good_dataset), "--out", str(out),
                "--unknown", value]  # fmt: skip
        assert combine.main(argv) == 2
        assert f"--unknown {value!r}" in capsys.readouterr().err
        assert not out.exists()
