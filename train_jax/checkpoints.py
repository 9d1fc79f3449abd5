"""Orbax checkpoints of a run: `latest` (exact resume) and `best` (by the selection metric).

Layout under `<run>/checkpoints/`:

    latest/<step>/train_state   full training state (params, BatchNorm stats, RNG state,
                                optimizer, GroupDRO weights, EMA) for an exact `--resume`
    latest/<step>/model         inference weights (EMA weights when EMA is on)
    latest/<step>/meta          JSON: step, epoch, history, best score, MLflow run id
    best/<step>/model, meta     inference weights of the best validation epoch

`load_model(run_dir, which="best") -> (model, config)` rebuilds the network from `config.json`
and restores its weights, in eval mode.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx

from data.run import Run
from train_jax import config as config_lib

log = logging.getLogger(__name__)

TRAIN_ITEM, MODEL_ITEM, META_ITEM = "train_state", "model", "meta"
WHICH = ("best", "latest")


def _is_key(x: Any) -> bool:
    return isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jax.dtypes.prng_key)


def encode_keys(tree: Any) -> Any:
    """Replace typed PRNG key arrays by their uint32 data (orbax stores plain arrays)."""
    return jax.tree.map(lambda x: jax.random.key_data(x) if _is_key(x) else x, tree)


def decode_keys(tree: Any, template: Any) -> Any:
    """Inverse of `encode_keys`, using `template` to know which leaves were keys."""

    def fn(x: Any, t: Any) -> Any:
        if _is_key(t):
            return jax.random.wrap_key_data(x, impl=jax.random.key_impl(t))
        return x

    return jax.tree.map(fn, tree, template)


def _abstract(tree: Any) -> Any:
    def fn(x: Any) -> Any:
        sharding = getattr(x, "sharding", None)
        return jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=sharding)

    return jax.tree.map(fn, tree)


def _manager(directory: Path, items: tuple[str, ...], *, read_only: bool = False):
    # Each manager's own barrier names: with several processes, `best` and `latest` save the same
    # step at an epoch end, and orbax's async-commit barrier ("async_write_complete.<step>")
    # would otherwise be entered twice ("Barrier ... is already ongoing", then a timeout).
    multiprocessing = ocp.options.MultiprocessingOptions(barrier_sync_key_prefix=directory.name)
    if not read_only:
        options = ocp.CheckpointManagerOptions(
            max_to_keep=1, create=True, multiprocessing_options=multiprocessing
        )
        return ocp.CheckpointManager(directory, options=options, item_names=items)
    # Reading a checkpoint is the normal case for export, predict and evaluation: orbax's
    # warnings that a read-only manager saves nothing ("Given directory is read only") are
    # expected, so they are not shown.
    options = ocp.CheckpointManagerOptions(
        max_to_keep=None,
        save_interval_steps=0,
        create=False,
        read_only=True,
        multiprocessing_options=multiprocessing,
    )
    absl_logger = logging.getLogger("absl")
    level = absl_logger.level
    absl_logger.setLevel(logging.ERROR)
    try:
        return ocp.CheckpointManager(directory, options=options, item_names=items)
    finally:
        absl_logger.setLevel(level)


def has_checkpoint(run_dir: str | Path) -> bool:
    """True if `run_dir` holds a complete `latest` checkpoint (read-only check)."""
    latest = Run(run_dir).checkpoint("latest")
    return latest.is_dir() and any(
        p.name.isdigit() and (p / "_CHECKPOINT_METADATA").is_file() for p in latest.iterdir()
    )


def _write_from_process_zero() -> None:
    """Have process 0 write every byte of the (replicated) arrays of a checkpoint."""
    # By default orbax splits the writing of a replicated array over its replicas, so with
    # several processes each one writes part of every checkpoint. With one writer the files do
    # not depend on the number of processes; the save stays collective (process 0 commits).
    handler = ocp.type_handlers.ArrayHandler(use_replica_parallel=False)
    absl_logger = logging.getLogger("absl")
    level = absl_logger.level
    absl_logger.setLevel(logging.ERROR)  # the override is meant: no "overriding" warning
    try:
        ocp.type_handlers.register_type_handler(jax.Array, handler, override=True)
    finally:
        absl_logger.setLevel(level)


class RunCheckpoints:
    """The `latest` and `best` checkpoint managers of one run directory."""

    def __init__(self, run_dir: str | Path) -> None:
        root = Run(Path(run_dir).resolve()).checkpoints_dir  # orbax needs absolute paths
        if jax.process_count() > 1:
            _write_from_process_zero()
        self.latest = _manager(root / "latest", (TRAIN_ITEM, MODEL_ITEM, META_ITEM))
        self.best = _manager(root / "best", (MODEL_ITEM, META_ITEM))

    def latest_step(self) -> int | None:
        """Step of the newest complete `latest` checkpoint, or None."""
        return self.latest.latest_step()

    @staticmethod
    def _save(manager: ocp.CheckpointManager, step: int, items: dict[str, Any]) -> None:
        if step in manager.all_steps():  # re-saved after a resume from an older step
            manager.delete(step)
        args = {}
        for name, value in items.items():
            if name == META_ITEM:
                args[name] = ocp.args.JsonSave(value)
            else:
                args[name] = ocp.args.StandardSave(encode_keys(value))
        manager.save(step, args=ocp.args.Composite(**args), force=True)

    def save_latest(
        self, step: int, train_state: Any, model_state: Any, meta: dict[str, Any]
    ) -> None:
        """Save the full state for `--resume` (asynchronously; see `wait`)."""
        items = {TRAIN_ITEM: train_state, MODEL_ITEM: model_state, META_ITEM: meta}
        self._save(self.latest, step, items)

    def save_best(self, step: int, model_state: Any, meta: dict[str, Any]) -> None:
        """Save the inference weights of a new best epoch."""
        self._save(self.best, step, {MODEL_ITEM: model_state, META_ITEM: meta})

    def restore_latest(self, train_template: Any) -> tuple[Any, dict[str, Any]]:
        """(train state shaped and sharded like `train_template`, meta) of the latest step."""
        step = self.latest.latest_step()
        if step is None:
            raise FileNotFoundError("no complete checkpoint to resume from")
        restored = self.latest.restore(
            step,
            args=ocp.args.Composite(
                **{
                    TRAIN_ITEM: ocp.args.StandardRestore(_abstract(encode_keys(train_template))),
                    META_ITEM: ocp.args.JsonRestore(),
                }
            ),
        )
        return decode_keys(restored[TRAIN_ITEM], train_template), dict(restored[META_ITEM])

    def wait(self) -> None:
        """Block until asynchronous saves are on disk."""
        self.latest.wait_until_finished()
        self.best.wait_until_finished()

    def close(self) -> None:
        """Finish pending saves and release the managers."""
        self.latest.close()
        self.best.close()


def split_model(model: nnx.Module) -> tuple[nnx.GraphDef, dict[str, nnx.State]]:
    """(graphdef, {"params": Param state, "rest": BatchNorm statistics, RNG state, ...})."""
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    return graphdef, {"params": params, "rest": rest}


def build_model(config: config_lib.TrainConfig, *, seed: int | None = None) -> nnx.Module:
    """The network of `config`, freshly initialised, in training mode.

    On CPU the convolutions run as shifted slices and matmuls (fast under XLA:CPU); on GPU/TPU as
    XLA convolutions (cuDNN). Both give the same outputs from the same parameters.
    """
    from train_jax.models import create_model, set_conv_impl

    overrides = dict(config.model.overrides)
    if config.model.dtype == "bfloat16":
        overrides.setdefault("dtype", jnp.bfloat16)
    model = create_model(
        config.model.name,
        rngs=nnx.Rngs(config.seed if seed is None else seed),
        image_size=config.model.image_size,
        **overrides,
    )
    if jax.default_backend() != "cpu":
        set_conv_impl(model, "conv")
    return model


def restore_model_state(model: nnx.Module, state: dict[str, nnx.State]) -> nnx.Module:
    """Write a `{"params", "rest"}` state (from `split_model`) into `model` and return it."""
    nnx.update(model, state["params"], state["rest"])
    return model


def load_model(
    run_dir: str | Path, which: str = "best"
) -> tuple[nnx.Module, config_lib.TrainConfig]:
    """Load a trained model from a run folder: `(model in eval mode, TrainConfig)`.

    `which` is "best" (best validation epoch by the run's `select` metric) or "latest".
    """
    if which not in WHICH:
        raise ValueError(f"which must be one of {list(WHICH)}, got {which!r}")
    run = Run(Path(run_dir).resolve())
    if not run.config_path.is_file():
        raise FileNotFoundError(f"{run.root}: no config.json (not a training run folder)")
    config = config_lib.load(run.config_path)
    directory = run.checkpoint(which)
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: no {which} checkpoint")
    items = (TRAIN_ITEM, MODEL_ITEM, META_ITEM) if which == "latest" else (MODEL_ITEM, META_ITEM)
    manager = _manager(directory, items, read_only=True)
    step = manager.latest_step()
    if step is None:
        raise FileNotFoundError(f"{directory}: no complete checkpoint")
    model = build_model(config)
    _, template = split_model(model)
    restored = manager.restore(
        step,
        args=ocp.args.Composite(
            **{MODEL_ITEM: ocp.args.StandardRestore(_abstract(encode_keys(template)))}
        ),
    )
    manager.close()
    restore_model_state(model, decode_keys(restored[MODEL_ITEM], template))
    model.eval()
    return model, config
