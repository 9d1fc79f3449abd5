"""Fixtures for the data tests: tiny real image files and a small valid canonical dataset."""

from __future__ import annotations

import csv
import shutil
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

FIXTURES = Path(__file__).parent / "fixtures"
HEADER = [
    "image",
    "acne",
    "hyperpigmentation",
    "wrinkles",
    "acne_severity",
    "fitzpatrick",
    "split",
    "source",
    "subject_id",
    "mask",
]


def write_image(path: Path, seed: int, size: int = 16) -> Path:
    """Write a small random-noise JPEG (or PNG, by suffix); distinct seeds give distinct bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    ok, buf = cv2.imencode(path.suffix, image)
    assert ok
    path.write_bytes(buf.tobytes())
    return path


def write_mask(path: Path, channels: int = 3, size: int = 16) -> Path:
    """Write a binary lesion mask PNG with the given number of channels."""
    path.parent.mkdir(parents=True, exist_ok=True)
    mask = np.zeros((size, size, channels) if channels > 1 else (size, size), np.uint8)
    mask[:4, :4] = 255
    assert cv2.imwrite(str(path), mask)
    return path


@pytest.fixture
def make_image() -> Callable[..., Path]:
    return write_image


@pytest.fixture
def fixtures_dir(tmp_path: Path) -> Callable[[str], Path]:
    """Copy of a committed fixture folder in tmp_path (tests add images to it)."""

    def copy(name: str) -> Path:
        target = tmp_path / "src" / name
        shutil.copytree(FIXTURES / name, target)
        return target

    return copy


@pytest.fixture
def good_dataset(tmp_path: Path) -> Path:
    """A valid 24-row dataset: every type 1-6 plus unknown, labels with unknowns, masks."""
    root = tmp_path / "good"
    rows = []
    for i in range(24):
        image = write_image(root / "images" / f"img{i:02d}.jpg", seed=i)
        mask = write_mask(root / "masks" / f"img{i:02d}.png")
        rows.append(
            [
                image.relative_to(root).as_posix(),
                i % 2,
                (i // 2) % 2,
                "" if i % 5 == 0 else i % 3 % 2,
                i % 4,
                "" if i % 7 == 0 else i % 6 + 1,
                ("train", "val", "test")[i % 3],
                "unit",
                f"subj{i}",
                mask.relative_to(root).as_posix(),
            ]
        )
    with open(root / "metadata.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(HEADER)
        writer.writerows(rows)
    return root
