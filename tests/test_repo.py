"""Repository-level checks: CI runs exactly the README's test command; generated data is ignored."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Two commands", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", section, flags=re.S)


def test_ci_runs_the_readme_test_command():
    commands = _readme_commands()
    assert len(commands) == 2, "README must give exactly two set-up commands"
    test_command = commands[1].strip()
    assert "pytest" in test_command
    ci_lines = [ln.strip() for ln in (ROOT / ".ci/run").read_text().splitlines()]
    assert test_command in ci_lines


def test_readme_main_command_points_at_files_in_the_repo():
    main_command = _readme_commands()[0]
    for token in main_command.split():
        if token.startswith(("client/", "docs/")):
            assert (ROOT / token).is_file(), f"README main command names a missing file: {token}"


def test_generated_outputs_are_ignored_by_git():
    for path in (
        "outputs/run/metrics.json",
        "data/synthskin-v1/metadata.csv",
        ".venv/bin/python",
        "data/my-clinic/metadata.csv",
        "data/my-clinic/images/face.jpg",
        "models/mine/model.onnx",
        "out/face_acne.png",
    ):
        result = subprocess.run(
            ["git", "check-ignore", "-q", path], cwd=ROOT, capture_output=True, check=False
        )
        assert result.returncode == 0, f"{path} is not git-ignored"


def test_the_shipped_runs_metrics_are_kept_in_git():
    """dvc.yaml's cache:false metrics and plots are in git: `dvc metrics show` works on a clone."""
    import yaml

    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    declared = [
        next(iter(entry))
        for stage in stages.values()
        for key in ("metrics", "plots")
        for entry in stage.get(key, [])
        if isinstance(entry, dict) and not next(iter(entry.values())).get("cache", True)
    ]
    assert declared, "dvc.yaml declares no cache:false metrics"
    tracked = set(
        subprocess.run(
            ["git", "ls-files", *declared], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.split()
    )
    assert set(declared) <= tracked, f"not in git: {sorted(set(declared) - tracked)}"
