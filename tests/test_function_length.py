"""Functions stay short: none outside tests/ and benchmarks/ is longer than 80 lines."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("data", "preprocessing", "train_jax", "fairness", "explain", "client", "triton_models")
MAX_LINES = 80


def long_functions(source: str, limit: int = MAX_LINES) -> list[tuple[str, int]]:
    """(name, lines) of every function in `source` longer than `limit` lines (decorators aside)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            lines = node.end_lineno - node.lineno + 1
            if lines > limit:
                found.append((node.name, lines))
    return found


def test_long_functions_are_found() -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(80))
    assert long_functions(f"def f():\n{body}\n") == [("f", 81)]
    assert long_functions("def g():\n    return 1\n") == []


def test_no_function_is_longer_than_80_lines() -> None:
    offenders = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for name, lines in long_functions(path.read_text()):
                offenders.append(f"{path.relative_to(ROOT)}: {name} ({lines} lines)")
    assert not offenders, "\n".join(offenders)
