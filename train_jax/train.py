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
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from data.schema import CONDITIONS, DISCLAIMER, GROUPS
from fairness.metrics import epoch_metrics
from fairness.severity import mean_absolute_error as severity_mae
from fairness.severity import quadratic_weighted_kappa, severity_grade, severity_metrics
from train_jax import checkpoints as ckpt_lib
from train_jax import config as config_lib
from train_jax import input as input_lib
from train_jax import losses, predict, tracking

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


def make_optimizer(config: config_lib.TrainConfig, total_steps: int) -> tuple[Any, Callable]:
    """AdamW with linear warm-up and cosine decay; no weight decay on biases and norms."""
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
    return optax.chain(*parts), schedule


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
) -> Callable:
    """`train_step(state, batch) -> (state, metrics)`, jitted over the mesh.

    With `config.loc_weight > 0` the batch carries lesion masks and the loss adds the
    localisation loss on the class map; `align` is where a feature cell sits in the input
    (`explain.cam.cell_alignment`). With `config.severity_weight > 0` and a batch that carries
    `severity`, the loss adds the ordinal acne-severity loss (rows of unknown severity masked).
    """
    ema_decay = config.optim.ema_decay
    group_w = jnp.asarray(group_weights, jnp.float32)
    loc_weight = config.loc_weight
    severity_weight = config.severity_weight

    def train_step(state: dict[str, Any], batch: dict[str, jax.Array]):
        def loss_fn(params):
            model = nnx.merge(graphdef, params, state["rest"], copy=True)
            feats = model.features(batch["image"].astype(jnp.float32))
            logits = model.pool_and_classify(feats)
            loss, aux = losses.compute_loss(
                config.loss,
                logits,
                batch,
                num_groups=len(GROUPS),
                group_weights=group_w,
                dro_q=state["dro_q"],
                focal_gamma=config.focal_gamma,
                groupdro_eta=config.groupdro_eta,
            )
            if loc_weight > 0:
                # The CAM before its ReLU: the head's class scores per cell (no bias).
                kernel = model.head.kernel[...].astype(jnp.float32)
                scores = jnp.einsum("bhwk,kc->bhwc", feats.astype(jnp.float32), kernel)
                cells = losses.mask_at_cells(batch["mask"], scores.shape[1:3], align)
                aux["loc"], _ = losses.localisation_loss(
                    scores,
                    cells,
                    batch["labels"],
                    batch["label_mask"],
                    batch["weight"],
                    temperature=config.loc_temperature,
                )
                loss = loss + loc_weight * aux["loc"]
            if severity_weight > 0 and "severity" in batch:
                aux["severity"], _ = losses.ordinal_loss(
                    model.severity_from_features(feats),
                    batch["severity"],
                    batch["severity_mask"] * batch["weight"],
                )
                loss = loss + severity_weight * aux["severity"]
            _, _, rest = nnx.split(model, nnx.Param, ...)
            return loss, (aux, rest)

        (loss, (aux, rest)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
        updates, opt_state = tx.update(grads, state["opt"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        new = dict(state, params=params, rest=rest, opt=opt_state, step=state["step"] + 1)
        if "dro_q" in aux:
            new["dro_q"] = aux["dro_q"]
        if ema_decay > 0:
            new["ema"] = ema_update(state["ema"], params, ema_decay)
        metrics = {
            "loss": loss,
            "bce": aux["bce"],
            "grad_norm": optax.tree.norm(grads),
            "lr": schedule(state["step"]),
        }
        if loc_weight > 0:
            metrics["loc"] = aux["loc"]
        if "severity" in aux:
            metrics["severity"] = aux["severity"]
        return new, metrics

    return jax.jit(
        train_step, in_shardings=(repl, data), out_shardings=(repl, repl), donate_argnums=0
    )


def make_predict_fn(graphdef: nnx.GraphDef, repl: NamedSharding, data: NamedSharding) -> Callable:
    """`predict(params, rest, images) -> (probs [B,3], severity [B,4])`, jitted over the mesh
    (eval-mode graphdef); severity = the class probabilities of the acne-severity grades."""
    from train_jax.models.ordinal import severity_probs

    def fn(params, rest, images):
        model = nnx.merge(graphdef, params, rest, copy=True)
        feats = model.features(images.astype(jnp.float32))
        probs = jax.nn.sigmoid(model.pool_and_classify(feats).astype(jnp.float32))
        return probs, severity_probs(model.severity_from_features(feats))

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
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=False, default=_json_default) + "\n")
    tmp.replace(path)


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
    has_checkpoint = ckpt_lib.has_checkpoint(workdir)
    if has_checkpoint and not resume:
        raise RunExistsError(f"{workdir} already holds checkpoints; resume it or choose a new run")
    if resume and not has_checkpoint:
        log.warning("%s has no checkpoint to resume from: starting from scratch", workdir)
    is_main = jax.process_index() == 0

    # Data (before the run folder exists, so a bad dataset leaves nothing behind).
    builder = prepare_dataset(config)
    workdir.mkdir(parents=True, exist_ok=True)
    ckpts = ckpt_lib.RunCheckpoints(workdir)
    if is_main:
        config_lib.save(config, workdir / "config.json")
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
    total_steps = steps_per_epoch * config.epochs
    eval_batch = math.ceil(config.eval_batch_size / num_devices) * num_devices
    counts = input_lib.group_counts(train_meta.groups)
    group_weights = losses.inverse_frequency_weights(counts)
    augment_name = input_lib.make_augment_fn()[1] if config.data.augment else "none"

    # Mesh.
    # Auto axis: the compiler propagates the batch sharding through reshapes in the model.
    mesh = jax.make_mesh((num_devices,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    repl, data_sharding = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))

    # Model and optimiser.
    model = ckpt_lib.build_model(config)
    model.train()
    train_graphdef, model_state = ckpt_lib.split_model(model)
    model.eval()
    eval_graphdef, _ = ckpt_lib.split_model(model)
    tx, schedule = make_optimizer(config, total_steps)
    state = {
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
    state = replicate(state, repl)

    # Restore.
    meta: dict[str, Any] = {
        "history": [],
        "best_score": None,
        "best_epoch": None,
        "best_step": None,
        "epoch_loss_sum": 0.0,
        "epoch_loc_sum": 0.0,
        "epoch_severity_sum": 0.0,
        "epoch_steps": 0,
        "mlflow_run_id": None,
        "train_time_s": 0.0,
    }
    if resume and has_checkpoint:
        state, saved = ckpts.restore_latest(state)
        meta.update(saved)
    step = int(state["step"])
    dataset_name = Path(config.data.data_dir).resolve().name
    run_name = workdir.name
    tracker = tracking.make_tracker(
        config,
        out_dir=workdir.parent,
        run_name=run_name,
        dataset=dataset_name,
        run_id=meta["mlflow_run_id"],
        enabled=is_main,
    )
    meta["mlflow_run_id"] = tracker.run_id

    # The jitted steps.
    align = "corner"
    if config.loc_weight > 0:
        from explain.cam import cell_alignment

        align = cell_alignment(model)
    train_step = make_train_step(
        train_graphdef, tx, schedule, config, group_weights, repl, data_sharding, align
    )
    predict_fn = make_predict_fn(eval_graphdef, repl, data_sharding)
    plan = Plan(steps_per_epoch, total_steps, config.max_steps, config.checkpoint_every_steps)

    def eval_params(s: dict[str, Any]) -> Any:
        return s["ema"] if config.optim.ema_decay > 0 else s["params"]

    def model_item(s: dict[str, Any]) -> dict[str, Any]:
        return {"params": eval_params(s), "rest": s["rest"]}

    # The loop.
    stopped = False
    speed = Throughput()
    bar = _progress(total_steps, step, progress and is_main)
    try:
        while step < total_steps and not stopped:
            epoch = step // steps_per_epoch
            indices = input_lib.sample_epoch(
                train_meta.groups,
                train_meta.labels,
                balance=config.data.balance,
                seed=config.seed,
                epoch=epoch,
            )
            batches = input_lib.train_batches(
                train_source,
                indices,
                batch_size=config.batch_size,
                seed=config.seed,
                epoch=epoch,
                start_step=step - epoch * steps_per_epoch,
                augment=config.data.augment,
                masks=config.loc_weight > 0,
                process_index=jax.process_index(),
                process_count=jax.process_count(),
                num_threads=config.data.num_threads,
                prefetch=config.data.prefetch,
            )
            t_epoch = time.perf_counter()
            speed.mark()
            for batch in batches:
                state, metrics = train_step(state, _global_batch(batch, data_sharding))
                step += 1
                loss = float(metrics["loss"])
                if not math.isfinite(loss):
                    raise RuntimeError(f"non-finite loss {loss} at step {step} (epoch {epoch + 1})")
                meta["epoch_loss_sum"] += loss
                if "loc" in metrics:
                    meta["epoch_loc_sum"] += float(metrics["loc"])
                if "severity" in metrics:
                    meta["epoch_severity_sum"] += float(metrics["severity"])
                meta["epoch_steps"] += 1
                speed.add(config.batch_size)
                bar.update(1)
                bar.set_postfix(epoch=epoch + 1, loss=f"{loss:.4f}", img_s=f"{speed.rate():.1f}")
                if plan.epoch_end(step):
                    break
                if plan.stop(step):
                    stopped = True
                    break
                if plan.checkpoint(step):
                    ckpts.save_latest(step, state, model_item(state), _clean(meta))
                    speed.mark()
            meta["train_time_s"] += time.perf_counter() - t_epoch
            if stopped:
                ckpts.save_latest(step, state, model_item(state), _clean(meta))
                break

            # End of epoch: validate, keep the best, checkpoint, log.
            params_eval = eval_params(state)
            probs, severity = run_predictions(
                predict_fn,
                params_eval,
                state["rest"],
                val_source,
                batch_size=eval_batch,
                sharding=data_sharding,
                config=config,
            )
            entry = {
                "epoch": epoch + 1,
                "step": step,
                "train/loss": meta["epoch_loss_sum"] / max(meta["epoch_steps"], 1),
                "train/lr": float(metrics["lr"]),
                **validation_metrics(val_meta, probs, "val", severity),
            }
            if config.severity_weight > 0:
                entry["train/severity_loss"] = meta["epoch_severity_sum"] / max(
                    meta["epoch_steps"], 1
                )
                meta["epoch_severity_sum"] = 0.0
            if config.loc_weight > 0:
                entry["train/loc_loss"] = meta["epoch_loc_sum"] / max(meta["epoch_steps"], 1)
                if meta["epoch_loc_sum"] == 0.0 and is_main:
                    log.warning(
                        "loc_weight %s but no training image of epoch %d has a lesion mask for "
                        "a condition labelled present: the localisation loss is 0 (a dataset "
                        "without masks?); set loc_weight=0 to skip reading the masks",
                        config.loc_weight,
                        epoch + 1,
                    )
                meta["epoch_loc_sum"] = 0.0
            if config.loss == "groupdro":
                q = np.asarray(state["dro_q"])
                entry.update({f"train/dro_q/{g}": float(q[i]) for i, g in enumerate(GROUPS)})
            meta["history"].append(entry)
            meta["epoch_loss_sum"], meta["epoch_steps"] = 0.0, 0
            score = _score(entry[f"val/{config.select}"])
            best = meta["best_score"]
            if best is None or score > best:
                meta.update(best_score=score, best_epoch=epoch + 1, best_step=step)
                ckpts.save_best(step, model_item(state), _clean({"entry": entry}))
            ckpts.save_latest(step, state, model_item(state), _clean(meta))
            tracker.log_metrics(entry, step)
            stopped = plan.stop(step)
            if progress and is_main:
                bar.write(
                    f"epoch {epoch + 1}/{config.epochs}: loss {entry['train/loss']:.4f} "
                    f"val macro-F1 {entry['val/macro_f1']:.3f} "
                    f"worst-group F1 {entry['val/worst_group_f1']:.3f}"
                )
    except BaseException:
        bar.close()
        ckpts.close()
        tracker.end("FAILED")
        raise
    bar.close()
    ckpts.wait()

    # Predictions and metrics with the best checkpoint (current weights if none yet).
    result = finish_run(
        config=config,
        workdir=workdir,
        builder=builder,
        ckpts=ckpts,
        state_params=eval_params(state),
        img_per_s=speed.rate(),
        state_rest=state["rest"],
        predict_fn=predict_fn,
        eval_batch=eval_batch,
        sharding=data_sharding,
        repl=repl,
        meta=meta,
        step=step,
        stopped=stopped,
        augment_name=augment_name,
        counts=counts,
        t_start=t_start,
    )
    ckpts.close()
    if is_main:
        tracker.log_metrics(
            {f"best/{k}": v for k, v in result["best"].items() if k.startswith("val/")}
            | {k: v for k, v in result.get("test", {}).items()},
            step,
        )
        tracker.log_artifact(workdir / "config.json")
        tracker.log_artifact(workdir / "metrics.json")
        tracker.end("FINISHED" if not stopped else "KILLED")
    return result


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
    params, rest = state_params, state_rest
    source_of_weights = "current (no completed epoch)"
    if meta["best_step"] is not None:
        model, _ = ckpt_lib.load_model(workdir, "best")
        _, best_state = ckpt_lib.split_model(model)
        params, rest = replicate((best_state["params"], best_state["rest"]), repl)
        source_of_weights = f"best (epoch {meta['best_epoch']}, by {config.select})"
    splits = [s for s in ("val", "test") if s in builder.info.splits]
    result_splits: dict[str, dict[str, float]] = {}
    severity_splits: dict[str, dict] = {}
    for split in splits:
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
    from data.tfds_builder import build_stats

    best_entry = next((e for e in meta["history"] if e["step"] == meta["best_step"]), {})
    train_s = meta["train_time_s"]
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
        "data": {
            "train_group_counts": dict(zip(GROUPS, counts.tolist(), strict=True)),
            "face_detection": build_stats(builder),
            "augment": augment_name,
            "balance": config.data.balance,
            "conditions": list(CONDITIONS),
        },
        "timing": {
            "train_s": round(train_s, 2),
            "train_img_per_s": round(img_per_s, 1),  # this session, without compilation
            "total_s": round(time.time() - t_start, 2),
            "devices": jax.device_count(),
            "processes": jax.process_count(),
        },
    }
    result = _clean(result)
    if jax.process_index() == 0:
        _write_json(workdir / "metrics.json", result)
    return result


def _is_synthetic(config: config_lib.TrainConfig) -> bool:
    """True when every row of the dataset comes from the synthetic generator."""
    import pandas as pd

    path = Path(config.data.data_dir) / "metadata.csv"
    try:
        sources = pd.read_csv(path, usecols=["source"])["source"].astype(str)
    except (ValueError, FileNotFoundError):
        return False
    return bool(len(sources)) and bool(sources.str.contains("synth", case=False).all())
