"""The fairness ablation's config plumbing: the tone variant and the reuse check of old runs."""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _ablation():
    spec = importlib.util.spec_from_file_location(
        "fairness_ablation", ROOT / "benchmarks" / "fairness_ablation.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(tmp_path: Path, name: str, *, balance: str, loss: str, size: int, overrides: dict) -> Path:
    run = tmp_path / name
    run.mkdir()
    config = {
        "data": {"balance": balance},
        "loss": loss,
        "model": {"name": "small_cnn", "image_size": size, "overrides": overrides},
        "epochs": 12,
    }
    (run / "config.json").write_text(json.dumps(config))
    return run


def test_tone_variant_appends_to_the_base_config() -> None:
    ab = _ablation()
    assert ab.config_spec("train_jax/configs/demo.py:os16,imagenet", "tone").endswith(
        ":os16,imagenet,tone"
    )
    assert ab.config_spec("demo.py", "tone") == "demo.py:tone"
    assert ab.TRAININGS[ab.VARIANTS[ab.FULL_PIPELINE][0]][1] == "tone,os4"


def test_reused_runs_must_match_the_asked_settings(tmp_path: Path) -> None:
    ab = _ablation()
    args = argparse.Namespace(image_size=64)
    ok = _run(tmp_path, "a", balance="group", loss="groupdro", size=64, overrides={"width": 0.5})
    ab.check_reused(ok, "groupdro", args)  # defaults: ImageNet input normalisation
    with pytest.raises(ValueError, match="input_norm"):
        ab.check_reused(ok, "groupdro_tone", args)
    tone = _run(
        tmp_path, "b", balance="group", loss="groupdro", size=96, overrides={"input_norm": "tone"}
    )
    with pytest.raises(ValueError, match="image_size"):
        ab.check_reused(tone, "groupdro_tone", args)
    ab.check_reused(tone, "groupdro_tone", argparse.Namespace(image_size=0))
    with pytest.raises(ValueError, match="output_stride"):
        ab.check_reused(tone, "groupdro_tone_os4", argparse.Namespace(image_size=0))
    with pytest.raises(ValueError, match="data.balance"):
        ab.check_reused(ok, "baseline", args)
    # --epochs: a 12-epoch run is not reused for a 24-epoch ablation.
    ab.check_reused(tone, "groupdro_tone", argparse.Namespace(image_size=0, epochs=12))
    with pytest.raises(ValueError, match="epochs"):
        ab.check_reused(tone, "groupdro_tone", argparse.Namespace(image_size=0, epochs=24))
    # The default base config pins the localisation loss off: a run trained with it is refused;
    # a run from before the loss existed (no loc_weight key) counts as off.
    noloc = argparse.Namespace(image_size=0, config="train_jax/configs/demo.py:os16,imagenet,noloc")
    ab.check_reused(tone, "groupdro_tone", noloc)
    config = json.loads((tone / "config.json").read_text())
    (tone / "config.json").write_text(json.dumps({**config, "loc_weight": 0.01}))
    with pytest.raises(ValueError, match="loc_weight"):
        ab.check_reused(tone, "groupdro_tone", noloc)
    # balanced_groupdro_tone_norm_os4_loc appends `loc`: it wants the loss on, so a run without
    # it is refused.
    os4 = _run(tmp_path, "c", balance="group", loss="groupdro", size=96,
               overrides={"input_norm": "tone", "output_stride": 4})  # fmt: skip
    with pytest.raises(ValueError, match="loc_weight"):
        ab.check_reused(os4, "groupdro_tone_os4_loc", noloc)
    # balanced_groupdro_tone_norm_os8_loc asks for stride 8: a stride-4 run is refused.
    with pytest.raises(ValueError, match="output_stride"):
        ab.check_reused(os4, "groupdro_tone_os8_loc", noloc)
    assert [ab.variant_stride(v) for v in ("tone", "tone,os4,loc", "tone,os8,loc")] == [16, 4, 8]
    config = json.loads((os4 / "config.json").read_text())
    (os4 / "config.json").write_text(json.dumps({**config, "loc_weight": 0.01}))
    ab.check_reused(os4, "groupdro_tone_os4_loc", noloc)
    # balanced_groupdro_tone_norm_os4_loc_wide asks for width 1.0: the width-0.5 run is refused,
    # a width-1.0 one is reused.
    with pytest.raises(ValueError, match="width"):
        ab.check_reused(os4, "groupdro_tone_os4_loc_wide", noloc)
    config = json.loads((os4 / "config.json").read_text())
    config["model"]["overrides"]["width"] = 1.0
    (os4 / "config.json").write_text(json.dumps(config))
    ab.check_reused(os4, "groupdro_tone_os4_loc_wide", noloc)
    # balanced_groupdro_tone_norm_os4_loc_wide_128px asks for 128 px whatever --image-size says:
    # the 96 px run is refused, a 128 px one is reused.
    with pytest.raises(ValueError, match="image_size"):
        ab.check_reused(os4, "groupdro_tone_os4_loc_wide_128", noloc)
    config["model"]["image_size"] = 128
    (os4 / "config.json").write_text(json.dumps(config))
    ab.check_reused(os4, "groupdro_tone_os4_loc_wide_128", noloc)
    at96 = argparse.Namespace(image_size=96, config=noloc.config)
    ab.check_reused(os4, "groupdro_tone_os4_loc_wide_128", at96)
    with pytest.raises(ValueError, match="image_size"):
        ab.check_reused(os4, "groupdro_tone_os4_loc_wide", at96)


def test_variants_are_named_for_their_training() -> None:
    ab = _ablation()
    assert ab.BASELINE == "baseline_bce" and ab.FULL_PIPELINE == "balanced_groupdro_tone_norm_os4"
    assert set(ab.DEFAULT_VARIANTS) <= set(ab.VARIANTS)
    assert {run for run, _ in ab.VARIANTS.values()} <= set(ab.TRAININGS)
    # A name says what its training asks for: the reuse check reads the same table.
    for name, (run, per_group) in ab.VARIANTS.items():
        flags, variant = ab.TRAININGS[run]
        parts = variant.split(",")
        assert ("groupdro" in name) == ("groupdro" in flags)
        assert ("balanced" in name) == (flags[flags.index("--balance") + 1] == "group")
        assert ("tone_norm" in name) == ("tone" in parts)
        assert ("_loc" in name) == ("loc" in parts)
        assert ("wide" in name) == ("wide" in parts)
        assert ("128px" in name) == ("--image-size" in flags)
        assert ("select_worst_group" in name) == ("--select" in flags)
        assert per_group == (name not in ("baseline_bce", "balanced_bce"))


def test_unknown_variant_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    ab = _ablation()
    with pytest.raises(SystemExit) as exc:
        ab.main(["--variants", "baseline_bce,a"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "unknown ['a']" in err and "balanced_groupdro_tone_norm_os4_loc_wide" in err


def test_heldout_needs_a_dataset_and_reuses_written_predictions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ab = _ablation()
    with pytest.raises(SystemExit) as exit_info:
        ab.main(["--heldout", str(tmp_path / "nothing"), "--report", str(tmp_path / "r.json")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "no metadata.csv" in err and "--splits 0,0,1" in err
    assert not (tmp_path / "r.json").exists()
    run = tmp_path / "run-s0"
    run.mkdir()
    written = run / "predictions_heldout-draw.csv"
    written.write_text("image\n")
    args = argparse.Namespace(heldout=tmp_path / "draw", heldout_tfds=None)
    assert ab.heldout_predictions(run, args) == written  # reused: no prediction subprocess


def test_runs_trained_with_other_code_are_listed(tmp_path: Path) -> None:
    ab = _ablation()
    old, new = tmp_path / "old", tmp_path / "new"
    metrics = {"code_digest": "d1", "code_version": "abc123+dirty"}
    for run, m in ((old, {}), (new, metrics)):
        run.mkdir()
        (run / "metrics.json").write_text(json.dumps(m))
    assert ab.run_code_version(old) == "unknown"
    assert ab.run_code_version(new) == "d1 (abc123+dirty)"
    assert ab.run_code_version(tmp_path / "missing") == "unknown"
    results = {
        "baseline_bce": {"per_seed": [{"run": "old", "code_version": "unknown"}]},
        "balanced_bce": {"per_seed": [{"run": "old", "code_version": "unknown"}]},
        "balanced_groupdro": {"per_seed": [{"run": "new", "code_version": "d1 (abc123+dirty)"}]},
    }
    assert ab.code_versions(results) == {"unknown": ["old"], "d1": ["new (abc123+dirty)"]}


def test_every_variant_gets_its_goal_check(capsys: pytest.CaptureFixture[str]) -> None:
    ab = _ablation()

    def mean(macro: float, gap: float, high: float) -> dict:
        return {"mean": {"macro_f1": macro, "gap_dark_vs_medium_f1": gap, "gap_ci_high_max": high}}

    results = {
        "baseline_bce": mean(0.90, 0.20, 0.25),
        "balanced_groupdro_tone_norm": mean(0.885, 0.04, 0.09),  # macro-F1 0.015 below
        "balanced_groupdro_tone_norm_os4_loc": mean(0.91, 0.06, 0.08),
    }
    assert ab.goal_cell(results, "baseline_bce") == "-"
    assert ab.goal_cell(results, "balanced_groupdro_tone_norm") == "yes / yes / no"
    assert ab.goal_cell(results, "balanced_groupdro_tone_norm_os4_loc") == "no / yes / yes"
    with pytest.raises(SystemExit):
        ab.main(
            [
                "--variants",
                "balanced_groupdro_tone_norm",
                "--full",
                "balanced_groupdro_tone_norm_os4_loc",
            ]
        )
    err = capsys.readouterr().err
    assert "--full balanced_groupdro_tone_norm_os4_loc: not among --variants" in err
