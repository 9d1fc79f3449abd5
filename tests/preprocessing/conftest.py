"""Fixtures for the preprocessing tests: one detector per session, the astronaut image."""

from __future__ import annotations

import numpy as np
import pytest

from preprocessing.face_detect import FaceDetector
from preprocessing.image_io import load_image


@pytest.fixture(scope="session")
def detector() -> FaceDetector:
    return FaceDetector()


@pytest.fixture(scope="session")
def astronaut(astronaut_path) -> np.ndarray:
    return load_image(astronaut_path)
