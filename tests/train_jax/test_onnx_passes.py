"""The ONNX clean-up passes: each rewrites its pattern and leaves the outputs unchanged."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from flax import nnx
from onnx import TensorProto, helper, numpy_helper

from train_jax.export import check_parity, export_cam_onnx, max_f1_drop, write_onnx
from train_jax.models import set_conv_impl
from train_jax.models.efficientnet import EfficientNet, Variant
from train_jax.onnx_passes import (
    excite_in_blocked_layout,
    fold_affine_into_conv,
    fold_input_normalization,
    gates_as_unsqueeze,
    prune,
    simplify,
    squeeze_excite_as_conv,
)

RNG = np.random.default_rng(0)


def _init(name: str, array: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(array), name)


def _model(nodes, inits, inp, out) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", [inp], [out], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    onnx.checker.check_model(model)
    return model


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {model.graph.input[0].name: x})[0]


def _ops(model: onnx.ModelProto) -> list[str]:
    return [n.op_type for n in model.graph.node]


def _nhwc_input(h=8, c=3):
    return helper.make_tensor_value_info("image", TensorProto.FLOAT, ["B", h, h, c])


def test_input_normalization_moves_behind_the_transpose_into_the_stem():
    w = RNG.normal(size=(4, 3, 3, 3)).astype(np.float32)
    nodes = [
        helper.make_node("Sub", ["image", "mean"], ["centred"]),
        helper.make_node("Mul", ["centred", "inv_std"], ["normed"]),
        helper.make_node("Transpose", ["normed"], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["nchw", "w"], ["y"], pads=[1, 1, 1, 1]),
    ]
    inits = [
        _init("mean", np.float32([[[[120.0, 110.0, 100.0]]]])),
        _init("inv_std", np.float32([1 / 58.0, 1 / 57.0, 1 / 57.5])),
        _init("w", w),
    ]
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["B", 4, 8, 8])
    model = _model(nodes, inits, _nhwc_input(), out)
    x = RNG.uniform(0, 255, (2, 8, 8, 3)).astype(np.float32)
    before = _run(model, x)
    assert fold_input_normalization(model) == 1
    prune(model)
    assert _ops(model) == ["Transpose", "Sub", "Conv"]
    np.testing.assert_allclose(_run(model, x), before, rtol=1e-5, atol=1e-4)


def test_input_normalization_is_left_alone_when_the_transpose_feeds_more_than_convs():
    nodes = [
        helper.make_node("Sub", ["image", "mean"], ["centred"]),
        helper.make_node("Mul", ["centred", "inv_std"], ["normed"]),
        helper.make_node("Transpose", ["normed"], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["nchw", "w"], ["c"]),
        helper.make_node("ReduceMean", ["nchw"], ["m"], keepdims=1),
        helper.make_node("Add", ["c", "m"], ["y"]),
    ]
    inits = [
        _init("mean", np.float32([1, 2, 3])),
        _init("inv_std", np.float32([2, 2, 2])),
        _init("w", RNG.normal(size=(1, 3, 1, 1)).astype(np.float32)),
    ]
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["B", 1, 8, 8])
    model = _model(nodes, inits, _nhwc_input(), out)
    assert fold_input_normalization(model) == 0


def test_gate_broadcast_becomes_one_unsqueeze():
    # x [B,2,2,C] NCHW-ish activation and a gate [B,C] broadcast the way jax2onnx writes it
    c = 5
    nodes = [
        helper.make_node("ReduceMean", ["x", "axes"], ["pooled"], keepdims=0),
        helper.make_node("Sigmoid", ["pooled"], ["gate"]),
        helper.make_node("Shape", ["gate"], ["shape"]),
        helper.make_node("Gather", ["shape", "zero"], ["b"]),
        helper.make_node("Concat", ["b", "one", "one", "cdim"], ["target"], axis=0),
        helper.make_node("Reshape", ["gate", "target"], ["g4"]),
        helper.make_node("Expand", ["g4", "target"], ["g4e"]),
        helper.make_node("Transpose", ["g4e"], ["g_nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Mul", ["x", "g_nchw"], ["y"]),
    ]
    inits = [
        _init("axes", np.int64([2, 3])),
        _init("zero", np.int64([0])),
        _init("one", np.int64([1])),
        _init("cdim", np.int64([c])),
    ]
    inp = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", c, 4, 4])
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["B", c, 4, 4])
    model = _model(nodes, inits, inp, out)
    x = RNG.normal(size=(3, c, 4, 4)).astype(np.float32)
    before = _run(model, x)
    assert gates_as_unsqueeze(model) == 1
    prune(model)
    assert _ops(model) == ["ReduceMean", "Sigmoid", "Unsqueeze", "Mul"]
    np.testing.assert_array_equal(_run(model, x), before)


def test_gate_reshaped_off_the_channel_axis_is_left_alone():
    # [B, C] -> [B, C, 1, 1] -> Transpose(0,3,1,2) = [B, 1, C, 1]: not an Unsqueeze(2, 3)
    c = 4
    nodes = [
        helper.make_node("Reshape", ["g", "target"], ["g4"]),
        helper.make_node("Expand", ["g4", "target"], ["g4e"]),
        helper.make_node("Transpose", ["g4e"], ["y"], perm=[0, 3, 1, 2]),
    ]
    inits = [_init("target", np.int64([2, c, 1, 1]))]
    inp = helper.make_tensor_value_info("g", TensorProto.FLOAT, [2, c])
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 1, c, 1])
    assert gates_as_unsqueeze(_model(nodes, inits, inp, out)) == 0


def test_affine_behind_a_transpose_folds_into_the_conv():
    cout = 6
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"]),
        helper.make_node("Transpose", ["c"], ["t"], perm=[0, 2, 3, 1]),
        helper.make_node("Mul", ["t", "scale"], ["m"]),
        helper.make_node("Add", ["m", "shift"], ["y"]),
    ]
    inits = [
        _init("w", RNG.normal(size=(cout, 4, 1, 1)).astype(np.float32)),
        _init("b", RNG.normal(size=(cout,)).astype(np.float32)),
        _init("scale", RNG.normal(size=(1, 1, 1, cout)).astype(np.float32)),
        _init("shift", RNG.normal(size=(cout,)).astype(np.float32)),
    ]
    inp = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", 4, 3, 3])
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["B", 3, 3, cout])
    model = _model(nodes, inits, inp, out)
    x = RNG.normal(size=(2, 4, 3, 3)).astype(np.float32)
    before = _run(model, x)
    assert fold_affine_into_conv(model) == 1
    prune(model)
    assert _ops(model) == ["Conv", "Transpose"]
    np.testing.assert_allclose(_run(model, x), before, rtol=1e-5, atol=1e-5)


def test_affine_with_a_full_tensor_constant_is_not_folded():
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"]),
        helper.make_node("Transpose", ["c"], ["t"], perm=[0, 2, 3, 1]),
        helper.make_node("Mul", ["t", "scale"], ["m"]),
        helper.make_node("Add", ["m", "shift"], ["y"]),
    ]
    inits = [
        _init("w", RNG.normal(size=(2, 2, 1, 1)).astype(np.float32)),
        _init("scale", RNG.normal(size=(1, 3, 3, 2)).astype(np.float32)),  # varies in space
        _init("shift", np.float32([0, 1])),
    ]
    inp = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", 2, 3, 3])
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["B", 3, 3, 2])
    assert fold_affine_into_conv(_model(nodes, inits, inp, out)) == 0


@pytest.fixture(scope="module")
def tiny_efficientnet():
    variant = Variant(width=0.25, depth=0.25, resolution=32, dropout=0.0)
    # built under jit: eager initialisation compiles every parameter's init on its own (slow)
    model = nnx.jit(lambda: EfficientNet(3, variant=variant, rngs=nnx.Rngs(3)))()
    set_conv_impl(model, "conv")
    model.eval()
    return model


def test_default_export_of_an_efficientnet_is_clean_and_exact(tiny_efficientnet, tmp_path):
    size = 64  # at 32 px the last maps are 1 x 1 and onnxruntime keeps some blocks in NHWC
    path = tmp_path / "clean.onnx"
    rewrites = write_onnx(tiny_efficientnet, path, input_size=size, output_names=["logits"])
    assert rewrites["fold_input_normalization"] == 1
    assert rewrites["gates_as_unsqueeze"] == len(tiny_efficientnet.blocks)  # one SE per block
    assert rewrites["squeeze_excite_as_conv"] == len(tiny_efficientnet.blocks)
    ops = _ops(onnx.load(str(path)))
    # left: the input transpose and one back to NHWC after the last conv; BatchNorm folded
    assert ops.count("Transpose") == 2 and "Expand" not in ops and "Sqrt" not in ops
    # every block: (expand) + depthwise + project, and the two squeeze-excite 1x1 convs
    assert (
        ops.count("Conv")
        == sum(5 if b.expand is not None else 4 for b in tiny_efficientnet.blocks) + 2
    )
    assert "Unsqueeze" not in ops and ops.count("Gemm") == 1  # only the classifier head
    # squeeze as GlobalAveragePool; excite as Mul of equal shapes (gate resized) on the maps of
    # 28 x 28 and up (the first blocks' 32 x 32 here), the broadcast Mul on the smaller ones
    assert ops.count("GlobalAveragePool") == len(tiny_efficientnet.blocks)
    assert 1 <= rewrites["excite_in_blocked_layout"] < len(tiny_efficientnet.blocks)
    assert ops.count("Resize") == rewrites["excite_in_blocked_layout"]
    x = RNG.uniform(0, 255, (3, size, size, 3)).astype(np.float32)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(
        sess.run(None, {"image": x})[0],
        np.asarray(nnx.jit(lambda m, v: m(v))(tiny_efficientnet, x)),
        atol=1e-4,
    )


def test_cam_export_of_an_efficientnet_keeps_parity_at_any_batch(tiny_efficientnet, tmp_path):
    # the served form (probs and cam outputs) through every pass, the excite rewrite included
    size = 64
    path = export_cam_onnx(tiny_efficientnet, tmp_path / "cam.onnx", input_size=size)
    assert _ops(onnx.load(str(path))).count("Resize") >= 1
    for batch in (1, 3):
        diffs = check_parity(tiny_efficientnet, path, input_size=size, num_images=batch)
        assert max(diffs.values()) <= 1e-4


def test_simplify_reports_every_pass():
    nodes = [helper.make_node("Relu", ["x"], ["y"])]
    inp = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])
    counts = simplify(_model(nodes, [], inp, out))
    assert set(counts) == {
        "fold_input_normalization",
        "gates_as_unsqueeze",
        "fold_affine_into_conv",
        "squeeze_excite_as_conv",
        "excite_in_blocked_layout",
        "prune",
    }
    assert all(v == 0 for v in counts.values())


def test_max_f1_drop_finds_the_worst_cell_and_skips_nan():
    f32 = {"acne": {"I-II": 0.9, "V-VI": 0.8}, "wrinkles": {"I-II": float("nan"), "V-VI": 0.7}}
    i8 = {"acne": {"I-II": 0.95, "V-VI": 0.75}, "wrinkles": {"I-II": 0.1, "V-VI": 0.69}}
    drop, cell = max_f1_drop(f32, i8)
    assert cell == "acne/V-VI" and drop == pytest.approx(0.05)
    assert max_f1_drop({"a": {"g": float("nan")}}, {"a": {"g": 0.5}})[1] is None


def _se_graph(gate_scale: np.ndarray | None = None):
    """x [B,4,3,3] -> ReduceMean -> Gemm -> swish -> Gemm -> Sigmoid -> Unsqueeze -> Mul(x)."""
    nodes = [
        helper.make_node("ReduceMean", ["x", "hw"], ["m"], keepdims=0),
        helper.make_node("Gemm", ["m", "w1", "b1"], ["h"]),
        helper.make_node("Sigmoid", ["h"], ["hs"]),
        helper.make_node("Mul", ["h", "hs"], ["a"]),
        helper.make_node("Gemm", ["a", "w2", "b2"], ["g"], transB=1),
        helper.make_node("Sigmoid", ["g"], ["gs"]),
    ]
    inits = [
        _init("hw", np.int64([2, 3])),
        _init("w1", RNG.normal(size=(4, 2)).astype(np.float32)),
        _init("b1", RNG.normal(size=2).astype(np.float32)),
        _init("w2", RNG.normal(size=(4, 2)).astype(np.float32)),
        _init("b2", RNG.normal(size=4).astype(np.float32)),
        _init("ax", np.int64([2, 3])),
    ]
    gate = "gs"
    if gate_scale is not None:  # a per-channel constant on [B, C] would broadcast differently
        nodes.append(helper.make_node("Mul", ["gs", "scale"], ["gsc"]))
        inits.append(_init("scale", gate_scale))
        gate = "gsc"
    nodes += [
        helper.make_node("Unsqueeze", [gate, "ax"], ["gu"]),
        helper.make_node("Mul", ["x", "gu"], ["y"]),
    ]
    inp = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", 4, 3, 3])
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["B", 4, 3, 3])
    return _model(nodes, inits, inp, out)


def test_squeeze_excite_gemms_become_1x1_convs_with_the_same_output():
    model = _se_graph()
    x = RNG.normal(size=(2, 4, 3, 3)).astype(np.float32)
    before = _run(model, x)
    assert squeeze_excite_as_conv(model) == 1
    onnx.checker.check_model(model, full_check=True)
    assert _ops(model) == ["ReduceMean", "Conv", "Sigmoid", "Mul", "Conv", "Sigmoid", "Mul"]
    np.testing.assert_allclose(_run(model, x), before, rtol=1e-6, atol=1e-6)


def test_squeeze_excite_with_a_per_channel_constant_is_left_alone():
    model = _se_graph(gate_scale=np.float32([1.0, 2.0, 3.0, 4.0]))
    assert squeeze_excite_as_conv(model) == 0
    assert "Gemm" in _ops(model)


def _excite_graph(channels: int = 64, size: int = 6, gate_op: str = "Sigmoid"):
    """x -> Conv -> swish -> [ReduceMean(keepdims) -> Conv 1x1 -> gate] -> Mul -> Conv 1x1."""
    c, r = channels, channels // 4
    nodes = [
        helper.make_node("Conv", ["x", "w0"], ["a"], pads=[1, 1, 1, 1]),
        helper.make_node("Sigmoid", ["a"], ["as"]),
        helper.make_node("Mul", ["a", "as"], ["h"]),
        helper.make_node("ReduceMean", ["h", "hw"], ["m"], keepdims=1),
        helper.make_node("Conv", ["m", "w1", "b1"], ["r"]),
        helper.make_node("Relu", ["r"], ["rr"]),
        helper.make_node("Conv", ["rr", "w2", "b2"], ["g"]),
        helper.make_node(gate_op, ["g"], ["gs"]),
        helper.make_node("Mul", ["h", "gs"], ["e"]),
        helper.make_node("Conv", ["e", "w3"], ["y"]),
    ]
    inits = [
        _init("w0", RNG.normal(size=(c, c, 3, 3)).astype(np.float32) * 0.1),
        _init("hw", np.int64([2, 3])),
        _init("w1", RNG.normal(size=(r, c, 1, 1)).astype(np.float32)),
        _init("b1", RNG.normal(size=r).astype(np.float32)),
        _init("w2", RNG.normal(size=(c, r, 1, 1)).astype(np.float32)),
        _init("b2", RNG.normal(size=c).astype(np.float32)),
        _init("w3", RNG.normal(size=(c, c, 1, 1)).astype(np.float32) * 0.1),
    ]
    inp = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", c, size, size])
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["B", c, size, size])
    return _model(nodes, inits, inp, out)


def test_excite_becomes_a_mul_of_equal_shapes_with_the_same_output():
    model = _excite_graph()
    x = RNG.normal(size=(3, 64, 6, 6)).astype(np.float32)
    before = _run(model, x)
    assert excite_in_blocked_layout(model, min_area=36) == 1
    onnx.checker.check_model(model, full_check=True)
    ops = _ops(model)
    assert "ReduceMean" not in ops and ops.count("GlobalAveragePool") == 1
    resize = next(n for n in model.graph.node if n.op_type == "Resize")
    assert resize.input[0] == "gs"
    excite = next(n for n in model.graph.node if n.op_type == "Mul" and n.input[0] == "h")
    assert excite.input[1] == resize.output[0]
    # the resized gate carries x's shape, symbolic batch included
    info = next(v for v in model.graph.value_info if v.name == resize.output[0])
    dims = [d.dim_param or d.dim_value for d in info.type.tensor_type.shape.dim]
    assert dims == ["B", 64, 6, 6]
    np.testing.assert_allclose(_run(model, x), before, rtol=1e-6, atol=1e-6)


def test_excite_pass_leaves_other_muls_alone():
    # the swish Mul (no gate producer) and a gate that is not a Sigmoid stay as they are
    model = _excite_graph(gate_op="Relu")
    assert excite_in_blocked_layout(model, min_area=1) == 0
    assert "Resize" not in _ops(model)
    assert _ops(model).count("GlobalAveragePool") == 1  # the squeeze is the same mean


def test_excite_pass_keeps_the_broadcast_on_small_maps():
    model = _excite_graph(size=6)
    assert excite_in_blocked_layout(model, min_area=37) == 0  # 6 x 6 = 36 pixels
    assert "Resize" not in _ops(model)


def _reorders(model: onnx.ModelProto, tmp_path) -> int:
    """NCHWc reorder nodes in onnxruntime's fully optimised form of ``model``."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.optimized_model_filepath = str(tmp_path / "opt.onnx")
    ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    ops = _ops(onnx.load(str(tmp_path / "opt.onnx")))
    return ops.count("ReorderInput") + ops.count("ReorderOutput")


def test_onnxruntime_keeps_the_excited_block_in_its_blocked_layout(tmp_path):
    model = _excite_graph()
    before = _reorders(model, tmp_path)
    if before == 0:
        pytest.skip("onnxruntime uses no NCHWc layout on this CPU")
    excite_in_blocked_layout(model, min_area=1)
    after = _reorders(model, tmp_path)
    # before: reorder out of NCHWc for the broadcast Mul and back in for the next Conv, plus
    # the input and output reorders; after: only the input and output reorders (64 and 16
    # channels: every conv runs blocked for NCHWc block sizes of 8 and 16)
    assert after < before and after == 2
