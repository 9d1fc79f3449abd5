"""Copy the model repository for the local tritonserver, which has only the python backend.

Every model with `backend: "onnxruntime"` becomes a python model that runs the same `model.onnx`
with onnxruntime (`triton_models/onnx_runner.py`); instance kinds become KIND_CPU. Everything else
(tensor names, dims, batching, warmup) is kept, so the local server checks the same configs.
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


def prepare_local_repo(src: Path, dst: Path) -> Path:
    """Copy repository `src` to `dst` with ONNX models swapped for onnxruntime python models."""
    src, dst = Path(src), Path(dst)
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(
        src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.py[co]", "*.md", "build.py")
    )
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
