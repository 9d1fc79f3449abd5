"""benchmarks/compare_runs.py and benchmarks/served_accuracy.py: known-answer inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.benchmark_loader import load_benchmark

ROOT = Path(__file__).resolve().parents[1]


def _meta(n: int = 40) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "acne": (np.arange(n) % 2).astype(float),
            "hyperpigmentation": (np.arange(n) // 2 % 2).astype(float),
            "group": ["I-II"] * (n // 2) + ["V-VI"] * (n // 2 - 3) + ["III-IV"] * 3,
        },
        index=[f"p{i}.jpg" for i in range(n)],
    )
    frame["noise"] = rng.random(n)
    return frame


def test_compare_runs_perfect_and_inverted_predictors() -> None:
    compare_runs = load_benchmark("compare_runs")
    meta = _meta()
    perfect = pd.DataFrame(
        {"acne_prob": meta["acne"], "hyperpigmentation_prob": meta["hyperpigmentation"]},
        index=meta.index,
    )
    inverted = 1.0 - perfect
    extra = perfect.iloc[:5].rename(index=lambda k: "other_" + k)  # rows of another dataset
    out = compare_runs.compare(
        meta, {"perfect": pd.concat([perfect, extra]), "inverted": inverted}, n_boot=50, seed=0
    )
    assert out["rows"] == len(meta)
    assert out["perfect"]["acne"]["overall"]["auroc"] == 1.0
    assert out["perfect"]["acne"]["overall"]["ci"] == [1.0, 1.0]
    assert out["inverted"]["hyperpigmentation"]["V-VI"]["auroc"] == 0.0
    assert out["perfect"]["acne"]["III-IV"] == {"n": 3, "auroc": None, "ci": None}  # too few
    assert set(out["perfect"]) == {"acne", "hyperpigmentation"}  # no grades in this dataset


def test_compare_runs_scores_the_severity_output_on_grade_one_and_up() -> None:
    """P(grade >= 1) = 1 - acne_severity_prob_0 against the grades (unknown rows left out); a run
    without severity probabilities gets no severity cell."""
    compare_runs = load_benchmark("compare_runs")
    meta = _meta()
    grade = np.where(np.arange(len(meta)) % 4 == 0, 1.0, 0.0)
    grade[[1, 2]] = np.nan  # unknown severity
    meta["acne_severity"] = grade
    probs = {"acne_prob": meta["acne"], "hyperpigmentation_prob": meta["hyperpigmentation"]}
    ranked = pd.DataFrame(
        {**probs, "acne_severity_prob_0": np.where(grade == 1, 0.1, 0.8)}, index=meta.index
    )
    ranked.loc[meta.index[4], "acne_severity_prob_0"] = 0.95  # one grade-1 row ranked low
    without = pd.DataFrame({**probs, "acne_severity_prob_0": np.nan}, index=meta.index)
    out = compare_runs.compare(meta, {"ranked": ranked, "without": without}, n_boot=20, seed=0)
    cell = out["ranked"][compare_runs.SEVERITY_TARGET]["overall"]
    positives, negatives = int(np.nansum(grade)), int((grade == 0).sum())
    assert cell["n"] == len(meta) - 2
    # the one low-ranked positive (P(grade >= 1) 0.05) sits below every negative (0.2): it
    # loses each of its pairs, every other positive wins all of its own
    assert cell["auroc"] == pytest.approx(1 - 1 / positives, abs=1e-3)
    assert negatives > 0
    assert compare_runs.SEVERITY_TARGET not in out["without"]


def test_served_prediction_row_takes_the_first_face_and_skips_no_face() -> None:
    served = load_benchmark("served_accuracy")
    row = pd.Series({"image": "images/a.jpg", "acne": 1.0, "hyperpigmentation": 0.0,
                     "wrinkles": np.nan, "acne_severity": 1, "subject_id": "s1"})  # fmt: skip
    conditions = {c: {"probability": p} for c, p in
                  (("acne", 0.9), ("hyperpigmentation", 0.2), ("wrinkles", 0.4))}  # fmt: skip
    conditions["acne"]["severity"] = {"grade": 1, "probabilities": [0.1, 0.6, 0.2, 0.1]}
    second = {"skin_tone": {"fitzpatrick_group": "I-II", "source": "estimated"},
              "conditions": conditions}  # fmt: skip
    first = {**second, "skin_tone": {"fitzpatrick_group": "V-VI", "source": "estimated"}}
    result = {"status": "ok", "faces": [first, second]}
    out = served.prediction_row(row, result, "val")
    assert out["group"] == "V-VI" and out["tone_source"] == "estimated"
    assert (out["acne"], out["acne_prob"], out["wrinkles"]) == (1, 0.9, "")
    assert out["acne_severity_grade"] == 1 and out["acne_severity_prob_1"] == 0.6
    assert served.prediction_row(row, {"status": "no_face", "faces": []}, "val") is None


def test_compare_runs_names_runs_that_share_a_folder_name_by_their_path(tmp_path) -> None:
    compare_runs = load_benchmark("compare_runs")
    runs = [tmp_path / "a" / "face", tmp_path / "b" / "face", tmp_path / "c" / "tiles"]
    names = compare_runs.run_names(runs)
    assert names == {str(runs[0]): runs[0], str(runs[1]): runs[1], "tiles": runs[2]}
    with pytest.raises(ValueError, match="given twice"):
        compare_runs.run_names([runs[0], runs[0]])


def _predictions(probs: list[float], severity: list[list[float]]) -> pd.DataFrame:
    n = len(probs)
    frame = pd.DataFrame(
        {
            "image": [f"images/p{i}.jpg" for i in range(n)],
            "group": ["I-II", "V-VI", ""][:n],
            "split": "val",
            "acne": [1, 0, 1][:n],
            "acne_prob": probs,
            "hyperpigmentation_prob": [0.5] * n,
            "acne_severity_grade": [0] * n,
        }
    )
    for k in range(4):
        frame[f"acne_severity_prob_{k}"] = [row[k] for row in severity]
    return frame


def test_mean_predictions_averages_probabilities_and_regrades(tmp_path: Path, capsys) -> None:
    mean = load_benchmark("mean_predictions")
    a = _predictions([0.2, 0.4, 0.9], [[0.9, 0.1, 0, 0], [0.1, 0.1, 0.4, 0.4], [1, 0, 0, 0]])
    b = _predictions([0.6, 0.0, 0.5], [[0.1, 0.3, 0.3, 0.3], [0.1, 0.1, 0.4, 0.4], [1, 0, 0, 0]])
    out = mean.mean_predictions([a, b.iloc[::-1]], ["a", "b"])  # rows matched by image
    assert list(out.columns) == list(a.columns) and list(out["image"]) == list(a["image"])
    np.testing.assert_allclose(out["acne_prob"], [0.4, 0.2, 0.7])
    np.testing.assert_allclose(out["acne_severity_prob_1"], [0.2, 0.1, 0.0])
    # row 0: P(grade > 0) = 0.5, not above the median cut -> 0; row 1: P(> 1) = 0.8 -> 2
    assert out["acne_severity_grade"].tolist() == [0, 2, 0]
    labels = b.assign(acne=[0, 0, 1])
    with pytest.raises(ValueError, match="column 'acne' differs"):
        mean.mean_predictions([a, labels], ["a", "b"])
    with pytest.raises(ValueError, match="not the same images"):
        mean.mean_predictions([a, b.iloc[:2]], ["a", "b"])
    with pytest.raises(ValueError, match="at least two"):
        mean.mean_predictions([a], ["a"])

    for name, frame in (("a", a), ("b", b)):
        (tmp_path / name).mkdir()
        frame.to_csv(tmp_path / name / "predictions_val.csv", index=False)
    runs = [str(tmp_path / "a"), str(tmp_path / "b")]
    assert mean.main([*runs, "--out", str(tmp_path / "ab")]) == 0
    written = pd.read_csv(tmp_path / "ab" / "predictions_val.csv")
    np.testing.assert_allclose(written["acne_prob"], [0.4, 0.2, 0.7])
    assert mean.main([*runs, "--out", str(tmp_path / "x"), "--split", "test"]) == 2
    assert f"{tmp_path / 'a' / 'predictions_test.csv'}: not found" in capsys.readouterr().err
    assert not (tmp_path / "x" / "predictions_test.csv").exists()
