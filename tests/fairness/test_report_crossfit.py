"""The report on a dataset without a test split: cross-fitted thresholds on the val rows."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.schema import CONDITIONS
from core.thresholds import load_thresholds
from fairness import crossfit
from fairness.report import EXIT_BAD_INPUT, main, resolve_inputs
from fairness.thresholds import fit_thresholds

EVALUATION = "val, 2-fold cross-fitted thresholds (no test split)"


def _report(predictions: list[str], out: Path, *extra: str) -> int:
    return main(
        ["--predictions", *predictions, "--out", str(out), "--n-boot", "20", "--no-progress",
         *extra]
    )  # fmt: skip


@pytest.fixture()
def val_csv(tmp_path, simulate) -> Path:
    """300 validation rows, 3 per subject, every acne probability distinct."""
    df = simulate(300, 5, split="val")
    df["subject_id"] = [f"s{i // 3}" for i in range(len(df))]
    assert df["acne_prob"].nunique() == len(df)
    path = tmp_path / "predictions_val.csv"
    df.to_csv(path, index=False)
    return path


def test_one_val_csv_is_cross_fitted_and_says_so(val_csv, tmp_path, monkeypatch):
    df = pd.read_csv(val_csv)
    subject_of = dict(zip(df["acne_prob"].round(12), df["subject_id"], strict=True))
    fits: dict[int, set[float]] = {}  # id(thresholds) -> acne probabilities it was fitted on
    decided: list[tuple[set[float], set[float]]] = []  # (rows decided, rows fitted on)
    real_fit, real_apply = crossfit.fit_thresholds, crossfit.apply_thresholds

    def spy_fit(y, p, g, **options):
        th = real_fit(y, p, g, **options)
        fits[id(th)] = set(np.round(p[:, 0], 12).tolist())
        return th

    def spy_apply(p, g, th):
        decided.append((set(np.round(p[:, 0], 12).tolist()), fits[id(th)]))
        return real_apply(p, g, th)

    monkeypatch.setattr(crossfit, "fit_thresholds", spy_fit)
    monkeypatch.setattr(crossfit, "apply_thresholds", spy_apply)
    out = tmp_path / "out"
    assert _report([str(val_csv)], out) == 0

    everything = set(subject_of)
    assert len(decided) == 4  # 2 folds x (per-group, global-only thresholds)
    for rows, fitted_on in decided:
        assert rows and fitted_on and not rows & fitted_on  # never its own rows
        assert rows | fitted_on == everything  # K = 2: fitted on exactly the other fold
        # a subject's rows are all on one side
        assert not {subject_of[p] for p in rows} & {subject_of[p] for p in fitted_on}

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["evaluation"] == EVALUATION and metrics["evaluated_split"] == "val"
    assert "test" not in metrics and metrics["val"]["n"] == 300
    assert metrics["val"]["thresholds"].startswith("per-group, cross-fitted (2 folds by subject")
    assert metrics["cross_fitting"]["subjects_per_fold"] == [50, 50]
    for name in ("report.md", "report.html", "model_card.md"):
        assert EVALUATION in (out / name).read_text(), name
    assert (
        "Thresholds (fitted on all validation rows: thresholds.json, shipped)"
        in (out / "report.md").read_text()
    )
    card = json.loads((out / "model_card.json").read_text())
    assert card["evaluation"]["split"] == "val" and card["evaluation"]["method"] == EVALUATION
    assert any("no test split" in item for item in card["limitations"])

    # thresholds.json (what is shipped) is fitted on all validation rows.
    groups = [g if isinstance(g, str) else None for g in df["group"]]
    y = df[list(CONDITIONS)].to_numpy(float)
    refit = fit_thresholds(y, df[[f"{c}_prob" for c in CONDITIONS]].to_numpy(), groups)
    shipped = load_thresholds(out / "thresholds.json")
    for cond in CONDITIONS:
        assert shipped.global_threshold(cond) == pytest.approx(refit.global_threshold(cond))
        for g in ("I-II", "III-IV", "V-VI"):
            assert shipped.group_threshold(cond, g) == pytest.approx(refit.group_threshold(cond, g))


def test_cross_fitted_f1_differs_from_in_sample_and_auroc_does_not(val_csv, tmp_path):
    from fairness.evaluate import evaluate_predictions
    from fairness.io import read_predictions

    out = tmp_path / "out"
    assert _report([str(val_csv)], out) == 0
    metrics = json.loads((out / "metrics.json").read_text())["val"]
    df = read_predictions(val_csv)
    in_sample = evaluate_predictions(df, fit_thresholds(*_arrays(df)), n_boot=0)
    acne, acne_in = metrics["conditions"]["acne"], in_sample["conditions"]["acne"]
    assert acne["overall"]["auroc"]["value"] == pytest.approx(acne_in["overall"]["auroc"]["value"])
    f1 = [metrics["conditions"][c]["overall"]["f1"]["value"] for c in CONDITIONS]
    f1_in = [in_sample["conditions"][c]["overall"]["f1"]["value"] for c in CONDITIONS]
    assert f1 != pytest.approx(f1_in)  # out-of-fold decisions, not in-sample ones


def _arrays(df):
    groups = [g if isinstance(g, str) and g else None for g in df["group"]]
    return (
        df[list(CONDITIONS)].to_numpy(float),
        df[[f"{c}_prob" for c in CONDITIONS]].to_numpy(),
        groups,
    )


def test_planted_perfect_predictor_scores_one_out_of_fold(tmp_path, simulate):
    df = simulate(240, 6, split="val", unknown_fraction=0.0)
    for cond in CONDITIONS:
        df[f"{cond}_prob"] = np.where(df[cond].astype(int) == 1, 0.9, 0.1)
    path = tmp_path / "val.csv"
    df.to_csv(path, index=False)
    out = tmp_path / "out"
    assert _report([str(path)], out) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    for cond in CONDITIONS:
        overall = metrics["val"]["conditions"][cond]["overall"]
        assert overall["auroc"]["value"] == 1.0 and overall["f1"]["value"] == 1.0
    goals = metrics["goals"]
    assert goals["acne_auroc"]["value"] == 1.0 and goals["hyperpigmentation_auroc"]["value"] == 1.0
    assert goals["acne_auroc_gap"]["value"] == 0.0


def test_run_folder_without_test_predictions_and_the_flag(val_csv, tmp_path, run_dir):
    # auto: a folder without predictions_test.csv -> val; with it -> test
    folder = val_csv.parent
    assert resolve_inputs([str(folder)]) == (val_csv, None)
    assert resolve_inputs([str(run_dir)])[1] == run_dir / "predictions_test.csv"
    assert resolve_inputs([str(run_dir)], "val") == (run_dir / "predictions_val.csv", None)
    out = tmp_path / "out"
    assert _report([str(run_dir)], out, "--evaluate-on", "val") == 0
    assert json.loads((out / "metrics.json").read_text())["evaluation"] == EVALUATION
    out_test = tmp_path / "out_test"
    assert _report([str(run_dir)], out_test) == 0
    metrics = json.loads((out_test / "metrics.json").read_text())
    assert (
        metrics["evaluation"] == "test, thresholds fitted on val" and "cross_fitting" not in metrics
    )
    assert "cross-fitted" not in (out_test / "report.md").read_text()


def test_evaluate_on_val_refuses_two_files(run_dir, tmp_path, capsys):
    files = [str(run_dir / "predictions_val.csv"), str(run_dir / "predictions_test.csv")]
    assert _report(files, tmp_path / "out", "--evaluate-on", "val") == EXIT_BAD_INPUT
    assert "--evaluate-on val takes a run folder or one validation CSV" in capsys.readouterr().err


def test_datacard_folder_of_a_combined_dataset(val_csv, tmp_path):
    combined = tmp_path / "mix"
    for name, card in (
        ("real", {"name": "real v1", "licence": "CC BY 4.0", "tone_source": "estimated"}),
        ("synth", {"name": "synthskin-v1", "licence": "generated"}),
    ):
        (combined / name).mkdir(parents=True)
        (combined / name / "datacard.json").write_text(json.dumps(card))
    (combined / "metadata.csv").write_text("image\n")
    out = tmp_path / "out"
    assert _report([str(val_csv)], out, "--datacard", str(combined)) == 0
    card = json.loads((out / "model_card.json").read_text())
    assert [c["name"] for c in card["data_provenance"]] == ["real v1", "synthskin-v1"]
    # without the flag: found through the run's config.json
    (val_csv.parent / "config.json").write_text(json.dumps({"data_dir": str(combined)}))
    out2 = tmp_path / "out2"
    assert _report([str(val_csv.parent)], out2) == 0
    found = json.loads((out2 / "metrics.json").read_text())["data_provenance"]
    assert [c["name"] for c in found] == ["real v1", "synthskin-v1"]


def test_read_datacards(tmp_path):
    from fairness.model_card import DatacardError, read_datacards

    (tmp_path / "b").mkdir()
    (tmp_path / "a").mkdir()
    (tmp_path / "b" / "datacard.json").write_text(json.dumps({"name": "B"}))
    (tmp_path / "a" / "datacard.yaml").write_text("name: A\n")
    assert [c["name"] for c in read_datacards(tmp_path)] == ["A", "B"]
    (tmp_path / "datacard.json").write_text(json.dumps({"name": "own"}))
    assert [c["name"] for c in read_datacards(tmp_path)] == ["own"]  # its own card wins
    assert [c["name"] for c in read_datacards(tmp_path / "b" / "datacard.json")] == ["B"]
    with pytest.raises(DatacardError, match="in this folder or its subfolders"):
        read_datacards(_empty(tmp_path))


def _empty(tmp_path: Path) -> Path:
    folder = tmp_path / "empty"
    folder.mkdir()
    return folder
