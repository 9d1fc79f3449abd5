"""Fairness report: fit thresholds on validation, evaluate test per group, write everything.

Usage::

    python -m fairness.report --predictions outputs/<run> --out reports/<run> [--json]
    python -m fairness.report --predictions val.csv test.csv --out DIR --mlflow-run RUN_ID

Writes into DIR: metrics.json, thresholds.json, calibration.json, report.md, report.html
(self-contained), group_metrics.png, roc.png, reliability.png, coverage.png, model_card.md,
model_card.json. With --mlflow-run it logs the summary metrics and these files to that run.

Exit codes: 0 success; 2 bad input (file, line and column named on stderr); 3 MLflow error.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from fairness.io import (
    PredictionsError,
    atomic_write_text,
    read_dataset_info,
    read_predictions,
    resolve_prediction_files,
    to_arrays,
)
from fairness.render import fmt_estimate, to_html, to_markdown
from fairness.thresholds import ThresholdsError, fit_thresholds, save_thresholds

__all__ = ["main", "make_report"]

EXIT_BAD_INPUT = 2
EXIT_MLFLOW = 3
DEFAULT_MLFLOW_URI = "sqlite:///outputs/mlflow.db"


class MlflowLoggingError(RuntimeError):
    """Logging the report to MLflow failed."""


def _dump(path: Path, obj) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, allow_nan=False) + "\n")


def make_report(
    val_csv: Path,
    test_csv: Path,
    out_dir: Path,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    min_positives: int = 10,
    min_negatives: int = 10,
    threshold_min_positives: int = 5,
    shrinkage_k: float = 20.0,
    run_dir: Path | None = None,
    mlflow_run_id: str | None = None,
    mlflow_uri: str | None = None,
    progress: bool = True,
) -> dict:
    """Build the whole report; returns a summary dict (paths and headline numbers)."""
    from data.schema import CONDITIONS, DISCLAIMER, GROUPS
    from fairness import plots
    from fairness.calibration import (
        apply_group_temperatures,
        calibration_by_group,
        fit_group_temperatures,
    )
    from fairness.coverage import coverage_counts
    from fairness.evaluate import evaluate_predictions
    from fairness.model_card import make_model_card, write_model_card

    out_dir = Path(out_dir)
    val_df, test_df = read_predictions(val_csv), read_predictions(test_csv)
    val, test = to_arrays(val_df), to_arrays(test_df)
    dataset = read_dataset_info(run_dir, [val_df, test_df])

    # Thresholds: fitted on validation only, applied to test.
    thresholds = fit_thresholds(
        val.y_true,
        val.probs,
        val.groups,
        min_positives=threshold_min_positives,
        shrinkage_k=shrinkage_k,
    )
    global_only = fit_thresholds(
        val.y_true, val.probs, val.groups, min_positives=10**9, shrinkage_k=shrinkage_k
    )
    options = dict(
        n_boot=n_boot,
        seed=seed,
        min_positives=min_positives,
        min_negatives=min_negatives,
        progress=progress,
    )
    metrics = evaluate_predictions(test, thresholds, **options)
    metrics_global = evaluate_predictions(test, global_only, **options)
    metrics_global["thresholds"] = "one global threshold per condition (fitted on val)"

    calibration = calibration_by_group(test.y_true, test.probs, test.groups)
    temperatures = fit_group_temperatures(val.y_true, val.probs, val.groups)
    scaled = calibration_by_group(
        test.y_true, apply_group_temperatures(test.probs, test.groups, temperatures), test.groups
    )
    calibration["temperature_scaling"] = {
        "temperatures": temperatures,
        "fitted_on": "val",
        "ece_after": {
            c: {g: v["ece"] for g, v in scaled["conditions"][c].items()} for c in CONDITIONS
        },
    }
    coverage = {
        "val": coverage_counts(val.y_true, val.fitzpatrick, split="val"),
        "test": coverage_counts(test.y_true, test.fitzpatrick, split="test"),
    }

    out_dir.mkdir(parents=True, exist_ok=True)
    files = {
        "thresholds": save_thresholds(thresholds, out_dir / "thresholds.json"),
        "metrics": _dump(
            out_dir / "metrics.json",
            {
                "disclaimer": DISCLAIMER,
                "data": dataset,
                "inputs": {"val": str(val_csv), "test": str(test_csv)},
                "test": metrics,
                "test_global_threshold": metrics_global,
                "coverage": coverage,
            },
        ),
        "calibration": _dump(out_dir / "calibration.json", calibration),
        "group_metrics_png": plots.plot_group_bars(metrics, out_dir / "group_metrics.png"),
        "roc_png": plots.plot_roc(test.y_true, test.probs, test.groups, out_dir / "roc.png"),
        "reliability_png": plots.plot_reliability(calibration, out_dir / "reliability.png"),
        "coverage_png": plots.plot_coverage(coverage["test"], out_dir / "coverage.png"),
    }
    model = _model_info(run_dir)
    card = make_model_card(
        metrics,
        dataset=dataset,
        thresholds=thresholds.to_dict(),
        calibration=calibration,
        model=model,
    )
    files["model_card_md"], files["model_card_json"] = write_model_card(card, out_dir)

    blocks = _report_blocks(
        metrics,
        metrics_global,
        thresholds.to_dict(),
        calibration,
        coverage,
        dataset,
        files,
        (CONDITIONS, GROUPS, DISCLAIMER),
    )
    files["report_md"] = atomic_write_text(out_dir / "report.md", to_markdown(blocks, base=out_dir))
    files["report_html"] = atomic_write_text(
        out_dir / "report.html", to_html(blocks, title="Fairness report")
    )
    summary = {
        "out": str(out_dir),
        "files": {k: str(v) for k, v in files.items()},
        "data": dataset.get("kind"),
        "summary": metrics["summary"],
        "summary_global_threshold": metrics_global["summary"],
    }
    if mlflow_run_id:
        log_to_mlflow(mlflow_run_id, mlflow_uri, out_dir, metrics, metrics_global)
        summary["mlflow_run"] = mlflow_run_id
    return summary


def _model_info(run_dir: Path | None) -> dict | None:
    if run_dir is None or not (run_dir / "config.json").is_file():
        return None
    try:
        config = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    model = config.get("model") if isinstance(config, dict) else None
    info = {"run": run_dir.name}
    if isinstance(model, dict):
        info |= {k: v for k, v in model.items() if isinstance(v, str | int | float | bool)}
        info.setdefault("name", str(model.get("name", run_dir.name)))
    else:
        info["name"] = str(model) if model else run_dir.name
    # The training recipe a reader of the card needs: sampling, loss, and whether lesion masks
    # shaped the heatmaps (the localisation loss).
    if isinstance(config, dict):
        recipe = training_recipe(config)
        if "balance" in recipe:
            info["training_balance"] = recipe["balance"]
        for key in ("loss", "loc_weight"):
            if isinstance(recipe.get(key), str | int | float):
                info[f"training_{key}"] = recipe[key]
    return info


# Training-config keys the model card repeats (the recipe a reader needs to reproduce the run).
TRAINING_KEYS = ("epochs", "batch_size", "loss", "loc_weight", "groupdro_eta", "select", "seed")


def training_recipe(config: dict, run_metrics: dict | None = None) -> dict:
    """How a run was trained, for the model card: recipe keys of its config.json, model
    overrides, sampling balance and learning rate, and the code version from its metrics.json."""
    recipe = {key: config.get(key) for key in TRAINING_KEYS if key in config}
    data, optim, model = (
        config.get(key) if isinstance(config.get(key), dict) else {}
        for key in ("data", "optim", "model")
    )
    if model.get("overrides"):
        recipe["model_overrides"] = model["overrides"]  # e.g. width, output stride
    if "balance" in data:
        recipe["balance"] = data["balance"]
    if "learning_rate" in optim:
        recipe["learning_rate"] = optim["learning_rate"]
    for key in ("code_version", "code_digest", "epochs_completed"):
        if run_metrics and run_metrics.get(key) is not None:
            recipe[key] = run_metrics[key]
    return recipe


def _report_blocks(
    metrics, metrics_global, thresholds, calibration, coverage, dataset, files, schema
) -> list[tuple]:
    conditions, groups, disclaimer = schema
    s, sg = metrics["summary"], metrics_global["summary"]
    blocks: list[tuple] = [
        ("h1", "Fairness report"),
        ("p", f"{disclaimer.capitalize()}. Not a medical device."),
        (
            "p",
            f"Data: {dataset.get('kind')} ({dataset.get('name', 'unknown')}). "
            + (
                "Numbers on synthetic data say nothing about real faces. "
                if dataset.get("kind") == "synthetic"
                else ""
            )
            + f"Test images: {metrics['n']}. Thresholds fitted on the validation split.",
        ),
        (
            "p",
            f"Intervals: {int(metrics['ci_level'] * 100)}% {metrics['ci_method']}; "
            f"{metrics['n_boot']} replicates, seed {metrics['seed']}. Cells with fewer than "
            f"{metrics['min_positives']} positives or {metrics['min_negatives']} negatives read "
            "'insufficient evidence'.",
        ),
        ("h2", "Summary (test split)"),
        (
            "table",
            ["metric", "per-group thresholds", "one global threshold"],
            [[k, fmt_estimate(s[k]), fmt_estimate(sg[k])] for k in s],
        ),
        (
            "p",
            "gap_dark_vs_medium_f1 is |macro-F1(V-VI) - macro-F1(III-IV)|; its signed value "
            f"(V-VI minus III-IV) is {fmt_estimate(s['gap_dark_vs_medium_f1'].get('signed'))}.",
        ),
        ("img", "per-group metrics", files["group_metrics_png"]),
    ]
    for cond in conditions:
        entry = metrics["conditions"][cond]
        rows = []
        for name, cell in [
            ("overall", entry["overall"]),
            *[(g, entry["by_group"][g]) for g in groups],
            *[(f"type {t}", c) for t, c in entry["by_type"].items()],
        ]:
            rows.append(
                [
                    name,
                    cell["n"],
                    cell["positives"],
                    *(
                        fmt_estimate(cell[m])
                        for m in ("f1", "precision", "recall", "specificity", "auroc", "ap")
                    ),
                ]
            )
        blocks += [
            ("h2", f"{cond}"),
            (
                "table",
                [
                    "subset",
                    "n",
                    "positives",
                    "F1",
                    "precision",
                    "recall",
                    "specificity",
                    "AUROC",
                    "AP",
                ],
                rows,
            ),
            (
                "table",
                ["gap", "value [95% CI]"],
                [[k, fmt_estimate(v)] for k, v in entry["gaps"].items()],
            ),
        ]
    blocks += [
        ("h2", "Gaps on macro metrics (mean over conditions)"),
        (
            "table",
            ["gap", "per-group thresholds", "one global threshold"],
            [
                [k, fmt_estimate(v), fmt_estimate(metrics_global["macro"]["gaps"][k])]
                for k, v in metrics["macro"]["gaps"].items()
            ],
        ),
        ("h2", "Thresholds (fitted on validation)"),
        (
            "p",
            f"Method: {thresholds['method']}; shrinkage {thresholds['shrinkage']['rule']} "
            f"with k = {thresholds['shrinkage']['k']}; groups with fewer than "
            f"{thresholds['shrinkage']['min_positives']} positives use the global threshold.",
        ),
        (
            "table",
            ["condition", "global", *(f"{g} (raw, w, positives)" for g in groups)],
            [
                [
                    c,
                    f"{thresholds['thresholds'][c]['global']['threshold']:.3f}",
                    *(_threshold_cell(thresholds["thresholds"][c]["groups"][g]) for g in groups),
                ]
                for c in conditions
            ],
        ),
        ("h2", "Calibration (test split)"),
        (
            "table",
            ["condition", "subset", "n", "ECE", "Brier", "ECE after temperature"],
            [
                [
                    c,
                    g,
                    v["n"],
                    _num(v["ece"]),
                    _num(v["brier"]),
                    _num(calibration["temperature_scaling"]["ece_after"][c][g]),
                ]
                for c in conditions
                for g, v in calibration["conditions"][c].items()
            ],
        ),
        ("img", "reliability diagrams", files["reliability_png"]),
        ("h2", "ROC per group"),
        ("img", "ROC per group", files["roc_png"]),
        ("h2", "Coverage (positives / labelled, test split)"),
        (
            "table",
            ["condition", *coverage["test"]["types"]],
            [
                [
                    c,
                    *(
                        f"{coverage['test']['positives'][c][t]}/{coverage['test']['labelled'][c][t]}"
                        for t in coverage["test"]["types"]
                    ),
                ]
                for c in conditions
            ],
        ),
        ("img", "coverage matrix", files["coverage_png"]),
    ]
    return blocks


def _threshold_cell(entry: dict) -> str:
    raw = "global" if entry.get("raw_threshold") is None else f"{entry['raw_threshold']:.3f}"
    return f"{entry['threshold']:.3f} ({raw}, {entry.get('weight', 0):.2f}, {entry['positives']})"


def _num(value) -> str:
    return "insufficient evidence" if value is None else f"{value:.4f}"


def flatten_summary(metrics: dict, prefix: str) -> dict[str, float]:
    """MLflow-ready scalars: value, ci_low, ci_high of each summary and gap estimate."""
    out: dict[str, float] = {}

    def add(name: str, est: dict) -> None:
        for field in ("value", "ci_low", "ci_high"):
            if est.get(field) is not None:
                key = name if field == "value" else f"{name}_{field}"
                out[f"{prefix}/{key}"] = float(est[field])

    for key, est in metrics["summary"].items():
        add(key, est)
    for cond, entry in metrics["conditions"].items():
        for gap, est in entry["gaps"].items():
            add(f"gap/{cond}/{gap}", est)
        for g, cell in entry["by_group"].items():
            add(f"f1/{cond}/{g}", cell["f1"])
    return out


def log_to_mlflow(
    run_id: str, tracking_uri: str | None, out_dir: Path, metrics: dict, metrics_global: dict
) -> None:
    """Log summary metrics and the report files to an existing MLflow run."""
    try:
        import time

        from mlflow.entities import Metric
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=tracking_uri or DEFAULT_MLFLOW_URI)
        now = int(time.time() * 1000)
        values = flatten_summary(metrics, "fairness") | flatten_summary(
            metrics_global, "fairness_global_threshold"
        )
        batch = [Metric(k, v, now, 0) for k, v in sorted(values.items())]
        for start in range(0, len(batch), 500):
            client.log_batch(run_id, metrics=batch[start : start + 500])
        client.log_artifacts(run_id, str(out_dir), artifact_path="fairness")
    except Exception as exc:  # noqa: BLE001 - any MLflow failure becomes one clear line
        raise MlflowLoggingError(f"MLflow run {run_id!r}: {exc}") from exc


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m fairness.report",
        description="Per-group fairness report with bootstrap CIs, thresholds and a model card. "
        "Exit codes: 0 ok, 2 bad input, 3 MLflow error.",
    )
    parser.add_argument(
        "--predictions",
        nargs="+",
        required=True,
        metavar="DIR_OR_CSV",
        help="a training run folder (predictions_val.csv + predictions_test.csv) "
        "or two CSVs: val then test",
    )
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--n-boot", type=int, default=1000, help="bootstrap replicates")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    parser.add_argument(
        "--min-positives",
        type=int,
        default=10,
        help="minimum positives per cell, else 'insufficient evidence'",
    )
    parser.add_argument(
        "--min-negatives",
        type=int,
        default=10,
        help="minimum negatives per cell, else 'insufficient evidence'",
    )
    parser.add_argument(
        "--threshold-min-positives",
        type=int,
        default=5,
        help="fewer validation positives in a group -> global threshold",
    )
    parser.add_argument(
        "--shrinkage-k", type=float, default=20.0, help="k in w = n_pos / (n_pos + k)"
    )
    parser.add_argument("--mlflow-run", default=None, help="MLflow run id to log into")
    parser.add_argument(
        "--mlflow-uri", default=None, help=f"MLflow tracking URI (default {DEFAULT_MLFLOW_URI})"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit code."""
    args = _parser().parse_args(argv)
    try:
        if args.n_boot < 0:
            raise ValueError(f"--n-boot must be >= 0, got {args.n_boot}")
        val_csv, test_csv = resolve_prediction_files(args.predictions)
        run_dir = Path(args.predictions[0]) if Path(args.predictions[0]).is_dir() else None
        summary = make_report(
            val_csv,
            test_csv,
            args.out,
            n_boot=args.n_boot,
            seed=args.seed,
            min_positives=args.min_positives,
            min_negatives=args.min_negatives,
            threshold_min_positives=args.threshold_min_positives,
            shrinkage_k=args.shrinkage_k,
            run_dir=run_dir or val_csv.parent,
            mlflow_run_id=args.mlflow_run,
            mlflow_uri=args.mlflow_uri,
            progress=not args.no_progress,
        )
    except (PredictionsError, ThresholdsError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except MlflowLoggingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_MLFLOW
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        s = summary["summary"]
        print(f"wrote {summary['out']} ({summary['data']} data)")
        for key in ("macro_f1", "worst_group_f1", "gap_dark_vs_medium_f1"):
            print(f"{key}: {fmt_estimate(s[key])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
