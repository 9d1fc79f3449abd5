"""timm checkpoints into our models: layouts, names, the torch-free reader, and parity with timm.

The parity fixtures (tests/fixtures/timm/, written by benchmarks/timm_parity_fixtures.py with
torch and timm) hold timm's state-dict layout and timm's outputs on two images; the weights are
drawn again here from the layout and a seed (no torch), written to a .safetensors file and
loaded through `train_jax.pretrained`.
"""

from __future__ import annotations

import json
import pickle
import zipfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from safetensors.numpy import save_file

from tests.benchmark_loader import load_benchmark
from tests.conftest import exported_card
from train_jax import pretrained, torch_files
from train_jax.models import create_model

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "timm"
CASES = sorted(p.stem for p in FIXTURES.glob("*.json"))
PARITY_ATOL = 1e-4


def _fixture(case: str) -> tuple[dict, dict[str, np.ndarray]]:
    """(metadata with timm's layout, arrays: images, features, logits) of one case."""
    meta = json.loads((FIXTURES / f"{case}.json").read_text())
    with np.load(FIXTURES / f"{case}.npz") as arrays:
        return meta, dict(arrays)


def _checkpoint(meta: dict, path: Path) -> Path:
    """The fixture's random weights (timm's layout) as a .safetensors file."""
    fixtures = load_benchmark("timm_parity_fixtures")
    state = fixtures.synthetic_state_dict(meta["layout"], meta["seed"], meta["gain"])
    save_file(state, str(path))
    return path


def _model(name: str, **kw) -> nnx.Module:
    """An eval-mode model from abstract shapes (no random init: fast), every variable zero."""
    model = nnx.eval_shape(lambda: create_model(name, rngs=nnx.Rngs(0), **kw))
    for _, var in nnx.iter_graph(model):
        if isinstance(var, nnx.Variable) and isinstance(var.get_value(), jax.ShapeDtypeStruct):
            sds = var.get_value()
            if jnp.issubdtype(sds.dtype, jax.dtypes.prng_key):
                var.set_value(jax.random.key(0))
            else:
                var.set_value(np.zeros(sds.shape, sds.dtype))
    model.eval()
    return model


def _model_for(meta: dict, **kw) -> nnx.Module:
    """Our model for a fixture: its architecture, image size and class token."""
    if meta["model"].startswith("vit"):
        kw["class_token"] = any(e["key"] == "cls_token" for e in meta["layout"])
    return _model(meta["model"], image_size=meta["image_size"], **kw)


@nnx.jit
def _pooled_and_logits(model: nnx.Module, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(pooled features, logits), as timm's forward_head(pre_logits=True) and forward."""
    feat = model.features(x)
    return jnp.mean(feat, axis=(1, 2)), model.pool_and_classify(feat)


def test_every_architecture_has_a_fixture() -> None:
    models = {json.loads((FIXTURES / f"{c}.json").read_text())["model"] for c in CASES}
    # EfficientNet-Lite0 is not a timm model: its weights come in EfficientNet-PyTorch's naming
    # (tests/train_jax/test_torch_files.py checks it on real photos instead)
    assert models == set(pretrained.TIMM_ARCHS) - {"efficientnet_lite0"}
    assert sum(p.stat().st_size for p in FIXTURES.iterdir()) < 1_000_000  # small in git


@pytest.mark.parametrize("case", CASES)
def test_converted_model_matches_timm(case: str, tmp_path: Path) -> None:
    meta, want = _fixture(case)
    path = _checkpoint(meta, tmp_path / f"{case}.safetensors")
    model = _model_for(meta, num_classes=1000)
    report = pretrained.load_timm(model, meta["model"], path, keep_head=True)
    assert report.missing == []
    assert all(k.endswith("num_batches_tracked") for k in report.skipped)
    assert report.fresh == ["severity_head.bias", "severity_head.linear.kernel"]
    pooled, logits = _pooled_and_logits(model, jnp.asarray(want["images"], jnp.float32))
    diff_features = float(np.abs(np.asarray(pooled) - want["features"]).max())
    diff_logits = float(np.abs(np.asarray(logits) - want["logits"]).max())
    print(f"{case}: max |diff| features {diff_features:.2e}, logits {diff_logits:.2e}")
    assert diff_features <= PARITY_ATOL and diff_logits <= PARITY_ATOL
    # the two images give different features: the comparison is not of constants
    assert np.abs(want["features"][0] - want["features"][1]).max() > 100 * PARITY_ATOL


def test_default_load_keeps_our_heads_fresh_and_reports_the_classifier(tmp_path: Path) -> None:
    meta, _ = _fixture("vit_tiny")
    path = _checkpoint(meta, tmp_path / "vit.safetensors")
    model = _model_for(meta)  # our 3-condition head
    head_before = np.asarray(model.head.kernel[...]).copy()
    report = pretrained.init_model(model, path, "vit_tiny")
    assert set(report.fresh) == {
        "head.bias",
        "head.kernel",
        "severity_head.bias",
        "severity_head.linear.kernel",
    }
    assert report.skipped == ["head.bias", "head.weight"] and report.missing == []
    np.testing.assert_array_equal(model.head.kernel[...], head_before)
    assert "resized from 14x14 to 2x2" in report.summary()
    assert report.to_dict()["loaded"] == report.loaded


def test_shape_mismatch_names_the_checkpoint_key(tmp_path: Path) -> None:
    meta, _ = _fixture("efficientnet_b0")
    state = load_benchmark("timm_parity_fixtures").synthetic_state_dict(meta["layout"], 0)
    state["blocks.2.1.conv_dw.weight"] = np.zeros((240, 1, 3, 3), np.float32)  # 5x5 in B0
    save_file(state, str(tmp_path / "bad.safetensors"))
    with pytest.raises(ValueError, match=r"'blocks\.2\.1\.conv_dw\.weight'.*blocks\.4\.dw\.kernel"):
        pretrained.load_timm(
            _model("efficientnet_b0"), "efficientnet_b0", tmp_path / "bad.safetensors"
        )
    with pytest.raises(ValueError, match="16 EfficientNet blocks, efficientnet_b1 has 23"):
        pretrained.load_timm(
            _model("efficientnet_b1"), "efficientnet_b1", tmp_path / "bad.safetensors"
        )
    with pytest.raises(ValueError, match="timm checkpoint loads into"):
        pretrained.load_timm(None, "small_cnn", tmp_path / "bad.safetensors")


@pytest.mark.parametrize("case", CASES)
def test_guess_architecture_from_the_layout(case: str) -> None:
    meta, _ = _fixture(case)
    shapes = {e["key"]: tuple(e["shape"]) for e in meta["layout"]}
    assert pretrained.guess_architecture(shapes) == meta["model"]
    assert pretrained.guess_architecture({"fc.weight": (3, 8)}) is None


# --------------------------------------------------------------------------- layouts


def test_conv_and_depthwise_layouts_compute_what_pytorch_computes() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1, 5, 5, 4)).astype(np.float32)
    w = rng.normal(size=(6, 4, 3, 3)).astype(np.float32)  # OIHW
    ours = jax.lax.conv_general_dilated(
        x, pretrained.conv_kernel(w), (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    # PyTorch: out[o, y, x] = sum_{i, ky, kx} w[o, i, ky, kx] * in[i, y + ky, x + kx]
    patches = np.stack([x[0, i : i + 3, j : j + 3] for i in range(3) for j in range(3)])
    want = np.einsum("pabi,oiab->po", patches, w).reshape(3, 3, 6)
    np.testing.assert_allclose(ours[0], want, rtol=1e-5, atol=1e-5)
    dw = rng.normal(size=(4, 1, 3, 3)).astype(np.float32)
    ours = jax.lax.conv_general_dilated(
        x,
        pretrained.depthwise_kernel(dw),
        (1, 1),
        "VALID",
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=4,
    )
    want = np.einsum("pabc,cab->pc", patches, dw[:, 0]).reshape(3, 3, 4)
    np.testing.assert_allclose(ours[0], want, rtol=1e-5, atol=1e-5)


def test_dense_qkv_and_attention_output_layouts() -> None:
    rng = np.random.default_rng(1)
    dim, heads = 8, 2
    x = rng.normal(size=(3, dim)).astype(np.float32)
    w = rng.normal(size=(5, dim)).astype(np.float32)
    np.testing.assert_allclose(x @ pretrained.dense_kernel(w), x @ w.T, rtol=1e-6)
    np.testing.assert_array_equal(pretrained.dense_kernel(w[:, :, None, None]), w.T)
    qkv_w = rng.normal(size=(3 * dim, dim)).astype(np.float32)
    qkv_b = rng.normal(size=(3 * dim,)).astype(np.float32)
    parts = pretrained.split_qkv(qkv_w, qkv_b, heads)
    fused = (x @ qkv_w.T + qkv_b).reshape(3, 3, heads, dim // heads)  # timm: [N, 3, H, hd]
    for i, name in enumerate(("query", "key", "value")):
        ours = np.einsum("nd,dhk->nhk", x, parts[f"{name}.kernel"]) + parts[f"{name}.bias"]
        np.testing.assert_allclose(ours, fused[:, i], rtol=1e-5, atol=1e-5)
    proj = rng.normal(size=(dim, dim)).astype(np.float32)
    per_head = rng.normal(size=(3, heads, dim // heads)).astype(np.float32)
    ours = np.einsum("nhk,hkd->nd", per_head, pretrained.attn_out_kernel(proj, heads))
    np.testing.assert_allclose(ours, per_head.reshape(3, dim) @ proj.T, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="does not split"):
        pretrained.split_qkv(qkv_w[:-1], None, heads)


def test_batchnorm_names() -> None:
    state = {
        f"bn1.{k}": np.full(4, i, np.float32)
        for i, k in enumerate(("weight", "bias", "running_mean", "running_var"))
    }
    out = pretrained.convert_efficientnet(state)
    assert {k: (float(v[0][0]), v[1]) for k, v in out.items()} == {
        "stem_bn.scale": (0.0, "bn1.weight"),
        "stem_bn.bias": (1.0, "bn1.bias"),
        "stem_bn.mean": (2.0, "bn1.running_mean"),
        "stem_bn.var": (3.0, "bn1.running_var"),
    }


def test_pos_embed_resize_is_bilinear_and_keeps_the_class_token() -> None:
    rng = np.random.default_rng(2)
    grid = rng.normal(size=(2, 2, 3)).astype(np.float32)
    assert pretrained.resize_pos_embed(grid, (2, 2)) is grid
    np.testing.assert_allclose(  # upsampling: jax.image.resize's bilinear (half-pixel centres)
        pretrained.resize_pos_embed(grid, (4, 4)),
        jax.image.resize(grid, (4, 4, 3), "bilinear"),
        rtol=1e-5,
        atol=1e-6,
    )
    ramp = np.arange(4, dtype=np.float32)[:, None, None] * np.ones((4, 4, 1), np.float32)
    np.testing.assert_allclose(pretrained.resize_pos_embed(ramp, (2, 2))[:, 0, 0], [0.5, 2.5])
    pos = np.concatenate([np.full((1, 1, 3), 9.0, np.float32), grid.reshape(1, 4, 3)], axis=1)
    prefix, patches = pretrained.split_pos_embed(pos, 1)
    np.testing.assert_array_equal(prefix, np.full((1, 3), 9.0))
    np.testing.assert_array_equal(patches, grid)
    state = {"cls_token": np.ones((1, 1, 3), np.float32), "pos_embed": pos}
    out = pretrained.convert_vit(state, heads=1, grid=4, class_token=True)
    np.testing.assert_array_equal(out["cls_token"][0], np.full((1, 1, 3), 10.0))  # + its pos
    assert out["pos_embed"][0].shape == (1, 4, 4, 3)
    assert "cls_token" not in pretrained.convert_vit(state, heads=1, grid=2, class_token=False)
    with pytest.raises(ValueError, match="not a square grid"):
        pretrained.split_pos_embed(pos[:, :4], 1)


# --------------------------------------------------------------------------- reading files


def _expected_reader_arrays() -> dict[str, np.ndarray]:
    """The tensors of reader_check.* as torch saw them (bfloat16 as float32)."""
    with np.load(FIXTURES / "reader_check.npz") as f:
        return {k.replace("__", "."): f[k] for k in f.files}


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_reader_gives_the_tensors_torch_wrote(suffix: str) -> None:
    state = pretrained.read_checkpoint(FIXTURES / f"reader_check{suffix}")
    expected = _expected_reader_arrays()
    assert sorted(state) == sorted(expected)  # wrapper and "module." prefix gone
    for key, want in expected.items():
        got = state[key]
        assert got.shape == want.shape, key
        np.testing.assert_array_equal(got.astype(want.dtype), want, err_msg=key)
    assert str(state["bf16"].dtype) == "bfloat16" and state["half"].dtype == np.float16
    assert state["bn.num_batches_tracked"].dtype == np.int64


class _Code:
    """Pickles as a call of os.getcwd: what a malicious checkpoint would do."""

    def __reduce__(self):
        import os

        return (os.getcwd, ())


def test_torch_reader_refuses_anything_but_tensors(tmp_path: Path) -> None:
    path = tmp_path / "evil.pth"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps({"w": _Code()}, protocol=2))
    with pytest.raises(pickle.UnpicklingError, match="refused posix.getcwd"):
        pretrained.read_checkpoint(path)
    storage = np.arange(6, dtype=np.float32)
    with pytest.raises(pickle.UnpicklingError, match="reads past its storage"):
        torch_files.rebuild_tensor(storage, 2, (2, 3), (3, 1))
    np.testing.assert_array_equal(
        torch_files.rebuild_tensor(storage, 1, (2, 2), (1, 2)), [[1, 3], [2, 4]]
    )
    (tmp_path / "old.pth").write_bytes(pickle.dumps({"w": 1}))
    with pytest.raises(ValueError, match="not a PyTorch file"):
        pretrained.read_checkpoint(tmp_path / "old.pth")
    with pytest.raises(ValueError, match="expected a .safetensors"):
        (tmp_path / "w.npz").write_bytes(b"")
        pretrained.read_checkpoint(tmp_path / "w.npz")


def test_sources_runs_and_exports(tmp_path: Path) -> None:
    run = tmp_path / "outputs" / "run"
    run.mkdir(parents=True)
    (run / "config.json").write_text("{}")
    export = tmp_path / "models" / "m"
    export.mkdir(parents=True)
    (export / "model_card.json").write_text(json.dumps(exported_card(run=str(run))))
    assert pretrained.source_kind(run) == "run" and pretrained.source_kind(export) == "export"
    assert pretrained.run_folder(export) == run
    (export / "model_card.json").write_text(json.dumps(exported_card(run="gone/run")))
    with pytest.raises(FileNotFoundError, match="BatchNorm folded"):
        pretrained.run_folder(export)
    with pytest.raises(FileNotFoundError, match="not a checkpoint file"):
        pretrained.source_kind(tmp_path / "nothing")
