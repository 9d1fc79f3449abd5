"""Pipeline results in MLflow and DVC: per-group metrics, plot tables, the ONNX model registry.

    python -m train_jax.registry evaluate --run outputs/pipeline \\
        --metrics-out outputs/pipeline/metrics/evaluate.json --plots-dir outputs/pipeline/plots
    python -m train_jax.registry register --run outputs/pipeline \\
        --model-dir outputs/pipeline/model --name skin-classifier --alias champion \\
        --metrics-out outputs/pipeline/metrics/export.json

`evaluate` flattens the fairness report (`RUN/fairness/metrics.json`) and the explanation report
(`RUN/explain/explain_test.json`) into one level of keys such as `eval/f1/V-VI/acne` (what
`dvc metrics show` lists), writes the per-epoch history and reliability curves as CSV (DVC
plots) and logs the same metrics to the training run's MLflow run. `register` logs the exported
ONNX model with `mlflow.onnx.log_model(..., registered_model_name=...)`, points the alias at the
new version and tags it (`model_arch`, `balance_skin_tones`, `skin_tone_groups`, `dataset`).

The MLflow run is the one the trainer opened (run name = run folder name, experiment from the
run's config.json); when there is none (trained with `--no-mlflow`, or a fresh store) one is
created with the same name and tags. Store: SQLite, `sqlite:///outputs/mlflow.db` by default.

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
import math
import sys
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from data import atomic
from data.schema import CONDITIONS, GROUPS

DEFAULT_URI = "sqlite:///outputs/mlflow.db"
DEFAULT_MODEL_NAME = "skin-classifier"
DEFAULT_ALIAS = "champion"
EXIT_INPUT, EXIT_MLFLOW = 2, 3
# Metrics of each per-group cell of the fairness report that go to DVC and MLflow.
CELL_METRICS = ("f1", "recall", "precision", "auroc")
# Files of the fairness report that may be logged: aggregate numbers and plots only.
FAIRNESS_ARTIFACTS = (
    "metrics.json",
    "thresholds.json",
    "calibration.json",
    "model_card.json",
    "model_card.md",
    "report.html",
    "group_metrics.png",
    "roc.png",
    "reliability.png",
    "coverage.png",
)
HISTORY_CSV, RELIABILITY_CSV = "history.csv", "reliability.csv"
RELIABILITY_COLUMNS = [
    "condition",
    "group",
    "bin_center",
    "mean_predicted",
    "fraction_positive",
    "count",
]


class RegistryError(RuntimeError):
    """Talking to MLflow failed; the message names the store and the step."""


@contextmanager
def mlflow_step(uri: str, what: str) -> Iterator[None]:
    """Turn any failure inside MLflow into a `RegistryError` naming the store and the step."""
    try:
        yield
    except RegistryError:
        raise
    except Exception as err:  # noqa: BLE001 - MLflow and SQLAlchemy raise many kinds
        raise RegistryError(f"MLflow store {uri}: {what}: {err}") from err


# --------------------------------------------------------------------------- pure functions


def _value(estimate: Any) -> float | None:
    """The number of a report estimate ({"value": ...} or a bare number); None if missing."""
    if isinstance(estimate, Mapping):
        estimate = estimate.get("value")
    if isinstance(estimate, bool) or not isinstance(estimate, int | float):
        return None
    return float(estimate) if math.isfinite(estimate) else None


def _put(out: dict[str, float], key: str, estimate: Any) -> None:
    value = _value(estimate)
    if value is not None:
        out[key] = value


def fairness_metrics(report: Mapping[str, Any], prefix: str = "eval") -> dict[str, float]:
    """Flat per-group metrics of a fairness report's `test` block (per-group thresholds).

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
    out: dict[str, float] = {}
    for key, estimate in (report.get("summary") or {}).items():
        _put(out, f"{prefix}/{key}", estimate)
    for cond, entry in (report.get("conditions") or {}).items():
        cells = {"overall": entry.get("overall") or {}, **(entry.get("by_group") or {})}
        for metric in CELL_METRICS:
            for group, cell in cells.items():
                _put(out, f"{prefix}/{metric}/{group}/{cond}", cell.get(metric))
        for gap, estimate in (entry.get("gaps") or {}).items():
            _put(out, f"{prefix}/gap/{cond}/{gap}", estimate)
    return out


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
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: invalid JSON ({err})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return value


def _atomic(path: Path, write) -> Path:
    """Write what `write(handle)` writes to a text handle, atomically (`data.atomic`)."""
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


# --------------------------------------------------------------------------- MLflow


def _client(uri: str):
    from mlflow import MlflowClient

    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return MlflowClient(tracking_uri=uri)


def _artifact_location(uri: str) -> str | None:
    """Artifacts beside a SQLite store (as the trainer does), not in the working directory."""
    if not uri.startswith("sqlite:///"):
        return None
    return (Path(uri.removeprefix("sqlite:///")).resolve().parent / "mlartifacts").as_uri()


def find_or_create_run(uri: str, run_dir: Path) -> str:
    """Id of the training run's MLflow run (latest with the run folder's name), else a new one."""
    config = read_json(Path(run_dir) / "config.json")
    experiment = str(config.get("experiment") or "face-skin-analysis")
    name = Path(run_dir).resolve().name
    client = _client(uri)
    found = client.get_experiment_by_name(experiment)
    experiment_id = (
        found.experiment_id
        if found is not None
        else client.create_experiment(experiment, artifact_location=_artifact_location(uri))
    )
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"attributes.run_name = '{name}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if runs:
        return runs[0].info.run_id
    run = client.create_run(experiment_id, run_name=name, tags=model_tags(config))
    client.set_terminated(run.info.run_id, status="FINISHED")
    return run.info.run_id


def log_metrics(uri: str, run_id: str, metrics: Mapping[str, float], step: int = 0) -> None:
    """Log finite metrics to a run in batches."""
    import time

    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    batch = [Metric(k, float(v), now, step) for k, v in sorted(metrics.items())]
    client = _client(uri)
    for start in range(0, len(batch), 500):
        client.log_batch(run_id, metrics=batch[start : start + 500])


def log_files(uri: str, run_id: str, paths: Iterable[Path], artifact_path: str) -> list[str]:
    """Log the given files (allow-listed by the caller) under `artifact_path`."""
    client = _client(uri)
    logged = []
    for path in paths:
        client.log_artifact(run_id, str(path), artifact_path=artifact_path)
        logged.append(Path(path).name)
    return logged


def register_onnx(
    uri: str,
    run_id: str,
    model_path: Path,
    *,
    name: str,
    alias: str,
    tags: Mapping[str, str],
    metrics: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """Log `model_path` as an MLflow ONNX model in `run_id`, register it as `name`, point
    `alias` at the new version, tag the version and the registered model; returns a summary."""
    import mlflow
    import onnx

    client = _client(uri)
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        model = onnx.load(str(model_path))
        with mlflow.start_run(run_id=run_id):
            info = mlflow.onnx.log_model(
                model,
                name="model",
                registered_model_name=name,
                tags=dict(tags),
                metadata={"model_card": "model_card.json"},
                extra_files=[str(p) for p in _model_extras(model_path)],
                save_as_external_data=False,
            )
            if metrics:
                mlflow.log_metrics(dict(metrics), model_id=info.model_id)
    finally:
        mlflow.set_tracking_uri(previous)
    version = str(info.registered_model_version)
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
        client.set_registered_model_tag(name, key, value)
    client.set_registered_model_alias(name, alias, version)
    return {
        "registered_model": name,
        "version": version,
        "alias": alias,
        "model_uri": f"models:/{name}@{alias}",
        "run_id": run_id,
        "tags": dict(tags),
    }


def _model_extras(model_path: Path) -> list[Path]:
    folder = Path(model_path).parent
    return [folder / n for n in ("model_card.json", "thresholds.json") if (folder / n).is_file()]


# --------------------------------------------------------------------------- commands


def run_evaluate(args: argparse.Namespace) -> dict[str, Any]:
    """The `evaluate` command: metrics JSON, plot CSVs, MLflow metrics and report files."""
    run_dir = Path(args.run)
    fairness_dir = Path(args.fairness or run_dir / "fairness")
    explain_path = Path(args.explain or run_dir / "explain" / "explain_test.json")
    fairness = read_json(fairness_dir / "metrics.json")
    # The split the report evaluated: test, or val (cross-fitted) for data without a test split.
    metrics = fairness_metrics(fairness.get(fairness.get("evaluated_split", "test")) or {})
    if explain_path.is_file() or args.explain:
        metrics |= explain_metrics(read_json(explain_path))
    write_json(Path(args.metrics_out), metrics)
    summary: dict[str, Any] = {"metrics": str(args.metrics_out), "num_metrics": len(metrics)}
    if args.plots_dir:
        plots = Path(args.plots_dir)
        history = history_rows(read_json(run_dir / "metrics.json"))
        reliability = reliability_rows(read_json(fairness_dir / "calibration.json"))
        summary["plots"] = [
            str(write_csv(plots / HISTORY_CSV, history)),
            str(write_csv(plots / RELIABILITY_CSV, reliability, RELIABILITY_COLUMNS)),
        ]
    if not args.no_mlflow:
        with mlflow_step(args.uri, "logging the evaluation"):
            run_id = find_or_create_run(args.uri, run_dir)
            log_metrics(args.uri, run_id, metrics)
            files = [fairness_dir / n for n in FAIRNESS_ARTIFACTS if (fairness_dir / n).is_file()]
            logged = log_files(args.uri, run_id, files, "fairness")
            if explain_path.is_file():
                logged += log_files(args.uri, run_id, [explain_path], "explain")
        summary |= {"mlflow_run": run_id, "mlflow_artifacts": logged}
    return summary


def export_metrics(card: Mapping[str, Any]) -> dict[str, float]:
    """Flat numbers of an exported model's card: parity and per-group test F1 / AUROC.

    >>> export_metrics({"export_parity_max_abs_diff": {"probs": 1e-7},
    ...                 "metrics": {"per_group": {"acne": {"V-VI": {"f1": 0.5, "n": 9}}}}})
    {'export/parity_max_abs_diff/probs': 1e-07, 'eval/f1/V-VI/acne': 0.5}
    """
    out: dict[str, float] = {}
    for key, value in (card.get("export_parity_max_abs_diff") or {}).items():
        _put(out, f"export/parity_max_abs_diff/{key}", value)
    per_group = (card.get("metrics") or {}).get("per_group") or {}
    for cond, groups in per_group.items():
        for group, cell in groups.items():
            for metric in ("f1", "auroc"):
                _put(out, f"eval/{metric}/{group}/{cond}", cell.get(metric))
    return out


def run_register(args: argparse.Namespace) -> dict[str, Any]:
    """The `register` command: log + register the ONNX model, alias, tags, metrics JSON."""
    run_dir, model_dir = Path(args.run), Path(args.model_dir)
    model_path = model_dir / "model.onnx"
    if not model_path.is_file():
        raise FileNotFoundError(f"{model_path}: file not found (run python -m train_jax.export)")
    card = read_json(model_dir / "model_card.json")
    config = read_json(run_dir / "config.json")
    metrics = export_metrics(card)
    metrics["export/model_bytes"] = float(model_path.stat().st_size)
    summary: dict[str, Any] = {"model": str(model_path), "version_sha256": card.get("version")}
    if not args.no_mlflow:
        with mlflow_step(args.uri, f"registering {model_path} as {args.name!r}"):
            run_id = find_or_create_run(args.uri, run_dir)
            summary |= register_onnx(
                args.uri,
                run_id,
                model_path,
                name=args.name,
                alias=args.alias,
                tags=model_tags(config, card),
                metrics=metrics,
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
