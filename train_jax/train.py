"""`train_and_evaluate(config, workdir)`: the training loop, read top to bottom.

Phases: check inputs, data, mesh, model and optimiser, restore, the jitted step, the loop, then
predictions with the best checkpoint. Data parallel: `jax.jit` over a Mesh whose `data` axis spans
every device of every process; parameters are replicated, batches sharded on `data`, so
BatchNorm statistics and losses are over the global batch (one device or many give the same
numbers). With cluster environment variables set, `jax.distributed.initialize()` runs first and
each process loads only its share of every batch.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from core import atomic
from core.schema import CONDITIONS, DISCLAIMER, GROUPS
from core.severity import severity_grade
from fairness.metrics import epoch_metrics
from fairness.severity import mean_absolute_error as severity_mae
from fairness.severity import quadratic_weighted_kappa, severity_metrics
from train_jax import checkpoints as ckpt_lib
from train_jax import config as config_lib
from train_jax import freeze, losses, predict, tracking
from train_jax import input as input_lib
from train_jax.models.count import CountHead

log = logging.getLogger(__name__)

CLUSTER_ENV_VARS = ("JAX_COORDINATOR_ADDRESS", "SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE")
_distributed_ready = False


class RunExistsError(RuntimeError):
    """The run folder already holds checkpoints and `resume` was not asked for."""


# --- setup helpers --------------------------------------------------------------------------


def maybe_initialize_distributed() -> bool:
    """Call `jax.distributed.initialize()` once if a multi-process cluster is configured.

    Cluster managers (SLURM, Open MPI, ...) are auto-detected by JAX; a hand-made cluster sets
    JAX_COORDINATOR_ADDRESS (host:port), JAX_NUM_PROCESSES and JAX_PROCESS_ID.
    """
    global _distributed_ready
    if _distributed_ready:
        return True
    env = os.environ
    multi = "JAX_COORDINATOR_ADDRESS" in env or any(
        int(env.get(k, "1") or 1) > 1 for k in ("SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE")
    )
    if multi:
        kwargs = {}
        if "JAX_NUM_PROCESSES" in env and "JAX_PROCESS_ID" in env:
            kwargs = {
                "num_processes": int(env["JAX_NUM_PROCESSES"]),
                "process_id": int(env["JAX_PROCESS_ID"]),
            }
        jax.distributed.initialize(**kwargs)
        _distributed_ready = True
    return multi


def prepare_dataset(config: config_lib.TrainConfig) -> Any:
    """The TFDS builder of the configured dataset, generating the synthetic data if missing."""
    from data.tfds_builder import build_dataset

    data_dir = Path(config.data.data_dir)
    if not (data_dir / "metadata.csv").is_file():
        if not config.data.generate_preset:
            raise FileNotFoundError(f"{data_dir}: no metadata.csv (dataset missing)")
        if jax.process_index() == 0:
            from data.synthetic import PRESETS, generate_dataset

            preset = config.data.generate_preset
            if preset not in PRESETS:
                raise ValueError(
                    f"unknown synthetic preset {preset!r}; choose from {sorted(PRESETS)}"
                )
            log.warning("%s missing: generating the %s benchmark (once)", data_dir, preset)
            generate_dataset(data_dir, PRESETS[preset], preset=preset, workers=os.cpu_count() or 1)
    _sync("generate")
    options = dict(
        crop_size=config.model.image_size,
        cache_dir=config.data.tfds_dir or None,
        build=config.data.tfds_build,
    )
    if jax.process_index() == 0:
        builder = build_dataset(data_dir, **options)
    _sync("dataset")
    if jax.process_index() != 0:
        builder = build_dataset(data_dir, **options)
    return builder


def _sync(name: str) -> None:
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def _to_host(x: jax.Array) -> np.ndarray:
    """A global array as one numpy array on every process."""
    if jax.process_count() == 1:
        return np.asarray(x)
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def _global_batch(batch: dict[str, np.ndarray], sharding: NamedSharding) -> dict[str, jax.Array]:
    """This process's rows -> one array sharded over the `data` axis of all devices."""
    return {
        k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in batch.items()
    }


def replicate(tree: Any, sharding: NamedSharding) -> Any:
    """Copy a host-identical pytree onto every device of the mesh (works across processes,
    where `jax.device_put` of a local array would need a cross-host transfer)."""
    from train_jax.checkpoints import decode_keys, encode_keys

    def put(x: Any) -> jax.Array:
        value = np.asarray(x)
        return jax.make_array_from_callback(value.shape, sharding, lambda idx: value[idx])

    return decode_keys(jax.tree.map(put, encode_keys(tree)), tree)


def make_optimizer(
    config: config_lib.TrainConfig, total_steps: int, trainable: Any = None
) -> tuple[Any, Callable]:
    """AdamW with linear warm-up and cosine decay; no weight decay on biases and norms.

    `trainable` (a `train_jax.freeze.trainable_mask`) leaves the frozen weights unchanged.
    """
    o = config.optim
    warmup = min(o.warmup_steps, max(total_steps - 1, 0))
    schedule = optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=o.learning_rate,
        warmup_steps=warmup,
        decay_steps=max(total_steps, warmup + 1),
        end_value=o.learning_rate * o.end_lr_factor,
    )

    def decay_mask(params: Any) -> Any:
        return jax.tree.map(lambda p: p.ndim > 1, params)

    parts = [optax.clip_by_global_norm(o.grad_clip_norm)] if o.grad_clip_norm > 0 else []
    parts.append(optax.adamw(schedule, weight_decay=o.weight_decay, mask=decay_mask))
    tx = optax.chain(*parts)
    if trainable is not None:
        tx = optax.multi_transform(
            {freeze.TRAINABLE: tx, freeze.FROZEN: optax.set_to_zero()},
            freeze.optimizer_labels(trainable),
        )
    return tx, schedule


@dataclasses.dataclass
class Plan:
    """When to evaluate, checkpoint and stop (one place for every `%` check)."""

    steps_per_epoch: int
    total_steps: int
    max_steps: int  # -1 = no limit
    checkpoint_every_steps: int

    def epoch_end(self, step: int) -> bool:
        """Evaluate, checkpoint and log at the end of every epoch."""
        return step % self.steps_per_epoch == 0

    def stop(self, step: int) -> bool:
        """Stop early at `max_steps`."""
        return 0 < self.max_steps <= step < self.total_steps

    def checkpoint(self, step: int) -> bool:
        """Save `latest` at epoch ends, every `checkpoint_every_steps`, and when stopping."""
        every = self.checkpoint_every_steps
        return self.epoch_end(step) or self.stop(step) or (every > 0 and step % every == 0)


class Throughput:
    """Training images per second over the step loop only (no compilation, no evaluation)."""

    def __init__(self) -> None:
        self.images = 0
        self.seconds = 0.0
        self.compiled = False
        self.mark()

    def mark(self) -> None:
        """Start timing the next step (call before waiting for its batch)."""
        self._t = time.perf_counter()

    def add(self, num_images: int) -> None:
        """Count a finished step; the first one of the run compiles and is not counted."""
        now = time.perf_counter()
        if self.compiled:
            self.images += num_images
            self.seconds += now - self._t
        self.compiled = True
        self._t = now

    def rate(self) -> float:
        """Images per second so far (0 before the second step)."""
        return self.images / self.seconds if self.seconds > 0 else 0.0


# --- jitted steps ---------------------------------------------------------------------------


def ema_update(ema: Any, params: Any, decay: float) -> Any:
    """Exponential moving average of the weights: decay * ema + (1 - decay) * params."""
    return jax.tree.map(lambda e, p: decay * e + (1 - decay) * p, ema, params)


def make_train_step(
    graphdef: nnx.GraphDef,
    tx: Any,
    schedule: Callable,
    config: config_lib.TrainConfig,
    group_weights: np.ndarray,
    repl: NamedSharding,
    data: NamedSharding,
    align: str = "corner",
    trainable: Any = None,
) -> Callable:
    """`train_step(state, batch) -> (state, metrics)`, jitted over the mesh.

    `trainable` (a `train_jax.freeze.trainable_mask`) stops the gradient at the frozen weights.

    With `config.loc_weight > 0` the batch carries lesion masks and the loss adds the
    localisation loss on the class map; `align` is where a feature cell sits in the input
    (`train_jax.cam.cell_alignment`). With `config.severity_weight > 0` and a batch that carries
    `severity`, the loss adds the severity head's loss (`_severity_term`).
    """
    ema_decay = config.optim.ema_decay
    group_w = jnp.asarray(group_weights, jnp.float32)

    def train_step(
        state: dict[str, Any], batch: dict[str, jax.Array]
    ) -> tuple[dict[str, Any], dict[str, jax.Array]]:
        def loss_fn(params: Any) -> tuple[jax.Array, tuple[dict[str, jax.Array], Any]]:
            if trainable is not None:
                params = freeze.stop_frozen(params, trainable)
            model = nnx.merge(graphdef, params, state["rest"], copy=True)
            loss, aux = _batch_loss(model, batch, state["dro_q"], config, group_w, align)
            _, _, rest = nnx.split(model, nnx.Param, ...)
            return loss, (aux, rest)

        (loss, (aux, rest)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
        new = _apply_gradients(state, grads, rest, aux, tx, ema_decay)
        return new, _step_metrics(loss, aux, grads, schedule(state["step"]), config.loc_weight)

    return jax.jit(
        train_step, in_shardings=(repl, data), out_shardings=(repl, repl), donate_argnums=0
    )


def _batch_loss(
    model: nnx.Module,
    batch: dict[str, jax.Array],
    dro_q: jax.Array,
    config: config_lib.TrainConfig,
    group_w: jax.Array,
    align: str,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The loss of one batch and its parts (classification, localisation, severity)."""
    feats = model.features(batch["image"].astype(jnp.float32))
    logits = model.pool_and_classify(feats)
    loss, aux = losses.compute_loss(
        config.loss,
        logits,
        batch,
        num_groups=len(GROUPS),
        group_weights=group_w,
        dro_q=dro_q,
        focal_gamma=config.focal_gamma,
        groupdro_eta=config.groupdro_eta,
    )
    if config.loc_weight > 0:
        aux["loc"] = _localisation_term(model, feats, batch, config, align)
        loss = loss + config.loc_weight * aux["loc"]
    if config.severity_weight > 0 and "severity" in batch:
        aux["severity"] = _severity_term(model, feats, batch)
        loss = loss + config.severity_weight * aux["severity"]
    return loss, aux


def _severity_term(model: nnx.Module, feats: jax.Array, batch: dict[str, jax.Array]) -> jax.Array:
    """The severity head's loss: Poisson on the lesion count for a count head (rows without a
    count masked), else the ordinal loss on the grade (rows without a grade masked)."""
    head = model.severity_head
    if isinstance(head, CountHead):
        loss, _ = losses.poisson_count_loss(
            head.log_rate(feats),
            batch["lesion_count"],
            batch["lesion_count_mask"] * batch["weight"],
        )
        return loss
    loss, _ = losses.ordinal_loss(
        model.severity_from_features(feats),
        batch["severity"],
        batch["severity_mask"] * batch["weight"],
    )
    return loss


def _localisation_term(
    model: nnx.Module,
    feats: jax.Array,
    batch: dict[str, jax.Array],
    config: config_lib.TrainConfig,
    align: str,
) -> jax.Array:
    """The localisation loss of the class map before its ReLU against the lesion masks."""
    # The CAM before its ReLU: the head's class scores per cell (no bias).
    kernel = model.head.kernel[...].astype(jnp.float32)
    scores = jnp.einsum("bhwk,kc->bhwc", feats.astype(jnp.float32), kernel)
    cells = losses.mask_at_cells(batch["mask"], scores.shape[1:3], align, config.loc_cells)
    loc, _ = losses.localisation_loss(
        scores,
        cells,
        batch["labels"],
        batch["label_mask"],
        batch["weight"],
        temperature=config.loc_temperature,
    )
    return loc


def _apply_gradients(
    state: dict[str, Any],
    grads: Any,
    rest: Any,
    aux: dict[str, jax.Array],
    tx: Any,
    ema_decay: float,
) -> dict[str, Any]:
    """The train state after one optimiser step, with the new GroupDRO weights and EMA."""
    updates, opt_state = tx.update(grads, state["opt"], state["params"])
    params = optax.apply_updates(state["params"], updates)
    new = dict(state, params=params, rest=rest, opt=opt_state, step=state["step"] + 1)
    if "dro_q" in aux:
        new["dro_q"] = aux["dro_q"]
    if ema_decay > 0:
        new["ema"] = ema_update(state["ema"], params, ema_decay)
    return new


def _step_metrics(
    loss: jax.Array, aux: dict[str, jax.Array], grads: Any, lr: jax.Array, loc_weight: float
) -> dict[str, jax.Array]:
    """The numbers one training step reports."""
    metrics = {
        "loss": loss,
        "bce": aux["bce"],
        "grad_norm": optax.tree.norm(grads),
        "lr": lr,
    }
    if loc_weight > 0:
        metrics["loc"] = aux["loc"]
    if "severity" in aux:
        metrics["severity"] = aux["severity"]
    return metrics


def make_predict_fn(graphdef: nnx.GraphDef, repl: NamedSharding, data: NamedSharding) -> Callable:
    """`predict(params, rest, images) -> (probs [B,3], severity [B,4])`, jitted over the mesh
    (eval-mode graphdef); severity = the class probabilities of the acne-severity grades."""

    def fn(params, rest, images):
        return predict.model_outputs(nnx.merge(graphdef, params, rest, copy=True), images)

    return jax.jit(fn, in_shardings=(repl, repl, data), out_shardings=data)


def run_predictions(
    predict_fn: Callable,
    params: Any,
    rest: Any,
    source: Any,
    *,
    batch_size: int,
    sharding: NamedSharding,
    config: config_lib.TrainConfig,
) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities [N, 3], severity class probabilities [N, 4]) for every example of `source`,
    in source order."""
    out = []
    batches = input_lib.eval_batches(
        source,
        batch_size=batch_size,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
        num_threads=config.data.num_threads,
        prefetch=config.data.prefetch,
    )
    for batch in batches:
        images = jax.make_array_from_process_local_data(sharding, batch["image"])
        out.append(tuple(_to_host(a) for a in predict_fn(params, rest, images)))
    probs, severity = (np.concatenate(parts)[: len(source)] for parts in zip(*out, strict=True))
    return probs, severity


def validation_metrics(
    meta: input_lib.SplitMeta,
    probs: np.ndarray,
    prefix: str,
    severity: np.ndarray | None = None,
) -> dict:
    """Macro-F1, per-condition, per-group and worst-group F1 (fairness/), keys prefixed; with
    `severity` (class probabilities [N, 4]) also `acne_severity_qwk` and `acne_severity_mae` of
    the predicted grade on the rows with a known severity (NaN without any)."""
    groups = [GROUPS[g] if g >= 0 else None for g in meta.groups]
    values = epoch_metrics(meta.labels, probs, groups)
    if severity is not None:
        known = meta.severity >= 0
        y, grade = meta.severity[known], severity_grade(severity)[known]
        values["acne_severity_qwk"] = quadratic_weighted_kappa(y, grade)
        values["acne_severity_mae"] = severity_mae(y, grade)
    return {f"{prefix}/{k}": float(v) for k, v in values.items()}


def severity_report(meta: input_lib.SplitMeta, severity: np.ndarray, seed: int) -> dict:
    """`fairness.severity.severity_metrics` of a split: QWK and MAE with bootstrap CIs."""
    groups = [GROUPS[g] if g >= 0 else None for g in meta.groups]
    y_true = np.where(meta.severity >= 0, meta.severity, np.nan)
    return severity_metrics(y_true, severity_grade(severity), groups, n_boot=1000, seed=seed)


def _score(value: float) -> float:
    return value if math.isfinite(value) else -math.inf


def _write_json(path: Path, payload: dict) -> None:
    """Write a run's JSON file atomically (numpy scalars as numbers)."""
    text = json.dumps(payload, indent=2, sort_keys=False, default=_json_default) + "\n"
    atomic.write_text(path, text)


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _clean(value: Any) -> Any:
    """NaN/inf -> None, recursively (JSON has no NaN)."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _progress(total: int, initial: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        initial=initial,
        disable=None if enabled else True,
        desc="train",
        unit="step",
        leave=False,
    )


# --- the run --------------------------------------------------------------------------------


def train_and_evaluate(
    config: config_lib.TrainConfig,
    workdir: str | Path,
    *,
    resume: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Train `config` into `workdir` (outputs/<run>/) and return the content of metrics.json."""
    # Check inputs.
    t_start = time.time()
    config = config_lib.validate(config)
    maybe_initialize_distributed()
    workdir = Path(workdir).resolve()
    has_checkpoint = _check_run_folder(workdir, resume)
    is_main = jax.process_index() == 0

    # Data (before the run folder exists, so a bad dataset leaves nothing behind).
    builder = prepare_dataset(config)
    if is_main:  # only process 0 writes outputs (a shared file system holds them)
        workdir.mkdir(parents=True, exist_ok=True)
        config_lib.save(config, workdir / "config.json")
    _sync("workdir")
    ckpts = ckpt_lib.RunCheckpoints(workdir)
    data = _load_train_data(config, builder)

    # Mesh, model (pretrained weights unless resuming), optimiser and the jitted steps.
    repl, data_sharding = _data_mesh()
    model = _initial_model(config, workdir, init=not (resume and has_checkpoint))
    state, train_step, predict_fn = _model_and_steps(config, model, data, repl, data_sharding)

    # Restore.
    meta = _RunMeta()
    if resume and has_checkpoint:
        state, saved = ckpts.restore_latest(state)
        meta = _RunMeta.from_saved(saved)
    step = int(state["step"])
    loop = _make_loop(
        config, workdir, data, data_sharding, train_step, predict_fn, ckpts, meta, progress
    )

    # The loop.
    speed = Throughput()
    bar = _progress(data.total_steps, step, loop.show_progress)
    try:
        state, step, stopped = _train_loop(loop, state, step, meta, speed, bar)
    except BaseException:
        bar.close()
        ckpts.close()
        loop.tracker.end("FAILED")
        raise
    bar.close()
    ckpts.wait()

    # Predictions and metrics with the best checkpoint (current weights if none yet).
    return _finish(loop, workdir, builder, repl, state, step, stopped, meta, speed, t_start)


# --- the run's steps -------------------------------------------------------------------------


@dataclasses.dataclass
class _RunMeta:
    """Bookkeeping saved with every `latest` checkpoint: history, best epoch, epoch sums."""

    history: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    best_score: float | None = None
    best_epoch: int | None = None
    best_step: int | None = None
    epoch_loss_sum: float = 0.0
    epoch_loc_sum: float = 0.0
    epoch_severity_sum: float = 0.0
    epoch_steps: int = 0
    mlflow_run_id: str | None = None
    train_time_s: float = 0.0

    @classmethod
    def from_saved(cls, saved: dict[str, Any]) -> _RunMeta:
        """The bookkeeping of a restored checkpoint (fields it lacks keep their defaults)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in saved.items() if k in names})

    def saved(self) -> dict[str, Any]:
        """As a checkpoint stores it: a plain dict, NaN/inf as None."""
        return _clean(dataclasses.asdict(self))


@dataclasses.dataclass
class _TrainData:
    """The dataset's splits as the loop reads them and the step counts they give."""

    train_meta: input_lib.SplitMeta
    val_meta: input_lib.SplitMeta
    train_source: Any
    val_source: Any
    steps_per_epoch: int
    total_steps: int
    eval_batch: int  # a multiple of the device count
    counts: np.ndarray  # training examples per group
    group_weights: np.ndarray
    augment_name: str


@dataclasses.dataclass
class _Loop:
    """What the training loop reads and never changes."""

    config: config_lib.TrainConfig
    data: _TrainData
    data_sharding: NamedSharding
    train_step: Callable
    predict_fn: Callable
    plan: Plan
    ckpts: ckpt_lib.RunCheckpoints
    tracker: Any
    is_main: bool
    show_progress: bool

    def eval_params(self, state: dict[str, Any]) -> Any:
        """The weights evaluated and saved: the EMA when it is on."""
        return state["ema"] if self.config.optim.ema_decay > 0 else state["params"]

    def model_item(self, state: dict[str, Any]) -> dict[str, Any]:
        """The model part of a checkpoint: evaluated weights and the other variables."""
        return {"params": self.eval_params(state), "rest": state["rest"]}


def _check_run_folder(workdir: Path, resume: bool) -> bool:
    """Whether `workdir` holds checkpoints; refuses to train over them unless resuming."""
    has_checkpoint = ckpt_lib.has_checkpoint(workdir)
    if has_checkpoint and not resume:
        raise RunExistsError(f"{workdir} already holds checkpoints; resume it or choose a new run")
    if resume and not has_checkpoint:
        log.warning("%s has no checkpoint to resume from: starting from scratch", workdir)
    return has_checkpoint


def _load_train_data(config: config_lib.TrainConfig, builder: Any) -> _TrainData:
    """The train and val splits of `builder`; checks the batch size against devices and data."""
    train_meta = input_lib.split_metadata(builder, "train")
    val_meta = input_lib.split_metadata(builder, "val")
    train_source = builder.as_data_source(split="train")
    val_source = builder.as_data_source(split="val")
    num_devices = jax.device_count()
    if config.batch_size % num_devices:
        raise ValueError(
            f"batch_size {config.batch_size} must be a multiple of the {num_devices} devices"
        )
    steps_per_epoch = len(train_meta) // config.batch_size
    if steps_per_epoch == 0:
        raise ValueError(
            f"batch_size {config.batch_size} exceeds the {len(train_meta)} training examples"
        )
    counts = input_lib.group_counts(train_meta.groups)
    return _TrainData(
        train_meta=train_meta,
        val_meta=val_meta,
        train_source=train_source,
        val_source=val_source,
        steps_per_epoch=steps_per_epoch,
        total_steps=steps_per_epoch * config.epochs,
        eval_batch=math.ceil(config.eval_batch_size / num_devices) * num_devices,
        counts=counts,
        group_weights=losses.inverse_frequency_weights(counts),
        augment_name=input_lib.make_augment_fn()[1] if config.data.augment else "none",
    )


def _data_mesh() -> tuple[NamedSharding, NamedSharding]:
    """(replicated, batch-sharded) shardings of a mesh whose `data` axis spans every device."""
    # Auto axis: the compiler propagates the batch sharding through reshapes in the model.
    mesh = jax.make_mesh((jax.device_count(),), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    return NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))


def _initial_model(config: config_lib.TrainConfig, workdir: Path, *, init: bool) -> nnx.Module:
    """The network of `config`, with the weights of `model.init_from` when `init` is set."""
    # Every process reads the weights; process 0 reports what loaded (<run>/init_from.json).
    model = ckpt_lib.build_model(config)
    if init and config.model.init_from:
        from train_jax import pretrained

        report = pretrained.init_model(
            model,
            config.model.init_from,
            config.model.name,
            keep_head=config.model.init_keep_head,
        )
        if jax.process_index() == 0:
            print(report.summary(), file=sys.stderr)
            _write_json(workdir / "init_from.json", report.to_dict())
    return model


def _model_and_steps(
    config: config_lib.TrainConfig,
    model: nnx.Module,
    data: _TrainData,
    repl: NamedSharding,
    data_sharding: NamedSharding,
) -> tuple[dict[str, Any], Callable, Callable]:
    """The initial train state (replicated) and the jitted train step and predict function."""
    model.train()
    frozen = freeze.freeze_stages(model, config.model.freeze)
    train_graphdef, model_state = ckpt_lib.split_model(model)
    trainable = freeze.trainable_mask(model_state["params"], frozen) if frozen else None
    model.eval()
    eval_graphdef, _ = ckpt_lib.split_model(model)
    tx, schedule = make_optimizer(config, data.total_steps, trainable)
    state = replicate(_initial_state(config, model_state, tx), repl)
    align = "corner"
    if config.loc_weight > 0:
        from train_jax.cam import cell_alignment

        align = cell_alignment(model)
    train_step = make_train_step(
        train_graphdef,
        tx,
        schedule,
        config,
        data.group_weights,
        repl,
        data_sharding,
        align,
        trainable,
    )
    return state, train_step, make_predict_fn(eval_graphdef, repl, data_sharding)


def _initial_state(
    config: config_lib.TrainConfig, model_state: dict[str, Any], tx: Any
) -> dict[str, Any]:
    """The train state before the first step: weights, optimiser, GroupDRO weights, EMA, step."""
    return {
        "params": model_state["params"],
        "rest": model_state["rest"],
        "opt": tx.init(model_state["params"]),
        "dro_q": jnp.full((len(GROUPS),), 1.0 / len(GROUPS), jnp.float32),
        # A copy, not an alias: the step donates the state's buffers.
        "ema": jax.tree.map(jnp.copy, model_state["params"])
        if config.optim.ema_decay > 0
        else None,
        "step": jnp.zeros((), jnp.int32),
    }


def _make_loop(
    config: config_lib.TrainConfig,
    workdir: Path,
    data: _TrainData,
    data_sharding: NamedSharding,
    train_step: Callable,
    predict_fn: Callable,
    ckpts: ckpt_lib.RunCheckpoints,
    meta: _RunMeta,
    progress: bool,
) -> _Loop:
    """The loop's fixed parts, with the experiment tracker (a resumed run continues its own)."""
    is_main = jax.process_index() == 0
    tracker = tracking.make_tracker(
        config,
        out_dir=workdir.parent,
        run_name=workdir.name,
        dataset=Path(config.data.data_dir).resolve().name,
        run_id=meta.mlflow_run_id,
        enabled=is_main,
    )
    meta.mlflow_run_id = tracker.run_id
    plan = Plan(
        data.steps_per_epoch, data.total_steps, config.max_steps, config.checkpoint_every_steps
    )
    return _Loop(
        config=config,
        data=data,
        data_sharding=data_sharding,
        train_step=train_step,
        predict_fn=predict_fn,
        plan=plan,
        ckpts=ckpts,
        tracker=tracker,
        is_main=is_main,
        show_progress=progress and is_main,
    )


def _train_loop(
    loop: _Loop,
    state: dict[str, Any],
    step: int,
    meta: _RunMeta,
    speed: Throughput,
    bar: Any,
) -> tuple[dict[str, Any], int, bool]:
    """Train epoch by epoch to the end or to `max_steps`: (state, step, stopped early)."""
    stopped = False
    while step < loop.data.total_steps and not stopped:
        epoch = step // loop.data.steps_per_epoch
        state, step, metrics, stopped = _train_epoch(loop, state, step, epoch, meta, speed, bar)
        if stopped:
            loop.ckpts.save_latest(step, state, loop.model_item(state), meta.saved())
            break
        # End of epoch: validate, keep the best, checkpoint, log.
        entry = _epoch_entry(loop, state, step, epoch, metrics, meta)
        _keep_epoch(loop, state, step, entry, meta)
        stopped = loop.plan.stop(step)
        if loop.show_progress:
            bar.write(
                f"epoch {epoch + 1}/{loop.config.epochs}: loss {entry['train/loss']:.4f} "
                f"val macro-F1 {entry['val/macro_f1']:.3f} "
                f"worst-group F1 {entry['val/worst_group_f1']:.3f}"
            )
    return state, step, stopped


def _epoch_batches(loop: _Loop, step: int, epoch: int) -> Iterable[dict[str, np.ndarray]]:
    """This process's training batches of `epoch` from `step` on (in the sampled order)."""
    config, data = loop.config, loop.data
    indices = input_lib.sample_epoch(
        data.train_meta.groups,
        data.train_meta.labels,
        balance=config.data.balance,
        seed=config.seed,
        epoch=epoch,
    )
    return input_lib.train_batches(
        data.train_source,
        indices,
        batch_size=config.batch_size,
        seed=config.seed,
        epoch=epoch,
        start_step=step - epoch * data.steps_per_epoch,
        augment=config.data.augment,
        masks=config.loc_weight > 0,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
        num_threads=config.data.num_threads,
        prefetch=config.data.prefetch,
    )


def _train_epoch(
    loop: _Loop,
    state: dict[str, Any],
    step: int,
    epoch: int,
    meta: _RunMeta,
    speed: Throughput,
    bar: Any,
) -> tuple[dict[str, Any], int, dict[str, jax.Array] | None, bool]:
    """Run the rest of `epoch`, saving `latest` as planned: (state, step, metrics, stopped)."""
    stopped, metrics = False, None
    batches = _epoch_batches(loop, step, epoch)
    t_epoch = time.perf_counter()
    speed.mark()
    for batch in batches:
        state, metrics = loop.train_step(state, _global_batch(batch, loop.data_sharding))
        step += 1
        loss = _record_step(meta, metrics, step, epoch)
        speed.add(loop.config.batch_size)
        bar.update(1)
        bar.set_postfix(epoch=epoch + 1, loss=f"{loss:.4f}", img_s=f"{speed.rate():.1f}")
        if loop.plan.epoch_end(step):
            break
        if loop.plan.stop(step):
            stopped = True
            break
        if loop.plan.checkpoint(step):
            loop.ckpts.save_latest(step, state, loop.model_item(state), meta.saved())
            speed.mark()
    meta.train_time_s += time.perf_counter() - t_epoch
    return state, step, metrics, stopped


def _record_step(meta: _RunMeta, metrics: dict[str, jax.Array], step: int, epoch: int) -> float:
    """Add a step's losses to the epoch sums and return its loss; a non-finite loss raises."""
    loss = float(metrics["loss"])
    if not math.isfinite(loss):
        raise RuntimeError(f"non-finite loss {loss} at step {step} (epoch {epoch + 1})")
    meta.epoch_loss_sum += loss
    if "loc" in metrics:
        meta.epoch_loc_sum += float(metrics["loc"])
    if "severity" in metrics:
        meta.epoch_severity_sum += float(metrics["severity"])
    meta.epoch_steps += 1
    return loss


def _epoch_entry(
    loop: _Loop,
    state: dict[str, Any],
    step: int,
    epoch: int,
    metrics: dict[str, jax.Array],
    meta: _RunMeta,
) -> dict[str, Any]:
    """Validate at an epoch's end: its history entry (the loc and severity sums restart)."""
    config = loop.config
    probs, severity = run_predictions(
        loop.predict_fn,
        loop.eval_params(state),
        state["rest"],
        loop.data.val_source,
        batch_size=loop.data.eval_batch,
        sharding=loop.data_sharding,
        config=config,
    )
    steps = max(meta.epoch_steps, 1)
    entry = {
        "epoch": epoch + 1,
        "step": step,
        "train/loss": meta.epoch_loss_sum / steps,
        "train/lr": float(metrics["lr"]),
        **validation_metrics(loop.data.val_meta, probs, "val", severity),
    }
    if config.severity_weight > 0:
        entry["train/severity_loss"] = meta.epoch_severity_sum / steps
        meta.epoch_severity_sum = 0.0
    if config.loc_weight > 0:
        entry["train/loc_loss"] = meta.epoch_loc_sum / steps
        if meta.epoch_loc_sum == 0.0 and loop.is_main:
            log.warning(
                "loc_weight %s but no training image of epoch %d has a lesion mask for "
                "a condition labelled present: the localisation loss is 0 (a dataset "
                "without masks?); set loc_weight=0 to skip reading the masks",
                config.loc_weight,
                epoch + 1,
            )
        meta.epoch_loc_sum = 0.0
    if config.loss == "groupdro":
        q = np.asarray(state["dro_q"])
        entry.update({f"train/dro_q/{g}": float(q[i]) for i, g in enumerate(GROUPS)})
    return entry


def _keep_epoch(
    loop: _Loop, state: dict[str, Any], step: int, entry: dict[str, Any], meta: _RunMeta
) -> None:
    """Record an ended epoch: history, `best` when it improves, `latest`, the tracker."""
    meta.history.append(entry)
    meta.epoch_loss_sum, meta.epoch_steps = 0.0, 0
    score = _score(entry[f"val/{loop.config.select}"])
    if meta.best_score is None or score > meta.best_score:
        meta.best_score, meta.best_epoch, meta.best_step = score, entry["epoch"], step
        loop.ckpts.save_best(step, loop.model_item(state), _clean({"entry": entry}))
    loop.ckpts.save_latest(step, state, loop.model_item(state), meta.saved())
    loop.tracker.log_metrics(entry, step)


def _finish(
    loop: _Loop,
    workdir: Path,
    builder: Any,
    repl: NamedSharding,
    state: dict[str, Any],
    step: int,
    stopped: bool,
    meta: _RunMeta,
    speed: Throughput,
    t_start: float,
) -> dict[str, Any]:
    """`finish_run`, then close the checkpoints and end the tracked run."""
    result = finish_run(
        config=loop.config,
        workdir=workdir,
        builder=builder,
        ckpts=loop.ckpts,
        state_params=loop.eval_params(state),
        img_per_s=speed.rate(),
        state_rest=state["rest"],
        predict_fn=loop.predict_fn,
        eval_batch=loop.data.eval_batch,
        sharding=loop.data_sharding,
        repl=repl,
        meta=dataclasses.asdict(meta),
        step=step,
        stopped=stopped,
        augment_name=loop.data.augment_name,
        counts=loop.data.counts,
        t_start=t_start,
    )
    loop.ckpts.close()
    if loop.is_main:
        _log_result(loop.tracker, workdir, result, step, stopped)
    return result


def _log_result(
    tracker: Any, workdir: Path, result: dict[str, Any], step: int, stopped: bool
) -> None:
    """Log the best validation and the test metrics and the run's files; end the tracked run."""
    tracker.log_metrics(
        {f"best/{k}": v for k, v in result["best"].items() if k.startswith("val/")}
        | {k: v for k, v in result.get("test", {}).items()},
        step,
    )
    tracker.log_artifact(workdir / "config.json")
    tracker.log_artifact(workdir / "metrics.json")
    tracker.end("FINISHED" if not stopped else "KILLED")


def finish_run(
    *,
    config: config_lib.TrainConfig,
    workdir: Path,
    builder: Any,
    ckpts: ckpt_lib.RunCheckpoints,
    state_params: Any,
    state_rest: Any,
    predict_fn: Callable,
    eval_batch: int,
    sharding: NamedSharding,
    repl: NamedSharding,
    meta: dict[str, Any],
    step: int,
    stopped: bool,
    augment_name: str,
    counts: np.ndarray,
    t_start: float,
    img_per_s: float,
) -> dict[str, Any]:
    """Write predictions_{val,test}.csv and metrics.json; return the metrics."""
    params, rest, source_of_weights = _final_weights(
        config, workdir, meta, repl, state_params, state_rest
    )
    result_splits, severity_splits = _predict_splits(
        config, workdir, builder, predict_fn, params, rest, eval_batch, sharding
    )
    best_entry = next((e for e in meta["history"] if e["step"] == meta["best_step"]), {})
    result = {
        "run": workdir.name,
        "status": "stopped_at_max_steps" if stopped else "completed",
        "dataset": Path(config.data.data_dir).resolve().name,
        "synthetic": _is_synthetic(config),
        "disclaimer": DISCLAIMER,
        "model": config.model.name,
        "step": step,
        "epochs_completed": len(meta["history"]),
        "select": config.select,
        "weights": source_of_weights,
        "code_version": tracking.code_version(),
        "code_digest": tracking.code_digest(),
        "best": best_entry,
        "val": result_splits.get("val", {}),
        "test": result_splits.get("test", {}),
        # QWK / MAE of the acne-severity grade with bootstrap CIs, overall and per group.
        "acne_severity": severity_splits,
        "history": meta["history"],
        "data": _data_summary(config, builder, counts, augment_name),
        "timing": _timing(meta["train_time_s"], img_per_s, t_start),
    }
    result = _clean(result)
    if jax.process_index() == 0:
        _write_json(workdir / "metrics.json", result)
    return result


def _final_weights(
    config: config_lib.TrainConfig,
    workdir: Path,
    meta: dict[str, Any],
    repl: NamedSharding,
    params: Any,
    rest: Any,
) -> tuple[Any, Any, str]:
    """(params, rest, where they come from): the best checkpoint's, else the current ones."""
    if meta["best_step"] is None:
        return params, rest, "current (no completed epoch)"
    model, _ = ckpt_lib.load_model(workdir, "best")
    _, best_state = ckpt_lib.split_model(model)
    params, rest = replicate((best_state["params"], best_state["rest"]), repl)
    return params, rest, f"best (epoch {meta['best_epoch']}, by {config.select})"


def _predict_splits(
    config: config_lib.TrainConfig,
    workdir: Path,
    builder: Any,
    predict_fn: Callable,
    params: Any,
    rest: Any,
    eval_batch: int,
    sharding: NamedSharding,
) -> tuple[dict[str, dict[str, float]], dict[str, dict]]:
    """Predict val and test, writing predictions_<split>.csv: (metrics, severity) by split."""
    result_splits: dict[str, dict[str, float]] = {}
    severity_splits: dict[str, dict] = {}
    for split in [s for s in ("val", "test") if s in builder.info.splits]:
        split_meta = input_lib.split_metadata(builder, split)
        probs, severity = run_predictions(
            predict_fn,
            params,
            rest,
            builder.as_data_source(split=split),
            batch_size=eval_batch,
            sharding=sharding,
            config=config,
        )
        if jax.process_index() == 0:
            frame = predict.predictions_frame(split_meta, probs, split, severity=severity)
            predict.write_predictions(frame, workdir / f"predictions_{split}.csv")
        result_splits[split] = validation_metrics(split_meta, probs, split, severity)
        severity_splits[split] = severity_report(split_meta, severity, config.seed)
    return result_splits, severity_splits


def _data_summary(
    config: config_lib.TrainConfig, builder: Any, counts: np.ndarray, augment_name: str
) -> dict[str, Any]:
    """The metrics' `data` block: training groups, face detection, augmentation, sampling."""
    from data.tfds_builder import build_stats

    return {
        "train_group_counts": dict(zip(GROUPS, counts.tolist(), strict=True)),
        "face_detection": build_stats(builder),
        "augment": augment_name,
        "balance": config.data.balance,
        "conditions": list(CONDITIONS),
    }


def _timing(train_s: float, img_per_s: float, t_start: float) -> dict[str, Any]:
    """The metrics' `timing` block."""
    return {
        "train_s": round(train_s, 2),
        "train_img_per_s": round(img_per_s, 1),  # since this start or resume, no compilation
        "total_s": round(time.time() - t_start, 2),
        "devices": jax.device_count(),
        "processes": jax.process_count(),
    }


def _is_synthetic(config: config_lib.TrainConfig) -> bool:
    """True when every row of the dataset comes from the synthetic generator."""
    import pandas as pd

    path = Path(config.data.data_dir) / "metadata.csv"
    try:
        sources = pd.read_csv(path, usecols=["source"])["source"].astype(str)
    except (ValueError, FileNotFoundError):
        return False
    return bool(len(sources)) and bool(sources.str.contains("synth", case=False).all())
