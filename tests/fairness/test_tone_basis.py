"""Tone basis, datacards and per-condition evidence on hand-made inputs with known answers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fairness.model_card import (
    DatacardError,
    condition_evidence,
    find_datacards,
    read_datacard,
)
from fairness.tone_basis import make_tone_basis, row_tone_sources, tone_basis
from tests.conftest import ACNE_NEW


def test_row_sources_column_wins_then_type_then_default() -> None:
    assert row_tone_sources([3, 0, 0, 5], ["", "estimated", "", "estimated"]) == [
        "labelled",
        "estimated",
        None,
        "estimated",
    ]
    # no column (older predictions): a type means labelled, anything else takes the default
    assert row_tone_sources([3, 0], None) == ["labelled", None]
    assert row_tone_sources([3, 0], None, default="estimated") == ["labelled", "estimated"]


def test_row_sources_reject_unknown_values_with_csv_lines() -> None:
    with pytest.raises(ValueError, match=r"column 'tone_source', line\(s\) 3: must be one of"):
        row_tone_sources([0, 0], ["estimated", "guessed"])


@pytest.mark.parametrize(
    ("groups", "sources", "expected"),
    [
        (["I-II", "V-VI"], ["labelled", "labelled"], "labelled"),
        (["I-II", "V-VI", None], ["estimated", "estimated", "labelled"], "estimated"),
        (["I-II", "V-VI"], ["labelled", "estimated"], "mixed"),
        (["I-II", "V-VI"], ["estimated", None], "unknown"),
        ([None, None], ["labelled", "labelled"], "unknown"),  # no grouped row
    ],
)
def test_tone_basis_summarises_grouped_rows(groups, sources, expected) -> None:
    assert tone_basis(groups, sources).source == expected


def test_estimated_basis_words() -> None:
    tone = make_tone_basis("estimated")
    assert tone.label == "estimated tone group (ITA)"
    assert tone.group_name("V-VI") == "estimated-tone group V-VI"
    assert tone.to_dict() == {
        "tone_source": "estimated",
        "group_basis": "estimated tone (ITA from the photo), not Fitzpatrick",
        "group_label": "estimated tone group (ITA)",
    }
    assert "no skin-type labels" in tone.note and "not Fitzpatrick types" in tone.note
    labelled = make_tone_basis("labelled")
    assert labelled.group_name("V-VI") == "V-VI" and labelled.note == ""
    with pytest.raises(ValueError, match="unknown tone source 'guessed'"):
        make_tone_basis("guessed")


def test_read_datacard_json_yaml_and_folder(tmp_path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "datacard.json").write_text(json.dumps(ACNE_NEW))
    card = read_datacard(tmp_path / "a")  # a folder: its datacard.json
    assert {k: card[k] for k in ACNE_NEW} == ACNE_NEW
    yml = tmp_path / "datacard.yaml"
    yml.write_text("name: synthskin-v1\nlicence: MIT\n")
    assert read_datacard(yml) == {"name": "synthskin-v1", "licence": "MIT", "file": str(yml)}


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"licence": "MIT"}, r"field 'name': required"),
        ({"name": "x", "licence": "MIT", "version": 3}, r"unknown field\(s\) \['version'\]"),
        ({"name": "x", "tone_source": "guessed"}, r"field 'tone_source': must be one of"),
        ({"name": "x", "url": 5}, r"field 'url': expected a string"),
        (["x"], r"expected one object, got list"),
    ],
)
def test_bad_datacard_names_file_and_field(tmp_path, doc, message) -> None:
    path = tmp_path / "datacard.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(DatacardError, match=message) as exc:
        read_datacard(path)
    assert str(path) in str(exc.value)


def test_find_datacards_through_the_run_config(tmp_path) -> None:
    data = tmp_path / "acne-new"
    data.mkdir()
    (data / "metadata.csv").write_text("image\n")
    (data / "datacard.json").write_text(json.dumps(ACNE_NEW))
    run = tmp_path / "run"
    run.mkdir()
    assert find_datacards(run) == []  # no config.json
    (run / "config.json").write_text(json.dumps({"data": {"data_dir": str(data)}, "x": "y"}))
    cards = find_datacards(run)
    assert [c["name"] for c in cards] == ["acne-new v36"]


def test_condition_evidence_rule_and_overrides() -> None:
    y = np.array([[1.0, 0.0, np.nan], [0.0, np.nan, np.nan]])
    assert condition_evidence(y, "real") == {
        "acne": "real",
        "hyperpigmentation": "real",
        "wrinkles": "synthetic",  # no label anywhere: no real evidence
    }
    assert set(condition_evidence(y, "synthetic").values()) == {"synthetic"}
    assert condition_evidence(y, "real", {"acne": "unknown"})["acne"] == "unknown"
    with pytest.raises(ValueError, match="unknown condition 'moles'"):
        condition_evidence(y, "real", {"moles": "real"})
    with pytest.raises(ValueError, match="unknown kind 'fake'"):
        condition_evidence(y, "real", {"acne": "fake"})


def test_condition_evidence_per_row_source_for_combined_data() -> None:
    """acne-new + synthskin: wrinkles labelled on synthetic rows only -> "synthetic"."""
    y = np.array([[1.0, 0.0, np.nan], [0.0, 1.0, np.nan], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
    synthetic = np.array([False, False, True, True])
    assert condition_evidence(y, "real", synthetic_rows=synthetic) == {
        "acne": "real",
        "hyperpigmentation": "real",
        "wrinkles": "synthetic",
    }
    # without per-row sources the dataset's kind decides
    assert condition_evidence(y, "real")["wrinkles"] == "real"
