"""The README's tour, run as written on a fresh copy of the repository (tiny sizes).

The commands are parsed from README.md itself, so the README and this test cannot drift apart.
Each tour command runs as the README gives it, with flags appended that shrink the work (argparse
keeps the last value: 120 synthetic images, the `quick` training config for one epoch, few
bootstrap replicates). A README command this test does not know fails it: a new tour step must say
how it is shrunk. Also checked on the fresh copy: the DVC commands (`dvc dag`, `dvc status`,
`dvc metrics show`, `dvc params diff`, and `dvc repro --dry`'s documented behaviour), the Triton
build of the user's model into its own folder (the shipped `triton_models/` stays unchanged), the
README's main command, and that every output of the tour is ignored by git.
"""

from __future__ import annotations

import json
import re
import shlex
import sys
from pathlib import Path

import pytest

from tests.repo_copy import REPO, copy_repository, git, run

README = REPO / "README.md"
# Appended to each tour command, by the script or module it runs (argparse: the last value wins).
TINY_FLAGS: dict[str, list[str]] = {
    "data.synthetic": ["--n", "120", "--size", "64", "--workers", "1"],
    "data.validate": [],
    "train_jax/main.py": ["--config", "train_jax/configs/demo.py:quick", "--epochs", "1"],
    "fairness.report": ["--n-boot", "20", "--min-positives", "1", "--min-negatives", "1"],
    "explain.evaluate": ["--limit", "8", "--num-boot", "20", "--curve-images", "4"],
    "train_jax.export": [],
    "train_jax.predict": [],
    "client/analyze.py": [],
    "triton_models.build": [],
}
# Tour commands this test does not run, and why (`--url` commands need the server too).
NOT_RUN = {
    "dvc": "checked on the fresh copy by dvc_on_fresh_clone",
    "ln": "links the real photos, which CI does not have",
    "mlflow": "starts a web server",
    "triton_models.serve": "needs tritonserver's own environment (tests/serving runs it)",
}
# Library chatter the project silences or rewords (it alarmed users: nothing is downloaded).
NOISE = ("Downloading and preparing", "Given directory is read only", "WARNING:absl")


def readme_section(heading: str) -> str:
    """The README text from the `## heading...` line to the next `## ` heading."""
    text = README.read_text()
    match = re.search(rf"^## {re.escape(heading)}.*?$(.*?)(?=^## |\Z)", text, flags=re.M | re.S)
    assert match, f"README.md has no section starting '## {heading}'"
    return match.group(1)


def bash_commands(section: str) -> list[list[str]]:
    """Every command line of the section's ```bash blocks, comments removed, as argv lists."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", section, flags=re.S):
        for line in block.splitlines():
            argv = shlex.split(line, comments=True)
            if argv:
                commands.append(argv)
    return commands


def tool_of(argv: list[str]) -> str:
    """What a command runs: `module` for `python -m module`, the script for `python x.py`."""
    if argv[0] != "python":
        return argv[0]
    return argv[2] if argv[1] == "-m" else argv[1]


def tiny(argv: list[str]) -> list[str]:
    """The README command with its tiny flags appended."""
    extra = list(TINY_FLAGS[tool_of(argv)])
    if tool_of(argv) == "data.synthetic" and "--out" not in argv:
        # A shrunk preset is no longer the frozen benchmark: the generator then asks for --out.
        extra += ["--out", "data/synthskin-v1"]
    return argv + extra


def test_the_tour_heading_counts_its_commands() -> None:
    heading = re.search(r"^## A tour in (\w+) commands", README.read_text(), flags=re.M)
    assert heading, "README.md: no '## A tour in N commands' heading"
    words = "one two three four five six seven eight nine ten eleven twelve".split()
    first_block = re.findall(r"```bash\n(.*?)```", readme_section("A tour in"), flags=re.S)[0]
    count = len(bash_commands(f"```bash\n{first_block}```"))
    assert heading.group(1) == words[count - 1], (
        f"heading says {heading.group(1)}, block has {count}"
    )


def test_the_tour_parser_reads_commands_and_drops_comments() -> None:
    section = "\n```bash\npython -m a.b --x 1   # why\n\ndvc dag  # stages\n```\n"
    assert bash_commands(section) == [["python", "-m", "a.b", "--x", "1"], ["dvc", "dag"]]
    assert [tool_of(c) for c in bash_commands(section)] == ["a.b", "dvc"]


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh copy of the repository (no data, no outputs, no trained runs)."""
    return copy_repository(tmp_path_factory.mktemp("fresh-clone"))


@pytest.fixture(scope="module")
def dvc_on_fresh_clone(fresh: Path) -> dict[str, object]:
    """The README's DVC commands that need no data, run before anything else touches the copy."""
    results: dict[str, object] = {}
    for name in ("dag", "status", "params diff"):
        results[name] = run([sys.executable, "-m", "dvc", *name.split()], fresh).stdout
    shown = run([sys.executable, "-m", "dvc", "metrics", "show", "--json"], fresh)
    results["metrics"] = json.loads(shown.stdout)
    results["metrics_stderr"] = shown.stderr
    results["dry"] = run([sys.executable, "-m", "dvc", "repro", "--dry"], fresh, check=False)
    results["dry_wrote"] = sorted(
        str(p.relative_to(fresh)) for p in (fresh / "data").iterdir() if p.name == "synthskin-v1"
    )
    return results


@pytest.fixture(scope="module")
def tour(fresh: Path, dvc_on_fresh_clone: dict) -> list[tuple[str, object]]:
    """Each tour command as run (tiny flags appended), with its completed process."""
    ran = []
    for argv in bash_commands(readme_section("A tour in")):
        name = tool_of(argv)
        if name in NOT_RUN or "--url" in argv:
            continue
        assert name in TINY_FLAGS, f"README tour runs {name}: give it tiny flags in TINY_FLAGS"
        ran.append((name, run(tiny(argv), fresh, timeout=900)))
    return ran


def test_the_tour_runs_every_command_as_written(tour: list) -> None:
    names = [name for name, _ in tour]
    for required in ("data.synthetic", "train_jax/main.py", "train_jax.export"):
        assert required in names, f"the tour no longer runs {required}"
    assert "train_jax.predict" in names and "triton_models.build" in names


def test_the_tour_speaks_plainly(tour: list) -> None:
    for name, proc in tour:
        output = proc.stdout + proc.stderr
        for noise in NOISE:
            assert noise not in output, f"{name} printed library chatter: {noise!r}"
        assert "\r" not in output, f"{name} drew a progress bar into a pipe"
        assert not proc.stdout.lstrip().startswith(("{", "[")), f"{name} printed JSON unasked"
    train = dict(tour)["train_jax/main.py"].stdout
    assert re.search(r"val macro-F1 \d\.\d{3} worst-group F1 \d\.\d{3} ", train), train


def test_every_tour_command_names_itself_in_help(fresh: Path) -> None:
    for argv in bash_commands(readme_section("A tour in")):
        name = tool_of(argv)
        if argv[0] != "python" or name == "triton_models.serve":
            continue
        usage = run(argv[: 3 if argv[1] == "-m" else 2] + ["--help"], fresh).stdout
        spelled = " ".join(argv[: 3 if argv[1] == "-m" else 2])
        assert usage.startswith(f"usage: {spelled}"), f"{name} --help: {usage.splitlines()[0]}"


def test_building_a_user_model_leaves_the_shipped_triton_repository_alone(
    fresh: Path, tour: list
) -> None:
    built = dict(tour)["triton_models.build"]
    assert "filled" in built.stdout
    assert git("status", "--porcelain", "--", "triton_models", cwd=fresh) == ""
    # Without --repo, building another model into the shipped repository is refused.
    refused = run(
        [sys.executable, "-m", "triton_models.build", "--model-dir", "models/demo"],
        fresh,
        check=False,
    )
    assert refused.returncode != 0 and "--force" in refused.stderr
    assert git("status", "--porcelain", "--", "triton_models", cwd=fresh) == ""


def test_the_tour_leaves_nothing_for_git_add(fresh: Path, tour: list) -> None:
    assert (fresh / "models" / "demo" / "model.onnx").is_file()
    assert any((fresh / "out").iterdir()), "analyze --overlay wrote no overlay"
    status = git("status", "--porcelain", "--untracked-files=all", cwd=fresh)
    assert status == "", f"tour outputs git would pick up:\n{status}"


def test_dvc_works_on_a_fresh_clone(dvc_on_fresh_clone: dict) -> None:
    assert "train" in dvc_on_fresh_clone["dag"] and "export" in dvc_on_fresh_clone["dag"]
    files = dvc_on_fresh_clone["metrics"][""]["data"]
    assert "failed to load" not in dvc_on_fresh_clone["metrics_stderr"]
    real = files["outputs/pipeline/metrics/evaluate_real.json"]["data"]
    assert 0.0 < real["eval/auroc/overall/acne"] < 1.0, "no real-photo AUROC in dvc metrics show"
    assert any(
        key.startswith("eval/f1/V-VI")
        for key in files["outputs/pipeline/metrics/evaluate.json"]["data"]
    )


def test_dvc_repro_dry_runs_nothing_and_its_limit_is_documented(dvc_on_fresh_clone: dict) -> None:
    dry = dvc_on_fresh_clone["dry"]
    assert "Running stage 'generate'" in dry.stdout  # it lists the first stage's command
    assert dvc_on_fresh_clone["dry_wrote"] == [], "a dry run generated data"
    if dry.returncode != 0:
        # DVC checks the dependencies of a dry run's later stages (treeverse/dvc#9021).
        assert "No such file or directory" in dry.stdout + dry.stderr
        dvc_block = readme_section("A tour in")
        assert "`dvc repro --dry`" in dvc_block and "dvc#9021" in dvc_block


def test_the_readme_main_command_runs(fresh: Path) -> None:
    first = readme_section("Two commands")
    analyse = [c for c in re.findall(r"```bash\n(.*?)```", first, flags=re.S)][0]
    argv = shlex.split(analyse.split("&&")[-1])
    assert argv[0] == ".venv/bin/python" and argv[1] == "client/analyze.py"
    proc = run([sys.executable, *argv[1:], "--json"], fresh)
    result = json.loads(proc.stdout)
    assert result["faces"], "the README's example photo gave no face"
