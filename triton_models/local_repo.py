"""Copy the model repository for the local tritonserver, which has only the python backend.

Every model with `backend: "onnxruntime"` becomes a python model that runs the same `model.onnx`
with onnxruntime (`triton_models/onnx_runner.py`); instance kinds become KIND_CPU. Everything else
(tensor names, dims, batching, warmup) is kept, so the local server checks the same configs.
By default a python model that calls an ONNX model through BLS (its `classifier_model`
parameter: skin_analysis -> classify) gets that model's file instead (`classifier_onnx`) and runs
it in its own process, and the called model is left out: on this server the call would be a
python-to-python hop that only adds IPC time (docs/performance.md, "Serving").
"""

from __future__ import annotations

import shutil
from pathlib import Path

from google.protobuf import text_format
from google.protobuf.message import Message
from tritonclient.grpc import model_config_pb2

ONNX_RUNNER = Path(__file__).with_name("onnx_runner.py")


def read_config_text(text: str) -> model_config_pb2.ModelConfig:
    """Parse the text of a config.pbtxt; raises text_format.ParseError."""
    return text_format.Parse(text, model_config_pb2.ModelConfig())


def read_config(path: Path) -> model_config_pb2.ModelConfig:
    """Parse a config.pbtxt."""
    return read_config_text(Path(path).read_text())


def _one_line(message) -> str:
    """A message in protobuf text format on one line (UTF-8 kept, short repeated numbers)."""
    return text_format.MessageToString(
        message, as_one_line=True, use_short_repeated_primitives=True, as_utf8=True
    ).strip()


def _elements(parent: type[Message], field, value) -> list[Message]:
    """`field` of a `parent` message split into `parent` messages of one element each (a
    repeated scalar stays whole)."""
    name, message = field.name, field.message_type
    parts = []
    if message is not None and message.GetOptions().map_entry:
        for key in sorted(value):
            part = parent()
            if isinstance(value[key], Message):
                getattr(part, name)[key].CopyFrom(value[key])
            else:
                getattr(part, name)[key] = value[key]
            parts.append(part)
    elif field.is_repeated:
        items = value if message is not None else [value]
        for item in items:
            part = parent()
            if message is not None:
                getattr(part, name).add().CopyFrom(item)
            else:
                getattr(part, name).extend(item)
            parts.append(part)
    else:
        part = parent()
        if message is not None:
            getattr(part, name).CopyFrom(value)
        else:
            setattr(part, name, value)
        parts.append(part)
    return parts


def format_config(config: model_config_pb2.ModelConfig) -> str:
    """A ModelConfig as config.pbtxt text in the repository's compact style: one line per
    top-level field, per element of a repeated or map field and per ensemble step.

    >>> config = read_config_text('name: "m" input [ { name: "x" dims: [ 2 ] } ]')
    >>> print(format_config(config), end="")
    name: "m"
    input { name: "x" dims: [2] }
    """
    lines = []
    for field, value in config.ListFields():
        if field.name != "ensemble_scheduling":
            lines += [_one_line(p) for p in _elements(type(config), field, value)]
            continue
        lines.append("ensemble_scheduling {")
        for step in value.step:
            lines.append("  step {")
            for step_field, step_value in step.ListFields():
                parts = _elements(type(step), step_field, step_value)
                lines += [f"    {_one_line(p)}" for p in parts]
            lines.append("  }")
        lines.append("}")
    return "\n".join(lines) + "\n"


def write_config(config: model_config_pb2.ModelConfig, path: Path) -> None:
    """Write a config.pbtxt."""
    Path(path).write_text(format_config(config))


def _swap_onnx_model(model_dir: Path, config: model_config_pb2.ModelConfig) -> None:
    filename = config.default_model_filename or "model.onnx"
    config.backend = "python"
    config.platform = ""
    config.ClearField("default_model_filename")
    config.parameters["onnx_filename"].string_value = filename
    for version_dir in (p for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()):
        shutil.copyfile(ONNX_RUNNER, version_dir / "model.py")


CLASSIFIER_MODEL, CLASSIFIER_ONNX = "classifier_model", "classifier_onnx"
INLINED_FOLDER = "classifier"  # <caller>/<version>/classifier/model.onnx (+ external data)


def _inline_classifier(dst: Path, caller: Path, config: model_config_pb2.ModelConfig) -> Path:
    """Copy the ONNX file of the model that `caller` calls into the caller's version folders and
    point its `classifier_onnx` parameter at it; returns the called model's folder."""
    target = dst / config.parameters[CLASSIFIER_MODEL].string_value
    target_config = read_config(target / "config.pbtxt")
    filename = target_config.default_model_filename or "model.onnx"
    versions = sorted(p for p in target.iterdir() if p.is_dir() and p.name.isdigit())
    if not versions:
        raise FileNotFoundError(f"{target}: no version folder with {filename}")
    for version_dir in (p for p in caller.iterdir() if p.is_dir() and p.name.isdigit()):
        inlined = version_dir / INLINED_FOLDER
        inlined.mkdir(exist_ok=True)
        for path in versions[-1].glob(f"{filename}*"):  # the model and its external data
            shutil.copyfile(path, inlined / path.name)
    config.parameters[CLASSIFIER_ONNX].string_value = f"{INLINED_FOLDER}/{filename}"
    return target


def _calls_onnx_model(dst: Path, config: model_config_pb2.ModelConfig) -> bool:
    """Whether `config` is a python model whose `classifier_model` is an ONNX model in `dst`."""
    if config.backend != "python" or CLASSIFIER_MODEL not in config.parameters:
        return False
    name = config.parameters[CLASSIFIER_MODEL].string_value
    if not name or not (dst / name / "config.pbtxt").is_file():
        return False
    target = read_config(dst / name / "config.pbtxt")
    return target.backend == "onnxruntime" or target.platform == "onnxruntime_onnx"


def prepare_local_repo(src: Path, dst: Path, *, classifier_in_process: bool = True) -> Path:
    """Copy repository `src` to `dst` with ONNX models swapped for onnxruntime python models
    (classifier_in_process: run a BLS-called classifier inside its caller instead)."""
    src, dst = Path(src), Path(dst)
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(
        src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.py[co]", "*.md", "build.py")
    )
    inlined = set()
    for cfg_path in sorted(dst.glob("*/config.pbtxt")) if classifier_in_process else []:
        config = read_config(cfg_path)
        if _calls_onnx_model(dst, config):
            inlined.add(_inline_classifier(dst, cfg_path.parent, config))
            write_config(config, cfg_path)
    for folder in inlined:
        shutil.rmtree(folder)
    for cfg_path in sorted(dst.glob("*/config.pbtxt")):
        config = read_config(cfg_path)
        if config.backend == "onnxruntime" or config.platform == "onnxruntime_onnx":
            _swap_onnx_model(cfg_path.parent, config)
        for group in config.instance_group:
            if group.kind != model_config_pb2.ModelInstanceGroup.KIND_MODEL:
                group.kind = model_config_pb2.ModelInstanceGroup.KIND_CPU
                group.ClearField("gpus")
        write_config(config, cfg_path)
    return dst
