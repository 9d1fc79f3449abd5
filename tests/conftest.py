"""Shared fixtures: real photos that ship inside wheels (scikit-image, insightface)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

# The datacard of acne-new v36 (datacard format of fairness.model_card), for tests that write one.
ACNE_NEW = {
    "name": "acne-new v36",
    "licence": "CC BY 4.0",
    "attribution": "buyumedatasets (Roboflow Universe workspace)",
    "url": "https://universe.roboflow.com/buyumedatasets/acne-new/dataset/36",
    "tone_source": "estimated",
}


def exported_card(
    *,
    version: str = "abc",
    run: str | None = None,
    parity: dict | None = None,
    metrics: dict | None = None,
    training_data: dict | None = None,
) -> dict:
    """A valid exported model's card (fairness.model_card's schema) with the given fields."""
    from fairness.model_card import export_sections, make_model_card

    sections = export_sections(
        architecture="small_cnn",
        input_size=8,
        opset=18,
        normalisation="imagenet",
        parity=parity,
        metrics=metrics,
        run=run,
    )
    return make_model_card(
        name="small_cnn-test",
        version=version,
        training_data=training_data,
        export=sections,
    )


_INSIGHTFACE_HINT = "pip install --no-deps insightface==2.1 (the README's test command does this)"


def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def photo_path(name: str) -> Path:
    """Path of a real photo shipped in a wheel: 'astronaut.png', 't1.jpg', 'Tom_Hanks_54745.png'."""
    if name == "astronaut.png":
        root = _package_dir("skimage")
        path = root / "data" / name if root else None
    else:
        root = _package_dir("insightface")
        path = root / "data" / "images" / name if root else None
    if path is None or not path.is_file():
        raise FileNotFoundError(
            f"test photo {name!r} not found; install it with: {_INSIGHTFACE_HINT}"
        )
    return path


@pytest.fixture(scope="session")
def astronaut_path() -> Path:
    return photo_path("astronaut.png")


@pytest.fixture(scope="session")
def group_photo_path() -> Path:
    return photo_path("t1.jpg")


@pytest.fixture(scope="session")
def grayscale_photo_path() -> Path:
    return photo_path("Tom_Hanks_54745.png")


@pytest.fixture(scope="session")
def severity_model_dir(tmp_path_factory) -> Path:
    """A model folder like models/default whose classifier has the acne-severity output: a tiny
    untrained small_cnn exported at 32 px (probs, cam, severity), the shipped thresholds."""
    import shutil

    from flax import nnx

    from train_jax.export import export_model
    from train_jax.models import create_model

    out = tmp_path_factory.mktemp("severity_model")
    model = create_model("small_cnn", rngs=nnx.Rngs(5), width=0.25)
    export_model(model, out, architecture="small_cnn", input_size=32, dataset="synthskin-v1")
    default = Path(__file__).resolve().parents[1] / "models" / "default"
    shutil.copyfile(default / "thresholds.json", out / "thresholds.json")
    return out
