"""client/analyze.py: output, exit codes, and nothing written without --overlay."""

from __future__ import annotations

import json
import os

import cv2
import numpy as np
import pytest

from client.analyze import EXIT_BAD_INPUT, EXIT_OK, EXIT_UNREACHABLE, main
from client.runner import DEFAULT_MODEL_DIR
from triton_models.server import free_port

RESULT_KEYS = {
    "image",
    "region",
    "status",
    "faces",
    "rejected_candidates",
    "rejected_reasons",
    "model",
    "disclaimer",
}
FACE_KEYS = {
    "box",
    "score",
    "face_presence",
    "ood_distance",
    "skin_tone",
    "warnings",
    "conditions",
    "heatmaps",
}
TONE_KEYS = {"ita", "ita_interval", "fitzpatrick_group", "source", "confidence", "abstain_reason"}


def _json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_photo_gives_contract_json(astronaut_path, capsys):
    assert main(["--image", str(astronaut_path), "--json"]) == EXIT_OK
    (result,) = _json_lines(capsys.readouterr().out)
    assert set(result) == RESULT_KEYS and result["status"] == "ok"
    face = result["faces"][0]
    assert set(face) == FACE_KEYS
    assert set(face["conditions"]) == {"acne", "hyperpigmentation", "wrinkles"}
    for cond in face["conditions"].values():
        assert 0.0 <= cond["probability"] <= 1.0
        assert cond["present"] == (cond["probability"] >= cond["threshold"])
        assert cond["evidence"] in ("real", "synthetic", "real+synthetic", "none", None)
    assert face["skin_tone"]["source"] == "estimated"
    assert set(face["skin_tone"]) == TONE_KEYS
    assert face["face_presence"] >= 0.999 and face["warnings"] == []
    assert result["rejected_candidates"] == 0 and result["rejected_reasons"] == {}
    assert face["heatmaps"] == {"acne": None, "hyperpigmentation": None, "wrinkles": None}
    assert result["model"]["backend"] == "embedded"
    assert set(result["model"]) == {"name", "version", "backend", "training_data"}
    # Acne severity: null for an export without the severity output (the shipped model until
    # it is re-exported), else the grade and the 4 probabilities.
    card = json.loads((DEFAULT_MODEL_DIR / "model_card.json").read_text())
    severity = face["conditions"]["acne"]["severity"]
    if "severity" in card["outputs"]:
        assert set(severity) == {"grade", "probabilities"}
    else:
        assert severity is None
    assert result["disclaimer"] == "research aid, not a diagnosis"


def test_fitzpatrick_override_is_recorded_as_given(astronaut_path, capsys):
    assert main(["--image", str(astronaut_path), "--json", "--fitzpatrick", "2"]) == EXIT_OK
    (result,) = _json_lines(capsys.readouterr().out)
    tone = result["faces"][0]["skin_tone"]
    assert (tone["fitzpatrick_group"], tone["source"]) == ("I-II", "given")


def test_folder_gives_one_line_per_image_and_no_face(tmp_path, astronaut_path, capsys):
    (tmp_path / "a.png").write_bytes(astronaut_path.read_bytes())
    cv2.imwrite(str(tmp_path / "b.png"), np.full((120, 160, 3), 200, np.uint8))
    before = sorted(os.listdir(tmp_path))
    assert main(["--image", str(tmp_path), "--json"]) == EXIT_OK
    results = _json_lines(capsys.readouterr().out)
    assert [r["status"] for r in results] == ["ok", "no_face"]
    assert sorted(os.listdir(tmp_path)) == before  # nothing written without --overlay


def test_overlay_writes_one_png_per_condition(tmp_path, astronaut_path, capsys):
    out = tmp_path / "overlays"
    assert main(["--image", str(astronaut_path), "--json", "--overlay", str(out)]) == EXIT_OK
    (result,) = _json_lines(capsys.readouterr().out)
    paths = result["faces"][0]["heatmaps"]
    assert all(cv2.imread(p) is not None for p in paths.values())
    assert len(list(out.iterdir())) == 3


def test_the_cam_is_asked_for_only_when_overlays_are_written(tmp_path, astronaut_path):
    from client.analyze import analyze_file
    from client.runner import EmbeddedRunner

    runner, asked = EmbeddedRunner(DEFAULT_MODEL_DIR), []
    analyze = runner.analyze_bytes

    def recording(data, **kwargs):
        raw = analyze(data, **kwargs)
        asked.append((kwargs.get("heatmaps"), raw.cam is not None))
        return raw

    runner.analyze_bytes = recording
    plain = analyze_file(runner, astronaut_path, fitzpatrick=None, overlay=None)
    drawn = analyze_file(runner, astronaut_path, fitzpatrick=None, overlay=tmp_path / "o")
    assert asked == [(False, False), (True, True)]
    assert plain["faces"][0]["heatmaps"] == {c: None for c in plain["faces"][0]["heatmaps"]}
    assert all(cv2.imread(p) is not None for p in drawn["faces"][0]["heatmaps"].values())
    plain_conditions = plain["faces"][0]["conditions"]
    assert plain_conditions == drawn["faces"][0]["conditions"]


def test_readable_summary_by_default(astronaut_path, capsys):
    assert main(["--image", str(astronaut_path)]) == EXIT_OK
    out = capsys.readouterr().out
    assert "acne" in out and "research aid, not a diagnosis" in out


def test_corrupt_file_exits_2_naming_the_file(tmp_path, capsys):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    assert main(["--image", str(bad), "--json"]) == EXIT_BAD_INPUT
    captured = capsys.readouterr()
    assert str(bad) in captured.err
    assert _json_lines(captured.out)[0]["status"] == "invalid_image"


def test_missing_file_exits_2_naming_the_file(tmp_path, capsys):
    missing = tmp_path / "nope.jpg"
    assert main(["--image", str(missing)]) == EXIT_BAD_INPUT
    assert str(missing) in capsys.readouterr().err


@pytest.mark.parametrize("scheme", ["grpc", "http"])
def test_unreachable_server_exits_3_naming_the_url(scheme, astronaut_path, capsys):
    url = f"{scheme}://127.0.0.1:{free_port()}"
    assert main(["--image", str(astronaut_path), "--url", url]) == EXIT_UNREACHABLE
    assert url in capsys.readouterr().err


def test_bad_url_exits_2(astronaut_path, capsys):
    assert main(["--image", str(astronaut_path), "--url", "ftp://x"]) == EXIT_BAD_INPUT
    assert "ftp://x" in capsys.readouterr().err


def test_model_with_severity_gives_grade_and_probabilities(
    severity_model_dir, astronaut_path, capsys
):
    from core.severity import severity_grade

    args = ["--image", str(astronaut_path), "--json", "--model-dir", str(severity_model_dir)]
    assert main(args) == EXIT_OK
    (result,) = _json_lines(capsys.readouterr().out)
    face = result["faces"][0]
    severity = face["conditions"]["acne"]["severity"]
    assert set(severity) == {"grade", "probabilities"} and len(severity["probabilities"]) == 4
    assert sum(severity["probabilities"]) == pytest.approx(1.0, abs=1e-5)
    assert severity["grade"] == int(severity_grade(severity["probabilities"]))
    assert "severity" not in face["conditions"]["wrinkles"]


def test_embedded_grade_uses_the_shipped_cutpoints(severity_model_dir, astronaut_path, tmp_path):
    import dataclasses
    import shutil

    from client.result import build_result
    from client.runner import EmbeddedRunner
    from core.severity import severity_grade
    from core.thresholds import load_thresholds, save_thresholds

    data = astronaut_path.read_bytes()
    plain = EmbeddedRunner(severity_model_dir).analyze_bytes(data)
    assert plain.severity_grade.tolist() == severity_grade(plain.severity).tolist()  # no key
    default = int(plain.severity_grade[0])
    # cutpoints that must move the grade: everything counts (3), or nothing does (0)
    cutpoints = [0.999] * 3 if default == 3 else [0.001] * 3
    model_dir = tmp_path / "model"
    shutil.copytree(severity_model_dir, model_dir)
    thresholds = load_thresholds(model_dir / "thresholds.json")
    fit = {"cutpoints": cutpoints, "qwk": None, "n": 0, "method": "planted"}
    save_thresholds(
        dataclasses.replace(thresholds, acne_severity=fit), model_dir / "thresholds.json"
    )
    runner = EmbeddedRunner(model_dir)
    raw = runner.analyze_bytes(data)
    severity = build_result("a.png", raw, runner.info)["faces"][0]["conditions"]["acne"]["severity"]
    expected = int(severity_grade(raw.severity[0], cutpoints))
    assert severity["grade"] == expected == (0 if default == 3 else 3) != default


MIXED = {"acne": "real+synthetic", "hyperpigmentation": "real+synthetic", "wrinkles": "synthetic"}


@pytest.mark.parametrize(
    ("training_data", "expected"),
    [
        # A card with the evidence block (train_jax.export): passed on per condition.
        ({"synthetic": False, "evidence": MIXED, "note": "real and synthetic"}, MIXED),
        # Cards without it: all synthetic when all training data was synthetic, else unknown.
        ({"synthetic": True, "note": "synthetic only"}, dict.fromkeys(MIXED, "synthetic")),
        ({"synthetic": False, "note": "real"}, dict.fromkeys(MIXED)),
    ],
)
def test_embedded_result_carries_the_cards_evidence(
    training_data, expected, tmp_path, astronaut_path, capsys
):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    for name in ("model.onnx", "thresholds.json"):
        (model_dir / name).symlink_to(DEFAULT_MODEL_DIR / name)
    card = json.loads((DEFAULT_MODEL_DIR / "model_card.json").read_text())
    card["training_data"] = training_data
    (model_dir / "model_card.json").write_text(json.dumps(card))
    args = ["--image", str(astronaut_path), "--json", "--model-dir", str(model_dir)]
    assert main(args) == EXIT_OK
    (result,) = _json_lines(capsys.readouterr().out)
    conditions = result["faces"][0]["conditions"]
    assert {c: v["evidence"] for c, v in conditions.items()} == expected
    assert result["model"]["training_data"] == training_data["note"]


def test_region_whole_analyses_a_close_up_without_a_face(astronaut_path, tmp_path, capsys):
    image = cv2.imread(str(astronaut_path))
    close_up = tmp_path / "cheek.png"
    cv2.imwrite(str(close_up), image[120:170, 200:250])  # a patch of cheek: no face in it
    assert main(["--image", str(close_up), "--json"]) == EXIT_OK
    (faces,) = _json_lines(capsys.readouterr().out)
    assert faces["status"] == "no_face" and faces["region"] == "face"
    assert main(["--image", str(close_up), "--json", "--region", "whole"]) == EXIT_OK
    (whole,) = _json_lines(capsys.readouterr().out)
    assert whole["status"] == "ok" and whole["region"] == "whole"
    (region,) = whole["faces"]
    assert region["box"] == [0.0, 0.0, 50.0, 50.0] and region["face_presence"] is None
    assert region["score"] is None
    json.dumps(whole, allow_nan=False)
    assert main(["--image", str(close_up), "--region", "whole"]) == EXIT_OK
    assert "region: box [0, 0, 50, 50], skin tone" in capsys.readouterr().out
    assert region["skin_tone"]["fitzpatrick_group"] is not None
    assert main(["--image", str(close_up), "--region", "whole", "--url", "http://127.0.0.1:1"]) == (
        EXIT_BAD_INPUT
    )
    assert "embedded runner only" in capsys.readouterr().err
