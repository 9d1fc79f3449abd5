"""preprocessing.tone_eval --lighting on real photos, with by-eye labels."""

from __future__ import annotations

import json
import shutil

import pytest

from preprocessing import tone_eval


def _dataset(tmp_path, astronaut_path, group_photo_path):
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    shutil.copy(astronaut_path, data / "images" / "a.png")
    shutil.copy(group_photo_path, data / "images" / "t1.jpg")
    (data / "metadata.csv").write_text(
        "image,split\nimages/a.png,val\nimages/t1.jpg,val\nimages/a.png,train\n"
    )
    return data


def test_lighting_mode_reports_changes_and_agreement(
    tmp_path, astronaut_path, group_photo_path, capsys
):
    data = _dataset(tmp_path, astronaut_path, group_photo_path)
    labels = tmp_path / "labels.csv"
    labels.write_text("image,tone_by_eye\nimages/a.png,I-II\nimages/t1.jpg,between\n")
    argv = ["--data", str(data), "--split", "val", "--lighting", "--labels", str(labels)]
    assert tone_eval.main([*argv, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    lighting = report["lighting"]
    assert lighting["faces"] == 2  # the val rows only
    assert set(lighting) >= {"+0.5 EV", "-0.5 EV", "warm white balance", "cool white balance"}
    for change in ("+0.5 EV", "-0.5 EV", "warm white balance", "cool white balance"):
        assert 0.0 <= lighting[change]["group_changed"] <= 1.0
    agreement = report["by_eye_agreement"]
    assert agreement["clear_labels"] == 1 and agreement["light_faces"] == 1
    assert report["confidence_crossfit"]["note"] == "too few faces to cross-fit"
    assert "estimated tone" in report["measured_on"]


def test_with_labels_only_labelled_photos_are_estimated(
    tmp_path, astronaut_path, group_photo_path, capsys
):
    data = _dataset(tmp_path, astronaut_path, group_photo_path)
    labels = tmp_path / "labels.csv"
    labels.write_text("image,tone_by_eye\nimages/a.png,I-II\n")
    argv = ["--data", str(data), "--split", "val", "--lighting", "--labels", str(labels)]
    assert tone_eval.main([*argv, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["lighting"]["faces"] == 1


def test_lighting_mode_names_a_bad_labels_file(tmp_path, astronaut_path, group_photo_path, capsys):
    data = _dataset(tmp_path, astronaut_path, group_photo_path)
    labels = tmp_path / "labels.csv"
    labels.write_text("picture,tone\nx,y\n")
    code = tone_eval.main(["--data", str(data), "--lighting", "--labels", str(labels), "--json"])
    assert code == 2 and str(labels) in capsys.readouterr().err


def test_fit_confidence_needs_labels_and_both_outcomes(
    tmp_path, astronaut_path, group_photo_path, capsys
):
    data = _dataset(tmp_path, astronaut_path, group_photo_path)
    out = tmp_path / "calibration.json"
    with pytest.raises(SystemExit) as exc:
        tone_eval.main(["--data", str(data), "--lighting", "--fit-confidence", str(out)])
    assert exc.value.code == 2 and "--labels" in capsys.readouterr().err
    labels = tmp_path / "labels.csv"
    labels.write_text("image,tone_by_eye\nimages/a.png,I-II\n")
    argv = ["--data", str(data), "--split", "val", "--lighting", "--labels", str(labels)]
    assert tone_eval.main([*argv, "--fit-confidence", str(out), "--json"]) == 2
    assert "at least 5 of each" in capsys.readouterr().err and not out.exists()


def test_lighting_mode_rejects_an_unknown_label(tmp_path, astronaut_path, group_photo_path, capsys):
    data = _dataset(tmp_path, astronaut_path, group_photo_path)
    labels = tmp_path / "labels.csv"
    labels.write_text("image,tone_by_eye\nimages/a.png,dark\n")
    code = tone_eval.main(["--data", str(data), "--lighting", "--labels", str(labels), "--json"])
    assert code == 2 and f"{labels}:2" in capsys.readouterr().err
