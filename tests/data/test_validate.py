"""CLI tests of `python -m data.validate`: exit codes, problem lines, coverage table, JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from test_canonical import BROKEN_EXPECTED, make_broken

from data.validate import main

REPO = Path(__file__).resolve().parents[2]


def run_validate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "data.validate", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_valid_dataset_prints_coverage(good_dataset: Path) -> None:
    result = run_validate(str(good_dataset))
    assert result.returncode == 0, result.stderr
    assert "valid, 24 images" in result.stdout
    header = next(line for line in result.stdout.splitlines() if "FST1" in line)
    assert header.split() == [
        "FST1",
        "FST2",
        "FST3",
        "FST4",
        "FST5",
        "FST6",
        "FST?",
        "I-II",
        "III-IV",
        "V-VI",
        "group?",
        "total",
    ]
    images_line = next(line for line in result.stdout.splitlines() if line.startswith("images"))
    assert images_line.split()[-1] == "24"
    assert "acne +" in result.stdout and "wrinkles labelled" in result.stdout


def run_main(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """The CLI in-process (cheaper than a subprocess): (exit code, stdout)."""
    code = main(list(args))
    return code, capsys.readouterr().out


def test_valid_dataset_json(good_dataset: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run_main(capsys, str(good_dataset), "--json")
    assert code == 0
    report = json.loads(out)
    assert report["valid"] is True and report["num_rows"] == 24
    assert report["coverage"]["images"]["total"] == 24
    assert sum(report["splits"][s]["total"] for s in ("train", "val", "test")) == 24


def test_broken_dataset_lists_every_problem(tmp_path: Path) -> None:
    root = make_broken(tmp_path)
    result = run_validate(str(root))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    csv_path = str(root / "metadata.csv")
    lines = result.stdout.splitlines()
    assert len(lines) == len(BROKEN_EXPECTED)
    for row, column in BROKEN_EXPECTED:
        prefix = f"{csv_path}:{row}:{column}: " if column else f"{csv_path}:{row}: "
        assert any(line.startswith(prefix) for line in lines), prefix


def test_broken_dataset_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run_main(capsys, str(make_broken(tmp_path)), "--json")
    assert code == 1
    report = json.loads(out)
    assert report["valid"] is False
    assert {(p["row"], p["column"]) for p in report["problems"]} == BROKEN_EXPECTED


def test_no_images_flag_skips_file_checks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = run_main(capsys, str(make_broken(tmp_path)), "--no-images", "--json")
    assert code == 1
    found = {(p["row"], p["column"]) for p in json.loads(out)["problems"]}
    assert (8, "image") not in found and (3, "acne") in found


def test_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = run_validate(str(tmp_path / "does-not-exist"))
    assert missing.returncode == 2
    assert "does not exist" in missing.stderr and "Traceback" not in missing.stderr
    assert main([str(tmp_path)]) == 2
    assert "metadata.csv" in capsys.readouterr().err
    with pytest.raises(SystemExit) as no_args:
        main([])
    assert no_args.value.code == 2
    with pytest.raises(SystemExit) as help_:
        main(["--help"])
    assert help_.value.code == 0
