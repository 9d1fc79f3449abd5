"""fairness.model_card: one schema for the exported model's card and the fairness report's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from client.result import card_evidence, card_training_note
from fairness.model_card import (
    SCHEMA_VERSION,
    ModelCardError,
    make_model_card,
    read_model_card,
    render_model_card,
    upgrade_model_card,
    validate_model_card,
    write_model_card,
)
from tests.conftest import exported_card

ROOT = Path(__file__).resolve().parents[2]
# Cards written before the schema was shared; read until `dvc repro` rewrites them.
CARDS_ON_DISK = (
    ROOT / "models" / "default" / "model_card.json",
    ROOT / "triton_models" / "classify" / "1" / "model_card.json",
)
EVIDENCE = {"acne": "real", "hyperpigmentation": "real+synthetic", "wrinkles": "synthetic"}


def _evaluation_card() -> dict:
    """A report card's evaluation sections, cut to what the schema requires."""
    sections = {
        "tone_source": "labelled",
        "group_basis": "Fitzpatrick",
        "group_label": "Fitzpatrick group",
        "data": {"kind": "synthetic", "name": "synthskin-v1", "details": {}, "note": ""},
        "evaluation": {"split": "test", "per_group": {}},
        "limitations": ["few images"],
    }
    return make_model_card(name="small_cnn", model={"name": "small_cnn"}, evaluation=sections)


def test_both_cards_share_the_fields_every_card_has() -> None:
    exported, report = exported_card(), _evaluation_card()
    common = {
        "schema_version", "name", "version", "disclaimer", "medical_device",
        "not_a_medical_device", "intended_use", "out_of_scope", "model", "conditions",
        "groups", "training", "training_data",
    }  # fmt: skip
    assert common <= set(exported) and common <= set(report)
    assert exported["schema_version"] == report["schema_version"] == SCHEMA_VERSION
    assert exported["disclaimer"] == report["disclaimer"]
    assert "input_size" in exported and "evaluation" not in exported
    assert "evaluation" in report and "input_size" not in report
    assert "## Exported model" in render_model_card(exported)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda c: c.pop("name"), "'name': missing"),
        (lambda c: c.update(input_size="32"), "'input_size': expected an integer"),
        (lambda c: c.update(input_size=True), "'input_size': expected an integer"),
        (lambda c: c["outputs"].pop("probs"), "'outputs.probs': missing"),
        (lambda c: c["outputs"]["cam"].pop("shape"), "'outputs.cam.shape': missing"),
        (lambda c: c.update(schema_version=99), "'schema_version': expected 2"),
        (lambda c: c.update(metrics={"split": "test"}), "'metrics.per_group': missing"),
        (
            lambda c: c.update(training_data={"synthetic": "no", "evidence": None, "note": None}),
            "'training_data.synthetic': expected true/false",
        ),
        (
            lambda c: c.update(
                training_data={"synthetic": False, "evidence": {"acne": "x"}, "note": None}
            ),
            "'training_data.evidence.acne': expected one of",
        ),
        (lambda c: c.pop("input_size"), "'input_size' / 'evaluation': missing"),
    ],
)
def test_reader_names_the_file_and_the_field(tmp_path, change, field) -> None:
    card = exported_card()
    change(card)
    path = tmp_path / "model_card.json"
    path.write_text(json.dumps(card))
    with pytest.raises(ModelCardError, match="model_card.json: field " + field.split(":")[0]):
        read_model_card(path)
    with pytest.raises(ModelCardError) as err:
        read_model_card(tmp_path)  # the folder holding it
    assert str(path) in str(err.value) and field in str(err.value)


def test_writer_refuses_a_card_off_the_schema_and_writes_strict_json(tmp_path) -> None:
    card = exported_card()
    card.pop("outputs")
    with pytest.raises(ModelCardError, match="'outputs': missing"):
        write_model_card(card, tmp_path)
    assert not (tmp_path / "model_card.json").exists()
    card = exported_card() | {"quantization": {"max_f1_drop": float("nan")}}
    md, js = write_model_card(card, tmp_path)
    assert json.loads(js.read_text())["quantization"] == {"max_f1_drop": None}
    assert md is not None and md.read_text().startswith("# Model card: small_cnn-test")


def test_unreadable_files_name_the_file(tmp_path) -> None:
    with pytest.raises(ModelCardError, match="cannot read"):
        read_model_card(tmp_path / "missing.json")
    (tmp_path / "model_card.json").write_text("{")
    with pytest.raises(ModelCardError, match="model_card.json: not valid JSON"):
        read_model_card(tmp_path)
    (tmp_path / "model_card.json").write_text("[]")
    with pytest.raises(ModelCardError, match="expected one object"):
        read_model_card(tmp_path)


@pytest.mark.parametrize("path", CARDS_ON_DISK, ids=lambda p: str(p.relative_to(ROOT)))
def test_cards_on_disk_are_read_and_keep_what_the_client_reads(path: Path) -> None:
    raw = json.loads(path.read_text())
    card = read_model_card(path)
    assert card["schema_version"] == SCHEMA_VERSION
    for key in ("name", "version", "input_size", "outputs", "training_data"):
        assert card[key] == raw[key]
    assert card_evidence(card) == card_evidence(raw)
    assert card_training_note(card) == card_training_note(raw)


def test_older_cards_are_upgraded() -> None:
    old_export = {k: v for k, v in exported_card().items() if k not in ("schema_version",)}
    old_export |= {"intended_use": "research aid, not a diagnosis", "training_data": None}
    for key in ("disclaimer", "model", "groups", "out_of_scope", "not_a_medical_device"):
        old_export.pop(key)
    upgraded = validate_model_card(upgrade_model_card(old_export))
    assert upgraded["model"] == {"name": "small_cnn", "architecture": "small_cnn"}
    assert upgraded["disclaimer"] == "research aid, not a diagnosis"
    report_v1 = {k: v for k, v in _evaluation_card().items()}
    for key in ("name", "version", "training", "training_data"):
        report_v1.pop(key)
    report_v1["schema_version"] = 1
    upgraded = validate_model_card(upgrade_model_card(report_v1))
    assert (upgraded["name"], upgraded["version"]) == ("small_cnn", None)


def test_client_readers_take_the_new_card() -> None:
    data = {"synthetic": False, "evidence": EVIDENCE, "note": "trained on real photos"}
    card = exported_card(training_data=data)
    assert card_evidence(card) == EVIDENCE
    assert card_training_note(card) == "trained on real photos"
