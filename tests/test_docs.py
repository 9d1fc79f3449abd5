"""The documentation describes this repository: short README, working links, no outside pointers."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README_MAX_LINES = 150
# A pointer to a file users do not have (the development machine's shared folder).
OUTSIDE = re.compile(r"\.\./shared/|/work/|shared/notes/|\bARCHITECTURE\.md\b")
LINK = re.compile(r"\]\(([^)\s]+)\)")
TEXT_SUFFIXES = {".py", ".md", ".yaml", ".yml", ".sh", ".toml", ".cfg", ".pbtxt", ".txt"}


def _tracked(suffixes: set[str]) -> list[Path]:
    """Tracked files of the repository with one of `suffixes`."""
    names = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    return [ROOT / n for n in names if Path(n).suffix in suffixes and (ROOT / n).is_file()]


def broken_links(markdown: str, base: Path) -> list[str]:
    """Relative link targets in `markdown` that name no file or folder under `base`."""
    broken = []
    for target in LINK.findall(markdown):
        if target.startswith(("http://", "https://", "mailto:", "#")):
            continue
        path = target.split("#", 1)[0]
        if path and not (base / path).exists():
            broken.append(target)
    return broken


def test_broken_links_finds_a_missing_file(tmp_path: Path) -> None:
    (tmp_path / "here.md").write_text("x")
    text = "[a](here.md) [b](missing.md#part) [c](https://example.org) [d](#top)"
    assert broken_links(text, tmp_path) == ["missing.md#part"]


def test_readme_is_short() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines"


def test_every_relative_link_in_the_docs_resolves() -> None:
    problems = {}
    for doc in _tracked({".md"}):
        broken = broken_links(doc.read_text(), doc.parent)
        if broken:
            problems[str(doc.relative_to(ROOT))] = broken
    assert not problems, problems


def test_nothing_points_outside_the_repository() -> None:
    hits = []
    for path in _tracked(TEXT_SUFFIXES):
        rel = path.relative_to(ROOT)
        if rel.name == "CHANGELOG.md" or rel == Path("tests/test_docs.py"):
            continue
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if OUTSIDE.search(line):
                hits.append(f"{rel}:{number}: {line.strip()[:100]}")
    assert not hits, "\n".join(hits)
