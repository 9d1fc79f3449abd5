"""benchmarks/serving.py's arithmetic: medians over rounds and the goal ratios; the CPU clock it
reads from /proc for the server."""

from __future__ import annotations

import os
import time

import pytest

from benchmarks.serving import goals_by_round, per_model_ms, summarize
from triton_models.server import tree_cpu_seconds


def _row(round_index, image, backend, c, p50, img_per_s):
    return {
        "round": round_index,
        "image": image,
        "backend": backend,
        "concurrency": c,
        "p50_ms": p50,
        "p99_ms": 2 * p50,
        "img_per_s": img_per_s,
        "cpu_s_per_img": 0.01,
    }


def test_summary_takes_the_median_of_rounds_and_the_goal_ratios():
    rows = []
    for r, (emb, grpc) in enumerate([(10.0, 12.0), (11.0, 19.0), (30.0, 13.0)]):
        rows.append(_row(r, "photo", "embedded", 1, emb, 90.0))
        rows.append(_row(r, "photo", "triton-grpc", 1, grpc, 70.0))
    for r, (emb, grpc) in enumerate([(40.0, 60.0), (50.0, 55.0), (45.0, 30.0)]):
        rows.append(_row(r, "photo", "embedded", 8, 100.0, emb))
        rows.append(_row(r, "photo", "triton-grpc", 8, 100.0, grpc))
    medians, goals = summarize(rows)
    by_key = {(m["backend"], m["concurrency"]): m for m in medians}
    assert by_key[("embedded", 1)]["p50_ms"] == 11.0 and by_key[("embedded", 1)]["rounds"] == 3
    assert by_key[("triton-grpc", 1)]["p50_ms"] == 13.0
    assert goals["photo/grpc_p50_minus_embedded_p50_ms_c1"] == pytest.approx(2.0)
    assert goals["photo/grpc_over_embedded_img_per_s_c8"] == pytest.approx(55.0 / 45.0)
    assert "photo/http_over_embedded_img_per_s_c8" not in goals  # no HTTP rows
    spread = goals_by_round(rows)
    assert spread["photo/grpc_p50_minus_embedded_p50_ms_c1"] == pytest.approx([2.0, 8.0, -17.0])
    assert spread["photo/grpc_over_embedded_img_per_s_c8"] == pytest.approx([1.5, 1.1, 30 / 45])


def test_another_repository_gets_its_own_goals_beside_the_default_ones():
    rows = [
        _row(0, "photo", "embedded", 1, 10.0, 90.0),
        _row(0, "photo", "triton-grpc", 1, 13.0, 70.0),
        _row(0, "photo", "triton-grpc:ensemble", 1, 16.0, 60.0),
        _row(0, "photo", "embedded", 8, 100.0, 40.0),
        _row(0, "photo", "triton-grpc", 8, 100.0, 60.0),
        _row(0, "photo", "triton-grpc:ensemble", 8, 100.0, 50.0),
    ]
    _, goals = summarize(rows)
    assert goals["photo/grpc_p50_minus_embedded_p50_ms_c1"] == pytest.approx(3.0)
    assert goals["photo/grpc:ensemble_p50_minus_embedded_p50_ms_c1"] == pytest.approx(6.0)
    assert goals["photo/grpc:ensemble_over_embedded_img_per_s_c8"] == pytest.approx(1.25)


def test_also_repo_names_a_repository_folder(tmp_path):
    import argparse

    from benchmarks.serving import _named_repo

    (tmp_path / "skin_analysis").mkdir()
    (tmp_path / "skin_analysis" / "config.pbtxt").write_text('name: "skin_analysis"\n')
    assert _named_repo(f"old={tmp_path}") == ("old", tmp_path)
    for bad in (str(tmp_path), f"={tmp_path}", f"old={tmp_path / 'none'}"):
        with pytest.raises(argparse.ArgumentTypeError):
            _named_repo(bad)


def test_tree_cpu_seconds_counts_this_process_working():
    before = tree_cpu_seconds(os.getpid())
    end = time.process_time() + 0.2
    while time.process_time() < end:
        pass
    assert tree_cpu_seconds(os.getpid()) - before >= 0.15


def test_per_model_ms_is_the_mean_per_request_between_two_snapshots():
    phases = ("success", "queue", "compute_input", "compute_infer", "compute_output")
    before = {"classify": {"count": 10.0, **dict.fromkeys(phases, 10e6)}}
    after = {
        "classify": {"count": 14.0, **dict.fromkeys(phases, 18e6)},
        "idle": {"count": 0.0, **dict.fromkeys(phases, 0.0)},
    }
    split = per_model_ms(before, after)
    assert set(split) == {"classify"}  # no requests: no row
    assert split["classify"]["success"] == pytest.approx(2.0)  # 8 ms over 4 requests


def test_serving_steps_times_both_settings_with_and_without_a_pause(capsys):
    """benchmarks/serving_steps.py runs the real face stage and classifier on the example."""
    import json

    from benchmarks.serving_steps import SETTINGS, main

    assert main(["--calls", "2", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["settings"], r["pause_ms"]) for r in rows] == [
        (name, pause) for name in SETTINGS for pause in (0.0, 20.0)
    ]
    assert all(r["face_stage_ms"] > 0 and r["classifier_ms"] > 0 for r in rows)
