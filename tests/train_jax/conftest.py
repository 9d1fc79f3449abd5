"""Fixtures for the trainer tests: a few dozen synthetic faces in the canonical format."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """48 synthetic 64x64 faces with masks and train/val/test splits, generated once."""
    from data.synthetic import SynthConfig, generate_dataset

    out = tmp_path_factory.mktemp("tiny_ds") / "synth"
    generate_dataset(out, SynthConfig(n=48, seed=3, size=64), progress=False)
    return out


def quick_args(data: Path, out: Path, run: str, *extra: str) -> list[str]:
    """CLI flags of the `quick` demo variant on `data`, one worker thread, no progress bar."""
    return [
        "--config", "train_jax/configs/demo.py:quick",
        "--data", str(data),
        "--out", str(out),
        "--run", run,
        "--no-progress",
        *extra,
    ]  # fmt: skip


@pytest.fixture(scope="session", autouse=True)
def compilation_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Share compiled XLA programs between the runs of this session (and their subprocesses)."""
    import os

    import jax

    path = tmp_path_factory.mktemp("jax_cache")
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    os.environ["JAX_COMPILATION_CACHE_DIR"] = str(path)
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    return path
