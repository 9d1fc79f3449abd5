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


def train_on_one_batch(
    model, batch: dict, *, steps: int, total_steps: int, learning_rate: float | None = None
) -> tuple[object, list[float]]:
    """Run the trainer's jitted step `steps` times on `batch` (the demo `quick` config, plain BCE,
    no localisation loss, severity weight 1) on one device; return the trained model in
    evaluation mode and the severity loss of every step."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    from flax import nnx
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    from train_jax import config as C
    from train_jax import train as T
    from train_jax.configs.demo import get_config

    config = C.override(get_config("quick"), loss="bce", loc_weight=0.0, severity_weight=1.0)
    if learning_rate is not None:
        config = C.override(config, **{"optim.learning_rate": learning_rate})
    mesh = jax.make_mesh((1,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    repl, data = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
    model.train()
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx, schedule = T.make_optimizer(config, total_steps=total_steps)
    state = {
        "params": params,
        "rest": rest,
        "opt": tx.init(params),
        "dro_q": jnp.full((3,), 1 / 3),
        "ema": None,
        "step": jnp.zeros((), jnp.int32),
    }
    step = T.make_train_step(graphdef, tx, schedule, config, np.ones(3), repl, data)
    history = []
    for _ in range(steps):
        state, metrics = step(state, T._global_batch(batch, data))
        history.append(float(metrics["severity"]))
    trained = nnx.merge(graphdef, state["params"], state["rest"])
    trained.eval()
    return trained, history


def severity_batch(images, **extra) -> dict:
    """A training batch of `images` [B, S, S, 3] with every condition label known and 0, tone
    group 0 and weight 1, plus the severity columns in `extra` (`severity`, `lesion_count`, ...)."""
    import numpy as np

    b = len(images)
    return {
        "image": images,
        "labels": np.zeros((b, 3), np.float32),
        "label_mask": np.ones((b, 3), np.float32),
        "group": np.zeros(b, np.int32),
        "weight": np.ones(b, np.float32),
        **extra,
    }
