"""Write the timm parity fixtures of tests/fixtures/timm/ (needs torch and timm; CI does not).

For each architecture the fixture is timm's state-dict layout (key, shape, dtype: ``<case>.json``)
and timm's outputs on two random images (``<case>.npz``: the uint8 images, the pooled features
``forward_head(pre_logits=True)`` and the 1000-class logits). The weights themselves are not
committed (EfficientNet-B3 alone is 49 MB): they are random, drawn by ``synthetic_state_dict``
below from the layout and a seed, with plain numpy, so the CI test (no torch) draws the same
weights, writes them to a ``.safetensors`` file and loads it through ``train_jax.pretrained``.
Every tensor is random (BatchNorm statistics and biases too, unlike timm's own initialisation),
so a wrong mapping of any of them shows up in the outputs.

The layout is that of the timm hub checkpoints (EfficientNet at any size; ViT at 224 px with a
class token); timm runs at a small image size (64 px EfficientNet, 32 px ViT, the ViT's position
embedding resampled bilinearly by timm) with ``global_pool="avg", fc_norm=False`` for the ViT
(our head pools the patch tokens). ``vit_tiny_gap`` is the ViT without a class token.

``reader_check.{pth,safetensors,npz}``: a few tensors written by torch (strided views, shared
storage, float16/bfloat16/int64) to test the torch-free reader of ``train_jax.pretrained``.

    python3 -m venv .venv-bench && .venv-bench/bin/pip install torch timm safetensors numpy
    .venv-bench/bin/python benchmarks/timm_parity_fixtures.py [--out tests/fixtures/timm]
"""

from __future__ import annotations

import argparse
import json
import zlib
from pathlib import Path

import numpy as np

SEED = 20240
BATCH = 2
# case -> (our model name, timm model name, timm kwargs of the hub layout, image size, gain)
# The gain of the random conv / linear weights keeps EfficientNet's signal alive through its
# 16-26 blocks (BatchNorm with random statistics: at gain 1 the two images' features agree to
# 1e-6, at 3 they grow to 1e4); the ViT's LayerNorms need none.
CASES: dict[str, tuple[str, str, dict, int, float]] = {
    "efficientnet_b0": ("efficientnet_b0", "efficientnet_b0", {}, 64, 2.5),
    **{f"efficientnet_b{i}": (f"efficientnet_b{i}",) * 2 + ({}, 64, 2.35) for i in (1, 2)},
    "efficientnet_b3": ("efficientnet_b3", "efficientnet_b3", {}, 64, 2.25),
    "vit_tiny": ("vit_tiny", "vit_tiny_patch16_224", {}, 32, 1.0),
    "vit_small": ("vit_small", "vit_small_patch16_224", {}, 32, 1.0),
    "vit_tiny_gap": (
        "vit_tiny",
        "vit_tiny_patch16_224",
        {"class_token": False, "global_pool": "avg", "fc_norm": False},
        32,
        1.0,
    ),
}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def synthetic_state_dict(layout: list[dict], seed: int, gain: float = 1.0) -> dict[str, np.ndarray]:
    """Random weights for a timm layout ``[{"key", "shape", "dtype"}]``, the same everywhere."""
    # One generator per key, seeded by (seed, crc32 of its name): the numbers do not depend on
    # the machine or the key order. Conv and linear weights have variance gain / fan_in.
    out = {}
    for entry in layout:
        key, shape = entry["key"], tuple(entry["shape"])
        rng = np.random.default_rng([seed, zlib.crc32(key.encode())])
        if entry["dtype"] != "float32":
            out[key] = np.zeros(shape, entry["dtype"])  # num_batches_tracked
            continue
        leaf = key.rsplit(".", 1)[-1]
        if leaf == "running_var":
            value = rng.uniform(0.5, 2.0, shape)
        elif leaf == "running_mean":
            value = rng.uniform(-0.1, 0.1, shape)
        elif len(shape) == 1 and leaf == "weight":  # BatchNorm / LayerNorm scale
            value = rng.uniform(0.7, 1.3, shape)
        elif len(shape) == 1:
            value = rng.uniform(-0.1, 0.1, shape)
        elif key in ("cls_token", "pos_embed"):
            value = rng.uniform(-0.5, 0.5, shape)
        else:  # conv / linear weight [out, in, ...]
            fan_in = int(np.prod(shape[1:]))
            value = rng.uniform(-1.0, 1.0, shape) * np.sqrt(3.0 * gain / fan_in)
        out[key] = value.astype(np.float32)
    return out


def random_images(size: int, seed: int = SEED) -> np.ndarray:
    """``[BATCH, size, size, 3]`` uint8 images."""
    return np.random.default_rng(seed).integers(0, 256, (BATCH, size, size, 3), dtype=np.uint8)


def _layout(model) -> list[dict]:
    """The state-dict layout of a torch model."""
    return [
        {"key": k, "shape": list(v.shape), "dtype": str(v.dtype).removeprefix("torch.")}
        for k, v in model.state_dict().items()
    ]


def _timm_outputs(case: str) -> tuple[dict, dict[str, np.ndarray]]:
    """(fixture metadata with the layout, arrays) of one case."""
    import timm
    import torch
    from timm.layers import resample_abs_pos_embed

    ours, name, kwargs, size, gain = CASES[case]
    hub = timm.create_model(name, pretrained=False, **kwargs)
    layout = _layout(hub)
    state = {k: torch.from_numpy(v) for k, v in synthetic_state_dict(layout, SEED, gain).items()}
    is_vit = name.startswith("vit")
    run_kwargs = {**kwargs, "global_pool": "avg", "fc_norm": False, "img_size": size}
    model = timm.create_model(name, pretrained=False, **(run_kwargs if is_vit else kwargs))
    if is_vit:
        prefix = 1 if kwargs.get("class_token", True) else 0
        grid = size // 16
        state["pos_embed"] = resample_abs_pos_embed(
            state["pos_embed"],
            (grid, grid),
            num_prefix_tokens=prefix,
            interpolation="bilinear",
            antialias=False,
        )
    model.load_state_dict(state)
    model.eval()
    images = random_images(size)
    x = torch.from_numpy(images.astype(np.float32) / 255.0).permute(0, 3, 1, 2)
    x = (x - torch.tensor(IMAGENET_MEAN)[:, None, None]) / torch.tensor(IMAGENET_STD)[:, None, None]
    with torch.no_grad():
        tokens = model.forward_features(x)
        features = model.forward_head(tokens, pre_logits=True)
        logits = model.forward_head(tokens)
    meta = {
        "case": case,
        "model": ours,
        "timm_model": name,
        "timm_kwargs": kwargs,
        "timm_run_kwargs": run_kwargs if is_vit else kwargs,
        "image_size": size,
        "seed": SEED,
        "gain": gain,
        "timm_version": timm.__version__,
        "torch_version": torch.__version__,
        "layout": layout,
    }
    arrays = {"images": images, "features": features.numpy(), "logits": logits.numpy()}
    return meta, arrays


def write_reader_check(out: Path) -> None:
    """A small state dict written by torch.save and by safetensors, with the expected arrays."""
    import torch
    from safetensors.torch import save_file

    base = torch.arange(24, dtype=torch.float32).reshape(2, 3, 4) / 7.0
    tensors = {
        "conv.weight": base,
        "transposed": base.permute(2, 0, 1),  # a strided view of the same storage
        "tail": base.reshape(-1)[5:17],  # an offset into the same storage
        "half": (base[0] * 3).half(),
        "bf16": (base[1] - 1).to(torch.bfloat16),
        "bn.num_batches_tracked": torch.tensor(7, dtype=torch.int64),
    }
    # a training checkpoint: the state dict under "state_dict", DataParallel's "module." prefix
    wrapped = {"epoch": 3, "state_dict": {f"module.{k}": v for k, v in tensors.items()}}
    torch.save(wrapped, out / "reader_check.pth")
    contiguous = {k: v.contiguous().clone() for k, v in tensors.items()}
    save_file(contiguous, str(out / "reader_check.safetensors"))
    expected = {
        k: v.float().numpy() if v.is_floating_point() else v.numpy() for k, v in tensors.items()
    }
    np.savez(out / "reader_check.npz", **{k.replace(".", "__"): v for k, v in expected.items()})


def main(argv: list[str] | None = None) -> int:
    """Write every fixture into ``--out``."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="tests/fixtures/timm", type=Path)
    p.add_argument("--case", action="append", choices=sorted(CASES), help="default: all")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for case in args.case or list(CASES):
        meta, arrays = _timm_outputs(case)
        (args.out / f"{case}.json").write_text(json.dumps(meta) + "\n")
        np.savez_compressed(args.out / f"{case}.npz", **arrays)
        features, logits = arrays["features"], arrays["logits"]
        top = np.abs(features).max(), np.abs(logits).max()
        print(f"{case}: |features| <= {top[0]:.3g}, |logits| <= {top[1]:.3g}")
    write_reader_check(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
