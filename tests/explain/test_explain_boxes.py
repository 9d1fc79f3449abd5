"""The pointing game on box annotations, "no ground truth", and estimated-tone wording.

Hand-made crops with known answers; the end-to-end test runs `evaluate_run` with the model
parts replaced by arrays (no training, no TFDS build).
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from core.schema import GROUPS
from explain import evaluate as ev
from explain.evaluate import (
    Examples,
    examples_tone,
    face_width_px,
    format_table,
    goal_check,
    localisation_summary,
    main,
    read_data_facts,
)
from tests.conftest import ACNE_NEW

N, S = 6, 96  # a 96 px crop: face 64 px wide, 2% = 1.28 px
# The only way an estimated-tone report may name Fitzpatrick: to say its groups are not that.
ALLOWED = ("not Fitzpatrick types", "not Fitzpatrick")


def _boxes() -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Acne boxes in every crop; the map peaks inside in images 0-3, 1 px outside in 4 and 5."""
    masks = np.zeros((N, S, S, 3), bool)
    cams = np.zeros((N, 3, S, S), np.float32)
    labels = np.zeros((N, 3), np.float32)
    groups = [GROUPS[i // 2] for i in range(N)]  # two images per group
    for i in range(N):
        masks[i, 30:50, 40:60, 0] = True  # box: rows 30..49, columns 40..59
        labels[i, 0] = 1
        cams[i, 0, 40, 50] = 1.0  # inside
        cams[i, 0, 80, 10] = 0.5
    cams[4:, 0, 40, 50] = 0.0
    cams[4:, 0, 40, 60] = 1.0  # V-VI: 1 px right of the box
    labels[:, 2] = np.nan  # wrinkles: no label anywhere (acne-new)
    return cams, masks, labels, groups


def test_face_width_matches_the_crop_geometry() -> None:
    """A square face box maps onto side / (1 + 2 x margin) crop pixels (preprocessing.align)."""
    from preprocessing.align import DEFAULT_MARGIN, crop_affine, transform_points

    affine = crop_affine((10, 20, 200, 200), np.array([[60, 80], [150, 80.0]]), size=S)
    left, right = transform_points(np.array([[10, 120], [210, 120.0]]), affine)
    assert np.linalg.norm(right - left) == pytest.approx(face_width_px(S))
    assert face_width_px(S) == pytest.approx(S / (1 + 2 * DEFAULT_MARGIN)) == 64.0


def test_dilated_pointing_game_by_group_with_strict_beside_it() -> None:
    cams, masks, labels, groups = _boxes()
    strict = localisation_summary(cams, masks, labels, groups, num_boot=50)
    assert strict["acne"]["pointing_game"]["overall"]["value"] == pytest.approx(4 / 6)
    assert "pointing_game_strict" not in strict["acne"]  # dilate 0: the old report, unchanged

    loc = localisation_summary(cams, masks, labels, groups, dilate=0.02, num_boot=50)
    pg = loc["acne"]["pointing_game"]
    assert pg["overall"]["value"] == 1.0 and pg["spread"] == 0.0
    assert {g: v["value"] for g, v in pg["by_group"].items()} == dict.fromkeys(GROUPS, 1.0)
    assert pg["by_group"]["V-VI"]["ci95"] == [1.0, 1.0]
    assert loc["acne"]["pointing_game_strict"]["by_group"]["V-VI"]["value"] == 0.0
    assert loc["acne"]["pointing_game_strict"]["spread"] == 1.0
    # the same 1 px on a face twice as small in the crop is more than 2% of it: a miss
    small = localisation_summary(cams, masks, labels, groups, dilate=0.02, face_width=32.0)
    assert small["acne"]["pointing_game"]["by_group"]["V-VI"]["value"] == 0.0


def test_condition_without_labels_reads_no_ground_truth_not_zero() -> None:
    cams, masks, labels, groups = _boxes()
    labels[:, 1] = 0  # hyperpigmentation labelled, never present
    loc = localisation_summary(cams, masks, labels, groups, dilate=0.02, num_boot=20)
    assert loc["acne"]["status"] == "ok"
    assert loc["hyperpigmentation"]["status"] == "no positives"
    wrinkles = loc["wrinkles"]
    assert wrinkles["status"] == "no ground truth" and wrinkles["n_labelled"] == 0
    assert wrinkles["pointing_game"]["overall"] == {"value": None, "ci95": [None, None], "n": 0}
    goal = goal_check(loc, {})
    assert goal["wrinkles"]["status"] == "no ground truth"
    assert goal["wrinkles"]["pointing_game"] is None
    table = format_table({"localisation": loc, "faithfulness": _no_curves()})
    row = next(line for line in table.splitlines() if line.startswith("| wrinkles |"))
    assert row.startswith("| wrinkles | no ground truth |") and "0.00" not in row
    assert row.count("|") == table.splitlines()[0].count("|")  # a full row of cells


def _no_curves() -> dict:
    keys = ("deletion", "insertion")
    return {
        c: {f"{m}{k}": None for m in keys for k in ("_auc", "_random_auc", "_ratio")}
        for c in ("acne", "hyperpigmentation", "wrinkles")
    }


def test_table_names_estimated_tone_groups() -> None:
    cams, masks, labels, groups = _boxes()
    loc = localisation_summary(cams, masks, labels, groups, dilate=0.02, num_boot=20)
    report = {
        "localisation": loc,
        "faithfulness": _no_curves(),
        "tone_source": "estimated",
        "settings": {"dilate": 0.02},
    }
    head = format_table(report).splitlines()[0]
    assert "PG estimated-tone group V-VI" in head
    assert "pointing game (boxes + 2% face width)" in head and "Fitzpatrick" not in head
    labelled = format_table({**report, "tone_source": "labelled", "settings": {}})
    assert "| PG V-VI |" in labelled and "pointing game (strict)" in labelled


def test_examples_tone_and_data_facts(tmp_path) -> None:
    ex = Examples(["a", "b"], *(np.zeros((2, 1)),) * 3, ["V-VI", "unknown"])
    assert examples_tone(ex).source == "unknown"  # sources not read
    est = Examples(["a"], *(np.zeros((1, 1)),) * 3, ["V-VI"], tone_sources=["estimated"])
    assert examples_tone(est).group_name("V-VI") == "estimated-tone group V-VI"

    synth = tmp_path / "synth"
    synth.mkdir()
    (synth / "metadata.csv").write_text("image,source\na.png,synthskin-v1\n")
    assert read_data_facts(synth)["synthetic"] is True
    real = _real_dataset(tmp_path / "acne-new")
    facts = read_data_facts(real)
    assert facts["synthetic"] is False and facts["tone_source"] == "estimated"
    assert facts["datacard"]["licence"] == "CC BY 4.0"


def _real_dataset(folder: Path) -> Path:
    folder.mkdir()
    (folder / "metadata.csv").write_text("image,source\na.jpg,acne-new v36\n")
    (folder / "datacard.json").write_text(json.dumps(ACNE_NEW))
    return folder


def _fake_run(monkeypatch, ex: Examples) -> None:
    """evaluate_run's model parts replaced: maps and probabilities are given arrays."""
    cams, *_ = _boxes()
    config = SimpleNamespace(model=SimpleNamespace(image_size=S, name="toy"))
    monkeypatch.setattr(ev, "load_run_examples", lambda *a, **k: (None, config, ex))
    probs = np.full((N, 3), 0.7, np.float32)
    monkeypatch.setattr(ev, "compute_cams", lambda *a, **k: (probs, cams))
    monkeypatch.setattr(ev, "cam_grid", lambda *a, **k: None)
    monkeypatch.setattr(ev, "cell_alignment", lambda *a, **k: "center")
    lesion = ex.masks[0, ..., 0]

    def predict(batch: np.ndarray) -> np.ndarray:
        score = batch[:, lesion, 0].mean(axis=1) / 255.0
        return np.stack([score] * 3, axis=1)

    monkeypatch.setattr(ev, "make_predict_fn", lambda *a, **k: predict)


def _examples(tone_source: str) -> Examples:
    _, masks, labels, groups = _boxes()
    images = np.full((N, S, S, 3), 120, np.uint8)
    images[masks[..., 0]] = (200, 60, 60)
    ids = [f"img{i}.jpg" for i in range(N)]
    return Examples(ids, images, masks, labels, groups, tone_sources=[tone_source] * N)


def _evaluate(tmp_path: Path, data: Path, **kwargs) -> dict:
    return ev.evaluate_run(
        tmp_path / "run",
        data,
        out_dir=tmp_path / "out",
        num_boot=20,
        num_steps=4,
        curve_images=2,
        num_examples=1,
        show_progress=False,
        **kwargs,
    )


def test_evaluate_run_on_real_boxes_with_estimated_tone(tmp_path, monkeypatch) -> None:
    _fake_run(monkeypatch, _examples("estimated"))
    report = _evaluate(tmp_path, _real_dataset(tmp_path / "acne-new"))
    assert report["settings"]["dilate"] == 0.02  # real data: boxes dilated by default
    assert report["settings"]["dilate_px"] == pytest.approx(1.28)
    acne = report["localisation"]["acne"]
    assert acne["pointing_game"]["overall"]["value"] == 1.0
    assert acne["pointing_game_strict"]["overall"]["value"] == pytest.approx(4 / 6)
    assert report["no_ground_truth"] == ["wrinkles"]
    assert report["localisation"]["wrinkles"]["status"] == "no ground truth"
    assert report["tone_source"] == "estimated"
    assert report["group_label"] == "estimated tone group (ITA)"
    assert report["group_basis"] == "estimated tone (ITA from the photo), not Fitzpatrick"
    note = report["note"]
    assert "acne-new v36 (CC BY 4.0)" in note and "no skin-type labels" in note
    text = json.dumps(report) + format_table(report)
    for allowed in ALLOWED:
        text = text.replace(allowed, "")
    assert "Fitzpatrick" not in text
    saved = json.loads((tmp_path / "out" / "explain_test.json").read_text())
    assert saved["localisation"]["acne"]["pointing_game"] == acne["pointing_game"]
    assert sorted(p.name for p in (tmp_path / "out").glob("cam_examples_*.png")) == [
        f"cam_examples_{g}.png" for g in sorted(GROUPS)
    ]
    # --dilate 0 restores the strict pointing game on the same data
    strict = _evaluate(tmp_path, tmp_path / "acne-new", dilate=0.0)
    assert strict["localisation"]["acne"]["pointing_game"]["overall"]["value"] == pytest.approx(
        4 / 6
    )
    assert "pointing_game_strict" not in strict["localisation"]["acne"]


def test_evaluate_run_on_synthetic_stays_strict_and_labelled(tmp_path, monkeypatch) -> None:
    _fake_run(monkeypatch, _examples("labelled"))
    data = tmp_path / "synth"
    data.mkdir()
    (data / "metadata.csv").write_text("image,source\na.png,synthskin-v1\n")
    report = _evaluate(tmp_path, data)
    assert report["settings"]["dilate"] == 0.0
    assert report["localisation"]["acne"]["pointing_game"]["overall"]["value"] == pytest.approx(
        4 / 6
    )
    assert "pointing_game_strict" not in report["localisation"]["acne"]
    assert report["tone_source"] == "labelled" and "group_note" not in report
    assert report["note"].startswith("Synthetic data: these numbers describe the benchmark")


def test_cli_rejects_a_bad_dilation(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--run", "r", "--data", "d", "--dilate", "2"])
    assert exc.value.code == 2
    assert "--dilate must be in [0, 1)" in capsys.readouterr().err


def test_load_examples_reads_estimated_tone_through_the_crop_cache(tmp_path) -> None:
    """acne-new-like metadata (group from the ITA estimate, no type, no wrinkle labels) read
    through the trainer's TFDS build: groups kept, every source "estimated"."""
    import pandas as pd

    from data.synthetic import SynthConfig, generate_dataset
    from explain.evaluate import load_examples

    data = tmp_path / "est"
    generate_dataset(data, SynthConfig(n=10, seed=3, size=96), progress=False, splits=(0, 0, 1))
    meta = pd.read_csv(data / "metadata.csv", dtype=str, keep_default_na=False)
    groups = [GROUPS[(int(f) - 1) // 2] for f in meta["fitzpatrick"]]
    meta = meta.assign(
        fitzpatrick="", fitzpatrick_group=groups, tone_source="estimated", wrinkles=""
    )
    meta.to_csv(data / "metadata.csv", index=False)
    ex = load_examples(data, crop_size=48, split="test", limit=None)
    by_id = dict(zip(meta["image"], groups, strict=True))
    assert ex.groups == [by_id[i] for i in ex.ids]
    assert ex.tone_sources == ["estimated"] * len(ex.ids)
    assert examples_tone(ex).source == "estimated"
    assert np.isnan(ex.labels[:, 2]).all()
