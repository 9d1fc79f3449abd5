"""Export a trained classifier with its in-graph CAM to ONNX, check parity, write the model card.

    python -m train_jax.export --run outputs/RUN --out models/default [--opset 18]
        [--optimize basic|extended|none] [--se-gate blocked|broadcast] [--int8]

The graph: input ``image`` float32 [B, H, W, 3] (RGB 0..255, normalised inside), outputs ``probs``
[B, 3] (sigmoid), ``cam`` [B, 3, H, W] (CAM in [0, 1]) and ``severity`` [B, 4] (class
probabilities of the acne-severity grades 0-3 from the ordinal head,
``train_jax.models.ordinal``, or the lesion-count head, ``train_jax.models.count``); the batch
dimension is dynamic.
Every convolution is exported as a standard ``Conv`` node (``set_conv_impl(model, "conv")``;
depthwise as grouped ``Conv``). By default the graph is then optimised offline: onnxruntime's
portable ``basic`` level (constant folding, BatchNorm folded into the convs, layout transposes
cancelled) and the exact rewrites of ``train_jax.onnx_passes``; parity with JAX is checked on
the file that is written.

The model card's ``training_data`` names every training dataset (name, licence, attribution,
url, synthetic: from each input's datacard.json / dataset.json, also inside a `data.combine`
folder) and, per condition, which kinds of data had labels in the train split (``evidence``:
real, synthetic, real+synthetic or none), which the result JSON repeats per condition. The card
follows the one model-card schema of `fairness.model_card` (`make_model_card` with the exported
model's sections); the run's files are found through `data.run.Run`, the export folder's through
`data.run.ModelDir`.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from core import atomic
from core.schema import CONDITIONS, TRAINING_EVIDENCE
from data.run import ModelDir, Run
from fairness.flatten import report_cells
from fairness.model_card import (
    INPUT_NAME,
    DatacardError,
    ModelCardError,
    export_sections,
    make_model_card,
    read_model_card,
    write_model_card,
)

# Opset 17 is rejected: jax2onnx writes ReduceMean with axes as an input (an opset-18 form).
DEFAULT_OPSET = 18
PARITY_ATOL = 1e-4
# onnxruntime's offline "basic" level writes only standard ONNX ops, so the file stays portable
# (Triton's onnxruntime backend, other onnxruntime versions); "extended" adds com.microsoft ops.
DEFAULT_OPTIMIZE = "basic"
OPTIMIZE_LEVELS = ("none", "basic", "extended")
# Squeeze-excite excite step: "blocked" = ``Mul(x, Resize(gate))`` of equal shapes, which
# onnxruntime's NCHWc layout runs without reordering (train_jax.onnx_passes
# .excite_in_blocked_layout); "broadcast" = the plain ``Mul(x, gate [B, C, 1, 1])``. The blocked
# form is faster with 1-2 intra-op threads (docs/performance.md); onnxruntime 1.32 runs its
# NCHWc Upsample on one thread, so with many threads per onnxruntime session the broadcast
# form may win.
SE_GATES = {"blocked": (), "broadcast": ("excite_in_blocked_layout",)}  # form -> passes left out
DEFAULT_SE_GATE = "blocked"
SYNTHETIC_LABEL = "trained on synthetic data, demonstration only"
# Per condition, which kinds of data had labels in the train split (model card
# training_data.evidence; the result JSON's conditions.<cond>.evidence).
EVIDENCE_VALUES = TRAINING_EVIDENCE
EVIDENCE_PHRASES = {
    "real": "real photos only",
    "synthetic": "synthetic data only",
    "real+synthetic": "real photos and synthetic data",
    "none": "no labels in the training data",
}
DATASET_INFO = "dataset.json"
REPO_ROOT = Path(__file__).resolve().parents[1]
OUTPUT_NAMES = ("probs", "cam", "severity", "features")


class ExportError(RuntimeError):
    """The export or its parity check failed."""


def write_onnx(
    fn,
    path: Path,
    *,
    input_size: int,
    output_names: list[str] | tuple[str, ...] = OUTPUT_NAMES,
    opset: int = DEFAULT_OPSET,
    optimize: str | None = DEFAULT_OPTIMIZE,
    se_gate: str = DEFAULT_SE_GATE,
) -> dict[str, int]:
    """jax2onnx export of ``fn`` ([B, S, S, 3] -> outputs), then the offline clean-up.

    With ``optimize`` ("basic" or "extended") onnxruntime's graph optimisations run offline
    (constant folding, Conv+BatchNorm fusion, the transpose optimiser) and then the exact
    rewrites of ``train_jax.onnx_passes``; returns the rewrites per pass ({} without).
    ``se_gate="broadcast"`` leaves out ``excite_in_blocked_layout`` (see SE_GATES).
    """
    import onnx
    from jax2onnx import to_onnx

    from train_jax.onnx_passes import simplify

    if se_gate not in SE_GATES:
        raise ValueError(f"se_gate must be one of {sorted(SE_GATES)}, got {se_gate!r}")

    path = Path(path)
    raw = path if not optimize else path.with_name(path.stem + ".raw.onnx")
    to_onnx(
        fn,
        [("B", input_size, input_size, 3)],
        opset=opset,
        return_mode="file",
        output_path=str(raw),
        input_names=[INPUT_NAME],
        output_names=list(output_names),
        model_name="skin_classifier",
    )
    if not optimize:
        return {}
    optimized = optimize_onnx(raw, path.with_name(path.stem + ".opt.onnx"), level=optimize)
    model = onnx.load(str(optimized))
    rewrites = simplify(model, skip=SE_GATES[se_gate])
    onnx.checker.check_model(model)
    tmp = path.with_name(path.name + ".tmp")
    onnx.save(model, str(tmp))
    os.replace(tmp, path)
    raw.unlink()
    optimized.unlink()
    return rewrites


def with_cam_and_severity(model):
    """``x -> (probs, cam, severity, features)``: `train_jax.cam.with_cam` plus the severity
    probabilities and the pooled features the head sees (for the out-of-distribution score,
    client/ood.py), from one pass through the features (what the exported graph computes)."""
    import jax
    import jax.numpy as jnp

    from train_jax.cam import CamModel, class_activation_map, normalize_maps, upsample_maps
    from train_jax.models.ordinal import severity_probs

    # CamModel's forward pass (its checks and cell alignment too), plus the severity output.
    class ServingModel(CamModel):
        def __call__(self, x):
            feats = self.model.features(x).astype(jnp.float32)
            pooled = jnp.mean(feats, axis=(1, 2))
            logits = self.model.head(pooled)
            kernel = self.model.head.kernel[...].astype(jnp.float32)
            cam = upsample_maps(class_activation_map(feats, kernel), x.shape[1:3], self.align)
            severity = severity_probs(self.model.severity_from_features(feats))
            probs = jax.nn.sigmoid(logits.astype(jnp.float32))
            return probs, normalize_maps(cam), severity, pooled

    return ServingModel(model)


def export_cam_onnx(
    model,
    path: Path,
    *,
    input_size: int,
    opset: int = DEFAULT_OPSET,
    optimize: str | None = DEFAULT_OPTIMIZE,
    se_gate: str = DEFAULT_SE_GATE,
) -> Path:
    """Write ``with_cam_and_severity(model)`` to ``path`` as ONNX with a dynamic batch (outputs
    ``probs``, ``cam``, ``severity``, ``features``); returns the path.

    Every conv is exported as a standard ``Conv`` node (``set_conv_impl(model, "conv")``, which
    switches the model in place; outputs are unchanged).
    """
    from train_jax.models import set_conv_impl

    set_conv_impl(model, "conv")
    model.eval()
    write_onnx(
        with_cam_and_severity(model),
        path,
        input_size=input_size,
        opset=opset,
        optimize=optimize,
        se_gate=se_gate,
    )
    return Path(path)


def check_parity(
    model, onnx_path: Path, *, input_size: int, num_images: int = 3, seed: int = 0
) -> dict[str, float]:
    """Max |ONNX - JAX| on probs, cam, severity and features for random 0..255 images; raises
    ExportError above 1e-4. The JAX side is `train_jax.cam.with_cam`, the model's own
    `severity_probs` and the mean of its `features`, not the exported wrapper, so the check
    covers the wrapper too."""
    import onnxruntime as ort

    from train_jax.cam import with_cam

    x = np.random.default_rng(seed).uniform(0, 255, (num_images, input_size, input_size, 3))
    x = x.astype(np.float32)
    jax_probs, jax_cam = with_cam(model)(x)
    jax_severity = model.severity_probs(x)
    jax_features = np.asarray(model.features(x), np.float32).mean(axis=(1, 2))
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    onnx_probs, onnx_cam, onnx_severity, onnx_features = session.run(
        list(OUTPUT_NAMES), {INPUT_NAME: x}
    )
    diffs = {
        "probs": float(np.abs(onnx_probs - np.asarray(jax_probs)).max()),
        "cam": float(np.abs(onnx_cam - np.asarray(jax_cam)).max()),
        "severity": float(np.abs(onnx_severity - np.asarray(jax_severity)).max()),
        "features": float(np.abs(onnx_features - jax_features).max()),
    }
    if max(diffs.values()) > PARITY_ATOL:
        raise ExportError(f"ONNX differs from JAX by more than {PARITY_ATOL}: {diffs}")
    return diffs


def optimize_onnx(src: Path, dst: Path, *, level: str = "basic") -> Path:
    """Run onnxruntime's graph optimisations offline (basic = portable across machines)."""
    import onnxruntime as ort

    levels = {
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    }
    if level not in levels:
        raise ValueError(f"optimisation level must be one of {sorted(levels)}, got {level!r}")
    options = ort.SessionOptions()
    options.graph_optimization_level = levels[level]
    options.optimized_model_filepath = str(dst)
    ort.InferenceSession(str(src), options, providers=["CPUExecutionProvider"])
    return Path(dst)


def file_digest(path: Path) -> str:
    """First 12 hex digits of the file's SHA-256: the model version."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]


def training_evidence(frame, synthetic_rows, *, split: str = "train") -> dict[str, str]:
    """Per condition, which kinds of rows of ``split`` have a label: real, synthetic,
    real+synthetic or none (an empty or NaN label is unknown; no ``split`` column = all rows).

    >>> import pandas as pd
    >>> frame = pd.DataFrame({"acne": [1, "0", 1], "hyperpigmentation": ["", 0, None],
    ...                       "wrinkles": ["", "", 1], "split": ["train", "train", "val"]})
    >>> training_evidence(frame, [False, True, True])
    {'acne': 'real+synthetic', 'hyperpigmentation': 'synthetic', 'wrinkles': 'none'}
    """
    import pandas as pd

    synthetic = np.asarray(synthetic_rows, bool).reshape(-1)
    if synthetic.shape[0] != len(frame):
        raise ValueError(f"synthetic_rows has {synthetic.shape[0]} rows, the frame {len(frame)}")
    rows = np.ones(len(frame), bool)
    if "split" in frame:
        rows = (frame["split"].astype(str) == split).to_numpy()
    out = {}
    for cond in CONDITIONS:
        known = rows.copy()
        if cond in frame:
            known &= pd.to_numeric(frame[cond], errors="coerce").notna().to_numpy()
        else:
            known[:] = False
        kinds = [
            kind
            for kind, has in (("real", known & ~synthetic), ("synthetic", known & synthetic))
            if has.any()
        ]
        out[cond] = "+".join(kinds) or "none"
    return out


def _kind_of_rows(synthetic: np.ndarray) -> str:
    """real, synthetic, real+synthetic or none: the kinds among rows (True = synthetic)."""
    kinds = [k for k, has in (("real", ~synthetic), ("synthetic", synthetic)) if has.any()]
    return "+".join(kinds) or "none"


def _json_object(path: Path) -> dict:
    """The JSON object in `path`; {} when the file is missing or holds something else."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def find_data_dir(dataset: str | os.PathLike | None) -> Path | None:
    """The folder holding the training metadata.csv: as written, else under the repository."""
    if dataset is None:
        return None
    for folder in (Path(dataset), REPO_ROOT / dataset):
        if (folder / "metadata.csv").is_file():
            return folder
    return None


def _dataset_parts(data_dir: Path, frame, info: dict) -> list[tuple[str, Path | None, np.ndarray]]:
    """(name, folder, row mask) of each input dataset: the inputs of a combined dataset
    (`data.combine`: rows under ``<input>/``), else one per ``source`` with a folder of its
    own (combined before dataset.json listed them), else the whole folder."""
    combined = info.get("combined")
    if isinstance(combined, list) and "image" in frame:
        prefix = frame["image"].astype(str).str.split("/", n=1).str[0]
        present = list(dict.fromkeys(prefix))
        names = [n for n in combined if n in present] + [n for n in present if n not in combined]
        return [(n, data_dir / n, (prefix == n).to_numpy()) for n in names]
    if "source" in frame:
        sources = list(dict.fromkeys(frame["source"].astype(str)))
        if len(sources) > 1 and all((data_dir / s).is_dir() for s in sources):
            return [(s, data_dir / s, (frame["source"] == s).to_numpy()) for s in sources]
    return [(data_dir.name, data_dir, np.ones(len(frame), bool))]


def _dataset_entry(name: str, folder: Path | None, sources: list[str], parent: dict) -> dict:
    """One training dataset: name, licence, attribution, url from its datacard (else its
    dataset.json, else the folder name) and whether it is synthetic (dataset.json's
    ``synthetic``, else every row's ``source`` names the synthetic generator)."""
    from fairness.model_card import DATACARD_NAMES, read_datacard

    card: dict = {}
    if folder is not None and any((folder / n).is_file() for n in DATACARD_NAMES):
        card = read_datacard(folder)  # DatacardError names the file and field
    info = _json_object(folder / DATASET_INFO) if folder is not None else {}
    synthetic = info.get("synthetic")
    if not isinstance(synthetic, bool):
        synthetic = ((parent.get("inputs") or {}).get(name) or {}).get("synthetic")
    if not isinstance(synthetic, bool):
        synthetic = bool(sources) and all("synth" in s.lower() for s in sources)

    # dataset.json keeps a YOLO export's own licence and url in its `roboflow` block.
    export_info = info.get("roboflow") if isinstance(info.get("roboflow"), dict) else {}

    def pick(*keys: str) -> str | None:
        for key in keys:
            value = card.get(key) or info.get(key) or export_info.get(key)
            if isinstance(value, str) and value.strip():
                return value.strip()
        return None

    return {
        "name": pick("name") or name,
        "folder": name,
        "licence": pick("licence", "license"),
        "attribution": pick("attribution"),
        "url": pick("url"),
        "synthetic": synthetic,
    }


def training_note(datasets: list[dict], evidence: dict[str, str] | None) -> str:
    """One line: which real and synthetic datasets, and the conditions whose labels come
    from fewer kinds of data than the whole set."""

    def names(entries: list[dict]) -> str:
        return "; ".join(
            f"{d['name']}, {d['licence']}" if d.get("licence") else d["name"] for d in entries
        )

    real = [d for d in datasets if not d["synthetic"]]
    synthetic = [d for d in datasets if d["synthetic"]]
    parts = ([f"real photos ({names(real)})"] if real else []) + (
        [f"synthetic faces ({names(synthetic)})"] if synthetic else []
    )
    note = "trained on " + " and ".join(parts)
    overall = "+".join(k for k, ds in (("real", real), ("synthetic", synthetic)) if ds)
    by_kind: dict[str, list[str]] = {}
    for cond in CONDITIONS:
        kind = (evidence or {}).get(cond, overall)
        if kind != overall:
            by_kind.setdefault(kind, []).append(cond)
    for kind, conds in by_kind.items():
        note += f"; {', '.join(conds)}: {EVIDENCE_PHRASES.get(kind, kind)}"
    return note if real else note + ", demonstration only"


def describe_training_data(data_dir: Path) -> dict:
    """The model card's ``training_data`` from a canonical dataset folder (combined or not).

    ``datasets``: one entry per input (`_dataset_entry`); ``synthetic``: all of them are;
    ``evidence``: `training_evidence` of the train split, a row's kind being its dataset's;
    ``test_split``: the kinds of the test rows (what the card's metrics are measured on).
    """
    import pandas as pd

    data_dir = Path(data_dir)
    frame = pd.read_csv(data_dir / "metadata.csv", dtype=str, keep_default_na=False)
    info = _json_object(data_dir / DATASET_INFO)
    datasets, synthetic_rows = [], np.zeros(len(frame), bool)
    for name, folder, mask in _dataset_parts(data_dir, frame, info):
        sources = sorted(set(frame.loc[mask, "source"])) if "source" in frame else []
        entry = _dataset_entry(name, folder, sources, info)
        synthetic_rows[mask] = entry["synthetic"]
        datasets.append(entry)
    evidence = training_evidence(frame, synthetic_rows)
    test = (frame["split"] == "test").to_numpy() if "split" in frame else np.zeros(len(frame), bool)
    return {
        "dataset": str(data_dir),
        "synthetic": all(d["synthetic"] for d in datasets),
        "datasets": datasets,
        "evidence": evidence,
        "test_split": _kind_of_rows(synthetic_rows[test]),
        "note": training_note(datasets, evidence),
    }


def make_training_data(dataset: str | None) -> dict:
    """`describe_training_data` of the named folder; without one, what its name says (a name
    with "synth", or no name, counts as synthetic) and no evidence."""
    data_dir = find_data_dir(dataset)
    if data_dir is not None:
        return describe_training_data(data_dir) | {"dataset": dataset}
    synthetic = dataset is None or "synth" in str(dataset).lower()
    name = Path(str(dataset)).name if dataset is not None else "unknown"
    entry = {"name": name, "folder": name, "licence": None, "attribution": None, "url": None}
    return {
        "dataset": dataset,
        "synthetic": synthetic,
        "datasets": [entry | {"synthetic": synthetic}],
        "evidence": None,
        "test_split": None,
        "note": SYNTHETIC_LABEL if synthetic else "see the training run",
    }


def compact_metrics(report: dict) -> dict:
    """Per condition and group: n, F1, AUROC from a fairness metrics.json (on the split it
    evaluated: test, or val with cross-fitted thresholds when the data has no test split;
    `fairness.flatten.report_cells`), the evaluation method, and the summary."""
    split = report.get("evaluated_split", "test")
    evaluation = report.get("evaluation")
    block = report.get(split, report)
    per_group = report_cells(block, ("n", "f1", "auroc"))
    out = {"split": split, "per_group": per_group, "summary": block.get("summary")}
    return out | ({"evaluation": evaluation} if evaluation else {})


def severity_head_kind(model) -> str:
    """Which head gives `model`'s severity output: "count" or "ordinal"."""
    from train_jax.models.count import CountHead

    return "count" if isinstance(model.severity_head, CountHead) else "ordinal"


def onnx_output_width(path: Path, name: str) -> int | None:
    """The last dimension of output `name` of an ONNX model (None: no such output)."""
    import onnx

    for output in onnx.load(str(path), load_external_data=False).graph.output:
        if output.name == name:
            return int(output.type.tensor_type.shape.dim[-1].dim_value) or None
    return None


def exported_model_card(
    *,
    architecture: str,
    input_size: int,
    opset: int,
    version: str,
    dataset: str | None,
    metrics: dict | None,
    run: str | None,
    parity: dict[str, float] | None,
    normalisation: str,
    model_info: dict | None = None,
    training: dict | None = None,
    training_data: dict | None = None,
    feature_dim: int | None = None,
    graph_optimisation: str | None = None,
    severity_head: str = "ordinal",
) -> dict:
    """The card stored beside model.onnx: `fairness.model_card.make_model_card` with the
    exported model's sections (`export_sections`; docs/architecture.md, "Exported model").

    ``training_data`` is `make_training_data(dataset)` unless given; ``feature_dim`` is the
    width of the ``features`` output (None: the model has none); ``severity_head`` the head
    behind the ``severity`` output (`severity_head_kind`).
    """
    if training_data is None:
        training_data = make_training_data(dataset)
    synthetic = bool(training_data["synthetic"]) or training_data.get("test_split") == "synthetic"
    return make_model_card(
        name=f"{architecture}-{Path(str(dataset or 'unknown')).name}",
        version=version,
        model=model_info or {"name": architecture},
        training=training,
        training_data=training_data,
        export=export_sections(
            architecture=architecture,
            input_size=input_size,
            opset=opset,
            normalisation=normalisation,
            parity=parity,
            metrics=metrics,
            measured_on_synthetic=synthetic,
            run=run,
            graph_optimisation=graph_optimisation,
            feature_dim=feature_dim,
            severity_head=severity_head,
        ),
    )


@dataclasses.dataclass(frozen=True)
class ExportResult:
    """What export_run wrote."""

    model_path: Path
    card_path: Path
    parity: dict[str, float]
    card: dict


def export_model(
    model,
    out_dir: Path,
    *,
    architecture: str,
    input_size: int,
    opset: int = DEFAULT_OPSET,
    dataset: str | None = None,
    metrics: dict | None = None,
    run: str | None = None,
    optimize: str | None = DEFAULT_OPTIMIZE,
    se_gate: str = DEFAULT_SE_GATE,
    training: dict | None = None,
    training_data: dict | None = None,
    model_info: dict | None = None,
) -> ExportResult:
    """Export (offline-optimised unless ``optimize`` is None), check parity, write the card.

    ``training_data`` (the card's block) is `make_training_data(dataset)` unless given; it is
    read first, so a bad datacard fails before the export. ``model_info``: the card's
    ``model`` (`data.run.Run.model_info`; default: the architecture's name).
    """
    if training_data is None:
        training_data = make_training_data(dataset)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".export-") as tmp:
        final = export_cam_onnx(
            model,
            Path(tmp) / "model.onnx",
            input_size=input_size,
            opset=opset,
            optimize=optimize,
            se_gate=se_gate,
        )
        parity = check_parity(model, final, input_size=input_size)
        for extra in Path(tmp).glob("*.data"):
            os.replace(extra, out_dir / extra.name)
        os.replace(final, out_dir / "model.onnx")
    from train_jax.models.input_norm import describe

    card = exported_model_card(
        architecture=architecture,
        input_size=input_size,
        opset=opset,
        feature_dim=onnx_output_width(out_dir / "model.onnx", "features"),
        version=file_digest(out_dir / "model.onnx"),
        dataset=dataset,
        metrics=metrics,
        run=run,
        parity=parity,
        model_info=model_info,
        training=training,
        training_data=training_data,
        normalisation=describe(getattr(model, "input_norm", "imagenet")),
        severity_head=severity_head_kind(model),
        graph_optimisation=(
            f"onnxruntime {optimize} + train_jax/onnx_passes.py"
            + "".join(f" without {name}" for name in SE_GATES[se_gate])
            if optimize
            else None
        ),
    )
    _, card_path = write_model_card(card, out_dir, markdown=False)
    return ExportResult(out_dir / "model.onnx", card_path, parity, card)


def export_run(
    run_dir: Path,
    out_dir: Path,
    *,
    report_dir: Path | None = None,
    opset: int = DEFAULT_OPSET,
    optimize: str | None = DEFAULT_OPTIMIZE,
    se_gate: str = DEFAULT_SE_GATE,
) -> ExportResult:
    """Export the best checkpoint of a run; copies thresholds.json from its fairness report.

    The report is `python -m fairness.report --predictions RUN --out REPORT` (default
    RUN/fairness); its test metrics per group go into the model card.
    """
    from train_jax.checkpoints import load_model

    run = Run(run_dir, report=report_dir)
    if not run.root.is_dir():
        raise FileNotFoundError(f"training run not found: {run.root}")
    model, config = load_model(run.root)
    dataset = config.data.data_dir or config.data.generate_preset or None
    thresholds, metrics_path = run.report_files()
    metrics = compact_metrics(run.evaluated_report() or {}) if metrics_path else None
    result = export_model(
        model,
        out_dir,
        architecture=str(config.model.name),
        input_size=int(config.model.image_size),
        opset=opset,
        dataset=None if dataset is None else str(dataset),
        metrics=metrics,
        run=str(run.root),
        optimize=optimize,
        se_gate=se_gate,
        training=run.training_recipe(),
        model_info=run.model_info(),
    )
    if thresholds is not None:
        atomic.copy_file(thresholds, ModelDir(out_dir).thresholds_path)
    else:
        print(
            f"warning: no thresholds.json for {run.root}; run python -m fairness.report "
            f"--predictions {run.root} --out {run.fairness_dir}",
            file=sys.stderr,
        )
    return result


def _split_crops(data_dir: Path, split: str, size: int, limit: int):
    """Serving-path crops (client.steps) of one split: (crops [N,S,S,3], labels [N,3], groups)."""
    import pandas as pd

    from client.runner import face_steps
    from client.steps import decode_step
    from core.schema import fitzpatrick_to_group
    from preprocessing.face_detect import FaceDetector
    from preprocessing.landmarks import LandmarkModel

    df = pd.read_csv(data_dir / "metadata.csv")
    df = df[df["split"] == split].head(limit)
    detector, landmark_model = FaceDetector(), LandmarkModel()
    crops, labels, groups = [], [], []
    for row in df.itertuples():
        decoded = decode_step((data_dir / row.image).read_bytes())
        faces = face_steps(decoded, detector, landmark_model, size=size)
        if faces.num_faces:
            crops.append(faces.crops[0])
            labels.append([getattr(row, c) for c in CONDITIONS])
            fitz = None if pd.isna(row.fitzpatrick) else int(row.fitzpatrick)
            groups.append(fitzpatrick_to_group(fitz))
    return np.stack(crops).astype(np.float32), np.asarray(labels, np.float64), groups


def per_group_f1(labels, probs, groups, thresholds) -> dict:
    """F1 per condition and group (and overall) with the per-group thresholds applied."""
    from core.thresholds import apply_thresholds
    from fairness.metrics import f1

    decisions, _ = apply_thresholds(probs, groups, thresholds)
    g = np.asarray([x or "" for x in groups])
    out: dict = {}
    for c, cond in enumerate(CONDITIONS):
        out[cond] = {"overall": f1(labels[:, c], decisions[:, c])}
        for name in sorted(set(g) - {""}):
            out[cond][name] = f1(labels[g == name, c], decisions[g == name, c])
    return out


# Static QDQ settings that came out best on `baseline_bce`, the small CNN quantized in
# docs/performance.md ("INT8"):
# uint8 activations let onnxruntime fuse every Conv/Sigmoid/Mul/Add into QLinear* kernels (with
# int8 activations most convs stayed float between Q/DQ pairs); one Q/DQ pair per consumer
# (DedicatedQDQPair) is what the fusion needs when a tensor feeds Sigmoid and Mul (swish).
INT8_OPTIONS = {
    "per_channel": True,
    "calibration": "MinMax",
    "activations": "QUInt8",
    "weights": "QInt8",
    "extra_options": {"DedicatedQDQPair": True},
}
MAX_F1_DROP = 0.01


def max_f1_drop(f1_float: dict, f1_int8: dict) -> tuple[float, str | None]:
    """Largest F1(float) - F1(int8) over conditions x groups (NaN cells skipped), and its cell."""
    drops = {
        f"{c}/{g}": f1_float[c][g] - f1_int8[c][g]
        for c in f1_float
        for g in f1_float[c]
        if not (np.isnan(f1_float[c][g]) or np.isnan(f1_int8[c][g]))
    }
    if not drops:
        return float("nan"), None
    worst = max(drops, key=drops.get)
    return float(drops[worst]), worst


def compare_speed(
    paths: dict[str, Path], *, input_size: int, batches=(1, 32), repeats=(50, 5)
) -> dict[str, dict[str, float]]:
    """Median ms per batch of each ONNX file, run interleaved in this process (CPU)."""
    import time

    import onnxruntime as ort

    sessions = {
        k: ort.InferenceSession(str(p), providers=["CPUExecutionProvider"])
        for k, p in paths.items()
    }
    out: dict[str, dict[str, float]] = {}
    for batch, reps in zip(batches, repeats, strict=True):
        x = np.random.default_rng(0).uniform(0, 255, (batch, input_size, input_size, 3))
        feed = {INPUT_NAME: x.astype(np.float32)}
        times: dict[str, list[float]] = {k: [] for k in sessions}
        for sess in sessions.values():
            sess.run(None, feed)
        for _ in range(reps):
            for k, sess in sessions.items():
                t0 = time.perf_counter()
                sess.run(None, feed)
                times[k].append((time.perf_counter() - t0) * 1000)
        out[str(batch)] = {k: float(np.median(v)) for k, v in times.items()}
    return out


def quantize_int8(
    model_dir: Path, data_dir: Path, *, num_calibration: int = 10_000, num_eval: int = 10_000
) -> dict:
    """Static QDQ INT8 (per channel) calibrated on validation crops; compare per-group F1.

    The float model is first put through the offline clean-up (BatchNorm folded into the convs,
    so each conv is quantized once with its BatchNorm; a no-op on a default export). Writes
    model.int8.onnx beside model.onnx. It replaces model.onnx only if no per-group F1 (any
    condition) drops by more than 0.01 on the test split; returns the numbers either way,
    with the median ms per batch of both models at batch 1 and 32.
    """
    from core.thresholds import load_thresholds

    exported, data_dir = ModelDir(model_dir), Path(data_dir)
    size = int(read_model_card(exported.card_path)["input_size"])
    calib, _, _ = _split_crops(data_dir, "val", size, num_calibration)
    int8_path = exported.int8_path
    _write_int8(exported.model_path, int8_path, calib)
    crops, labels, groups = _split_crops(data_dir, "test", size, num_eval)
    thresholds = load_thresholds(exported.thresholds_path)
    paths = {"float32": exported.model_path, "int8": int8_path}
    probs = {name: _onnx_probs(path, crops) for name, path in paths.items()}
    scores = {name: per_group_f1(labels, p, groups, thresholds) for name, p in probs.items()}
    max_drop, worst = max_f1_drop(scores["float32"], scores["int8"])
    adopted = worst is not None and max_drop <= MAX_F1_DROP
    return {
        "int8_model": str(int8_path),
        "settings": INT8_OPTIONS,
        "num_calibration_faces": len(calib),
        "num_test_faces": len(crops),
        "f1": scores,
        "max_f1_drop": max_drop,
        "worst_cell": worst,
        "max_abs_prob_diff": float(np.abs(probs["float32"] - probs["int8"]).max()),
        "speed_ms_per_batch": compare_speed(paths, input_size=size),
        "adopted_as_default": adopted,
    }


def _calibration_reader(calib: np.ndarray) -> Any:
    """An onnxruntime `CalibrationDataReader` feeding `calib` one image at a time."""
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(calib[i : i + 1] for i in range(len(calib)))

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.batches, None)
            return None if batch is None else {INPUT_NAME: batch}

    return Reader()


def _write_int8(src: Path, dst: Path, calib: np.ndarray) -> None:
    """Fold and simplify the float model `src`, then write its QDQ INT8 form to `dst`."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    from train_jax.onnx_passes import simplify

    with tempfile.TemporaryDirectory(dir=dst.parent, prefix=".int8-") as tmp:
        folded = optimize_onnx(src, Path(tmp) / "folded.onnx")
        graph = onnx.load(str(folded))
        simplify(graph)
        onnx.save(graph, str(folded))
        quantize_static(
            str(folded),
            str(Path(tmp) / "int8.onnx"),
            _calibration_reader(calib),
            quant_format=QuantFormat.QDQ,
            per_channel=INT8_OPTIONS["per_channel"],
            calibrate_method=getattr(CalibrationMethod, INT8_OPTIONS["calibration"]),
            activation_type=getattr(QuantType, INT8_OPTIONS["activations"]),
            weight_type=getattr(QuantType, INT8_OPTIONS["weights"]),
            extra_options=dict(INT8_OPTIONS["extra_options"]),
        )
        os.replace(Path(tmp) / "int8.onnx", dst)


def _onnx_probs(path: Path, crops: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """The `probs` output of an ONNX model on `crops`, in batches (onnxruntime, CPU)."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.concatenate(
        [
            sess.run(["probs"], {INPUT_NAME: crops[i : i + batch_size]})[0]
            for i in range(0, len(crops), batch_size)
        ]
    )


def record_quantization(model_dir: Path, numbers: dict) -> None:
    """Put the INT8 comparison in the card; swap the INT8 model in only if it was adopted."""
    exported = ModelDir(model_dir)
    if numbers["adopted_as_default"]:
        os.replace(exported.model_path, exported.float32_path)
        os.replace(exported.int8_path, exported.model_path)
    card = read_model_card(exported.card_path)
    card["quantization"] = {k: v for k, v in numbers.items() if k != "int8_model"}
    card["version"] = file_digest(exported.model_path)
    write_model_card(card, exported.root, markdown=False)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; exit 0 ok, 2 bad input (incl. a bad datacard), 1 export failure."""
    parser = argparse.ArgumentParser(
        prog="python -m train_jax.export", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--run", type=Path, required=True, help="training run folder outputs/RUN")
    parser.add_argument("--out", type=Path, required=True, help="folder for model.onnx + card")
    parser.add_argument(
        "--report",
        type=Path,
        default=None,
        help="fairness report folder with thresholds.json + metrics.json (default RUN/fairness)",
    )
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET)
    parser.add_argument(
        "--optimize",
        choices=OPTIMIZE_LEVELS,
        default=DEFAULT_OPTIMIZE,
        help="onnxruntime graph optimisations run offline, then exact graph "
        "rewrites (train_jax/onnx_passes.py); 'none' keeps the raw "
        f"jax2onnx graph (default {DEFAULT_OPTIMIZE})",
    )
    parser.add_argument(
        "--se-gate",
        choices=sorted(SE_GATES),
        default=DEFAULT_SE_GATE,
        help="squeeze-excite gate form: 'blocked' (gate resized to the activation's shape, so "
        "onnxruntime's NCHWc layout runs the excite; faster with up to a few intra-op threads) "
        "or 'broadcast' (the plain broadcasting Mul). Both exact; no effect on models without "
        f"squeeze-excite (default {DEFAULT_SE_GATE})",
    )
    parser.add_argument(
        "--int8",
        action="store_true",
        help="also write model.int8.onnx (static QDQ, per channel) and compare",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    try:
        optimize = None if args.optimize == "none" else args.optimize
        result = export_run(
            args.run,
            args.out,
            report_dir=args.report,
            opset=args.opset,
            optimize=optimize,
            se_gate=args.se_gate,
        )
        summary = {
            "model": str(result.model_path),
            "card": str(result.card_path),
            "parity_max_abs_diff": result.parity,
        }
        if args.int8:
            data_dir = Path(Run(args.run).load_config()["data"]["data_dir"])
            summary["int8"] = quantize_int8(args.out, data_dir)
            record_quantization(args.out, summary["int8"])
    except (FileNotFoundError, DatacardError, ModelCardError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ExportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(summary))
    else:
        print(_summary_line(summary))
    return 0


def _summary_line(summary: dict[str, Any]) -> str:
    """The export result as one human-readable line (``--json`` prints the full document)."""
    parity = summary["parity_max_abs_diff"]
    worst = max(parity.values()) if isinstance(parity, dict) else parity
    line = (
        f"exported {summary['model']} (model card {summary['card']}); ONNX Runtime matches JAX "
        f"to {worst:.1e} (largest |difference| over outputs)"
    )
    int8 = summary.get("int8")
    if isinstance(int8, dict):
        line += (
            f"; int8: largest per-group F1 drop {int8['max_f1_drop']:.3f}, "
            f"adopted {int8['adopted_as_default']}"
        )
    return line


if __name__ == "__main__":
    sys.exit(main())
