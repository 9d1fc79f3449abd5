"""The project's one MLflow logger: every MLflow call of the project goes through here.

* Training (`make_tracker`, SQLite store `<out>/mlflow.db` by default): params (the flattened
  config), per-epoch metrics (`val/macro_f1`, `val/f1/V-VI`, ...), tags (`model_arch`,
  `balance_skin_tones`, `loss`, `dataset`) and artifacts (config.json, metrics.json).
  `NullTracker` does nothing, for `--no-mlflow` and non-zero processes.
* Pipeline results (`train_jax.registry`): `find_or_create_run` (the training run's MLflow run
  by name), `log_metrics`, `log_files` and `register_onnx` (the ONNX model registry).
* A fairness report (`log_fairness_report`, ``python -m train_jax.report --mlflow-run``): its
  summary, per-group cells, gaps and goals with their intervals (`fairness.flatten`), and its
  allow-listed files.

Any MLflow failure inside `mlflow_step` becomes a `TrackingError` naming the store and the step.
"""

from __future__ import annotations

import hashlib
import math
import subprocess
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from data.run import Run, read_json_object
from fairness.flatten import flatten_report
from fairness.report_goals import flatten_goals
from train_jax import config as config_lib

DEFAULT_URI = "sqlite:///outputs/mlflow.db"
DEFAULT_EXPERIMENT = "face-skin-analysis"
# Files of a fairness report that may be logged: aggregate numbers and plots only (no faces).
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
BATCH = 500  # metrics per log_batch call


class TrackingError(RuntimeError):
    """Talking to MLflow failed; the message names the store and the step."""


@contextmanager
def mlflow_step(uri: str, what: str) -> Iterator[None]:
    """Turn any failure inside MLflow into a `TrackingError` naming the store and the step."""
    try:
        yield
    except TrackingError:
        raise
    except Exception as err:  # noqa: BLE001 - MLflow and SQLAlchemy raise many kinds
        raise TrackingError(f"MLflow store {uri}: {what}: {err}") from err


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
CODE_PACKAGES = ("core", "train_jax", "preprocessing", "data", "fairness", "explain")


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

        self._client = client(uri)
        experiment_id = _experiment_id(self._client, config.experiment, artifact_location)
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
        _log_metrics(self._client, self.run_id, metrics, step)

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
    return MlflowTracker(
        config,
        uri=uri,
        run_name=run_name,
        dataset=dataset,
        run_id=run_id,
        artifact_location=artifact_location(uri),
    )


# --------------------------------------------------------------------------- stores and runs


def client(uri: str):
    """An `MlflowClient` of the store `uri` (a SQLite store's folder is created)."""
    from mlflow import MlflowClient

    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return MlflowClient(tracking_uri=uri)


def artifact_location(uri: str) -> str | None:
    """Artifacts beside a SQLite store (relative: to the cwd), not in the working directory."""
    if not uri.startswith("sqlite:///"):
        return None
    return (Path(uri.removeprefix("sqlite:///")).resolve().parent / "mlartifacts").as_uri()


def _experiment_id(mlflow_client, name: str, location: str | None) -> str:
    """The id of experiment `name`, created (artifacts at `location`) when it does not exist."""
    found = mlflow_client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    return mlflow_client.create_experiment(name, artifact_location=location)


def find_or_create_run(uri: str, run: Run, tags: Mapping[str, str] | None = None) -> str:
    """Id of the training run's MLflow run (the latest with the run folder's name, in the
    experiment of its config.json), else a new finished one with `tags`."""
    config = read_json_object(run.config_path)
    mlflow_client = client(uri)
    experiment_id = _experiment_id(
        mlflow_client, str(config.get("experiment") or DEFAULT_EXPERIMENT), artifact_location(uri)
    )
    runs = mlflow_client.search_runs(
        [experiment_id],
        filter_string=f"attributes.run_name = '{run.name}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if runs:
        return runs[0].info.run_id
    created = mlflow_client.create_run(experiment_id, run_name=run.name, tags=dict(tags or {}))
    mlflow_client.set_terminated(created.info.run_id, status="FINISHED")
    return created.info.run_id


# --------------------------------------------------------------------------- logging


def _log_metrics(mlflow_client, run_id: str, metrics: Mapping[str, Any], step: int) -> None:
    """Log the finite scalar metrics to a run, in batches."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    batch = [
        Metric(k, float(v), now, int(step))
        for k, v in sorted(metrics.items())
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(float(v))
    ]
    for start in range(0, len(batch), BATCH):
        mlflow_client.log_batch(run_id, metrics=batch[start : start + BATCH])


def log_metrics(uri: str, run_id: str, metrics: Mapping[str, Any], step: int = 0) -> None:
    """Log the finite scalar metrics to a run of the store `uri`, in batches."""
    _log_metrics(client(uri), run_id, metrics, step)


def log_files(uri: str, run_id: str, paths: Iterable[Path], artifact_path: str) -> list[str]:
    """Log the given files (allow-listed by the caller) under `artifact_path`; their names."""
    mlflow_client = client(uri)
    logged = []
    for path in paths:
        mlflow_client.log_artifact(run_id, str(path), artifact_path=artifact_path)
        logged.append(Path(path).name)
    return logged


def fairness_report_metrics(report: Mapping[str, Any]) -> dict[str, float]:
    """The MLflow scalars of a fairness metrics.json (`fairness.flatten`, with intervals):
    ``fairness/...`` (per-group thresholds), ``fairness_global_threshold/...`` and
    ``fairness_goals/...``."""
    split = report.get("evaluated_split", "test")
    values = flatten_report(report.get(split) or {}, "fairness", intervals=True)
    values |= flatten_report(
        report.get(f"{split}_global_threshold") or {}, "fairness_global_threshold", intervals=True
    )
    if report.get("goals"):
        values |= flatten_goals(report["goals"], "fairness_goals")
    return values


def log_fairness_report(uri: str, run_id: str, report_dir: Path) -> dict[str, Any]:
    """Log a fairness report folder (``python -m fairness.report --out DIR``) into an existing
    MLflow run: `fairness_report_metrics` of its metrics.json and its `FAIRNESS_ARTIFACTS`
    under ``fairness/``. Returns what was logged; `TrackingError` on an MLflow failure."""
    run = Run(report_dir, report=report_dir)
    metrics = fairness_report_metrics(read_json_object(run.report_metrics_path))
    files = [run.fairness_dir / n for n in FAIRNESS_ARTIFACTS if (run.fairness_dir / n).is_file()]
    with mlflow_step(uri, f"logging the fairness report {report_dir} into run {run_id!r}"):
        log_metrics(uri, run_id, metrics)
        logged = log_files(uri, run_id, files, "fairness")
    return {"mlflow_run": run_id, "num_metrics": len(metrics), "mlflow_artifacts": logged}


def register_onnx(
    uri: str,
    run_id: str,
    model_path: Path,
    *,
    name: str,
    alias: str,
    tags: Mapping[str, str],
    metrics: Mapping[str, float] | None = None,
    extra_files: Iterable[Path] = (),
) -> dict[str, Any]:
    """Log `model_path` as an MLflow ONNX model in `run_id`, register it as `name`, point
    `alias` at the new version, tag the version and the registered model; `extra_files` (the
    model card, thresholds.json) go beside the model. Returns a summary."""
    import mlflow
    import onnx

    mlflow_client = client(uri)
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
                extra_files=[str(p) for p in extra_files],
                save_as_external_data=False,
            )
            if metrics:
                mlflow.log_metrics(dict(metrics), model_id=info.model_id)
    finally:
        mlflow.set_tracking_uri(previous)
    version = str(info.registered_model_version)
    for key, value in tags.items():
        mlflow_client.set_model_version_tag(name, version, key, value)
        mlflow_client.set_registered_model_tag(name, key, value)
    mlflow_client.set_registered_model_alias(name, alias, version)
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
