"""The project's own packages import each other one way only: no import cycle.

The graph is built from the source text (`ast`), so nothing is imported to check it. Every
``import``, at module level or inside a function, is an edge from the importing module to the
module it names: ``import a.b`` and ``from a import b`` (b a submodule) are edges to ``a.b``;
``from a.b import name`` (name not a submodule) is an edge to ``a.b``; relative imports are
resolved against the importing module's package. Only modules of `PACKAGES` are nodes.
"""

from __future__ import annotations

import ast
import os
import sys
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = (
    "core",
    "data",
    "preprocessing",
    "train_jax",
    "fairness",
    "explain",
    "client",
    "triton_models",
    "benchmarks",
)


def module_files(root: Path, packages: Iterable[str]) -> dict[str, Path]:
    """Dotted module name -> file of every .py file under the packages (``pkg/__init__.py`` is
    ``pkg``)."""
    modules: dict[str, Path] = {}
    for package in packages:
        for folder, dirs, files in os.walk(root / package):
            dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "__pycache__")
            for name in sorted(f for f in files if f.endswith(".py")):
                path = Path(folder) / name
                parts = list(path.relative_to(root).with_suffix("").parts)
                if parts[-1] == "__init__":
                    parts.pop()
                modules[".".join(parts)] = path
    return modules


def _longest_known(name: str, modules: Mapping[str, Path]) -> str | None:
    """`name` or its longest dotted prefix that is a project module; None when none is."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return None


def _relative_base(module: str, is_package: bool, level: int, target: str | None) -> str:
    """Absolute name of ``from <level dots><target> import ...`` inside `module`."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    base = package[: len(package) - (level - 1)] if level > 1 else package
    return ".".join([*base, *([target] if target else [])])


def imported_modules(module: str, path: Path, modules: Mapping[str, Path]) -> set[str]:
    """Project modules that `module` (source file `path`) imports anywhere in its body."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    found: set[str | None] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(_longest_known(alias.name, modules) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = _relative_base(module, is_package, node.level, node.module)
            for alias in node.names:
                submodule = f"{base}.{alias.name}" if base else alias.name
                found.add(submodule if submodule in modules else _longest_known(base, modules))
    return {name for name in found if name is not None and name != module}


def import_graph(root: Path = ROOT, packages: Iterable[str] = PACKAGES) -> dict[str, set[str]]:
    """Module -> the project modules it imports, for every module of `packages`."""
    modules = module_files(root, packages)
    return {name: imported_modules(name, path, modules) for name, path in modules.items()}


def _strong_components(graph: Mapping[str, Iterable[str]]) -> Iterator[list[str]]:
    """Strongly connected components of `graph` (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph.get(nxt, ())))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    yield sorted(component)


def _cycle_through(start: str, members: set[str], graph: Mapping[str, Iterable[str]]) -> list[str]:
    """A shortest cycle start -> ... -> start inside one strongly connected component."""
    parent: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for nxt in sorted(graph.get(node, ())):
                if nxt == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(parent[path[-1]])
                    return [start, *reversed(path[:-1]), start]
                if nxt in members and nxt not in parent:
                    parent[nxt] = node
                    following.append(nxt)
        frontier = following
    raise AssertionError(f"{start} is on no cycle")


def find_cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """One cycle per strongly connected component that has one (a module importing itself
    included), each as [m0, m1, ..., m0] starting at the component's first name."""
    cycles = []
    for component in _strong_components(graph):
        if len(component) > 1 or component[0] in graph.get(component[0], ()):
            cycles.append(_cycle_through(component[0], set(component), graph))
    return sorted(cycles)


def _describe(cycles: list[list[str]]) -> str:
    return "import cycle(s):\n" + "\n".join("  " + " -> ".join(c) for c in cycles)


def test_project_packages_have_no_import_cycle() -> None:
    graph = import_graph()
    covered = {name.split(".")[0] for name in graph}
    assert covered == set(PACKAGES), f"packages without a module: {set(PACKAGES) - covered}"
    assert sum(len(edges) for edges in graph.values()) > len(graph)  # the imports resolved
    cycles = find_cycles(graph)
    if cycles:
        print(_describe(cycles))
    assert not cycles, _describe(cycles)


def test_find_cycles_reports_a_planted_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"a"}, "f": {"f"}}
    assert find_cycles(graph) == [["a", "b", "c", "a"], ["f", "f"]]
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": set(), "e": {"a", "c"}}) == []


def _write(root: Path, files: Mapping[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def test_graph_sees_relative_function_level_and_submodule_imports(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/a.py": "from . import b\nimport numpy as np\n",
            "pkg/b.py": "def late():\n    import pkg.sub.c\n",
            "pkg/sub/__init__.py": "from .c import VALUE\n",
            "pkg/sub/c.py": "from ..a import thing\nVALUE = 1\n",
            "pkg/d.py": "from pkg import sub\nfrom pkg.sub import VALUE\n",
        },
    )
    graph = import_graph(tmp_path, ["pkg"])
    assert graph == {
        "pkg": set(),
        "pkg.a": {"pkg.b"},
        "pkg.b": {"pkg.sub.c"},
        "pkg.d": {"pkg.sub"},
        "pkg.sub": {"pkg.sub.c"},
        "pkg.sub.c": {"pkg.a"},
    }
    assert find_cycles(graph) == [["pkg.a", "pkg.b", "pkg.sub.c", "pkg.a"]]
    (tmp_path / "pkg/b.py").write_text("def late():\n    return 1\n", encoding="utf-8")
    assert find_cycles(import_graph(tmp_path, ["pkg"])) == []


# fairness/ is numpy, scikit-learn and fairlearn: no MLflow, no JAX, no trainer.
FAIRNESS_FORBIDDEN = ("mlflow", "jax", "jaxlib", "flax", "optax", "orbax", "train_jax")


def absolute_imports(root: Path, package: str) -> Iterator[tuple[str, str]]:
    """(module, imported name) for every absolute import anywhere in `package`'s modules
    (function bodies included; relative imports stay in the project)."""
    for module, path in sorted(module_files(root, [package]).items()):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                yield from ((module, alias.name) for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                yield module, node.module


def forbidden_imports(root: Path, package: str, forbidden: Iterable[str]) -> list[str]:
    """``module: name`` for every absolute import anywhere in `package`'s modules of a
    top-level package in `forbidden`."""
    banned = set(forbidden)
    return [f"{m}: {n}" for m, n in absolute_imports(root, package) if n.split(".")[0] in banned]


def test_fairness_imports_no_mlflow_jax_or_trainer() -> None:
    offenders = forbidden_imports(ROOT, "fairness", FAIRNESS_FORBIDDEN)
    assert not offenders, "fairness/ must not import: " + ", ".join(offenders)


def test_forbidden_imports_are_found_at_any_depth(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/a.py": "def log():\n    import mlflow.entities\n",
            "pkg/b.py": "from train_jax.export import x\nimport jaxtyping\nfrom . import a\n",
            "pkg/c.py": "import numpy as np\nfrom flax import nnx\n",
        },
    )
    assert forbidden_imports(tmp_path, "pkg", FAIRNESS_FORBIDDEN) == [
        "pkg.a: mlflow.entities",
        "pkg.b: train_jax.export",
        "pkg.c: flax",
    ]


# The house, ground floor first: a package imports only packages on a lower floor (and itself).
LAYERS = (
    "core",  # vocabulary, atomic writer, thresholds.json (load, apply), the severity grade
    "preprocessing",  # image decoding, face detection and landmarks, tone, quality
    "data",  # datasets: adapters, synthskin-v1, TFDS builder, the run-folder layout
    "fairness",  # metrics, threshold and cutpoint fitting, reports (scikit-learn, fairlearn)
    "client",  # the serving steps, the embedded runner, the Triton client, overlays, analyze.py
    "train_jax",  # models, CAM, training, prediction, export
    "explain",  # CAM evaluation against lesion boxes
    "triton_models",  # the model repository, its builder and launcher
    "benchmarks",
)


def upward_imports(
    graph: Mapping[str, Iterable[str]], layers: tuple[str, ...] = LAYERS
) -> list[str]:
    """Edges `importer -> imported` from one package to another on the same or a higher floor."""
    floor = {name: i for i, name in enumerate(layers)}
    bad = []
    for module, targets in graph.items():
        here = module.split(".")[0]
        for target in targets:
            there = target.split(".")[0]
            if there != here and floor[there] >= floor[here]:
                bad.append(f"{module} -> {target}")
    return sorted(bad)


def test_every_package_is_on_a_floor() -> None:
    assert set(LAYERS) == set(PACKAGES)


def test_packages_import_only_lower_layers() -> None:
    bad = upward_imports(import_graph())
    assert not bad, "imports that do not run downward:\n" + "\n".join(bad)


def test_upward_imports_reports_a_planted_upward_edge() -> None:
    graph = {"core.schema": {"client.steps"}, "client.steps": {"core.schema"}}
    assert upward_imports(graph) == ["core.schema -> client.steps"]


def third_party_imports(root: Path, package: str) -> list[str]:
    """``module: name`` for every absolute import anywhere in `package`'s modules of a
    top-level package that is neither the standard library, numpy nor `package` itself."""
    allowed = set(sys.stdlib_module_names) | {"numpy", package}
    return [
        f"{m}: {n}" for m, n in absolute_imports(root, package) if n.split(".")[0] not in allowed
    ]


def test_core_imports_only_numpy_and_the_standard_library() -> None:
    """core/ is imported by every package, the Triton python models (numpy<2, no scikit-learn)
    and the analysis install: numpy and the standard library only."""
    offenders = third_party_imports(ROOT, "core")
    assert not offenders, "core/ must import only numpy and the standard library: " + ", ".join(
        offenders
    )


def test_third_party_imports_are_found_at_any_depth(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "pkg/__init__.py": "import json\nimport numpy as np\nfrom . import a\n",
            "pkg/a.py": "import os.path\ndef late():\n    from sklearn.metrics import f1_score\n",
            "pkg/b.py": "import cv2\nfrom pkg.a import late\n",
        },
    )
    assert third_party_imports(tmp_path, "pkg") == ["pkg.a: sklearn.metrics", "pkg.b: cv2"]


# What the Triton python models and `python client/analyze.py` import: core/ and preprocessing/
# only below client/ (fairness/ is for the reports; client/counterfactual.py is an audit CLI).
SERVING_ENTRIES = (
    "client.analyze",
    "client.runner",
    "client.triton_client",
    "triton_models.skin_analysis.1.model",
)
SERVING_PACKAGES = ("core", "preprocessing", "client", "triton_models")


def reachable(graph: Mapping[str, Iterable[str]], starts: Iterable[str]) -> set[str]:
    """Every module that `starts` import, directly or through others (the starts included)."""
    seen: set[str] = set()
    todo = list(starts)
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo.extend(graph.get(module, ()))
    return seen


def test_the_serving_path_reaches_only_core_preprocessing_and_client() -> None:
    graph = import_graph()
    assert set(SERVING_ENTRIES) <= set(graph)
    outside = sorted(
        m for m in reachable(graph, SERVING_ENTRIES) if m.split(".")[0] not in SERVING_PACKAGES
    )
    assert not outside, "the serving path imports: " + ", ".join(outside)


def test_reachable_follows_imports_transitively() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert reachable(graph, ["a"]) == {"a", "b", "c"}
    assert reachable(graph, ["d"]) == {"a", "b", "c", "d"}
