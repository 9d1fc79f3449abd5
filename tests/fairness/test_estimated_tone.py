"""The report on predictions whose tone is estimated (no skin-type labels): words and keys."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from fairness import plots
from fairness.report import EXIT_BAD_INPUT, main
from tests.conftest import ACNE_NEW

# The only ways an estimated-tone report may name Fitzpatrick: to say its groups are not that.
ALLOWED = re.compile(r"not (a )?Fitzpatrick( types?)?")


def _estimated(df: pd.DataFrame, *, column: bool = True) -> pd.DataFrame:
    """acne-new-like predictions: group from the ITA estimate, no type, no wrinkle labels."""
    out = df.assign(fitzpatrick="", wrinkles="", source="acne-new v36")
    if column:
        out["tone_source"] = ["estimated" if g else "" for g in out["group"]]
    return out


@pytest.fixture()
def make_run(tmp_path, simulate):
    """make_run(column=, datacard=) -> a run folder of acne-new-like predictions."""

    def make(*, column: bool = True, datacard: bool = True) -> Path:
        data = tmp_path / "acne-new"
        data.mkdir()
        (data / "metadata.csv").write_text("image\n")
        if datacard:
            (data / "datacard.json").write_text(json.dumps(ACNE_NEW))
        run = tmp_path / "run"
        run.mkdir()
        (run / "config.json").write_text(json.dumps({"data": {"data_dir": str(data)}}))
        for split, seed in (("val", 1), ("test", 2)):
            df = _estimated(simulate(400, seed, split=split), column=column)
            df.to_csv(run / f"predictions_{split}.csv", index=False)
        return run

    return make


@pytest.fixture()
def figure_texts(monkeypatch) -> list[str]:
    """Every title, axis label and legend title of the figures the report draws."""
    texts: list[str] = []
    save = plots._save

    def spy(fig, path):
        texts.append(fig._suptitle.get_text() if fig._suptitle else "")
        for ax in fig.axes:
            texts.extend([ax.get_title(), ax.get_xlabel(), ax.get_ylabel()])
            legend = ax.get_legend()
            if legend is not None:
                texts.append(legend.get_title().get_text())
        return save(fig, path)

    monkeypatch.setattr(plots, "_save", spy)
    return texts


def _report(run: Path, out: Path, *extra: str) -> int:
    return main(
        ["--predictions", str(run), "--out", str(out), "--n-boot", "20", "--no-progress", *extra]
    )


def test_estimated_tone_report_never_calls_groups_fitzpatrick(
    make_run, tmp_path, figure_texts
) -> None:
    out = tmp_path / "out"
    assert _report(make_run(), out) == 0

    for name in ("report.md", "model_card.md"):
        text = (out / name).read_text()
        assert "estimated tone group (ITA)" in text, name
        assert "no skin-type labels" in text and "individual typology angle" in text, name
        assert "Fitzpatrick" not in ALLOWED.sub("", text), name
        assert "| type 1 |" not in text, name
    html = (out / "report.html").read_text()
    assert "estimated tone group (ITA)" in html and "Fitzpatrick" not in ALLOWED.sub("", html)

    report = (out / "report.md").read_text()
    assert "| subset (estimated tone group (ITA)) |" in report
    assert "estimated-tone group V-VI (raw, w, positives)" in report
    assert "No ground truth: no test image has a wrinkles label (evidence: synthetic)" in report
    assert "macro metrics average acne, hyperpigmentation only" in report
    assert "acne-new v36; licence: CC BY 4.0" in report  # attribution travels with the numbers

    # the coverage table is per group, not per (absent) type
    assert "| condition | estimated-tone group I-II |" in report

    # the four figures: group legends and titles say estimated tone, none says Fitzpatrick
    assert figure_texts and not any("Fitzpatrick" in t for t in figure_texts)
    assert sum("estimated tone group (ITA)" in t for t in figure_texts) >= 4

    keys = {"tone_source": "estimated", "group_label": "estimated tone group (ITA)"}
    for name in ("metrics.json", "calibration.json", "model_card.json"):
        doc = json.loads((out / name).read_text())
        assert {k: doc[k] for k in keys} == keys, name
        assert doc["group_basis"] == "estimated tone (ITA from the photo), not Fitzpatrick"
    thresholds = json.loads((out / "thresholds.json").read_text())
    assert thresholds["extra"]["tone_source"] == "estimated"

    card = json.loads((out / "model_card.json").read_text())
    assert card["evidence"] == {
        "acne": "real",
        "hyperpigmentation": "real",
        "wrinkles": "synthetic",
    }
    assert [{k: v for k, v in c.items() if v} for c in card["data_provenance"]] == [ACNE_NEW]
    assert (
        "estimated tone" in card["intended_use"]
        and "Fitzpatrick groups" not in (card["intended_use"])
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test"]["summary"]["macro_f1"]["status"] == "ok"  # wrinkles left out
    assert "Fitzpatrick" not in metrics["test"]["ci_method"]
    assert set(metrics["coverage"]["test_by_group"]["groups"]) == {
        "I-II",
        "III-IV",
        "V-VI",
        "unknown",
    }


def test_without_the_column_the_datacard_says_estimated(make_run, tmp_path) -> None:
    out = tmp_path / "out"
    assert _report(make_run(column=False), out) == 0
    assert json.loads((out / "metrics.json").read_text())["tone_source"] == "estimated"


def test_without_column_or_datacard_the_source_is_unknown_not_fitzpatrick(
    make_run, tmp_path
) -> None:
    out = tmp_path / "out"
    assert _report(make_run(column=False, datacard=False), out) == 0
    card = json.loads((out / "model_card.json").read_text())
    assert card["tone_source"] == "unknown" and card["data_provenance"] == []
    assert "no datacard was found" in " ".join(card["limitations"])
    assert "skin-tone group (source unknown)" in (out / "report.md").read_text()


def test_labelled_predictions_keep_fitzpatrick_words(run_dir, tmp_path) -> None:
    out = tmp_path / "out"
    assert _report(run_dir, out) == 0
    card = json.loads((out / "model_card.json").read_text())
    assert card["tone_source"] == "labelled" and "group_note" not in card
    assert "Fitzpatrick groups I-II, III-IV, V-VI" in card["intended_use"]
    report = (out / "report.md").read_text()
    assert "| subset | n |" in report and "| type 1 |" in report
    assert "estimated" not in report.replace("is estimated from the image", "")


def test_datacard_and_evidence_flags(make_run, tmp_path) -> None:
    run = make_run(datacard=False)
    card_file = tmp_path / "card.yaml"
    card_file.write_text("name: my data\nlicence: CC0\ntone_source: estimated\n")
    out = tmp_path / "out"
    code = _report(
        run, out, "--datacard", str(card_file), "--evidence", "hyperpigmentation=synthetic"
    )
    assert code == 0
    card = json.loads((out / "model_card.json").read_text())
    assert card["data_provenance"][0]["name"] == "my data"
    assert card["evidence"]["hyperpigmentation"] == "synthetic"
    assert card["evidence"]["acne"] == "real"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--evidence", "wrinkles"], "expected COND=KIND"),
        (["--evidence", "moles=real"], "unknown condition 'moles'"),
        (["--datacard", "nope.json"], "nope.json: cannot read"),
    ],
)
def test_bad_flags_are_one_line_errors(make_run, tmp_path, capsys, extra, message) -> None:
    code = _report(make_run(), tmp_path / "out", *extra)
    err = capsys.readouterr().err
    assert code == EXIT_BAD_INPUT and message in err and "Traceback" not in err


def test_bad_tone_source_value_names_file_and_line(make_run, tmp_path, capsys) -> None:
    run = make_run()
    test = pd.read_csv(run / "predictions_test.csv", dtype=str, keep_default_na=False)
    test.loc[0, "tone_source"] = "guessed"
    test.to_csv(run / "predictions_test.csv", index=False)
    assert _report(run, tmp_path / "out") == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "predictions_test.csv" in err and "column 'tone_source', line(s) 2" in err
