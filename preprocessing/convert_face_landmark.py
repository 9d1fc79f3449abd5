"""Convert MediaPipe's FaceMesh landmark TFLite model to ONNX with a variable batch.

One-off tool (not run in CI), in the same throwaway environment as `convert_blazeface`::

    python3 -m venv .venv-convert
    .venv-convert/bin/pip install tflite2onnx==0.4.1 onnx onnxruntime ai-edge-litert
    .venv-convert/bin/python -m preprocessing.convert_face_landmark \
        --out preprocessing/assets/face_landmark.onnx

Steps: `pip download --no-deps mediapipe==0.10.21` (or `--wheel PATH`), extract
`face_landmark.tflite`, convert with `tflite2onnx` (in-process, see `_prelu_fp16_alpha_fix`),
then edit the graph with `onnx`: NHWC input (a Transpose in front), the two heads flattened
and renamed (`conv2d_21` -> `landmarks` [batch, 1404], `conv2d_31` -> `face_flag` [batch, 1]),
a symbolic batch dimension and sorted initializers (byte-for-byte reproducible). Finally
compare with the TFLite interpreter (`ai-edge-litert`), run batch 1 vs batch 3 on
onnxruntime, and print the sha256 values for PROVENANCE.md.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

from preprocessing.convert_blazeface import (
    INPUT_NAME,
    download_wheel,
    extract,
    finalize_variable_batch,
    nhwc_input,
    sha256_of,
)

TFLITE_MEMBER = "mediapipe/modules/face_landmark/face_landmark.tflite"
INPUT_SIZE = 192
NUM_LANDMARKS = 468
# TFLite output -> (ONNX output, values per image): 468 x (x, y, z) and the face-flag logit.
OUTPUTS = {"conv2d_21": ("landmarks", 3 * NUM_LANDMARKS), "conv2d_31": ("face_flag", 1)}


@contextlib.contextmanager
def _prelu_fp16_alpha_fix() -> Iterator[None]:
    """Let tflite2onnx 0.4.1 convert PRELU layers whose alpha is a DEQUANTIZE'd fp16 constant.

    tflite2onnx gives the alpha [1, 1, C] a leading 1 so the NHWC->NCHW layout applies, but
    not the fp16 tensor feeding its DEQUANTIZE, so layout propagation fails with an IndexError
    (BlazeFace has no PRELU). Give that fp16 tensor the same leading 1; the fp16 constants are
    then folded to float32 by tflite2onnx's own `foldFP16QuantPattern`.
    """
    import tflite
    from tflite2onnx.op import activation

    original = activation.Activation.parse

    def parse(self) -> None:
        original(self)
        opcode = self.model.OperatorCodes(self.tflite.OpcodeIndex()).BuiltinCode()
        if opcode == tflite.BuiltinOperator.PRELU:
            alpha = self.inputs[1]
            for producer in alpha.producers:
                source = producer.inputs[0]
                if len(source.shape) < len(alpha.shape):
                    source.shape.insert(0, 1)

    activation.Activation.parse = parse
    try:
        yield
    finally:
        activation.Activation.parse = original


def tflite_to_onnx(tflite_path: Path, onnx_path: Path) -> None:
    """Run tflite2onnx (with the PRELU fix) on one file."""
    from tflite2onnx.convert import convert

    with _prelu_fp16_alpha_fix():
        convert(str(tflite_path), str(onnx_path))


def flatten_outputs(model) -> None:
    """Replace the NCHW heads [1, N, 1, 1] by named outputs [batch, N] (a Reshape each)."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    graph = model.graph
    shape_name = "flat_shape"
    graph.initializer.append(numpy_helper.from_array(np.array([0, -1], np.int64), shape_name))
    old_outputs = {o.name: o for o in graph.output}
    assert set(old_outputs) == set(OUTPUTS), sorted(old_outputs)
    del graph.output[:]
    for old_name, (new_name, size) in OUTPUTS.items():
        graph.node.append(
            helper.make_node("Reshape", [old_name, shape_name], [new_name], name=new_name)
        )
        graph.value_info.append(old_outputs[old_name])
        graph.output.append(
            helper.make_tensor_value_info(new_name, onnx.TensorProto.FLOAT, [1, size])
        )


def make_landmark_model(model):  # onnx.ModelProto -> onnx.ModelProto
    """NHWC input [batch, 192, 192, 3], outputs `landmarks` and `face_flag`, symbolic batch."""
    nhwc_input(model, (INPUT_SIZE, INPUT_SIZE, 3))
    flatten_outputs(model)
    return finalize_variable_batch(model)


def run_tflite(tflite_path: Path, x):  # -> dict[str, np.ndarray] | None
    """The TFLite interpreter one image at a time: {onnx output name: [B, N]}, or None."""
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
    results: dict[str, list] = {new: [] for new, _ in OUTPUTS.values()}
    for i in range(len(x)):
        interp.set_tensor(inp["index"], x[i : i + 1])
        interp.invoke()
        for old_name, (new_name, _) in OUTPUTS.items():
            results[new_name].append(interp.get_tensor(outs[old_name]).reshape(-1))
    return {name: np.stack(rows) for name, rows in results.items()}


def verify(onnx_path: Path, tflite_path: Path | None = None) -> None:
    """Batch 3 must equal three batch-1 runs (and match TFLite when available)."""
    import numpy as np
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    names = [new for new, _ in OUTPUTS.values()]
    rng = np.random.default_rng(0)
    # Random pixels, and a smooth image (random fields are far from faces; both are checked).
    noise = rng.uniform(0, 1, size=(2, INPUT_SIZE, INPUT_SIZE, 3))
    yy, xx = np.mgrid[0:INPUT_SIZE, 0:INPUT_SIZE] / INPUT_SIZE
    smooth = np.stack([xx, yy, 0.5 + 0.5 * np.sin(6 * xx * yy)], axis=-1)[None]
    x = np.concatenate([noise, smooth]).astype(np.float32)
    batch = dict(zip(names, sess.run(names, {INPUT_NAME: x}), strict=True))
    assert batch["landmarks"].shape == (3, 3 * NUM_LANDMARKS), batch["landmarks"].shape
    assert batch["face_flag"].shape == (3, 1), batch["face_flag"].shape
    if tflite_path is not None:
        reference = run_tflite(tflite_path, x)
        if reference is not None:
            diffs = {n: float(np.abs(batch[n] - reference[n]).max()) for n in names}
            assert max(diffs.values()) < 1e-3, diffs
            text = ", ".join(f"{n} {d:.2e}" for n, d in diffs.items())
            print(f"verified: ONNX vs TFLite interpreter, max |diff| = {text}")
    diff = 0.0
    for i in range(3):
        single = sess.run(names, {INPUT_NAME: x[i : i + 1]})
        diff = max(
            diff,
            *(
                float(np.abs(s - batch[n][i : i + 1]).max())
                for s, n in zip(single, names, strict=True)
            ),
        )
    assert diff < 1e-4, diff
    print(f"verified: batch 3 vs 3x batch 1, max |diff| = {diff:.2e}")


def main(argv: list[str] | None = None) -> int:
    """Parse flags, convert, verify, print checksums."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheel", type=Path, help="an already downloaded mediapipe wheel")
    parser.add_argument("--out", type=Path, required=True, help="output .onnx path")
    args = parser.parse_args(argv)

    import onnx

    with tempfile.TemporaryDirectory() as tmp_str:
        tmp = Path(tmp_str)
        wheel = args.wheel or download_wheel(tmp)
        tflite = extract(wheel, TFLITE_MEMBER, tmp)
        raw = tmp / "raw.onnx"
        tflite_to_onnx(tflite, raw)
        model = make_landmark_model(onnx.load(str(raw)))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp_out = args.out.with_suffix(".onnx.tmp")
        onnx.save(model, str(tmp_out))
        tmp_out.replace(args.out)
        verify(args.out, tflite)
        print(f"wheel  {wheel.name} sha256 {sha256_of(wheel)}")
        print(f"tflite {Path(TFLITE_MEMBER).name} sha256 {sha256_of(tflite)}")
        print(f"onnx   {args.out} sha256 {sha256_of(args.out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
