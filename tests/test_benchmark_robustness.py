"""benchmarks/robustness.py on a tiny face set of real photos shipped in wheels (linked, not
copied), and its pure parts on known answers."""

from __future__ import annotations

import doctest
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from preprocessing.image_io import load_image
from tests.benchmark_loader import linked_dataset, load_benchmark, run_main

ROOT = Path(__file__).resolve().parents[1]


rb = load_benchmark("robustness")


def _face_set(root: Path, photos: list[Path], split: str = "val") -> Path:
    """A converted-dataset folder whose images are symlinks to `photos` (no face is copied)."""
    return linked_dataset(root, [(photo, split) for photo in photos])


def _run(argv: list[str]) -> tuple[int, str, str]:
    return run_main(rb.main, argv)


@pytest.fixture(scope="module")
def shipped_faces(tmp_path_factory, astronaut_path, grayscale_photo_path, group_photo_path):
    root = tmp_path_factory.mktemp("faces")
    return _face_set(root, [astronaut_path, grayscale_photo_path, group_photo_path])


@pytest.fixture(scope="module")
def result(shipped_faces) -> dict:
    before = sorted(p.name for p in shipped_faces.rglob("*"))
    code, out, _ = _run(["--faces", str(shipped_faces), "--json"])
    assert code == 0
    assert sorted(p.name for p in shipped_faces.rglob("*")) == before  # nothing written
    return json.loads(out)


def test_face_recall_and_counts_on_shipped_photos(result):
    assert result["measured_on"] == rb.MEASURED_ON
    assert result["faces"]["photos"] == 3
    assert result["faces"]["face_recall"] == 1.0 and result["faces"]["missed"] == []
    assert result["model"]["name"] and result["model"]["backend"] == "embedded"
    assert result["seconds"] > 0


def test_non_face_acceptance_is_computed(result):
    non = result["non_faces"]
    assert non["images"] >= 40  # ~24 scikit-image images and 29 drawings
    assert non["acceptance_rate"] == round(non["accepted"] / non["images"], 4)
    assert len(non["accepted_images"]) == non["accepted"]
    assert sum(v["images"] for v in non["by_source"].values()) == non["images"]
    assert isinstance(non["rejected_candidates"], int) and non["rejected_candidates"] >= 0


def test_flip_rates_in_range_and_lossless_changes_flip_nothing(result):
    flips = result["benign_changes"]
    assert flips["photos"] == 3
    assert flips["triples"] == 3 * len(rb.BENIGN_CHANGES) * 3 - 3 * sum(
        flips["faces_lost_by_change"].values()
    )
    rates = [flips["flip_rate"], *flips["flip_rate_by_change"].values()]
    rates += list(flips["flip_rate_by_condition"].values())
    assert all(0.0 <= r <= 1.0 for r in rates)
    assert list(flips["flip_rate_by_condition"]) == ["acne", "hyperpigmentation", "wrinkles"]
    # The upright pixels come back exactly: the same outputs as the photo as taken.
    for change in ("PNG", "EXIF orientation PNG", "EXIF orientation WebP"):
        assert flips["flip_rate_by_change"][change] == 0.0, change
        assert flips["mean_abs_delta_prob_by_change"][change] == 0.0, change
        assert flips["faces_lost_by_change"][change] == 0, change
    # Lossy and geometric changes do move the probabilities.
    assert flips["mean_abs_delta_prob_by_change"]["rotate 5 deg"] > 0.0
    # The mirror image is measured apart, not in the benign changes' total.
    mirror = result["mirror_image"]
    assert "mirror image" not in flips["flip_rate_by_change"]
    assert list(mirror["flip_rate_by_change"]) == ["mirror image"]
    assert mirror["triples"] == 3 * 3 - 3 * mirror["faces_lost_by_change"]["mirror image"]
    assert 0.0 <= mirror["flip_rate"] <= 1.0
    assert 0.0 <= mirror["mean_abs_delta_prob_by_change"]["mirror image"] <= 1.0


def test_lighting_rates_in_range(result):
    light = result["lighting"]
    assert light["faces"] == 3
    for name in rb.LIGHTING_CHANGES:
        assert set(light[name]) == {"group_changed", "abstain", "no_face"}
        assert all(0.0 <= v <= 1.0 for v in light[name].values())


def test_missing_metadata_exits_2_naming_the_file(tmp_path):
    code, out, err = _run(["--faces", str(tmp_path), "--json"])
    assert code == 2 and out == ""
    assert err.strip() == "robustness: " + rb.NO_METADATA.format(path=tmp_path / "metadata.csv")


def test_no_val_rows_and_missing_photo_exit_2(tmp_path, astronaut_path):
    train_only = _face_set(tmp_path / "a", [astronaut_path], split="train")
    code, _, err = _run(["--faces", str(train_only)])
    assert code == 2 and "no rows with split == 'val'" in err
    gone = tmp_path / "b"
    gone.mkdir()
    (gone / "metadata.csv").write_text("image,split\nimages/nope.jpg,val\n")
    code, _, err = _run(["--faces", str(gone)])
    assert code == 2 and str(gone / "images" / "nope.jpg") in err


def test_help_lists_the_flags(capsys):
    with pytest.raises(SystemExit) as exc:
        rb.main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert all(f in text for f in ("--faces", "--limit", "--json", "--seed"))


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "JPEG"])
@pytest.mark.parametrize("orientation", [6, 8])
def test_exif_orientation_restores_the_upright_image(fmt, orientation):
    image = rb.draw_words("upright", width=96, height=40)
    data = rb.encode_with_orientation(image, fmt, orientation)
    stored = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert stored.shape[:2] == (96, 40)  # the pixels are stored turned
    upright = load_image(data)
    if fmt == "JPEG":
        assert upright.shape == image.shape
        assert np.abs(upright.astype(int) - image).mean() < 4.0
    else:
        np.testing.assert_array_equal(upright, image)


def test_non_face_set_leaves_out_the_faces():
    images = rb.non_face_images()
    names = [name for _, name, _ in images]
    assert "astronaut.png" not in names and "camera.png" not in names
    assert "coffee.png" in names and "drawn: die 6 on grey" in names
    assert "drawn: smiley 320 px" in names and "drawn: test chart checkerboard" in names
    assert all(min(load_image(data).shape[:2]) >= rb.MIN_SIDE_PX for _, _, data in images)
    assert [n for _, n, _ in rb.non_face_images()] == names  # deterministic


def test_flip_summary_by_hand():
    o = rb.Outcome
    base = o("I-II", np.array([0.2, 0.6, 0.1]), np.array([False, True, False]))
    same = o("I-II", np.array([0.2, 0.6, 0.1]), np.array([False, True, False]))
    other_group = o("V-VI", np.array([0.7, 0.6, 0.1]), np.array([True, True, True]))
    results = [
        {"as taken": base, "a": same, "b": other_group},  # b flips acne and wrinkles
        {"as taken": base, "a": None, "b": same},  # a lost the face
        {"as taken": None},  # no face as taken: not counted
    ]
    out = rb.flip_summary(results, ("a", "b"))
    assert (out["photos"], out["triples"], out["flips"]) == (2, 9, 2)
    assert out["flip_rate"] == round(2 / 9, 4)
    assert out["flip_rate_by_change"] == {"a": 0.0, "b": round(2 / 6, 4)}
    assert out["flip_rate_by_condition"] == {"acne": 0.3333, "hyperpigmentation": 0.0,
                                             "wrinkles": 0.3333}  # fmt: skip
    assert out["mean_abs_delta_prob_by_change"] == {"a": 0.0, "b": round(0.5 / 6, 4)}
    assert out["faces_lost_by_change"] == {"a": 1, "b": 0}
    assert out["flips_with_group_change"] == 2


def test_lighting_summary_by_hand():
    o = rb.Outcome
    light, mid, unsure = o("I-II", None, None), o("III-IV", None, None), o(None, None, None)
    results = [
        {"as taken": light, "x": mid},  # changed
        {"as taken": light, "x": unsure},  # abstains
        {"as taken": unsure, "x": mid},  # not estimated as taken: not a change
        {"as taken": light, "x": None},  # face lost
    ]
    out = rb.lighting_summary(results, ("x",))
    assert out["faces"] == 4 and out["abstain_as_taken"] == 0.25
    assert out["x"] == {"group_changed": 0.25, "abstain": 0.25, "no_face": 0.25}


def test_doctests():
    assert doctest.testmod(rb).failed == 0
