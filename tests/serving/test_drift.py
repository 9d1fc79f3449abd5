"""python -m triton_models.drift: parser, reference, verdict and exit codes (no server)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from client import monitoring as m
from triton_models import drift

ROOT = Path(__file__).resolve().parents[2]
REAL_REPORT = ROOT / "outputs" / "pipeline" / "real" / "fairness"


def scrape(faces: dict[str, int], rates: dict[str, float], source: str = "estimated") -> str:
    """A Prometheus text page with the fsa_ counters of `faces` per group and, per group, the
    fraction `rates[group]` of them positive for every condition."""
    lines = ["# HELP fsa_faces_total faces", "# TYPE fsa_faces_total counter"]
    for group, n in faces.items():
        lines.append(f'fsa_faces_total{{group="{group}",source="{source}"}} {n}')
        for cond in ("acne", "hyperpigmentation", "wrinkles"):
            positives = round(n * rates.get(group, 0.5))
            lines.append(
                f'fsa_positive_decisions_total{{condition="{cond}",group="{group}",'
                f'source="{source}"}} {positives}'
            )
    lines.append('nv_inference_count{model="decode",version="1"} 12 1700000000000')
    return "\n".join(lines) + "\n"


MIX = {"I-II": 80, "III-IV": 20, "V-VI": 20, "none": 80}


def test_parser_reads_labels_escapes_and_timestamps():
    text = (
        "# a comment\n"
        'fsa_rejected_candidates_total{reason="a \\"quoted\\" \\\\ one"} 3\n'
        "plain_metric 2.5 1700000000000\n"
        'spaced{a="1", b="x y"} NaN\n'
    )
    samples = drift.parse_prometheus(text)
    assert samples[("fsa_rejected_candidates_total", (("reason", 'a "quoted" \\ one'),))] == 3
    assert samples[("plain_metric", ())] == 2.5
    assert ("spaced", (("a", "1"), ("b", "x y"))) in samples
    with pytest.raises(drift.DriftInputError, match="not a Prometheus sample"):
        drift.parse_prometheus("this is { not metrics\n")


def test_counts_from_the_monitoring_series_and_source_filter():
    samples = drift.parse_prometheus(scrape(MIX, {"I-II": 0.5}) + scrape({"V-VI": 50}, {}, "given"))
    counts = drift.counts_from_samples(samples, "x")
    assert counts.faces == {"I-II": 80, "III-IV": 20, "V-VI": 70, "none": 80}
    assert counts.rate("acne", "I-II") == 0.5
    estimated = drift.counts_from_samples(samples, "x", "estimated")
    assert estimated.faces["V-VI"] == 20
    with pytest.raises(drift.DriftInputError, match="no fsa_faces_total"):
        drift.counts_from_samples(drift.parse_prometheus("other 1\n"), "x")


def test_subtract_takes_a_reset_counter_as_is():
    before = drift.parse_prometheus(scrape({"I-II": 50}, {}))
    now = drift.parse_prometheus(scrape({"I-II": 80, "V-VI": 10}, {}))
    delta, notes = drift.subtract(now, before)
    assert drift.counts_from_samples(delta, "x").faces["I-II"] == 30
    assert notes == []
    delta, notes = drift.subtract(before, now)  # went down: restarted server
    assert drift.counts_from_samples(delta, "x").faces["I-II"] == 50 and notes


def _verdict(live_faces, live_rates, ref_faces=MIX, ref_rates=None, **limits):
    live = drift.counts_from_samples(drift.parse_prometheus(scrape(live_faces, live_rates)), "l")
    ref = drift.counts_from_samples(drift.parse_prometheus(scrape(ref_faces, ref_rates or {})), "r")
    return drift.compare(live, ref, drift.Limits(**limits))


def test_same_mix_and_rates_are_ok():
    verdict = _verdict({g: 3 * n for g, n in MIX.items()}, {})
    assert verdict["status"] == "ok" and verdict["mix_shift"] == pytest.approx(0.0)
    assert verdict["rate_shift"] == pytest.approx(0.0, abs=0.01)


def test_one_group_only_is_a_mix_shift():
    verdict = _verdict({"V-VI": 300}, {})
    assert verdict["status"] == "drifted"
    assert verdict["mix_shift"] == pytest.approx(0.9)  # 1 - the reference share of V-VI


def test_a_rate_shift_in_one_group_is_drift_only_with_enough_faces():
    faces = {g: 3 * n for g, n in MIX.items()}
    verdict = _verdict(faces, {"III-IV": 0.95})
    assert verdict["status"] == "drifted" and verdict["rate_shift"] == pytest.approx(0.45, abs=0.01)
    small = _verdict(faces, {"III-IV": 0.95}, min_group_faces=61)  # III-IV has 60 live faces
    assert small["status"] == "ok"
    unchecked = [r for r in small["rates"] if r["group"] == "III-IV"]
    assert unchecked and all(r["shift"] is None for r in unchecked)


def test_too_little_traffic_is_flagged_without_a_verdict():
    verdict = _verdict({"V-VI": 30}, {}, min_faces=100)
    assert verdict["status"] == "not enough traffic"
    assert "not enough traffic (30 < 100 faces" in drift.format_table(verdict)


def _report(tmp_path: Path, with_predictions: bool) -> Path:
    """A small fairness report folder: metrics.json (+ predictions CSV and thresholds.json)."""
    entry = {
        "n": 10,
        "positives": 5,
        "negatives": 5,
        "recall": {"value": 0.8},
        "fpr": {"value": 0.2},
    }
    missing = {
        "n": 4,
        "positives": 2,
        "negatives": 2,
        "recall": {"value": None},
        "fpr": {"value": None},
    }
    cond = {"overall": {"n": 20}, "by_group": {"I-II": entry, "III-IV": missing, "V-VI": missing}}
    report = {
        "evaluated_split": "val",
        "inputs": {"val": "missing/predictions_val.csv"},
        "val": {"n": 20, "conditions": {"acne": cond, "hyperpigmentation": cond}},
    }
    folder = tmp_path / "run" / "fairness"
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps(report))
    if with_predictions:
        import shutil

        shutil.copyfile(ROOT / "models" / "default" / "thresholds.json", folder / "thresholds.json")
        with open(folder.parent / "predictions_val.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(
                ["image", "group", "acne_prob", "hyperpigmentation_prob", "wrinkles_prob"]
            )
            for i, group in enumerate(["I-II"] * 6 + ["V-VI"] * 2 + [""] * 2):
                writer.writerow([f"{i}.jpg", group, 0.99 if i % 2 else 0.01, 0.5, 0.0])
    return folder


def test_reference_from_report_metrics(tmp_path):
    ref = drift.load_reference(_report(tmp_path, with_predictions=False))
    assert ref.faces == {"I-II": 10, "III-IV": 4, "V-VI": 4, "none": 2}
    assert ref.rate("acne", "I-II") == pytest.approx(0.5)  # (0.8 * 5 + 0.2 * 5) / 10
    assert ref.rate("acne", "III-IV") is None and ref.rate("wrinkles", "I-II") is None


def test_reference_from_report_predictions_and_thresholds(tmp_path):
    folder = _report(tmp_path, with_predictions=True)
    ref = drift.load_reference(folder / "metrics.json")
    assert ref.faces == {"I-II": 6, "III-IV": 0, "V-VI": 2, "none": 2}
    assert ref.rate("acne", "I-II") == pytest.approx(0.5)
    assert ref.rate("wrinkles", "none") == 0.0
    assert "predictions_val.csv" in ref.notes[0]


@pytest.mark.skipif(not (REAL_REPORT / "metrics.json").is_file(), reason="no real-data report")
def test_shipped_report_reference_matches_its_group_sizes():
    report = json.loads((REAL_REPORT / "metrics.json").read_text())
    ref = drift.load_reference(REAL_REPORT)
    groups = report["val"]["conditions"]["acne"]["by_group"]
    assert ref.total == report["val"]["n"]
    assert {g: ref.faces[g] for g in groups} == {g: v["n"] for g, v in groups.items()}


def test_cli_exit_codes_json_and_rules(tmp_path, capsys):
    import yaml

    ref, same, skew = tmp_path / "ref.txt", tmp_path / "same.txt", tmp_path / "skew.txt"
    ref.write_text(scrape(MIX, {}))
    same.write_text(scrape({g: 2 * n for g, n in MIX.items()}, {}))
    skew.write_text(scrape({"V-VI": 400}, {}))
    args = ["--reference", str(ref), "--metrics"]
    assert drift.main([*args, str(same)]) == 0
    assert "status: ok" in capsys.readouterr().out
    assert drift.main([*args, str(skew), "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["status"] == "drifted"
    assert drift.main([*args, str(skew), "--max-mix-shift", "0.95"]) == 0
    assert drift.main([*args, str(tmp_path / "missing.txt")]) == 2
    assert drift.main(["--reference", str(tmp_path / "nope"), "--metrics", str(same)]) == 2
    capsys.readouterr()
    assert drift.main(["--reference", str(ref), "--rules"]) == 0
    rules = yaml.safe_load(capsys.readouterr().out)["groups"][0]["rules"]
    alerts = {r["alert"]: r["expr"] for r in rules if "alert" in r}
    assert set(alerts) == {"FsaSkinToneMixShift", "FsaPositiveRateShift"}
    assert "> 0.2" in alerts["FsaSkinToneMixShift"] and m.FACES in alerts["FsaSkinToneMixShift"]
