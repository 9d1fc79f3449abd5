"""Every docstring example (``>>>``) in the project's packages runs and prints what it shows."""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

from tests.test_import_graph import LAYERS

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = tuple(name for name in LAYERS if name != "benchmarks")  # the project's packages


def modules_with_examples() -> list[str]:
    """Dotted names of the project modules whose source holds a ``>>>`` example."""
    names = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if ">>>" in path.read_text():
                names.append(".".join(path.relative_to(ROOT).with_suffix("").parts))
    return names


def test_examples_are_found() -> None:
    assert len(modules_with_examples()) >= 10


@pytest.mark.parametrize("name", modules_with_examples())
def test_docstring_examples_pass(name: str) -> None:
    module = importlib.import_module(name)
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    result = doctest.testmod(module, optionflags=flags, verbose=False, report=True)
    assert result.attempted > 0, f"{name}: '>>>' in the source but no example ran"
    assert result.failed == 0, f"{name}: {result.failed} of {result.attempted} examples failed"
