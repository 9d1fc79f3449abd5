"""Counterfactual robustness: known rates on a planted CSV, the CSV contract, and the driver end
to end on the example photos with the shipped model."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from client.counterfactual import main  # the driver: the served pipeline on the photos
from fairness.counterfactual import (
    ALL_PHOTOS,
    CHANGES,
    COLUMNS,
    NO_ESTIMATE,
    CounterfactualError,
    counterfactual_summary,
    read_counterfactual,
    wilson_interval,
    write_counterfactual,
)
from tests.fairness.conftest import EV, JPEG, planted_rows

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "docs" / "examples"


@pytest.fixture()
def planted_csv(tmp_path: Path) -> Path:
    return write_counterfactual(tmp_path / "cf.csv", planted_rows())


def test_wilson_interval_matches_known_values():
    # textbook values: 0 of 10 -> [0, 0.2775]; 1 of 4 -> [0.0456, 0.6994]
    low, high = wilson_interval(0, 10)
    assert low == 0.0 and high == pytest.approx(0.2775, abs=1e-4)
    assert wilson_interval(1, 4) == pytest.approx((0.0456, 0.6994), abs=1e-4)
    assert all(np.isnan(wilson_interval(0, 0)))


def test_planted_flip_rates_per_group_are_exact(planted_csv):
    s = counterfactual_summary(read_counterfactual(planted_csv))
    assert s["groups"] == ["I-II", "V-VI", NO_ESTIMATE, ALL_PHOTOS]
    assert s["changes"] == [EV, JPEG] and s["photos"] == 6
    flips = s["flip_rate"]

    def rate(cell):
        return cell["count"], cell["n"]

    assert rate(flips["I-II"][EV]["acne"]) == (1, 2)
    assert rate(flips["I-II"][EV]["hyperpigmentation"]) == (0, 2)
    assert rate(flips["I-II"][JPEG]["acne"]) == (0, 1)  # b lost its face: not compared
    assert rate(flips["V-VI"][EV]["acne"]) == (1, 3)
    assert rate(flips["V-VI"][EV]["hyperpigmentation"]) == (1, 3)
    assert rate(flips["V-VI"][EV]["any condition"]) == (1, 3)  # c flipped twice: one photo
    assert rate(flips["V-VI"][JPEG]["any condition"]) == (1, 3)
    assert rate(flips[NO_ESTIMATE][EV]["acne"]) == (1, 1)
    assert rate(flips[ALL_PHOTOS][EV]["any condition"]) == (3, 6)
    assert rate(flips[ALL_PHOTOS][JPEG]["any condition"]) == (1, 5)
    cell = flips["V-VI"][EV]["acne"]
    assert (cell["ci_low"], cell["ci_high"]) == pytest.approx(wilson_interval(1, 3))
    assert cell["rate"] == pytest.approx(1 / 3)


def test_planted_tone_changes_and_lost_faces_are_exact(planted_csv):
    s = counterfactual_summary(read_counterfactual(planted_csv))
    tone = s["tone_change"]
    assert (tone["V-VI"][EV]["count"], tone["V-VI"][EV]["n"]) == (2, 3)  # moved + abstained
    assert (tone["V-VI"][JPEG]["count"], tone["V-VI"][JPEG]["n"]) == (0, 3)
    assert (tone[NO_ESTIMATE][EV]["count"], tone[NO_ESTIMATE][EV]["n"]) == (1, 1)
    assert (tone["I-II"][EV]["count"], tone["I-II"][EV]["n"]) == (0, 2)
    lost = s["face_lost"]
    assert (lost["I-II"][JPEG]["count"], lost["I-II"][JPEG]["n"]) == (1, 2)
    assert lost["V-VI"][JPEG]["count"] == 0


def test_probability_change_range(planted_csv):
    s = counterfactual_summary(read_counterfactual(planted_csv))
    cell = s["prob_change"]["V-VI"][EV]["acne"]  # c +0.3, d +0.05, e -0.1
    assert cell["n"] == 3
    assert cell["min"] == pytest.approx(-0.1) and cell["max"] == pytest.approx(0.3)
    assert cell["median"] == pytest.approx(0.05)
    assert cell["mean_abs"] == pytest.approx((0.3 + 0.05 + 0.1) / 3)
    assert cell["p5"] == pytest.approx(np.percentile([-0.1, 0.05, 0.3], 5))
    lost = s["prob_change"]["I-II"][JPEG]["acne"]
    assert lost["n"] == 1  # b has no probability under JPEG


def test_csv_roundtrip_keeps_the_columns_and_empties(planted_csv):
    with planted_csv.open(newline="") as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames) == COLUMNS
        rows = list(reader)
    lost = [r for r in rows if r["image"] == "b" and r["change"] == JPEG]
    assert all(r["prob_changed"] == "" and r["decision_changed"] == "" for r in lost)
    assert all(r["face_changed"] == "0" for r in lost)
    table = read_counterfactual(planted_csv)
    assert np.isnan(table.prob_changed[[i for i, r in enumerate(rows) if r in lost]]).all()


def test_bad_csv_names_the_file_line_and_column(tmp_path):
    rows = planted_rows()
    rows[1]["prob"] = 1.5
    rows[2]["change"] = "sepia"
    path = write_counterfactual(tmp_path / "bad.csv", rows)
    with pytest.raises(CounterfactualError) as err:
        read_counterfactual(path)
    message = str(err.value)
    assert str(path) in message
    assert "line 3, column 'prob'" in message and "line 4, column 'change'" in message
    (tmp_path / "short.csv").write_text("image,group\nx,I-II\n")
    with pytest.raises(CounterfactualError, match="missing column"):
        read_counterfactual(tmp_path / "short.csv")


def _example_dataset(folder: Path, names: list[str], types: dict[str, int]) -> Path:
    """A canonical-like dataset whose images are links to the example photos (no copies)."""
    (folder / "images").mkdir(parents=True)
    lines = ["image,split,fitzpatrick"]
    for name in names:
        (folder / "images" / name).symlink_to(EXAMPLES / name)
        lines.append(f"images/{name},val,{types.get(name, '')}")
    lines.append("images/other.jpg,train,")  # another split: skipped
    (folder / "metadata.csv").write_text("\n".join(lines) + "\n")
    return folder


def test_driver_end_to_end_on_example_photos(tmp_path, capsys):
    from client.runner import EmbeddedRunner

    names = ["acne-new-valid-42000.jpg", "acne-new-valid-4554.jpg", "face.jpg"]
    data = _example_dataset(tmp_path / "data", names, {"face.jpg": 5})
    out = tmp_path / "out" / "cf.csv"
    code = main(
        [
            "--model-dir",
            str(ROOT / "models" / "default"),
            "--data",
            str(data),
            "--split",
            "val",
            "--out",
            str(out),
            "--json",
            "--no-progress",
        ]
    )
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["photos"] == 3 and summary["analysed"] == 3 and summary["rows"] == 54
    with out.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    keys = {(r["image"], r["change"], r["condition"]) for r in rows}
    assert len(rows) == len(keys) == 3 * len(CHANGES) * 3
    assert {r["change"] for r in rows} == set(CHANGES)
    labelled = [r for r in rows if r["image"] == "images/face.jpg"]
    assert {(r["group"], r["tone_source"]) for r in labelled} == {("V-VI", "labelled")}
    runner = EmbeddedRunner(ROOT / "models" / "default")
    raw = runner.analyze_bytes((EXAMPLES / names[1]).read_bytes())
    mine = [r for r in rows if r["image"] == f"images/{names[1]}" and r["change"] == "JPEG q60"]
    assert mine[0]["tone_source"] == "estimated" and mine[0]["group"] == (raw.groups[0] or "")
    assert [float(r["prob"]) for r in mine] == pytest.approx(raw.probs[0].tolist(), abs=1e-6)
    for r in rows:  # every decision is the served rule, probability >= threshold
        assert int(r["decision"]) == int(float(r["prob"]) >= float(r["threshold"]))
        if r["face_changed"] == "1":
            assert int(r["decision_changed"]) == int(
                float(r["prob_changed"]) >= float(r["threshold_changed"])
            )
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == ["cf.csv"]  # nothing else (no image) is written


def test_driver_names_the_csv_line_of_a_missing_photo(tmp_path, capsys):
    data = _example_dataset(tmp_path / "data", ["face.jpg"], {})
    with (data / "metadata.csv").open("a") as fh:
        fh.write("images/missing.jpg,val,\n")
    code = main(["--data", str(data), "--out", str(tmp_path / "cf.csv"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert "metadata.csv: line 4" in err and "missing.jpg" in err and "Traceback" not in err
    assert not (tmp_path / "cf.csv").exists()


def test_fairness_modules_import_without_client_or_jax():
    code = (
        "import sys; sys.modules['client'] = None\n"
        "import fairness.counterfactual, fairness.selective, fairness.report\n"
        "assert not any(m == 'jax' or m.startswith('jax.') for m in sys.modules), 'jax'\n"
        "assert 'client.runner' not in sys.modules\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
