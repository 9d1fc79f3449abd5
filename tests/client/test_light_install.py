"""The analysis install (`pip install -e .`) is enough for client/analyze.py.

Runs the client in a subprocess whose import system refuses every package of the `[train]` extra
(JAX, Flax, TFDS, MLflow, DVC, pandas, ...), so analysing a photo, writing overlays and loading
the Triton client must work with the core dependencies alone.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PHOTO = ROOT / "docs" / "examples" / "acne-new-valid-4554.jpg"
# Import names of the [train] extra's distributions.
IMPORT_NAMES = {
    "jax": ["jax"],
    "jaxlib": ["jaxlib"],
    "flax": ["flax"],
    "optax": ["optax"],
    "orbax-checkpoint": ["orbax"],
    "grain": ["grain"],
    "tensorflow-datasets": ["tensorflow_datasets", "tensorflow"],
    "array-record": ["array_record"],
    "scikit-learn": ["sklearn", "scipy"],
    "fairlearn": ["fairlearn"],
    "pandas": ["pandas"],
    "jax2onnx": ["jax2onnx"],
    "onnx": ["onnx"],
    "mlflow": ["mlflow"],
    "dvc": ["dvc"],
    "matplotlib": ["matplotlib"],
    "pyyaml": ["yaml"],
    "safetensors": ["safetensors"],
}
BLOCKER = """
import importlib.abc, runpy, sys
BLOCKED = set({blocked!r})
class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError("train-stack import in the analysis path: " + name)
sys.meta_path.insert(0, Refuse())
sys.argv = {argv!r}
{action}
"""


def _distribution(requirement: str) -> str:
    """`name>=1,<2` / `name[extra]>=1` -> `name`."""
    for stop in "[<>=!~; ":
        requirement = requirement.split(stop, 1)[0]
    return requirement.strip().lower()


def blocked_modules() -> list[str]:
    """Top-level import names of every distribution in the [train] extra."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    train = [_distribution(r) for r in project["optional-dependencies"]["train"]]
    core = {_distribution(r) for r in project["dependencies"]}
    missing = [d for d in train if d not in IMPORT_NAMES]
    assert not missing, f"give the import names of {missing} in IMPORT_NAMES"
    assert not core & set(train), "a [train] package is also a core dependency"
    return sorted({m for d in train for m in IMPORT_NAMES[d]})


def _run_blocked(argv: list[str], action: str) -> subprocess.CompletedProcess:
    code = BLOCKER.format(blocked=blocked_modules(), argv=argv, action=action)
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


def test_the_blocker_refuses_a_train_stack_import() -> None:
    proc = _run_blocked(["x"], "import pandas")
    assert proc.returncode != 0 and "train-stack import" in proc.stderr


def test_analyzing_a_photo_needs_no_train_stack(tmp_path: Path) -> None:
    argv = ["client/analyze.py", "--image", str(PHOTO), "--json", "--overlay", str(tmp_path)]
    proc = _run_blocked(argv, "runpy.run_path('client/analyze.py', run_name='__main__')")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["status"] == "ok" and result["faces"]
    assert any(tmp_path.iterdir()), "no overlay written"


@pytest.mark.parametrize("module", ["client.triton_client", "client.runner", "client.ood"])
def test_the_client_modules_import_without_the_train_stack(module: str) -> None:
    proc = _run_blocked(["x"], f"import {module}")
    assert proc.returncode == 0, proc.stderr


def test_filling_a_triton_repository_from_an_exported_model_needs_no_train_stack(
    tmp_path: Path,
) -> None:
    repo = tmp_path / "repo"
    argv = ["triton_models.build", "--model-dir", "models/default", "--repo", str(repo), "--json"]
    proc = _run_blocked(argv, "runpy.run_module('triton_models.build', run_name='__main__')")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["repo"] == str(repo)
    assert (repo / "classify" / "1" / "model.onnx").is_file()
