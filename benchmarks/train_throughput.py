"""Training throughput (images/s) of our JAX models, optionally against timm, interleaved.

One training step = forward, BCE loss on 3 logits, backward, AdamW update, on random images.
With ``--compare-torch`` the same step runs with timm's model (same architecture, 3 classes) in
the same process, alternating rounds of JAX and PyTorch steps so both see the same machine load;
the reported numbers are medians over the rounds and the ratio is JAX / timm. With
``--freeze STAGE`` a step with the stages up to STAGE kept fixed (the trainer's ``model.freeze``)
joins the rounds, and its speed-up over the full step is the median of the per-round ratios.

torch and timm are not project dependencies; run the comparison from the benchmark venv::

    python -m venv .venv-bench
    .venv-bench/bin/pip install -e . torch==2.14.1 torchvision==0.29.1 timm
    .venv-bench/bin/python benchmarks/train_throughput.py --model efficientnet_b0 \\
        --image-size 128 --batch-size 32 --compare-torch
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable

from train_jax import freeze, host_malloc

# Before JAX (and torch) start their threads; applies to both frameworks alike, like the
# trainer does (train_jax/host_malloc.py; FSA_MALLOC_TUNING=0 measures without it).
MALLOC_TUNED = host_malloc.keep_freed_memory()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from flax import nnx  # noqa: E402
from jax.sharding import AxisType, NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

from train_jax.models import CONV_IMPLS, MODEL_NAMES, create_model, kernels, set_conv_impl  # noqa: E402

# our name -> (timm name, extra timm kwargs); ViT uses GAP and no class token, like ours
TIMM_MODELS: dict[str, tuple[str, dict]] = {
    **{f"efficientnet_b{i}": (f"efficientnet_b{i}", {}) for i in range(4)},
    "vit_tiny": ("vit_tiny_patch16_224", {"class_token": False, "global_pool": "avg"}),
    "vit_small": ("vit_small_patch16_224", {"class_token": False, "global_pool": "avg"}),
}


def make_jax_step(
    name: str,
    image_size: int,
    batch_size: int,
    seed: int,
    *,
    dtype: str = "float32",
    conv_impl: str = "fast",
    freeze_stage: str = "",
) -> Callable[[], float]:
    """Return a function running one JAX training step (blocking) on a fixed random batch;
    `freeze_stage` keeps the stages up to it fixed, as `model.freeze` does in the trainer."""
    model = create_model(
        name, num_classes=3, rngs=nnx.Rngs(seed), image_size=image_size, dtype=jnp.dtype(dtype)
    )
    if conv_impl != "fast":
        set_conv_impl(model, conv_impl)
    model.train()
    owners = [tuple(o.split(".")) for o in freeze.freeze_stages(model, freeze_stage)]
    wrt = nnx.All(
        nnx.Param, lambda path, _: not any(tuple(map(str, path[: len(o)])) == o for o in owners)
    )
    optimizer = nnx.Optimizer(model, optax.adamw(1e-3), wrt=wrt)
    # Data parallel over every device, like the trainer: the batch split on a `data` mesh axis,
    # parameters and optimiser state replicated (on CPU, more devices with
    # XLA_FLAGS=--xla_force_host_platform_device_count=N).
    mesh = jax.make_mesh((jax.device_count(),), ("data",), axis_types=(AxisType.Auto,))
    if batch_size % jax.device_count():
        raise SystemExit(f"--batch-size {batch_size} must divide over {jax.device_count()} devices")
    state = jax.device_put(nnx.state((model, optimizer)), NamedSharding(mesh, P()))
    nnx.update((model, optimizer), state)
    rng = np.random.default_rng(seed)
    batch = NamedSharding(mesh, P("data"))
    x = jax.device_put(
        np.float32(rng.uniform(0, 255, (batch_size, image_size, image_size, 3))), batch
    )
    y = jax.device_put(np.float32(rng.integers(0, 2, (batch_size, 3))), batch)

    @nnx.jit(donate_argnums=(0, 1))
    def train_step(model, optimizer, x, y):
        def loss_fn(model):
            return optax.sigmoid_binary_cross_entropy(model(x), y).mean()

        loss, grads = nnx.value_and_grad(loss_fn, argnums=nnx.DiffState(0, wrt))(model)
        optimizer.update(model, grads)
        return loss

    def step() -> float:
        return float(train_step(model, optimizer, x, y))

    return step


def make_torch_step(
    name: str, image_size: int, batch_size: int, seed: int, *, dtype: str = "float32"
) -> Callable[[], float]:
    """Return a function running one timm training step on a fixed random batch.

    On a CUDA device the model runs channels-last (timm's recommended GPU layout) and
    ``dtype="bfloat16"`` uses autocast, the usual mixed-precision recipe.
    """
    try:
        import timm
        import torch
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise SystemExit(
            f"--compare-torch needs torch and timm ({err}); use the .venv-bench venv (see --help)"
        ) from err
    if name not in TIMM_MODELS:
        raise SystemExit(f"no timm counterpart for {name!r}; choose one of {sorted(TIMM_MODELS)}")
    timm_name, kwargs = TIMM_MODELS[name]
    if timm_name.startswith("vit"):
        kwargs = {**kwargs, "img_size": image_size}
    # match the CPUs this process may use (e.g. under `taskset -c 0`), like XLA does
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    torch.manual_seed(seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = timm.create_model(timm_name, num_classes=3, **kwargs).to(device)
    x = torch.rand(batch_size, 3, image_size, image_size, device=device) * 255.0
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    y = torch.randint(0, 2, (batch_size, 3), device=device).float()
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype == "bfloat16")

    def step() -> float:
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            loss = loss_fn(model(x).float(), y)
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    return step


def time_steps(step: Callable[[], float], num_steps: int, batch_size: int) -> float:
    """Images per second over ``num_steps`` steps."""
    start = time.perf_counter()
    for _ in range(num_steps):
        step()
    return num_steps * batch_size / (time.perf_counter() - start)


def run(args: argparse.Namespace) -> dict:
    """Warm up, then alternate rounds of JAX (and timm) steps; return the medians."""

    def jax_step(freeze_stage: str = "") -> Callable[[], float]:
        return make_jax_step(
            args.model,
            args.image_size,
            args.batch_size,
            args.seed,
            dtype=args.dtype,
            conv_impl=args.conv_impl,
            freeze_stage=freeze_stage,
        )

    steps = {"jax": jax_step()}
    for stage in args.freeze:
        steps[f"frozen to {stage}"] = jax_step(stage)
    if args.compare_torch:
        steps["timm"] = make_torch_step(
            args.model, args.image_size, args.batch_size, args.seed, dtype=args.dtype
        )
    compile_s = {}
    for key, step in steps.items():
        start = time.perf_counter()
        for _ in range(args.warmup):
            step()
        compile_s[key] = time.perf_counter() - start
    rounds: dict[str, list[float]] = {key: [] for key in steps}
    for _ in range(args.rounds):
        for key, step in steps.items():
            rounds[key].append(time_steps(step, args.steps, args.batch_size))
    result = {
        "model": args.model,
        "image_size": args.image_size,
        "batch_size": args.batch_size,
        "steps_per_round": args.steps,
        "rounds": args.rounds,
        "dtype": args.dtype,
        "conv_impl": args.conv_impl,
        "jax_backend": jax.default_backend(),
        "jax_device": str(jax.devices()[0].device_kind),
        "jax_devices": jax.device_count(),
        "malloc_tuned": MALLOC_TUNED,
        # whether the depthwise-conv kernel gradient ran as the compiled kernel (same bits)
        "cpu_kernels": kernels.active(),
        "cpus": len(os.sched_getaffinity(0)),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "warmup_s": {k: round(v, 2) for k, v in compile_s.items()},
        "img_per_s": {k: round(statistics.median(v), 2) for k, v in rounds.items()},
        "img_per_s_rounds": {k: [round(x, 2) for x in v] for k, v in rounds.items()},
    }
    for stage in args.freeze:
        key = f"frozen to {stage}"
        ratios = [f / j for f, j in zip(rounds[key], rounds["jax"], strict=True)]
        result.setdefault("speedup_over_jax", {})[key] = round(statistics.median(ratios), 3)
    if args.compare_torch:
        ratios = [j / t for j, t in zip(rounds["jax"], rounds["timm"], strict=True)]
        result["ratio_jax_over_timm"] = round(statistics.median(ratios), 3)
    return result


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--model", default="efficientnet_b0", choices=MODEL_NAMES)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5, help="steps per timed round")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps (includes compile)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--dtype",
        default="float32",
        choices=("float32", "bfloat16"),
        help="compute dtype (JAX model dtype; timm autocast)",
    )
    parser.add_argument(
        "--conv-impl",
        default="fast",
        choices=CONV_IMPLS,
        help="fast: depthwise as slices, 1x1 as matmul (CPU); conv: XLA convolutions (GPU)",
    )
    parser.add_argument(
        "--freeze",
        action="append",
        default=[],
        metavar="STAGE",
        help="also time a step with the stages up to STAGE frozen (model.freeze), interleaved;"
        " repeatable",
    )
    parser.add_argument("--compare-torch", action="store_true", help="also time timm, interleaved")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    result = run(args)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{args.model} {args.image_size}px batch {args.batch_size} ({result['jax_backend']})")
    for key, value in result["img_per_s"].items():
        print(f"  {key:5s} {value:8.2f} img/s   rounds {result['img_per_s_rounds'][key]}")
    for key, value in result.get("speedup_over_jax", {}).items():
        print(f"  {key}: {value:.3f}x the full step")
    if args.compare_torch:
        print(f"  ratio jax/timm {result['ratio_jax_over_timm']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
