"""Small exact rewrites of an exported ONNX graph, run after onnxruntime's offline `basic` level.

jax2onnx writes NHWC JAX code as NCHW ``Conv`` nodes wrapped in ``Transpose`` pairs, broadcasts
per-channel constants with ``Reshape``/``Expand`` and keeps inference BatchNorm as arithmetic.
onnxruntime's `basic` level (constant folding, Conv+Mul/Add fusion, the transpose optimiser)
removes most of that; these passes remove what it leaves, each a pure function
``ModelProto -> number of rewrites`` that edits the model in place:

* ``fold_input_normalization``: ``image -> Sub(mean) -> Mul(1/std) -> Transpose -> Conv``
  becomes ``image -> Transpose -> Sub(mean) -> Conv(W / std)``: the subtraction runs on NCHW
  planes (a broadcast over a last axis of 3 is slow in onnxruntime) and the scale moves into the
  stem weights (exact: scaling commutes with zero padding).
* ``gates_as_unsqueeze``: squeeze-excite gates ``[B, C]`` broadcast by
  ``Shape/Gather/Concat/Reshape/Expand/Transpose`` become one ``Unsqueeze(axes=[2, 3])``.
* ``fold_affine_into_conv``: ``Conv -> Transpose(0,2,3,1) -> Mul(c) -> Add(d)`` with per-channel
  constants (a BatchNorm the transpose optimiser left behind a transpose) is folded into the
  ``Conv`` weights and bias.
* ``squeeze_excite_as_conv``: the squeeze-excite path ``ReduceMean(keepdims=0) -> Gemm -> swish
  -> Gemm -> Sigmoid -> Unsqueeze(axes=[2, 3])`` becomes ``ReduceMean(keepdims=1) -> Conv 1x1 ->
  swish -> Conv 1x1 -> Sigmoid`` on ``[B, C, 1, 1]`` (timm's form): onnxruntime then keeps the
  gate in its blocked NCHWc layout instead of reordering to NCHW and back in every block.
* ``excite_in_blocked_layout``: the squeeze ``ReduceMean(axes 2,3, keepdims=1)`` becomes
  ``GlobalAveragePool`` and the excite ``Mul(x [B,C,H,W], gate [B,C,1,1])`` becomes
  ``Mul(x, Resize(gate) [B,C,H,W])`` (nearest, integer scales: the gate value repeated, so the
  product is bit-identical), with the resized gate's shape written into ``value_info`` with the
  same symbolic batch as ``x``. onnxruntime's NCHWc transformer runs a ``Mul`` in its blocked
  layout only when it can prove both inputs have the same shape; a broadcasting ``Mul`` makes it
  reorder the activation to NCHW and back in every squeeze-excite block (about 13 % of a B0's
  CPU time at batch 32). The shape in ``value_info`` is what lets it prove the batch dimensions
  equal: onnx's shape inference gives a ``Resize`` output no symbolic dimension of its own.
  Only on maps of ``MIN_EXCITE_AREA`` pixels and more, where the resize costs less than the
  reorders it saves.
* ``prune``: drops nodes and initializers that no output needs, and opset imports of domains
  that no node uses (onnxruntime lists all of its own when it saves a model).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import onnx
from onnx import helper, numpy_helper

NHWC_TO_NCHW = [0, 3, 1, 2]
NCHW_TO_NHWC = [0, 2, 3, 1]


def _constants(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    consts = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            consts[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return consts


def _consumers(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    users: dict[str, list[onnx.NodeProto]] = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            users[name].append(node)
    return users


def _producers(graph: onnx.GraphProto) -> dict[str, onnx.NodeProto]:
    return {out: node for node in graph.node for out in node.output}


def _perm(node: onnx.NodeProto) -> list[int]:
    return next((list(a.ints) for a in node.attribute if a.name == "perm"), [])


def _is_graph_output(graph: onnx.GraphProto, name: str) -> bool:
    return any(o.name == name for o in graph.output)


def _unique_name(graph: onnx.GraphProto, name: str) -> str:
    """``name``, or ``name_k`` with the smallest k that no tensor of ``graph`` uses yet."""
    taken = {i.name for i in (*graph.initializer, *graph.input)}
    taken |= {o for n in graph.node for o in n.output}
    unique, k = name, 0
    while unique in taken:
        k += 1
        unique = f"{name}_{k}"
    return unique


def _add_initializer(graph: onnx.GraphProto, array: np.ndarray, name: str) -> str:
    unique = _unique_name(graph, name)
    graph.initializer.append(numpy_helper.from_array(array, unique))
    return unique


def _per_channel(value: np.ndarray, channels: int) -> np.ndarray | None:
    """``value`` as a [channels] vector if it broadcasts along the last axis only, else None."""
    if value.ndim and any(d != 1 for d in value.shape[:-1]):
        return None
    flat = value.reshape(-1).astype(np.float32)
    if flat.size == 1:
        return np.full(channels, flat[0], np.float32)
    return flat if flat.size == channels else None


def fold_input_normalization(model: onnx.ModelProto) -> int:
    """Move ``(x - mean) * inv_std`` behind the input transpose and the scale into the stem."""
    graph = model.graph
    if len(graph.input) != 1:
        return 0
    consts, users = _constants(graph), _consumers(graph)
    image = graph.input[0]
    dims = image.type.tensor_type.shape.dim
    if len(dims) != 4 or not dims[3].dim_value:
        return 0
    channels = dims[3].dim_value
    chain = users.get(image.name, [])
    if len(chain) != 1 or chain[0].op_type != "Sub":
        return 0
    sub = chain[0]
    mul_users = users.get(sub.output[0], [])
    if len(mul_users) != 1 or mul_users[0].op_type != "Mul":
        return 0
    mul = mul_users[0]
    tr_users = users.get(mul.output[0], [])
    transpose = tr_users[0] if len(tr_users) == 1 else None
    if transpose is None or transpose.op_type != "Transpose" or _perm(transpose) != NHWC_TO_NCHW:
        return 0
    mean = _per_channel(consts.get(sub.input[1], np.zeros(0)), channels)
    scale = _per_channel(consts.get(mul.input[1], np.zeros(0)), channels)
    convs = users.get(transpose.output[0], [])
    if (
        mean is None
        or scale is None
        or not convs
        or sub.input[0] != image.name
        or any(
            c.op_type != "Conv" or c.input[0] != transpose.output[0] or c.input[1] not in consts
            for c in convs
        )
        or _is_graph_output(graph, transpose.output[0])
    ):
        return 0
    for conv in convs:
        weight = consts[conv.input[1]] * scale.reshape(1, channels, 1, 1)
        conv.input[1] = _add_initializer(graph, weight.astype(np.float32), conv.input[1] + "_std")
    mean_name = _add_initializer(graph, mean.reshape(1, channels, 1, 1), "input_mean_nchw")
    nchw = transpose.output[0]
    transpose.input[0] = image.name
    transpose.output[0] = nchw + "_unnormalised"
    centred = helper.make_node(
        "Sub", [transpose.output[0], mean_name], [nchw], name="input_mean_sub_nchw"
    )
    nodes = list(graph.node)
    nodes.remove(sub)
    nodes.remove(mul)
    nodes.insert(nodes.index(transpose) + 1, centred)
    del graph.node[:]
    graph.node.extend(nodes)
    return 1


def gates_as_unsqueeze(model: onnx.ModelProto) -> int:
    """``Transpose(0,3,1,2)(Expand(Reshape(g [B,C] -> [B,1,1,C])))`` -> ``Unsqueeze(g, [2,3])``."""
    graph = model.graph
    producers, consts = _producers(graph), _constants(graph)
    inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    shapes = {
        v.name: [
            d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim
        ]
        for v in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]
        if v.type.tensor_type.HasField("shape")
    }
    ranks = {name: len(dims) for name, dims in shapes.items()}
    axes: str | None = None
    count = 0
    for i, node in enumerate(list(graph.node)):
        if node.op_type != "Transpose" or _perm(node) != NHWC_TO_NCHW:
            continue
        expand = producers.get(node.input[0])
        if expand is None or expand.op_type != "Expand":
            continue
        reshape = producers.get(expand.input[0])
        if reshape is None or reshape.op_type != "Reshape" or ranks.get(reshape.input[0]) != 2:
            continue
        # Expand may only broadcast the singleton axes: its target must be the reshape target
        # or all ones (a constant [1, 1, 1, 1]).
        target = consts.get(expand.input[1])
        if expand.input[1] != reshape.input[1] and (target is None or np.any(target != 1)):
            continue
        # the gate must sit on the channel axis: [B, C] -> [B, 1, 1, C] -> [B, C, 1, 1]
        if ranks.get(node.output[0]) != 4 or shapes.get(reshape.output[0], [])[1:3] != [1, 1]:
            continue
        if axes is None:
            axes = _add_initializer(graph, np.array([2, 3], np.int64), "unsqueeze_axes_2_3")
        graph.node.remove(node)
        graph.node.insert(
            i,
            helper.make_node(
                "Unsqueeze",
                [reshape.input[0], axes],
                [node.output[0]],
                name=node.name + "_unsqueeze",
            ),
        )
        count += 1
    return count


def fold_affine_into_conv(model: onnx.ModelProto) -> int:
    """Fold ``Conv -> Transpose(0,2,3,1) -> Mul(c) -> Add(d)`` (c, d per channel) into the Conv."""
    graph = model.graph
    consts, users = _constants(graph), _consumers(graph)
    count = 0
    for conv in list(graph.node):
        if conv.op_type != "Conv" or conv.input[1] not in consts:
            continue
        weight = consts[conv.input[1]]
        cout = weight.shape[0]
        chain = users.get(conv.output[0], [])
        if len(chain) != 1 or chain[0].op_type != "Transpose" or _perm(chain[0]) != NCHW_TO_NHWC:
            continue
        transpose = chain[0]
        muls = users.get(transpose.output[0], [])
        if len(muls) != 1 or muls[0].op_type != "Mul":
            continue
        mul = muls[0]
        adds = users.get(mul.output[0], [])
        if len(adds) != 1 or adds[0].op_type != "Add":
            continue
        add = adds[0]
        c_name = next((x for x in mul.input if x != transpose.output[0]), None)
        d_name = next((x for x in add.input if x != mul.output[0]), None)
        c = _per_channel(consts.get(c_name, np.zeros(0)), cout)
        d = _per_channel(consts.get(d_name, np.zeros(0)), cout)
        if (
            c is None
            or d is None
            or any(_is_graph_output(graph, n.output[0]) for n in (conv, transpose, mul))
        ):
            continue
        bias = consts[conv.input[2]] if len(conv.input) > 2 and conv.input[2] else np.zeros(cout)
        new_w = (weight * c.reshape(-1, *([1] * (weight.ndim - 1)))).astype(np.float32)
        new_b = (bias.astype(np.float32) * c + d).astype(np.float32)
        data = conv.input[0]
        del conv.input[:]
        conv.input.extend(
            [
                data,
                _add_initializer(graph, new_w, "conv_w_affine"),
                _add_initializer(graph, new_b, "conv_b_affine"),
            ]
        )
        transpose.output[0] = add.output[0]
        graph.node.remove(mul)
        graph.node.remove(add)
        count += 1
    return count


ELEMENTWISE = frozenset({"Sigmoid", "Mul", "Add", "Relu", "HardSigmoid", "HardSwish", "Tanh"})


def _on_hw_axes(node: onnx.NodeProto, consts: dict[str, np.ndarray]) -> bool:
    """Whether ``node``'s axes (attribute or constant second input) are (2, 3) of rank 4."""
    axes = next((helper.get_attribute_value(a) for a in node.attribute if a.name == "axes"), None)
    if axes is None and len(node.input) > 1:
        axes = consts.get(node.input[1])
    return axes is not None and sorted(int(a) % 4 for a in np.ravel(axes)) == [2, 3]


def _reduces_hw(node: onnx.NodeProto, consts: dict[str, np.ndarray]) -> bool:
    """A ReduceMean over axes (2, 3) of a rank-4 tensor that drops those axes."""
    keepdims = next((a.i for a in node.attribute if a.name == "keepdims"), 1)
    return node.op_type == "ReduceMean" and keepdims == 0 and _on_hw_axes(node, consts)


def squeeze_excite_as_conv(model: onnx.ModelProto) -> int:
    """Run squeeze-excite gates on ``[B, C, 1, 1]`` with 1x1 ``Conv`` nodes instead of ``Gemm``."""
    graph = model.graph
    consts, users = _constants(graph), _consumers(graph)
    count = 0
    for reduce in list(graph.node):
        if not _reduces_hw(reduce, consts):
            continue
        chain, todo, nodes, ends, ok = {reduce.output[0]}, [reduce.output[0]], [], [], True
        while todo and ok:
            for node in users.get(todo.pop(), []):
                if node in nodes or node in ends:
                    continue
                attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
                if node.op_type == "Unsqueeze" and node.input[0] in chain:
                    ok = _on_hw_axes(node, consts)
                    ends.append(node)
                    continue
                if node.op_type == "Gemm":
                    ok = (
                        node.input[0] in chain
                        and node.input[1] in consts
                        and attrs.get("transA", 0) == 0
                        and attrs.get("alpha", 1.0) == attrs.get("beta", 1.0) == 1.0
                        and (len(node.input) < 3 or node.input[2] in consts)
                    )
                elif node.op_type in ELEMENTWISE:
                    # [B, C] and [B, C, 1, 1] broadcast alike only against each other or scalars
                    ok = all(
                        x in chain or (x in consts and consts[x].size == 1) for x in node.input
                    )
                else:
                    ok = False
                if ok:
                    nodes.append(node)
                    chain.update(node.output)
                    todo.extend(node.output)
        if not ok or not ends or any(_is_graph_output(graph, t) for t in chain):
            continue
        for attr in reduce.attribute:
            if attr.name == "keepdims":
                attr.i = 1
        stale = [v for v in graph.value_info if v.name in chain]  # their rank changes
        for info in stale:
            graph.value_info.remove(info)
        for gemm in (n for n in nodes if n.op_type == "Gemm"):
            weight = consts[gemm.input[1]]
            trans_b = next((a.i for a in gemm.attribute if a.name == "transB"), 0)
            weight = (weight if trans_b else weight.T)[:, :, None, None].astype(np.float32)
            inputs = [gemm.input[0], _add_initializer(graph, weight, "se_conv_w")]
            if len(gemm.input) > 2 and gemm.input[2]:
                bias = consts[gemm.input[2]].reshape(-1).astype(np.float32)
                inputs.append(_add_initializer(graph, bias, "se_conv_b"))
            conv = helper.make_node(
                "Conv", inputs, list(gemm.output), name=(gemm.name or gemm.output[0]) + "_conv"
            )
            graph.node.insert(list(graph.node).index(gemm), conv)
            graph.node.remove(gemm)
        for end in ends:
            for node in graph.node:
                for k, name in enumerate(node.input):
                    if name == end.output[0]:
                        node.input[k] = end.input[0]
            graph.node.remove(end)
        count += 1
    return count


def _shapes(model: onnx.ModelProto) -> dict[str, tuple[int, list[int | str | None]]]:
    """Per tensor, its element type and dims (int, symbol or None) from onnx shape inference."""
    inferred = onnx.shape_inference.infer_shapes(model)
    shapes = {}
    for info in (*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output):
        tensor = info.type.tensor_type
        if tensor.HasField("shape"):
            dims = [
                d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                for d in tensor.shape.dim
            ]
            shapes[info.name] = (tensor.elem_type, dims)
    return shapes


GATES = frozenset({"Sigmoid", "HardSigmoid"})
# onnxruntime's NCHWc Upsample runs on one thread and is slow on small maps with many channels
# (B0 at 224 px, batch 32, 2 threads: 4.1 ms for the 7x7x1152 gates against 3.7 ms for the two
# reorders it saves; 1.9 ms against 9.9 ms at 112x112x32), so only maps of 28 x 28 and up.
MIN_EXCITE_AREA = 28 * 28


def _excite_operands(
    mul: onnx.NodeProto, shapes: dict, producers: dict[str, onnx.NodeProto]
) -> tuple[str, str] | None:
    """``(x, gate)`` if ``mul`` is ``x [B,C,H,W] * gate [B,C,1,1]`` with a static C, H, W > 1."""
    if mul.op_type != "Mul" or len(mul.input) != 2:
        return None
    for x, gate in (tuple(mul.input), tuple(reversed(mul.input))):
        (xt, xs), (gt, gs) = shapes.get(x, (0, None)), shapes.get(gate, (0, None))
        if (
            xs is not None
            and gs is not None
            and xt == gt
            and len(xs) == len(gs) == 4
            and gate in producers
            and producers[gate].op_type in GATES
            and xs[0] is not None
            and gs[0] == xs[0]  # the same batch (symbol or size); a broadcast batch stays
            and isinstance(xs[1], int)
            and gs[1] == xs[1]
            and gs[2:] == [1, 1]
            and all(isinstance(d, int) and d > 1 for d in xs[2:])
        ):
            return x, gate
    return None


def excite_in_blocked_layout(model: onnx.ModelProto, min_area: int = MIN_EXCITE_AREA) -> int:
    """Squeeze as ``GlobalAveragePool``, excite as ``Mul(x, Resize(gate))`` of equal shapes.

    Only where the activation has at least ``min_area`` pixels (H * W).
    """
    graph = model.graph
    consts, producers, shapes = _constants(graph), _producers(graph), _shapes(model)
    for node in graph.node:  # the squeeze: the same mean, in a form NCHWc runs blocked
        if (
            node.op_type == "ReduceMean"
            and next((a.i for a in node.attribute if a.name == "keepdims"), 1) == 1
            and len(shapes.get(node.input[0], (0, []))[1]) == 4
            and _on_hw_axes(node, consts)
        ):
            node.op_type = "GlobalAveragePool"
            del node.input[1:]
            del node.attribute[:]
    resized: dict[tuple[str, int, int], str] = {}  # one Resize per gate and size
    count = 0
    for mul in list(graph.node):
        operands = _excite_operands(mul, shapes, producers)
        if operands is None:
            continue
        x, gate = operands
        elem_type, dims = shapes[x]
        if dims[2] * dims[3] < min_area:
            continue
        key = (gate, dims[2], dims[3])
        if key not in resized:
            full = _unique_name(graph, gate + "_full")
            scales = np.array([1, 1, dims[2], dims[3]], np.float32)
            resize = helper.make_node(
                "Resize",
                [gate, "", _add_initializer(graph, scales, "excite_scales")],
                [full],
                name=full,
                mode="nearest",
                coordinate_transformation_mode="asymmetric",
                nearest_mode="floor",
            )
            graph.node.insert(list(graph.node).index(mul), resize)
            graph.value_info.append(helper.make_tensor_value_info(full, elem_type, dims))
            resized[key] = full
        mul.input[list(mul.input).index(gate)] = resized[key]
        count += 1
    return count


def prune(model: onnx.ModelProto) -> int:
    """Drop nodes, initializers and opset imports that no graph output needs; returns nodes cut."""
    graph = model.graph
    needed = {o.name for o in graph.output}
    kept = []
    for node in reversed(list(graph.node)):
        if any(o in needed for o in node.output):
            kept.append(node)
            needed.update(node.input)
    removed = len(graph.node) - len(kept)
    del graph.node[:]
    graph.node.extend(reversed(kept))
    inits = [i for i in graph.initializer if i.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(inits)
    domains = {n.domain or "" for n in graph.node} | {""}
    imports = [
        o for o in model.opset_import if (o.domain or "") in domains or o.domain == "ai.onnx"
    ]
    del model.opset_import[:]
    model.opset_import.extend(imports)
    return removed


PASSES = (
    fold_input_normalization,
    gates_as_unsqueeze,
    fold_affine_into_conv,
    squeeze_excite_as_conv,
    excite_in_blocked_layout,
    prune,
)


def simplify(model: onnx.ModelProto, skip: tuple[str, ...] = ()) -> dict[str, int]:
    """Run every pass in order (but those named in ``skip``); returns the rewrites per pass."""
    unknown = set(skip) - {p.__name__ for p in PASSES}
    if unknown:
        raise ValueError(f"unknown passes to skip: {sorted(unknown)}")
    return {p.__name__: p(model) for p in PASSES if p.__name__ not in skip}
