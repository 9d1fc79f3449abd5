"""analyze_image on real photos and the preprocessing.detect CLI, including bad inputs."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from pp_helpers import encode, png_header_only

from preprocessing import detect
from preprocessing.image_io import load_image
from preprocessing.pipeline import analyze_image


def test_astronaut_crop_and_tone(astronaut, detector):
    (face,) = analyze_image(astronaut, size=128, detector=detector)
    assert face.crop.shape == (128, 128, 3) and face.crop.dtype == np.uint8
    assert face.affine.shape == (2, 3)
    assert face.skin_tone.fitzpatrick_group is not None
    assert 0 < face.skin_tone.confidence <= 1


def test_grayscale_photo_face_found_and_tone_abstains(grayscale_photo_path, detector):
    faces = analyze_image(load_image(grayscale_photo_path), size=128, detector=detector)
    assert len(faces) == 1
    tone = faces[0].skin_tone
    assert tone.fitzpatrick_group is None and tone.ita is None and tone.confidence == 0.0


def test_cli_json_matches_the_result_contract(astronaut_path, tmp_path, capsys):
    code = detect.main(["--image", str(astronaut_path), "--json", "--save-crops", str(tmp_path)])
    assert code == detect.EXIT_OK
    result = json.loads(capsys.readouterr().out)
    assert result["status"] == "ok" and result["image"] == str(astronaut_path)
    (face,) = result["faces"]
    assert set(face) == {"box", "score", "keypoints", "skin_tone"}
    assert len(face["box"]) == 4 and len(face["keypoints"]) == 6
    assert set(face["skin_tone"]) == {
        "ita",
        "ita_interval",
        "fitzpatrick_group",
        "source",
        "confidence",
        "abstain_reason",
    }
    crops = list(tmp_path.glob("*.png"))
    assert len(crops) == 1 and load_image(crops[0]).shape == (224, 224, 3)


def test_cli_no_face(tmp_path, capsys):
    path = tmp_path / "wall.png"
    path.write_bytes(encode(np.full((200, 300, 3), 128, np.uint8), ".png"))
    assert detect.main(["--image", str(path), "--json"]) == detect.EXIT_OK
    assert json.loads(capsys.readouterr().out) == {
        "image": str(path),
        "status": "no_face",
        "faces": [],
    }


def cli_bad_inputs() -> dict[str, bytes]:
    jpeg = encode(np.full((64, 64, 3), 128, np.uint8), ".jpg")
    return {
        "corrupt": b"\xff\xd8\xff\xe0" + bytes(200),
        "empty": b"",
        "truncated": jpeg[: len(jpeg) // 2],
        "zero": png_header_only(0, 0),
        "huge": png_header_only(100_000, 100_000),
        "text": b"this is a text file renamed to .jpg\n",
    }


@pytest.mark.parametrize("case", sorted(cli_bad_inputs()))
def test_cli_bad_input_exits_2_with_one_line(tmp_path, capsys, case):
    path = tmp_path / f"{case}.jpg"
    path.write_bytes(cli_bad_inputs()[case])
    assert detect.main(["--image", str(path), "--json"]) == detect.EXIT_INVALID_IMAGE
    captured = capsys.readouterr()
    assert json.loads(captured.out)["status"] == "invalid_image"
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and str(path) in err[0]


def test_cli_process_exit_code(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("not an image")
    proc = subprocess.run(
        [sys.executable, "-m", "preprocessing.detect", "--image", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and str(path) in proc.stderr
