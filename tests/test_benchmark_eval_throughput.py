"""benchmarks/eval_throughput.py: one process per chunk size, JSON per chunk."""

from __future__ import annotations

import json
import os

import pytest

from tests.benchmark_loader import load_benchmark, run_main

QUICK = "train_jax/configs/real_photos.py:quick"


def test_reports_every_chunk_size_measured_in_its_own_process():
    bench = load_benchmark("eval_throughput")
    argv = ["--config", QUICK, "--chunks", "2", "4", "--seconds", "0.2", "--json"]
    code, out, err = run_main(bench.main, argv)
    assert code == 0, err
    report = json.loads(out)
    assert report["config"] == QUICK
    assert [r["chunk"] for r in report["results"]] == [2, 4]
    for r in report["results"]:
        assert r["img_per_s"] > 0 and r["calls"] >= 1 and r["faults_per_call"] >= 0
        assert r["model"] == "small_cnn" and r["test_time_flip"] is True
    # each chunk size ran in a fresh process, so each one applied the malloc setting itself
    tuned = os.environ.get("FSA_MALLOC_TUNING", "1") != "0"
    assert {r["malloc_tuned"] for r in report["results"]} == {tuned}


def test_rejects_empty_chunks():
    bench = load_benchmark("eval_throughput")
    with pytest.raises(SystemExit) as exc:
        bench.parse_args(["--chunks", "0"])
    assert exc.value.code == 2
