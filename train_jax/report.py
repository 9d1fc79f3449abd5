"""The fairness report, logged into an MLflow run.

    python -m train_jax.report --predictions outputs/RUN --out DIR --mlflow-run RUN_ID \\
        [--mlflow-uri sqlite:///outputs/mlflow.db] [every other flag of python -m fairness.report]

Runs ``python -m fairness.report`` with the other flags (the report itself: numpy, scikit-learn
and fairlearn only), then logs it into the existing MLflow run RUN_ID through the project's one
MLflow logger (`train_jax.tracking.log_fairness_report`): the summary, per-group cells, gaps and
goals with their intervals (``fairness/...``, ``fairness_global_threshold/...``,
``fairness_goals/...``; keys of `fairness.flatten`) and the report's aggregate files under
``fairness/``.

Exit codes: those of fairness.report (0 ok, 2 bad input), 3 MLflow error.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from fairness import report as fairness_report
from train_jax import tracking

EXIT_MLFLOW = 3


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m train_jax.report",
        description="python -m fairness.report (same flags), then log the report into an "
        "MLflow run. Exit codes: 0 ok, 2 bad input, 3 MLflow error.",
    )
    parser.add_argument("--mlflow-run", required=True, help="MLflow run id to log into")
    parser.add_argument(
        "--mlflow-uri",
        default=tracking.DEFAULT_URI,
        help=f"MLflow tracking URI (default {tracking.DEFAULT_URI})",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit code."""
    args, rest = _parser().parse_known_args(argv)
    code = fairness_report.main(rest)
    if code != 0:
        return code
    out = Path(fairness_report.build_parser().parse_args(rest).out)
    try:
        logged = tracking.log_fairness_report(args.mlflow_uri, args.mlflow_run, out)
    except (tracking.TrackingError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_MLFLOW
    # stderr: with --json, stdout holds the report's summary only
    print(f"logged into MLflow run {args.mlflow_run}: {json.dumps(logged)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
