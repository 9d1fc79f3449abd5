"""Tests of the synthetic benchmark generator: determinism, mix, masks vs labels, CLI errors."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from core.schema import CONDITIONS, GROUPS, fitzpatrick_to_group
from data.canonical import validate_dataset
from data.synth import conditions, skin
from data.synthetic import (
    PRESETS,
    SynthConfig,
    SynthError,
    fitzpatrick_for_index,
    generate_dataset,
    main,
)

ROOT = Path(__file__).resolve().parents[2]
SMALL = SynthConfig(n=48, seed=7, size=128)


def tree_hashes(folder: Path) -> dict[str, str]:
    """sha256 of every file under `folder`, by relative path."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "a"
    generate_dataset(out, SMALL, workers=1, progress=False)
    return out


def test_same_arguments_give_identical_files_whatever_the_workers(small_dataset, tmp_path):
    again = tmp_path / "b"
    generate_dataset(again, SMALL, workers=2, progress=False)
    first = tree_hashes(small_dataset)
    assert len(first) == 2 * SMALL.n + 3  # images, masks, metadata.csv, dataset.json, datacard
    assert tree_hashes(again) == first


def test_another_seed_gives_other_images(small_dataset, tmp_path):
    other = tmp_path / "c"
    generate_dataset(other, replace(SMALL, n=6, seed=8), progress=False)
    a, b = tree_hashes(small_dataset), tree_hashes(other)
    for k in range(6):
        name = f"images/synth_{k:06d}.jpg"
        assert a[name] != b[name]


def test_dataset_passes_the_canonical_validator(small_dataset):
    assert validate_dataset(small_dataset) == []


def test_masks_agree_with_labels(small_dataset):
    df = pd.read_csv(small_dataset / "metadata.csv")
    for row in df.itertuples():
        mask = cv2.imread(str(small_dataset / row.mask), cv2.IMREAD_COLOR)[..., ::-1]  # RGB order
        assert set(np.unique(mask)) <= {0, 255}
        for i, name in enumerate(CONDITIONS):
            label = getattr(row, name)
            assert label == getattr(row, f"{name}_true")  # label noise is 0 by default
            assert mask[..., i].any() == bool(label), (row.image, name)


def test_every_condition_occurs_in_the_small_dataset(small_dataset):
    df = pd.read_csv(small_dataset / "metadata.csv")
    for name in CONDITIONS:
        assert 0 < df[name].sum() < len(df)


def test_severity_matches_lesion_count(small_dataset):
    df = pd.read_csv(small_dataset / "metadata.csv")
    for row in df.itertuples():
        assert row.acne_severity == conditions.severity_from_count(row.acne_lesion_count)
        if row.acne_true:
            assert row.acne_lesion_count >= conditions.MIN_ACNE_LESIONS
        else:
            assert row.acne_lesion_count == 0


@pytest.mark.parametrize(
    ("count", "grade"), [(0, 0), (5, 0), (6, 1), (20, 1), (21, 2), (50, 2), (51, 3), (80, 3)]
)
def test_acne04_grading_boundaries(count, grade):
    assert conditions.severity_from_count(count) == grade


def test_rows_carry_type_group_and_ita_in_its_bin(small_dataset):
    df = pd.read_csv(small_dataset / "metadata.csv")
    assert set(df["split"]) <= {"train", "val", "test"}
    assert df["subject_id"].is_unique
    for row in df.itertuples():
        assert row.group == fitzpatrick_to_group(row.fitzpatrick)
        assert skin.ita_to_fitzpatrick(row.ita_true) == row.fitzpatrick
    info = json.loads((small_dataset / "dataset.json").read_text())
    assert info["seed"] == SMALL.seed and info["config"]["n"] == SMALL.n
    assert sum(info["group_counts"].values()) == SMALL.n
    assert info["synthetic"] is True
    card = json.loads((small_dataset / "datacard.json").read_text())
    assert card["tone_source"] == "labelled" and card["name"]


@pytest.mark.parametrize("mix", [(0.45, 0.40, 0.15), (0.2, 0.3, 0.5), (1 / 3, 1 / 3, 1 / 3)])
@pytest.mark.parametrize("seed", [0, 7, 12345])
def test_group_mix_within_three_points_on_300_images(mix, seed):
    config = SynthConfig(n=300, seed=seed, group_mix=mix)
    rng = np.random.default_rng(0)
    groups = [fitzpatrick_to_group(fitzpatrick_for_index(config, i, rng)) for i in range(300)]
    for g, target in zip(GROUPS, mix, strict=True):
        assert abs(groups.count(g) / 300 - target) <= 0.03


def test_preset_synthskin_v1_is_frozen_and_keeps_its_mix():
    preset = PRESETS["synthskin-v1"]
    assert (preset.size, preset.group_mix, preset.label_noise) == (256, (0.45, 0.40, 0.15), 0.0)
    assert preset.contrast[2] < preset.contrast[0]  # lesions harder to see on V-VI
    rng = np.random.default_rng(0)
    types = [fitzpatrick_for_index(preset, i, rng) for i in range(preset.n)]
    groups = [fitzpatrick_to_group(t) for t in types]
    for g, target in zip(GROUPS, preset.group_mix, strict=True):
        assert abs(groups.count(g) / preset.n - target) <= 0.03
    assert set(types) == {1, 2, 3, 4, 5, 6}


@pytest.mark.parametrize("ftype", [1, 2, 3, 4, 5, 6])
def test_sampled_skin_colour_lies_in_its_ita_bin(ftype):
    rng = np.random.default_rng(ftype)
    labs = np.array([skin.sample_skin_lab(ftype, rng) for _ in range(500)])
    ita = skin.ita_of_lab(labs)
    assert all(skin.ita_to_fitzpatrick(v) == ftype for v in ita)
    # Round trip through sRGB keeps the colour (it is inside the gamut).
    back = skin.rgb_to_lab(skin.lab_to_rgb(labs))
    assert np.abs(back - labs).max() < 1.0


def test_label_noise_flips_labels_but_masks_keep_the_truth(tmp_path):
    out = tmp_path / "noisy"
    generate_dataset(out, SynthConfig(n=16, seed=3, size=96, label_noise=0.5), progress=False)
    df = pd.read_csv(out / "metadata.csv")
    flipped = sum((df[c] != df[f"{c}_true"]).sum() for c in CONDITIONS)
    assert flipped > 0
    for row in df.itertuples():
        mask = cv2.imread(str(out / row.mask), cv2.IMREAD_COLOR)[..., ::-1]
        for i, name in enumerate(CONDITIONS):
            assert mask[..., i].any() == bool(getattr(row, f"{name}_true"))


def test_interrupted_run_leaves_nothing_behind(tmp_path, monkeypatch):
    import data.synthetic as synthetic

    real = synthetic.make_record

    def failing(config, index):
        if index == 3:
            raise KeyboardInterrupt
        return real(config, index)

    monkeypatch.setattr(synthetic, "make_record", failing)
    with pytest.raises(KeyboardInterrupt):
        generate_dataset(tmp_path / "out", SynthConfig(n=6, seed=1, size=96), progress=False)
    assert list(tmp_path.iterdir()) == []


def test_regenerating_replaces_a_generated_folder_but_never_a_foreign_one(tmp_path):
    out = tmp_path / "ds"
    generate_dataset(out, SynthConfig(n=3, seed=1, size=96), progress=False)
    generate_dataset(out, SynthConfig(n=2, seed=2, size=96), progress=False)
    assert len(pd.read_csv(out / "metadata.csv")) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(SynthError, match="not empty"):
        generate_dataset(foreign, SynthConfig(n=2, seed=2, size=96), progress=False)
    assert (foreign / "notes.txt").read_text() == "keep me"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--out", "X", "--n", "0", "--seed", "1"], "n must be >= 1"),
        (["--out", "X", "--seed", "1"], "missing --n"),
        (["--preset", "synthskin-v1", "--n", "5"], "--n change preset synthskin-v1; give --out"),
        (["--out", "X", "--n", "5", "--seed", "1", "--group-mix", "0.5,0.6,0.1"], "sum to 1"),
        (["--out", "X", "--n", "5", "--seed", "1", "--group-mix", "0.5,0.5"], "needs 3 values"),
        (["--out", "X", "--n", "5", "--seed", "1", "--label-noise", "0.9"], "label_noise"),
        (["--out", "X", "--n", "5", "--seed", "1", "--workers", "0"], "workers must be >= 1"),
        (["--out", "X", "--n", "5", "--seed", "1", "--splits", "0.5,0.6,0"], "sum to 1"),
        (["--out", "X", "--n", "5", "--seed", "1", "--splits", "0,1"], "splits needs 3 values"),
        (["--preset", "synthskin-v1", "--splits", "0,0,1", "--out", "X"], "--splits changes"),
    ],
)
def test_cli_bad_arguments_exit_2_with_one_line(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_cli_end_to_end_json_and_foreign_folder(tmp_path):
    cmd = [sys.executable, "-m", "data.synthetic", "--n", "4", "--seed", "5", "--size", "96"]
    run = subprocess.run(
        [*cmd, "--out", str(tmp_path / "ok"), "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["num_images"] == 4
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x.txt").write_text("x")
    bad = subprocess.run(
        [*cmd, "--out", str(tmp_path / "busy")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 1
    assert "busy" in bad.stderr and "Traceback" not in bad.stderr


def test_preset_flags_that_repeat_it_keep_it_and_others_make_a_custom_set() -> None:
    from data.synthetic import PRESETS, config_from_args, make_parser

    preset = PRESETS["synthskin-v1"]
    same = make_parser().parse_args(
        ["--preset", "synthskin-v1", "--n", str(preset.n), "--contrast", "1.0,1.0,0.7"]
    )
    assert config_from_args(same)[1:] == (Path("data/synthskin-v1"), "synthskin-v1")
    custom = make_parser().parse_args(["--preset", "synthskin-v1", "--n", "7", "--out", "X"])
    config, out, name = config_from_args(custom)
    assert (config.n, config.seed, config.contrast) == (7, preset.seed, preset.contrast)
    assert (out, name) == (Path("X"), None)  # not the frozen benchmark any more


def test_evaluation_only_draw_puts_every_image_in_test_and_records_it(tmp_path):
    argv = ["--n", "12", "--seed", "3", "--size", "96", "--splits", "0,0,1"]
    assert main([*argv, "--out", str(tmp_path / "a")]) == 0
    meta = pd.read_csv(tmp_path / "a" / "metadata.csv")
    assert set(meta["split"]) == {"test"} and len(meta) == 12
    info = json.loads((tmp_path / "a" / "dataset.json").read_text())
    assert info["split_fractions"] == {"train": 0.0, "val": 0.0, "test": 1.0}
    assert info["split_counts"] == {"train": 0, "val": 0, "test": 12}
    # the images are those of the default split with the same arguments: only `split` differs
    assert main([*argv[:-2], "--out", str(tmp_path / "b")]) == 0
    other = pd.read_csv(tmp_path / "b" / "metadata.csv")
    assert "split_fractions" not in json.loads((tmp_path / "b" / "dataset.json").read_text())
    assert set(other["split"]) == {"train", "val", "test"}
    pd.testing.assert_frame_equal(meta.drop(columns="split"), other.drop(columns="split"))
    for name in meta["image"]:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
