"""Fill the Triton model repository from an exported model or a training run.

    python -m triton_models.build                        # from models/default (the shipped model)
    python -m triton_models.build --run outputs/RUN      # export the run first (needs JAX)
    python -m triton_models.build --model-dir DIR --repo /tmp/repo

Writes classify/1/model.onnx (+ model_card.json) and skin_analysis/1/thresholds.json (+ the
model folder's ood.json), sets the input size in the classify config and skin_analysis's
crop_size, and, from the model card, skin_analysis's string parameters: model_name,
model_version, evidence_<condition> (which kinds of data had labels for it in training: real,
synthetic, real+synthetic, none; "" = unknown) and training_data (the card's one-line note),
which the Triton client reads once with the model config. When the model card lists the
`severity` output (acne-severity probabilities [4]) or the `features` output (pooled features
[C]), the classify config gets that output and skin_analysis's `classifier_outputs` parameter
names it; otherwise both leave it out (an older export still serves, its SEVERITY rows NaN and
no OOD score), so rebuilding switches either way. SEVERITY and SEVERITY_GRADE (the grade under
the thresholds.json cutpoints), OOD_DISTANCE and OUT_OF_DISTRIBUTION (client/ood.py) are static
outputs of skin_analysis.
"""

from __future__ import annotations

import argparse
import copy
import functools
import itertools
import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from tritonclient.grpc import model_config_pb2

from client.ood import FILENAME as OOD_FILENAME
from client.result import card_evidence, card_training_note
from client.triton_client import (
    EVIDENCE_PARAMETER,
    MODEL_NAME_PARAMETER,
    MODEL_VERSION_PARAMETER,
    TRAINING_DATA_PARAMETER,
)
from core import atomic
from core.schema import CONDITIONS, SEVERITY_GRADES
from triton_models.local_repo import format_config, read_config_text

TEMPLATE = Path(__file__).resolve().parent
REPO_ROOT = TEMPLATE.parent
DEFAULT_MODEL_DIR = REPO_ROOT / "models" / "default"
MODELS = ("classify", "skin_analysis")
# Optional classifier outputs, in config order after `cam`: listed in the classify config and
# asked for by skin_analysis (its `classifier_outputs` parameter) only when the card lists them.
OPTIONAL_OUTPUTS = ("severity", "features")
CLASSIFIER_OUTPUTS_PARAMETER = "classifier_outputs"
DEFAULT_WIDTHS = {"severity": len(SEVERITY_GRADES), "features": None}  # card without a shape


class BuildError(ValueError):
    """The model folder or run cannot fill the repository."""


def _copy(src: Path, dst: Path) -> None:
    """Copy atomically, so a reader never sees half a file."""
    atomic.copy_file(src, dst)


def _read(path: Path) -> tuple[str, model_config_pb2.ModelConfig]:
    """A config.pbtxt as (its leading comment block, the parsed ModelConfig)."""
    text = path.read_text()
    header = "".join(itertools.takewhile(lambda line: line.startswith("#"), text.splitlines(True)))
    return header, read_config_text(text)


def _rewrite(path: Path, edit: Callable[[model_config_pb2.ModelConfig], None]) -> None:
    """Edit a config.pbtxt through protobuf (`edit` changes the message in place), then write
    it back atomically in text format under its leading comment block."""
    header, config = _read(path)
    edit(config)
    atomic.write_text(path, header + format_config(config))


def _tensor(tensors, name: str, what: str):
    """The input or output called `name` of a config, else `BuildError` naming `what`."""
    for tensor in tensors:
        if tensor.name == name:
            return tensor
    raise BuildError(f"config: {what} not found")


def set_parameter(config: model_config_pb2.ModelConfig, key: str, value: str) -> None:
    """Set a string parameter of a config (whitespace runs collapse to one space)."""
    config.parameters[key].string_value = " ".join(str(value).split())


def model_parameters(card: dict) -> dict[str, str]:
    """The skin_analysis parameters that describe the model, from its card ("" = unknown)."""
    evidence = card_evidence(card)
    return {
        MODEL_NAME_PARAMETER: str(card["name"]),
        MODEL_VERSION_PARAMETER: str(card["version"]),
        **{EVIDENCE_PARAMETER.format(c): evidence[c] or "" for c in CONDITIONS},
        TRAINING_DATA_PARAMETER: card_training_note(card) or "",
    }


def optional_outputs(card: dict) -> dict[str, int]:
    """The optional outputs the exported model has (its card lists them) -> their width."""
    outputs = card.get("outputs") or {}
    widths = {}
    for name in OPTIONAL_OUTPUTS:
        if name not in outputs:
            continue
        shape = (outputs[name] or {}).get("shape") or [None]
        width = shape[-1] if isinstance(shape[-1], int) else DEFAULT_WIDTHS[name]
        if width is not None:
            widths[name] = int(width)
    return widths


def has_severity(card: dict) -> bool:
    """Whether the exported model has the acne-severity output (its card lists it)."""
    return "severity" in optional_outputs(card)


def set_classify_outputs(config: model_config_pb2.ModelConfig, present: dict[str, int]) -> None:
    """List exactly the `present` optional outputs in the classify config, after the others."""
    kept = [copy.deepcopy(o) for o in config.output if o.name not in OPTIONAL_OUTPUTS]
    del config.output[:]
    config.output.extend(kept)
    for name in OPTIONAL_OUTPUTS:
        if name in present:
            config.output.add(name=name, data_type=model_config_pb2.TYPE_FP32, dims=[present[name]])


def classifier_outputs(present: dict[str, int]) -> str:
    """skin_analysis's `classifier_outputs` parameter: the `present` optional outputs.

    >>> classifier_outputs({"features": 256, "severity": 4})
    'severity,features'
    """
    return ",".join(name for name in OPTIONAL_OUTPUTS if name in present)


def copy_template(repo: Path) -> None:
    """Copy the configs and python models of the template repository into `repo`."""
    for name in MODELS:
        src = TEMPLATE / name
        for path in src.rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".onnx":
                _copy(path, repo / path.relative_to(TEMPLATE))


def build_repository(model_dir: Path, repo: Path = TEMPLATE) -> dict:
    """Fill `repo` from a folder with model.onnx, model_card.json and thresholds.json."""
    model_dir, repo = Path(model_dir), Path(repo)
    _check_model_dir(model_dir)
    card = json.loads((model_dir / "model_card.json").read_text())
    size = int(card["input_size"])
    present = optional_outputs(card)
    if repo.resolve() != TEMPLATE:
        copy_template(repo)
    ood_target = _copy_models(model_dir, repo)
    _rewrite(repo / "classify" / "config.pbtxt", functools.partial(_classify_config, size, present))
    _rewrite(
        repo / "skin_analysis" / "config.pbtxt",
        functools.partial(_skin_analysis_config, card, size, present),
    )
    return {
        "repo": str(repo),
        "model": card["name"],
        "version": card["version"],
        "input_size": size,
        "severity": "severity" in present,
        "features": "features" in present,
        "ood": ood_target.exists(),
    }


def _check_model_dir(model_dir: Path) -> None:
    """Raise `BuildError` naming the files the model folder lacks."""
    missing = [
        n
        for n in ("model.onnx", "model_card.json", "thresholds.json")
        if not (model_dir / n).is_file()
    ]
    if missing:
        raise BuildError(f"{model_dir}: missing {', '.join(missing)}")


def _copy_models(model_dir: Path, repo: Path) -> Path:
    """Copy model, card, thresholds and OOD file; returns the OOD file's target."""
    for extra in model_dir.glob("model.onnx*"):  # includes external weights (model.onnx.data)
        _copy(extra, repo / "classify" / "1" / extra.name)
    _copy(model_dir / "model_card.json", repo / "classify" / "1" / "model_card.json")
    _copy(model_dir / "thresholds.json", repo / "skin_analysis" / "1" / "thresholds.json")
    ood_target = repo / "skin_analysis" / "1" / OOD_FILENAME
    if (model_dir / OOD_FILENAME).is_file():
        _copy(model_dir / OOD_FILENAME, ood_target)
    elif ood_target.exists():
        ood_target.unlink()  # a model without an OOD score must not inherit another's
    return ood_target


def _classify_config(size: int, present: dict[str, int], config) -> None:
    """The classify config for `size` px inputs with the model's optional outputs."""
    _tensor(config.input, "image", "classify input image").dims[:] = [size, size, 3]
    _tensor(config.output, "cam", "classify output cam").dims[:] = [3, size, size]
    warmed = [w.inputs["image"] for w in config.model_warmup if "image" in w.inputs]
    if not warmed:
        raise BuildError("config: classify warmup not found")
    for tensor in warmed:
        tensor.dims[:] = [size, size, 3]
    set_classify_outputs(config, present)


def _skin_analysis_config(card: dict, size: int, present: dict[str, int], config) -> None:
    """The skin_analysis config: crops of `size` px, the card's parameters and the classifier
    outputs to ask for."""
    if "crop_size" not in config.parameters:
        raise BuildError("config: skin_analysis crop_size not found")
    config.parameters["crop_size"].string_value = str(size)
    for key, value in model_parameters(card).items():
        set_parameter(config, key, value)
    set_parameter(config, CLASSIFIER_OUTPUTS_PARAMETER, classifier_outputs(present))


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; exit 0 ok, 2 bad input."""
    parser = argparse.ArgumentParser(
        prog="python -m triton_models.build", description=__doc__.split("\n\n")[0]
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--run", type=Path, help="training run folder (exported first)")
    source.add_argument(
        "--model-dir",
        type=Path,
        default=DEFAULT_MODEL_DIR,
        help="folder with model.onnx, model_card.json, thresholds.json",
    )
    parser.add_argument(
        "--repo",
        type=Path,
        default=TEMPLATE,
        help="repository to fill (default: the shipped, git-tracked triton_models/, which only "
        "the shipped model may fill unless --force)",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="fill triton_models/ with a model other than models/default",
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = parser.parse_args(argv)
    shipped = args.run is None and args.model_dir.resolve() == DEFAULT_MODEL_DIR.resolve()
    if args.repo.resolve() == TEMPLATE and not shipped and not args.force:
        print(
            f"error: this would replace the shipped, git-tracked repository {TEMPLATE} with "
            f"{args.run or args.model_dir}; fill another one with --repo DIR (then "
            "python -m triton_models.serve --repo DIR), or pass --force "
            "(git checkout -- triton_models restores the shipped one)",
            file=sys.stderr,
        )
        return 2
    try:
        if args.run is not None:
            from train_jax.export import export_run

            with tempfile.TemporaryDirectory() as tmp:
                export_run(args.run, Path(tmp))
                summary = build_repository(Path(tmp), args.repo)
        else:
            summary = build_repository(args.model_dir, args.repo)
    except (BuildError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(summary))
    else:
        print(
            f"filled {summary['repo']} with {summary['model']} {summary['version']} "
            f"(input {summary['input_size']} px)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
