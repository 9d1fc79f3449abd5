"""Fixtures for the trainer tests: a few dozen synthetic images in the canonical format."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small canonical dataset (synthetic faces, all three splits), generated once per session."""
    from data.synthetic import generate_dataset

    out = tmp_path_factory.mktemp("tiny_ds") / "ds"
    generate_dataset(out, n=48, seed=0, size=64)
    return out
