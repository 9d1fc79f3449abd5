"""AUROC goals per by-eye tone group: the join, the CLI and its bad inputs."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from fairness import by_eye


def _write(tmp_path):
    """24 photos: rows 0-11 ranked perfectly for acne, 12-23 ranked backwards; the estimated
    group says I-II for all, the by-eye labels split them (and one is `between`)."""
    n = 24
    acne = np.array([i % 2 for i in range(n)], float)
    prob = np.where(acne == 1, 0.8, 0.2)
    prob[12:] = 1.0 - prob[12:]
    df = pd.DataFrame(
        {
            "image": [f"images/{i:02d}.jpg" for i in range(n)],
            "fitzpatrick": "",
            "group": "I-II",
            "split": "val",
            "acne": acne.astype(int),
            "hyperpigmentation": 1 - acne.astype(int),
            "wrinkles": "",
            "acne_prob": prob,
            "hyperpigmentation_prob": 1.0 - prob,
            "wrinkles_prob": 0.5,
            "tone_source": "estimated",
        }
    )
    predictions = tmp_path / "predictions_val.csv"
    df.to_csv(predictions, index=False)
    labels = tmp_path / "tone_labels.csv"
    rows = [f"images/{i:02d}.jpg,{'I-II' if i < 12 else 'V-VI'}" for i in range(n)]
    rows[23] = "images/23.jpg,between"
    labels.write_text("image,tone_by_eye\n" + "\n".join(rows) + "\n")
    return predictions, labels, df


def test_groups_come_from_the_labels_not_the_estimate(tmp_path, capsys):
    predictions, labels, df = _write(tmp_path)
    argv = ["--predictions", str(predictions), "--labels", str(labels), "--n-boot", "50"]
    assert by_eye.main([*argv, "--min-faces", "5", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["clear_group"] == {"I-II": 12, "III-IV": 0, "V-VI": 11}
    cells = report["acne_auroc_by_group"]
    assert cells["I-II"]["auroc"]["value"] == 1.0 and cells["V-VI"]["auroc"]["value"] == 0.0
    assert report["acne_auroc"]["value"] == pytest.approx(
        roc_auc_score(df["acne"], df["acne_prob"])
    )
    assert report["acne_auroc_gap"]["worst_group"] == "V-VI"
    assert "by-eye" in report["group_basis"]
    assert by_eye.main(argv) == 0 and "V-VI" in capsys.readouterr().out


def test_bad_labels_are_named_and_labels_of_other_photos_left_out(tmp_path, capsys):
    predictions, labels, _ = _write(tmp_path)
    argv = ["--predictions", str(predictions), "--labels", str(labels)]
    labels.write_text("image,tone_by_eye\nimages/00.jpg,I-II\nimages/01.jpg,pale\n")
    assert by_eye.main(argv) == 2 and f"{labels}:3" in capsys.readouterr().err
    labels.write_text("image,tone_by_eye\nimages/00.jpg,I-II\nimages/00.jpg,V-VI\n")
    assert by_eye.main(argv) == 2 and "twice" in capsys.readouterr().err
    labels.write_text("picture,tone\n")
    assert by_eye.main(argv) == 2 and f"{labels}:1" in capsys.readouterr().err
    labels.write_text("image,tone_by_eye\nimages/00.jpg,I-II\nimages/99.jpg,V-VI\n")
    assert by_eye.main([*argv, "--n-boot", "0", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["labels_of_other_photos"] == 1 and report["labelled"] == 1
    missing = ["--predictions", str(tmp_path / "none.csv"), "--labels", str(labels)]
    assert by_eye.main(missing) == 2 and "none.csv" in capsys.readouterr().err


def test_a_combined_datasets_paths_match_the_labels(tmp_path, capsys):
    """Predictions of a combined dataset name the photos under their dataset's folder."""
    predictions, labels, df = _write(tmp_path)
    df.assign(image="acne-new-v36/" + df["image"]).to_csv(predictions, index=False)
    argv = ["--predictions", str(predictions), "--labels", str(labels), "--n-boot", "0"]
    assert by_eye.main([*argv, "--min-faces", "5", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["labelled"] == 24 and report["labels_of_other_photos"] == 0
    assert report["clear_group"] == {"I-II": 12, "III-IV": 0, "V-VI": 11}
