"""Train a skin-condition classifier: parse flags, build the config, call `train_and_evaluate`.

    python train_jax/main.py                      # CPU demo on synthskin-v1 (generated if missing)
    python train_jax/main.py --config train_jax/configs/demo.py:quick --data DIR --epochs 1
    python train_jax/main.py --resume --run NAME  # continue a stopped or killed run exactly

Several processes (one per host or GPU), e.g. two CPU processes on one machine:

    JAX_COORDINATOR_ADDRESS=127.0.0.1:12355 JAX_NUM_PROCESSES=2 JAX_PROCESS_ID=0 \
    JAX_CPU_COLLECTIVES_IMPLEMENTATION=gloo python train_jax/main.py --run two ...   # and ID=1

(SLURM and Open MPI are detected without these variables.)

Outputs go to `<out>/<run>/` (default `outputs/<config>-<model>-<time>/`); MLflow to
`<out>/mlflow.db` unless `--mlflow-uri` or `--no-mlflow`.

Exit codes: 0 done, 2 bad flag or config, 3 data problem, 4 training failed (e.g. non-finite
loss), 5 the run folder already holds checkpoints (use `--resume` or another `--run`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

if __package__ in (None, ""):  # run as a script: import the package, not this folder's modules
    _root = str(Path(__file__).resolve().parents[1])
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(_root) / "train_jax"]
    sys.path.insert(0, _root)

from train_jax import host_malloc  # noqa: E402

# Before JAX starts its threads: reuse freed host memory instead of page-faulting it back every
# step (train_jax/host_malloc.py; FSA_MALLOC_TUNING=0 turns it off).
host_malloc.keep_freed_memory()

from train_jax import config as config_lib  # noqa: E402
from train_jax.models.input_norm import INPUT_NORMS  # noqa: E402

DEFAULT_CONFIG = "train_jax/configs/demo.py"
EXIT_CONFIG, EXIT_DATA, EXIT_TRAIN, EXIT_EXISTS = 2, 3, 4, 5
# Keys a resumed run may change; anything else would make the continuation inexact.
RESUMABLE_KEYS = {"max_steps", "mlflow", "mlflow_uri", "data.num_threads", "data.prefetch"}

# flag dest -> dotted config key
FLAG_KEYS = {
    "data": "data.data_dir",
    "model": "model.name",
    "image_size": "model.image_size",
    "batch_size": "batch_size",
    "epochs": "epochs",
    "max_steps": "max_steps",
    "balance": "data.balance",
    "loss": "loss",
    "seed": "seed",
    "select": "select",
    "lr": "optim.learning_rate",
    "ema": "optim.ema_decay",
    "dtype": "model.dtype",
    "mlflow_uri": "mlflow_uri",
    "init_from": "model.init_from",
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line flags (None = keep the config's value)."""
    p = argparse.ArgumentParser(
        prog="python train_jax/main.py",
        description="Train a fair skin-condition classifier (research aid, not a diagnosis).",
    )
    p.add_argument("--config", help=f"config .py[:variant] or .json (default {DEFAULT_CONFIG})")
    p.add_argument("--data", help="canonical dataset folder (metadata.csv + images)")
    p.add_argument("--model", help="model name, e.g. small_cnn, efficientnet_b0, vit_tiny")
    p.add_argument("--image-size", type=int, help="input / crop size in pixels")
    p.add_argument("--batch-size", type=int, help="global batch size")
    p.add_argument("--epochs", type=int)
    p.add_argument("--max-steps", type=int, help="stop after N steps (-1: no limit)")
    p.add_argument("--balance", choices=config_lib.BALANCE_MODES, help="tone-stratified sampling")
    p.add_argument("--loss", choices=config_lib.LOSSES)
    p.add_argument("--seed", type=int)
    p.add_argument("--select", choices=config_lib.SELECT_METRICS, help="best-checkpoint metric")
    p.add_argument("--lr", type=float, help="peak learning rate")
    p.add_argument("--ema", type=float, help="EMA decay of the weights (0: off)")
    p.add_argument("--dtype", choices=config_lib.DTYPES, help="compute dtype (bfloat16 on GPU)")
    p.add_argument(
        "--init-from",
        metavar="PATH",
        help="start from these weights: a timm checkpoint (.safetensors, .pth, .bin), a run "
        "folder or an exported model folder (docs/training.md)",
    )
    p.add_argument("--init-keep-head", action="store_true", help="keep the --init-from run's heads")
    p.add_argument(
        "--input-norm",
        choices=INPUT_NORMS,
        help="in-graph input normalisation (default: the config's; imagenet with a timm "
        "--init-from, the run's with a run)",
    )
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="any config key, repeatable"
    )
    p.add_argument("--out", default="outputs", help="output root (default outputs/)")
    p.add_argument("--run", help="run folder name under --out (default <config>-<model>-<time>)")
    p.add_argument("--resume", action="store_true", help="continue --run (default: the latest)")
    p.add_argument("--no-mlflow", action="store_true", help="turn MLflow tracking off")
    p.add_argument("--mlflow-uri", help="MLflow tracking URI (default sqlite:///<out>/mlflow.db)")
    p.add_argument("--json", action="store_true", help="print metrics.json to stdout at the end")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def _fmt(value: object) -> str:
    """A metric for people: three decimals, or "n/a" when it is missing."""
    return f"{value:.3f}" if isinstance(value, (int, float)) else "n/a"


def summary_line(run_dir: Path, result: dict) -> str:
    """The run's closing line: status, best epoch and its validation metrics."""
    best = result.get("best") or {}
    return (
        f"run {run_dir}: {result['status']}, best epoch {best.get('epoch')} "
        f"val macro-F1 {_fmt(best.get('val/macro_f1'))} worst-group F1 "
        f"{_fmt(best.get('val/worst_group_f1'))} (synthetic data: {result['synthetic']}; "
        f"{result['disclaimer']})"
    )


def flag_overrides(args: argparse.Namespace) -> dict[str, object]:
    """Dotted config keys set on the command line."""
    updates: dict[str, object] = {}
    for dest, key in FLAG_KEYS.items():
        value = getattr(args, dest)
        if value is not None:
            updates[key] = value
    if args.no_mlflow:
        updates["mlflow"] = False
    if getattr(args, "init_keep_head", False):
        updates["model.init_keep_head"] = True
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise config_lib.ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        updates[key.strip()] = value
    return updates


def _latest_run(out: Path) -> Path:
    runs = [p.parent for p in out.glob("*/config.json")]
    if not runs:
        raise config_lib.ConfigError(f"--resume: no run folder with config.json under {out}")
    return max(runs, key=lambda p: (p / "config.json").stat().st_mtime)


def resolve(args: argparse.Namespace) -> tuple[config_lib.TrainConfig, Path]:
    """The config and run folder the flags ask for."""
    out = Path(args.out)
    updates = flag_overrides(args)
    if args.resume:
        run_dir = out / args.run if args.run else _latest_run(out)
        saved = config_lib.load(run_dir / "config.json")
        changed = config_lib.override(saved, **updates)
        base = config_lib.to_dict(saved)
        new = config_lib.to_dict(changed)
        for key in config_lib.valid_keys():
            section, _, name = key.partition(".")
            old_v = base[section][name] if name else base[section]
            new_v = new[section][name] if name else new[section]
            if old_v != new_v and key not in RESUMABLE_KEYS:
                raise config_lib.ConfigError(
                    f"cannot change {key!r} when resuming ({old_v!r} -> {new_v!r})"
                )
        # A resumed run trains to the end unless --max-steps is given again.
        max_steps = updates.get("max_steps", -1)
        return config_lib.override(changed, max_steps=max_steps), run_dir
    config = config_lib.load(args.config or Path(__file__).resolve().parent / "configs/demo.py")
    if args.model and args.model != config.model.name and "model.overrides" not in updates:
        # the config's model overrides (e.g. small_cnn's width) belong to its own model; its
        # evaluation-only ones (mirror averaging) are the recipe's and apply to any model
        from train_jax.models import CONFIG_OVERRIDES

        own = {k: v for k, v in config.model.overrides.items() if k in CONFIG_OVERRIDES}
        config = config_lib.override(config, **{"model.overrides": own})
    config = init_from_model(
        config_lib.override(config, **updates), args, own_overrides="model.overrides" in updates
    )
    check_freeze(config)
    run = args.run or f"{config.name}-{config.model.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    return config, out / run


def check_freeze(config: config_lib.TrainConfig) -> None:
    """Raise ValueError unless `model.freeze` is "" or a stage of the configured model."""
    if not config.model.freeze:
        return
    from flax import nnx

    from train_jax import freeze
    from train_jax.checkpoints import build_model

    model = nnx.eval_shape(lambda: build_model(config))  # abstract: no weights are computed
    try:
        freeze.frozen_owners(model, config.model.freeze)
    except ValueError as e:
        raise config_lib.ConfigError(str(e)) from None


def init_from_model(
    config: config_lib.TrainConfig, args: argparse.Namespace, *, own_overrides: bool = False
) -> config_lib.TrainConfig:
    """The model name and overrides that `--init-from` (and `--input-norm`) ask for;
    `own_overrides`: the command line set `model.overrides`, for the checkpoint's architecture."""
    # A timm checkpoint: the architecture it holds (`--model` must agree), its class token and
    # ImageNet normalisation (what timm's weights were trained with) unless `--input-norm`.
    # A run or exported model: the run's model and overrides; `--input-norm` wins. Either way the
    # config keeps its evaluation and head overrides (models.CONFIG_OVERRIDES).
    from train_jax import pretrained
    from train_jax.models import CONFIG_OVERRIDES

    norm = getattr(args, "input_norm", None)
    overrides = dict(config.model.overrides)
    own = {k: overrides[k] for k in CONFIG_OVERRIDES if k in overrides}
    name = config.model.name
    source = config.model.init_from
    if source and pretrained.source_kind(source) == "timm":
        shapes = pretrained.checkpoint_shapes(source)
        guess = pretrained.guess_architecture(shapes)
        if args.model and guess and args.model != guess:
            raise config_lib.ConfigError(f"{source} holds {guess} weights, not {args.model}")
        name = args.model or guess
        if name is None:
            raise config_lib.ConfigError(
                f"{source}: not a timm checkpoint of {sorted(pretrained.TIMM_ARCHS)}; "
                "give --model if it is one"
            )
        if name != config.model.name and not own_overrides:
            overrides = dict(own)  # the config's other overrides belong to its own model
        if name.startswith("vit"):
            overrides["class_token"] = "cls_token" in shapes
        overrides["input_norm"] = norm or pretrained.IMAGENET_INPUT_NORM.get(name, "imagenet")
    elif source:
        saved = config_lib.load(pretrained.run_folder(source) / "config.json").model
        if args.model and args.model != saved.name:
            raise config_lib.ConfigError(f"{source} holds {saved.name} weights, not {args.model}")
        name = saved.name
        overrides = {**saved.overrides, **own, **({"input_norm": norm} if norm else {})}
    elif norm:
        overrides["input_norm"] = norm
    return config_lib.override(config, **{"model.name": name, "model.overrides": overrides})


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Send what is written to stdout to stderr meanwhile, by Python and by native code alike."""
    sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:  # no file descriptor 1 (an embedding host): Python's stdout only
        with contextlib.redirect_stdout(sys.stderr):
            yield
        return
    os.dup2(2, 1)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 1)
        os.close(saved)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    args = parse_args(argv)
    try:
        config, run_dir = resolve(args)
    except (config_lib.ConfigError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_CONFIG
    from train_jax import train

    # Libraries (TFDS's "Downloading and preparing dataset ...", gloo's "[Gloo] Rank 0 is
    # connected ..." from native code) print to stdout; with --json, stdout must hold the JSON
    # document alone, so their chatter goes to stderr.
    quiet = stdout_to_stderr() if args.json else contextlib.nullcontext()
    try:
        with quiet:
            result = train.train_and_evaluate(
                config, run_dir, resume=args.resume, progress=not args.no_progress
            )
    except train.RunExistsError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_EXISTS
    except config_lib.ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_CONFIG
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_DATA
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_TRAIN
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(summary_line(run_dir, result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
