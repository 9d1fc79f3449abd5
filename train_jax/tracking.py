"""MLflow tracking of a training run (SQLite store `<out>/mlflow.db` by default).

Logs params (the flattened config), per-epoch metrics (`val/macro_f1`, `val/f1/V-VI`, ...),
tags (`model_arch`, `balance_skin_tones`, `loss`, `dataset`) and artifacts (config.json,
metrics.json). `NullTracker` does nothing, for `--no-mlflow` and non-zero processes.
"""

from __future__ import annotations

import hashlib
import math
import subprocess
from pathlib import Path
from typing import Any

from train_jax import config as config_lib


def default_uri(out_dir: str | Path) -> str:
    """SQLite tracking URI inside the output root."""
    return f"sqlite:///{(Path(out_dir).resolve() / 'mlflow.db').as_posix()}"


def flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"optim": {"learning_rate": 1e-3}} -> {"optim.learning_rate": 1e-3}."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


# The packages a training imports: what its numbers can depend on besides config, data and seed.
CODE_PACKAGES = ("train_jax", "preprocessing", "data", "fairness", "explain")


def _git(root: Path, *args: str) -> str:
    """stdout of `git -C root args...` (raises OSError / SubprocessError on failure)."""
    proc = subprocess.run(
        ["git", "-C", str(root), *args], capture_output=True, text=True, check=True, timeout=10
    )
    return proc.stdout.strip()


def code_version(root: str | Path | None = None) -> str:
    """Git commit of the code a run was trained with: `<sha>`, `<sha>+dirty`, or "unknown".

    `+dirty`: tracked files of the training code (CODE_PACKAGES) differ from the commit.
    Recorded in metrics.json so that tables built from several runs
    (benchmarks/fairness_ablation.py) can tell when they mix code.
    """
    root = Path(root) if root else Path(__file__).resolve().parents[1]
    try:
        sha = _git(root, "rev-parse", "--short=12", "HEAD")
        dirty = _git(root, "status", "--porcelain", "--untracked-files=no", "--", *CODE_PACKAGES)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{sha}+dirty" if dirty else sha


def code_digest(root: str | Path | None = None) -> str:
    """Short SHA-1 of the training code: every .py/.cc file of CODE_PACKAGES, path and bytes.

    Unlike the commit it does not change with docs, tests or benchmarks, so runs trained from
    the same code compare equal across commits.
    """
    root = Path(root) if root else Path(__file__).resolve().parents[1]
    h = hashlib.sha1()
    for package in CODE_PACKAGES:
        files = sorted(
            p for p in (root / package).rglob("*") if p.suffix in (".py", ".cc") and p.is_file()
        )
        for path in files:
            h.update(path.relative_to(root).as_posix().encode() + b"\0")
            h.update(path.read_bytes() + b"\0")
    return h.hexdigest()[:12]


def run_tags(config: config_lib.TrainConfig, dataset: str) -> dict[str, str]:
    """The tags every run carries."""
    return {
        "model_arch": config.model.name,
        "balance_skin_tones": config.data.balance,
        "loss": config.loss,
        "dataset": dataset,
        "code_version": code_version(),
        "code_digest": code_digest(),
    }


class NullTracker:
    """Tracking turned off."""

    run_id: str | None = None

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        """Ignore metrics."""

    def log_artifact(self, path: str | Path) -> None:
        """Ignore an artifact."""

    def end(self, status: str = "FINISHED") -> None:
        """Nothing to end."""


class MlflowTracker(NullTracker):
    """One MLflow run; `run_id` lets a resumed training continue the same run."""

    def __init__(
        self,
        config: config_lib.TrainConfig,
        *,
        uri: str,
        run_name: str,
        dataset: str,
        run_id: str | None = None,
        artifact_location: str | None = None,
    ) -> None:
        import mlflow

        self._mlflow = mlflow
        self._client = mlflow.MlflowClient(tracking_uri=uri)
        experiment = self._client.get_experiment_by_name(config.experiment)
        experiment_id = (
            experiment.experiment_id
            if experiment is not None
            else self._client.create_experiment(
                config.experiment, artifact_location=artifact_location
            )
        )
        if run_id is None:
            run = self._client.create_run(
                experiment_id, run_name=run_name, tags=run_tags(config, dataset)
            )
            self.run_id = run.info.run_id
            params = flatten(config_lib.to_dict(config))
            params_list = [
                mlflow.entities.Param(k, str(v)[:6000]) for k, v in sorted(params.items())
            ]
            self._client.log_batch(self.run_id, params=params_list)
        else:
            self.run_id = run_id
            self._client.update_run(run_id, status="RUNNING")

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        """Log finite scalar metrics at `step`."""
        import time

        now = int(time.time() * 1000)
        entries = [
            self._mlflow.entities.Metric(k, float(v), now, int(step))
            for k, v in sorted(metrics.items())
            if isinstance(v, (int, float)) and math.isfinite(float(v))
        ]
        if entries:
            self._client.log_batch(self.run_id, metrics=entries)

    def log_artifact(self, path: str | Path) -> None:
        """Copy a file into the run's artifacts."""
        self._client.log_artifact(self.run_id, str(path))

    def end(self, status: str = "FINISHED") -> None:
        """Mark the run finished (or KILLED / FAILED)."""
        self._client.set_terminated(self.run_id, status=status)


def make_tracker(
    config: config_lib.TrainConfig,
    *,
    out_dir: str | Path,
    run_name: str,
    dataset: str,
    run_id: str | None = None,
    enabled: bool = True,
) -> NullTracker:
    """An `MlflowTracker` when tracking is on, else a `NullTracker`."""
    if not (config.mlflow and enabled):
        return NullTracker()
    uri = config.mlflow_uri or default_uri(out_dir)
    artifacts = None
    if uri.startswith("sqlite:///"):
        db_dir = Path(uri.removeprefix("sqlite:///")).resolve().parent  # relative: to the cwd
        db_dir.mkdir(parents=True, exist_ok=True)
        artifacts = (db_dir / "mlartifacts").as_uri()  # beside the database, not in the cwd
    return MlflowTracker(
        config,
        uri=uri,
        run_name=run_name,
        dataset=dataset,
        run_id=run_id,
        artifact_location=artifacts,
    )
