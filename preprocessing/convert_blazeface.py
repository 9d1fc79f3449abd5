"""Convert MediaPipe's BlazeFace short-range TFLite model to ONNX with a variable batch.

One-off tool (not run in CI). It needs `tflite2onnx` and `onnx`, kept out of the main
environment in their own virtual environment::

    python3 -m venv .venv-convert
    .venv-convert/bin/pip install tflite2onnx==0.4.1 onnx onnxruntime ai-edge-litert
    .venv-convert/bin/python -m preprocessing.convert_blazeface \
        --out preprocessing/assets/blazeface_short_range.onnx

Steps: `pip download --no-deps mediapipe==0.10.21` (or `--wheel PATH`), extract
`face_detection_short_range.tflite`, convert with `tflite2onnx`, then edit the graph with
`onnx`: NHWC input (a Transpose in front), batch dimension symbolic (`batch`), and the
Reshape shape constants `[1, -1, C]` -> `[0, -1, C]` so each image keeps its own rows;
initializers are sorted by name so the output is byte-for-byte reproducible.
Finally check the graph, run batch 1 vs batch 3 on onnxruntime, compare with the TFLite
interpreter (`ai-edge-litert`, if installed), and print the sha256 values for PROVENANCE.md.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

MEDIAPIPE_VERSION = "0.10.21"
TFLITE_MEMBER = "mediapipe/modules/face_detection/face_detection_short_range.tflite"
LICENSE_MEMBER = f"mediapipe-{MEDIAPIPE_VERSION}.dist-info/LICENSE"
INPUT_NAME = "input"


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def download_wheel(dest: Path) -> Path:
    """`pip download` the mediapipe wheel (no dependencies) into dest."""
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--python-version",
        "3.11",
        "--platform",
        "manylinux_2_28_x86_64",
        f"mediapipe=={MEDIAPIPE_VERSION}",
        "-d",
        str(dest),
    ]
    subprocess.run(cmd, check=True)
    return next(dest.glob(f"mediapipe-{MEDIAPIPE_VERSION}-*.whl"))


def extract(wheel: Path, member: str, dest: Path) -> Path:
    """Extract one member of the wheel to dest/<basename>."""
    with zipfile.ZipFile(wheel) as zf:
        out = dest / Path(member).name
        out.write_bytes(zf.read(member))
    return out


def nhwc_input(model, shape: tuple[int, int, int], name: str = INPUT_NAME) -> None:
    """Replace the NCHW graph input by an NHWC one `name` [batch, *shape] and a Transpose."""
    import onnx
    from onnx import helper

    graph = model.graph
    (old_input,) = graph.input
    nchw_name = "input_nchw"
    for node in graph.node:
        node.input[:] = [nchw_name if n == old_input.name else n for n in node.input]
    new_input = helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, ["batch", *shape])
    transpose = helper.make_node(
        "Transpose", [name], [nchw_name], perm=[0, 3, 1, 2], name="nhwc_to_nchw"
    )
    graph.input.remove(old_input)
    graph.input.append(new_input)
    graph.node.insert(0, transpose)


def per_image_reshapes(model) -> None:
    """Reshape shape constants [1, -1, C] -> [0, -1, C] so each image keeps its own rows."""
    import numpy as np
    from onnx import numpy_helper

    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    for node in graph.node:
        if node.op_type != "Reshape":
            continue
        shape = numpy_helper.to_array(inits[node.input[1]]).copy()
        assert shape[0] == 1 and shape[1] == -1, shape
        shape[0] = 0  # 0 = copy the input's batch dimension
        new_name = node.input[1] + "_batch"
        if new_name not in inits:
            tensor = numpy_helper.from_array(shape.astype(np.int64), new_name)
            graph.initializer.append(tensor)
            inits[new_name] = tensor
        node.input[1] = new_name


def finalize_variable_batch(model):  # onnx.ModelProto -> onnx.ModelProto
    """Drop unused initializers, sort for reproducible bytes, make dim 0 `batch`, check."""
    import onnx

    graph = model.graph
    used = {name for node in graph.node for name in node.input}
    for tensor in [t for t in graph.initializer if t.name not in used]:
        graph.initializer.remove(tensor)
    # tflite2onnx emits initializers in hash order; sort them so the file is reproducible.
    ordered = sorted(graph.initializer, key=lambda t: t.name)
    del graph.initializer[:]
    graph.initializer.extend(ordered)
    values = sorted(graph.value_info, key=lambda v: v.name)
    del graph.value_info[:]
    graph.value_info.extend(values)

    for value in list(graph.output) + list(graph.value_info):
        dims = value.type.tensor_type.shape.dim
        if len(dims) > 0:
            dims[0].ClearField("dim_value")
            dims[0].dim_param = "batch"
    onnx.checker.check_model(model, full_check=True)
    return model


def make_variable_batch_nhwc(model):  # onnx.ModelProto -> onnx.ModelProto
    """NHWC input, symbolic batch dim and per-image Reshapes ([1,-1,C] -> [0,-1,C])."""
    nhwc_input(model, (128, 128, 3))
    per_image_reshapes(model)
    return finalize_variable_batch(model)


def compare_with_tflite(tflite_path: Path, x, reg, cls) -> float | None:
    """Max |ONNX - TFLite| over the batch, or None when no TFLite interpreter is installed."""
    import numpy as np

    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        print("ai-edge-litert not installed: skipping the TFLite comparison")
        return None
    interp = Interpreter(model_path=str(tflite_path))
    interp.allocate_tensors()
    (inp,) = interp.get_input_details()
    outs = {d["name"]: d["index"] for d in interp.get_output_details()}
    diff = 0.0
    for i in range(len(x)):
        interp.set_tensor(inp["index"], x[i : i + 1])
        interp.invoke()
        diff = max(
            diff,
            float(np.abs(interp.get_tensor(outs["regressors"]) - reg[i]).max()),
            float(np.abs(interp.get_tensor(outs["classificators"]) - cls[i]).max()),
        )
    return diff


def verify(onnx_path: Path, tflite_path: Path | None = None) -> None:
    """Batch 3 must equal three batch-1 runs (and match TFLite when available)."""
    import numpy as np
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(3, 128, 128, 3)).astype(np.float32)
    reg3, cls3 = sess.run(["regressors", "classificators"], {INPUT_NAME: x})
    if tflite_path is not None:
        tflite_diff = compare_with_tflite(tflite_path, x, reg3, cls3)
        if tflite_diff is not None:
            assert tflite_diff < 1e-3, tflite_diff
            print(f"verified: ONNX vs TFLite interpreter, max |diff| = {tflite_diff:.2e}")
    diff = 0.0
    for i in range(3):
        reg1, cls1 = sess.run(["regressors", "classificators"], {INPUT_NAME: x[i : i + 1]})
        diff = max(
            diff,
            float(np.abs(reg1 - reg3[i : i + 1]).max()),
            float(np.abs(cls1 - cls3[i : i + 1]).max()),
        )
    assert reg3.shape == (3, 896, 16) and cls3.shape == (3, 896, 1), (reg3.shape, cls3.shape)
    assert diff < 1e-4, diff
    print(f"verified: batch 3 vs 3x batch 1, max |diff| = {diff:.2e}")


def main(argv: list[str] | None = None) -> int:
    """Parse flags, convert, verify, print checksums."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheel", type=Path, help="an already downloaded mediapipe wheel")
    parser.add_argument("--out", type=Path, required=True, help="output .onnx path")
    parser.add_argument("--license-out", type=Path, help="also copy the wheel's LICENSE here")
    args = parser.parse_args(argv)

    import onnx

    with tempfile.TemporaryDirectory() as tmp_str:
        tmp = Path(tmp_str)
        wheel = args.wheel or download_wheel(tmp)
        tflite = extract(wheel, TFLITE_MEMBER, tmp)
        raw = tmp / "raw.onnx"
        subprocess.run(
            [str(Path(sys.executable).with_name("tflite2onnx")), str(tflite), str(raw)], check=True
        )
        model = make_variable_batch_nhwc(onnx.load(str(raw)))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp_out = args.out.with_suffix(".onnx.tmp")
        onnx.save(model, str(tmp_out))
        tmp_out.replace(args.out)
        if args.license_out:
            args.license_out.write_bytes(extract(wheel, LICENSE_MEMBER, tmp).read_bytes())
        verify(args.out, tflite)
        print(f"wheel  {wheel.name} sha256 {sha256_of(wheel)}")
        print(f"tflite {Path(TFLITE_MEMBER).name} sha256 {sha256_of(tflite)}")
        print(f"onnx   {args.out} sha256 {sha256_of(args.out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
