"""A fresh-clone-like copy of the repository for tests that run its commands as a user would.

`copy_repository` copies the files git would hand a new user (tracked, plus untracked files that
are not ignored, so local edits count before they are committed) into a new git repository.
`run` executes a command there with this interpreter's `python`, `dvc` and friends first on PATH.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def tracked_files() -> list[str]:
    """The repository's files as a fresh clone has them (tracked + untracked, not ignored)."""
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        check=True,
        capture_output=True,
    ).stdout.decode()
    return [p for p in out.split("\0") if p and (REPO / p).is_file()]


def env() -> dict[str, str]:
    """The environment of a user whose venv is activated (this interpreter's bin first)."""
    variables = dict(os.environ, DVC_NO_ANALYTICS="1", MPLBACKEND="Agg")
    variables["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{variables.get('PATH', '')}"
    return variables


def run(args: list[str] | str, cwd: Path, timeout: int = 600, check: bool = True):
    """Run `args` (a list, or a shell line) in `cwd`; with `check`, fail the test on rc != 0."""
    proc = subprocess.run(
        args,
        cwd=cwd,
        env=env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        shell=isinstance(args, str),
    )
    if check:
        shown = args if isinstance(args, str) else " ".join(args)
        assert proc.returncode == 0, f"{shown} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def git(*args: str, cwd: Path) -> str:
    """A git command with a throwaway identity; returns stdout."""
    identity = ["-c", "user.name=ci", "-c", "user.email=ci@example.invalid"]
    return run(["git", *identity, *args], cwd).stdout


def copy_repository(root: Path, edit=None) -> Path:
    """Copy the repository into `root`, let `edit(root)` change it, then commit it in a new repo."""
    for rel in tracked_files():
        dst = root / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, dst)
    if edit is not None:
        edit(root)
    git("init", "-q", cwd=root)
    git("add", "-A", cwd=root)
    git("commit", "-q", "-m", "fresh copy", cwd=root)
    return root
