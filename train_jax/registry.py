"""Pipeline results in MLflow and DVC: per-group metrics, plot tables, the ONNX model registry.

    python -m train_jax.registry evaluate --run outputs/pipeline \\
        --metrics-out outputs/pipeline/metrics/evaluate.json --plots-dir outputs/pipeline/plots
    python -m train_jax.registry register --run outputs/pipeline \\
        --model-dir outputs/pipeline/model --name skin-classifier --alias champion \\
        --metrics-out outputs/pipeline/metrics/export.json

`evaluate` flattens the fairness report (`RUN/fairness/metrics.json`, with
`fairness.flatten.flatten_report`) and the explanation report
(`RUN/explain/explain_test.json`) into one level of keys such as `eval/f1/V-VI/acne` (what
`dvc metrics show` lists), writes the per-epoch history and reliability curves as CSV (DVC
plots) and logs the same metrics to the training run's MLflow run. `register` logs the exported
ONNX model with `mlflow.onnx.log_model(..., registered_model_name=...)`, points the alias at the
new version and tags it (`model_arch`, `balance_skin_tones`, `skin_tone_groups`, `dataset`).

The MLflow run is the one the trainer opened (run name = run folder name, experiment from the
run's config.json); when there is none (trained with `--no-mlflow`, or a fresh store) one is
created with the same name and tags. Store: SQLite, `sqlite:///outputs/mlflow.db` by default.
Every MLflow call goes through `train_jax.tracking`; the run's and the exported model's paths
come from `data.run` (`Run`, `ModelDir`), and the model card is read and checked with
`fairness.model_card.read_model_card`.

Privacy: only metrics, params, tags, JSON reports, PNG plots of aggregate metrics and the model
are logged, by an explicit allow-list of file names; face images (e.g. the CAM example grids)
never go to MLflow.

Exit codes: 0 ok, 2 missing or bad input file, 3 MLflow error.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from core import atomic
from core.schema import CONDITIONS, GROUPS
from data.run import ModelDir, Run, read_json_object
from fairness.flatten import CELL_METRICS, estimate_value, flatten_report
from fairness.model_card import read_model_card
from train_jax import tracking

DEFAULT_URI = tracking.DEFAULT_URI
DEFAULT_MODEL_NAME = "skin-classifier"
DEFAULT_ALIAS = "champion"
EXIT_INPUT, EXIT_MLFLOW = 2, 3
# Files of the fairness report that may be logged: aggregate numbers and plots only.
FAIRNESS_ARTIFACTS = tracking.FAIRNESS_ARTIFACTS
HISTORY_CSV, RELIABILITY_CSV = "history.csv", "reliability.csv"
RELIABILITY_COLUMNS = [
    "condition",
    "group",
    "bin_center",
    "mean_predicted",
    "fraction_positive",
    "count",
]
RegistryError = tracking.TrackingError  # an MLflow failure, naming the store and the step


# --------------------------------------------------------------------------- pure functions


def _value(estimate: Any) -> float | None:
    """The number of a report estimate ({"value": ...} or a bare number); None if missing."""
    return estimate_value(estimate)


def _put(out: dict[str, float], key: str, estimate: Any) -> None:
    value = _value(estimate)
    if value is not None:
        out[key] = value


def fairness_metrics(report: Mapping[str, Any], prefix: str = "eval") -> dict[str, float]:
    """Flat per-group metrics of a fairness report's evaluated block (per-group thresholds):
    `fairness.flatten.flatten_report` (values only).

    Keys: `eval/<summary>` (macro_f1, worst_group_f1, gap_dark_vs_medium_f1, f1/<cond>,
    f1/<group>), `eval/<metric>/<group|overall>/<cond>` for F1, recall, precision and AUROC, and
    `eval/gap/<cond>/<gap>`. Cells with insufficient evidence (null) are left out. (`eval/`, not
    `test/`: the trainer logs `test/...` at a fixed 0.5 threshold into the same MLflow run.)

    >>> cell = {"f1": {"value": 0.5}, "auroc": {"value": None}}
    >>> report = {"summary": {"macro_f1": {"value": 0.7}},
    ...           "conditions": {"acne": {"overall": cell, "by_group": {"V-VI": cell}}}}
    >>> fairness_metrics(report)
    {'eval/macro_f1': 0.7, 'eval/f1/overall/acne': 0.5, 'eval/f1/V-VI/acne': 0.5}
    """
    return flatten_report(report, prefix, metrics=CELL_METRICS)


def explain_metrics(report: Mapping[str, Any], prefix: str = "explain") -> dict[str, float]:
    """Flat explanation metrics: pointing game and energy in mask per group and condition,
    their spread across groups, and the deletion / insertion ratios per condition.

    >>> loc = {"acne": {"pointing_game": {"overall": {"value": 0.25}, "by_group": {},
    ...                                   "spread": 0.1}}}
    >>> explain_metrics({"localisation": loc, "faithfulness": {"acne": {"deletion_ratio": 0.6}}})
    {'explain/pointing_game/overall/acne': 0.25, 'explain/pointing_game/spread/acne': 0.1, \
'explain/deletion_ratio/acne': 0.6}
    """
    out: dict[str, float] = {}
    for cond, entry in (report.get("localisation") or {}).items():
        for name in ("pointing_game", "energy_in_mask"):
            block = entry.get(name)
            if not block:
                continue
            _put(out, f"{prefix}/{name}/overall/{cond}", block.get("overall"))
            for group, estimate in (block.get("by_group") or {}).items():
                _put(out, f"{prefix}/{name}/{group}/{cond}", estimate)
            _put(out, f"{prefix}/{name}/spread/{cond}", block.get("spread"))
    for cond, entry in (report.get("faithfulness") or {}).items():
        for name in ("deletion_ratio", "insertion_ratio"):
            _put(out, f"{prefix}/{name}/{cond}", entry.get(name))
    return out


def history_rows(train_metrics: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Per-epoch rows of a training run's metrics.json (`history`), numbers only, one column set.

    >>> history_rows({"history": [{"epoch": 1, "val/macro_f1": 0.5, "note": "x"}]})
    [{'epoch': 1, 'val/macro_f1': 0.5}]
    """
    rows = [
        {k: v for k, v in entry.items() if _value(v) is not None}
        for entry in train_metrics.get("history") or []
    ]
    columns = list(dict.fromkeys(k for row in rows for k in row))
    return [{c: row.get(c, "") for c in columns} for row in rows]


def reliability_rows(calibration: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Long table of the reliability curves of `calibration.json` (non-empty bins only):
    condition, group, bin centre, mean predicted probability, fraction positive, count."""
    rows = []
    for cond, by_group in (calibration.get("conditions") or {}).items():
        for group, entry in by_group.items():
            curve = entry.get("reliability") or {}
            edges = curve.get("bin_edges") or []
            for i, count in enumerate(curve.get("count") or []):
                predicted = curve["mean_predicted"][i]
                positive = curve["fraction_positive"][i]
                if not count or _value(predicted) is None or _value(positive) is None:
                    continue
                rows.append(
                    {
                        "condition": cond,
                        "group": group,
                        "bin_center": round((edges[i] + edges[i + 1]) / 2, 6),
                        "mean_predicted": predicted,
                        "fraction_positive": positive,
                        "count": int(count),
                    }
                )
    return rows


def model_tags(config: Mapping[str, Any], card: Mapping[str, Any] | None = None) -> dict[str, str]:
    """Registry tags of a model trained with `config` (config.json as a dict).

    >>> model_tags({"model": {"name": "small_cnn"}, "data": {"balance": "group",
    ...             "data_dir": "data/synthskin-v1"}})["skin_tone_groups"]
    'I-II,III-IV,V-VI'
    """
    model = config.get("model") or {}
    data = config.get("data") or {}
    dataset = Path(str(data.get("data_dir") or "unknown")).name
    synthetic = bool(((card or {}).get("training_data") or {}).get("synthetic", "synth" in dataset))
    return {
        "model_arch": str(model.get("name", "unknown")),
        "balance_skin_tones": str(data.get("balance", "none")),
        "skin_tone_groups": ",".join(GROUPS),
        "dataset": dataset,
        "synthetic_data": str(synthetic).lower(),
        "conditions": ",".join(CONDITIONS),
    }


# --------------------------------------------------------------------------- files


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from `path`; FileNotFoundError / ValueError name the file."""
    return read_json_object(path)


def _atomic(path: Path, write) -> Path:
    """Write what `write(handle)` writes to a text handle, atomically (`core.atomic`)."""
    buffer = io.StringIO(newline="")
    write(buffer)
    return atomic.write_text(path, buffer.getvalue())


def write_json(path: Path, payload: Mapping[str, Any]) -> Path:
    """Write JSON atomically (sorted keys: the same numbers give the same bytes)."""
    return _atomic(path, lambda f: f.write(json.dumps(payload, indent=2, sort_keys=True) + "\n"))


def write_csv(
    path: Path, rows: Iterable[Mapping[str, Any]], columns: list[str] | None = None
) -> Path:
    """Write rows as CSV atomically; columns default to the first row's keys (an empty table
    without `columns` writes an empty file)."""
    rows = list(rows)
    columns = columns or (list(rows[0]) if rows else [])

    def write(f) -> None:
        if columns:
            writer = csv.DictWriter(f, fieldnames=columns, lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)

    return _atomic(path, write)


# --------------------------------------------------------------------------- commands


def run_evaluate(args: argparse.Namespace) -> dict[str, Any]:
    """The `evaluate` command: metrics JSON, plot CSVs, MLflow metrics and report files."""
    run = Run(args.run, report=args.fairness)
    explain_path = Path(args.explain) if args.explain else run.explain_report("test")
    fairness = read_json(run.report_metrics_path)
    # The split the report evaluated: test, or val (cross-fitted) for data without a test split.
    metrics = fairness_metrics(fairness.get(fairness.get("evaluated_split", "test")) or {})
    if explain_path.is_file() or args.explain:
        metrics |= explain_metrics(read_json(explain_path))
    write_json(Path(args.metrics_out), metrics)
    summary: dict[str, Any] = {"metrics": str(args.metrics_out), "num_metrics": len(metrics)}
    if args.plots_dir:
        plots = Path(args.plots_dir)
        history = history_rows(read_json(run.metrics_path))
        reliability = reliability_rows(read_json(run.calibration_path))
        summary["plots"] = [
            str(write_csv(plots / HISTORY_CSV, history)),
            str(write_csv(plots / RELIABILITY_CSV, reliability, RELIABILITY_COLUMNS)),
        ]
    if not args.no_mlflow:
        folder = run.fairness_dir
        with tracking.mlflow_step(args.uri, "logging the evaluation"):
            run_id = tracking.find_or_create_run(args.uri, run, model_tags(run.load_config()))
            tracking.log_metrics(args.uri, run_id, metrics)
            files = [folder / n for n in FAIRNESS_ARTIFACTS if (folder / n).is_file()]
            logged = tracking.log_files(args.uri, run_id, files, "fairness")
            if explain_path.is_file():
                logged += tracking.log_files(args.uri, run_id, [explain_path], "explain")
        summary |= {"mlflow_run": run_id, "mlflow_artifacts": logged}
    return summary


def export_metrics(card: Mapping[str, Any]) -> dict[str, float]:
    """Flat numbers of an exported model's card: parity, and the per-group F1 / AUROC of its
    ``metrics.per_group`` (`fairness.flatten.flatten_report`).

    >>> export_metrics({"export_parity_max_abs_diff": {"probs": 1e-7},
    ...                 "metrics": {"per_group": {"acne": {"V-VI": {"f1": 0.5, "n": 9}}}}})
    {'export/parity_max_abs_diff/probs': 1e-07, 'eval/f1/V-VI/acne': 0.5}
    """
    parity = card.get("export_parity_max_abs_diff") or {}
    out = flatten_report({"summary": parity}, "export/parity_max_abs_diff")
    per_group = (card.get("metrics") or {}).get("per_group") or {}
    block = {"conditions": {c: {"by_group": cells} for c, cells in per_group.items()}}
    return out | flatten_report(block, "eval", metrics=("f1", "auroc"))


def run_register(args: argparse.Namespace) -> dict[str, Any]:
    """The `register` command: log + register the ONNX model, alias, tags, metrics JSON."""
    run, exported = Run(args.run), ModelDir(args.model_dir)
    model_path = exported.model_path
    if not model_path.is_file():
        raise FileNotFoundError(f"{model_path}: file not found (run python -m train_jax.export)")
    card = read_model_card(exported.card_path)
    config = run.load_config()
    metrics = export_metrics(card)
    metrics["export/model_bytes"] = float(model_path.stat().st_size)
    summary: dict[str, Any] = {"model": str(model_path), "version_sha256": card.get("version")}
    if not args.no_mlflow:
        tags = model_tags(config, card)
        extras = [p for p in (exported.card_path, exported.thresholds_path) if p.is_file()]
        with tracking.mlflow_step(args.uri, f"registering {model_path} as {args.name!r}"):
            run_id = tracking.find_or_create_run(args.uri, run, model_tags(config))
            summary |= tracking.register_onnx(
                args.uri,
                run_id,
                model_path,
                name=args.name,
                alias=args.alias,
                tags=tags,
                metrics=metrics,
                extra_files=extras,
            )
    if args.metrics_out:
        write_json(Path(args.metrics_out), metrics)
    return summary


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line flags."""
    p = argparse.ArgumentParser(
        prog="python -m train_jax.registry",
        description="Log pipeline metrics to MLflow and DVC, register the ONNX model. "
        "Exit codes: 0 ok, 2 bad input file, 3 MLflow error.",
    )
    sub = p.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--run", required=True, help="training run folder (outputs/RUN)")
    common.add_argument("--uri", default=DEFAULT_URI, help=f"MLflow store (default {DEFAULT_URI})")
    common.add_argument("--no-mlflow", action="store_true", help="write the files only")
    common.add_argument("--json", action="store_true", help="print the summary as JSON")

    ev = sub.add_parser("evaluate", parents=[common], help="per-group metrics of the reports")
    ev.add_argument("--fairness", help="fairness report folder (default RUN/fairness)")
    ev.add_argument("--explain", help="explain report JSON (default RUN/explain/explain_test.json)")
    ev.add_argument("--metrics-out", required=True, help="flat metrics JSON for DVC")
    ev.add_argument("--plots-dir", help="write history.csv and reliability.csv here")

    reg = sub.add_parser("register", parents=[common], help="register the exported ONNX model")
    reg.add_argument("--model-dir", required=True, help="folder with model.onnx + model_card.json")
    reg.add_argument("--name", default=DEFAULT_MODEL_NAME, help="registered model name")
    reg.add_argument("--alias", default=DEFAULT_ALIAS, help="alias set on the new version")
    reg.add_argument("--metrics-out", help="flat metrics JSON for DVC")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit code."""
    args = parse_args(argv)
    command = run_evaluate if args.command == "evaluate" else run_register
    try:
        summary = command(args)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_INPUT
    except RegistryError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_MLFLOW
    print(json.dumps(summary, indent=2 if args.json else None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
