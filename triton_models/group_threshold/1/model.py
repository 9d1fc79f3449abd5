"""group_threshold: per-group thresholds on the classifier output (client.steps.threshold_step),
and the acne-severity probabilities trimmed to the faces with their grades under the cutpoints of
thresholds.json (client.steps.severity_step; NaN rows and grade -1 when the classifier has no
`severity` output and the ensemble maps none), and the out-of-distribution score of the
classifier's `features` (client.ood.ood_step with 1/ood.json; NaN and False without them).
It also counts each request in the custom Prometheus counters of client/monitoring.py (faces,
positive decisions, abstentions, warnings, rejected candidates per skin-tone group; `/metrics`);
the counting is client.monitoring.request_increments, this shell only adds the numbers."""

import collections
import json
import os
import threading

import numpy as np
import triton_python_backend_utils as pb_utils

from client.monitoring import DESCRIPTIONS, initial_series, request_increments
from client.ood import FILENAME as OOD_FILENAME
from client.ood import load_ood, ood_step
from client.steps import severity_step, threshold_step
from core.thresholds import load_thresholds


def _strings(values):
    return np.array([(v or "").encode() for v in values], dtype=np.object_)


def _texts(tensor) -> list[str] | None:
    """A STRING tensor as a list of str, or None when the input is not wired."""
    if tensor is None:
        return None
    return [v.decode() if isinstance(v, bytes) else str(v) for v in tensor.reshape(-1)]


class Counters:
    """The custom counters of client.monitoring: every known label set at 0 from the start,
    others (an unknown reason code) on first use. Requests add their increments to a pending
    tally; a background thread sends it to Triton (one IPC message per changed series), so the
    counting is off the request's path and concurrent requests share one message per series."""

    def __init__(self) -> None:
        self.families, self.metrics = {}, {}
        self._pending: collections.Counter = collections.Counter()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closing = False
        self._thread = None
        if not hasattr(pb_utils, "MetricFamily"):  # a Triton without custom metrics
            return
        for family, description in DESCRIPTIONS.items():
            self.families[family] = pb_utils.MetricFamily(
                name=family, description=description, kind=pb_utils.MetricFamily.COUNTER
            )
        for key in initial_series():
            self._metric(key)
        self._thread = threading.Thread(target=self._run, name="fsa-counters", daemon=True)
        self._thread.start()

    def _metric(self, key):
        metric = self.metrics.get(key)
        if metric is None and key[0] in self.families:
            metric = self.families[key[0]].Metric(labels=dict(key[1]))
            self.metrics[key] = metric
        return metric

    def count(self, *args, **kwargs) -> None:
        """Add client.monitoring.request_increments(*args, **kwargs) to the pending tally; a
        failure to count is logged and never fails the request."""
        if self._thread is None:
            return
        try:
            increments = request_increments(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - monitoring must not break serving
            pb_utils.Logger.log_warn(f"group_threshold: metrics not updated: {exc}")
            return
        with self._lock:
            self._pending.update(increments)
        self._wake.set()

    def flush(self) -> None:
        """Send the pending tally to Triton's counters."""
        with self._lock:
            pending, self._pending = self._pending, collections.Counter()
        try:
            for key, value in pending.items():
                metric = self._metric(key)
                if metric is not None:
                    metric.increment(float(value))
        except Exception as exc:  # noqa: BLE001 - monitoring must not break serving
            pb_utils.Logger.log_warn(f"group_threshold: metrics not updated: {exc}")

    def _run(self) -> None:
        while not self._closing:
            self._wake.wait()
            self._wake.clear()
            self.flush()

    def close(self) -> None:
        """Send what is pending, stop the thread; metrics go before their families (the python
        backend requires that order)."""
        if self._thread is not None:
            self._closing = True
            self._wake.set()
            self._thread.join(timeout=5)
            self.flush()
        self.metrics.clear()
        self.families.clear()


class TritonPythonModel:
    def initialize(self, args):
        params = json.loads(args["model_config"]).get("parameters", {})
        name = params.get("thresholds_file", {}).get("string_value", "thresholds.json")
        path = os.path.join(args["model_repository"], args["model_version"], name)
        self.thresholds = load_thresholds(path)
        folder = os.path.join(args["model_repository"], args["model_version"])
        self.ood = load_ood(os.path.join(folder, OOD_FILENAME))
        self.counters = Counters()

    def finalize(self):
        self.counters.close()

    def execute(self, requests):
        responses = []
        for request in requests:

            def get(name, request=request):
                tensor = pb_utils.get_input_tensor_by_name(request, name)
                return None if tensor is None else tensor.as_numpy()

            num_faces = get("SCORES").shape[0]
            fitz = get("FITZPATRICK")
            tone_groups = [g.decode() or None for g in get("TONE_GROUP").reshape(-1)]
            probs = get("probs")[:num_faces]
            try:
                out = threshold_step(
                    probs,
                    tone_groups,
                    None if fitz is None else int(fitz.reshape(-1)[0]),
                    self.thresholds,
                )
                severity = severity_step(
                    get("severity"), num_faces, self.thresholds.severity_cutpoints
                )
                ood = ood_step(get("features"), num_faces, self.ood)
            except ValueError as exc:
                responses.append(
                    pb_utils.InferenceResponse(
                        error=pb_utils.TritonError(str(exc), pb_utils.TritonError.INVALID_ARG)
                    )
                )
                continue
            self.counters.count(
                out.groups,
                out.sources,
                out.decisions,
                warnings=_texts(get("WARNINGS")),
                out_of_distribution=ood.flagged,
                tone_reasons=_texts(get("TONE_REASON")),
                rejected=_texts(get("REJECTED")),
            )
            responses.append(
                pb_utils.InferenceResponse(
                    output_tensors=[
                        pb_utils.Tensor("PROBS", np.ascontiguousarray(probs, np.float32)),
                        pb_utils.Tensor(
                            "CAM", np.ascontiguousarray(get("cam")[:num_faces], np.float32)
                        ),
                        pb_utils.Tensor("GROUP", _strings(out.groups)),
                        pb_utils.Tensor("GROUP_SOURCE", _strings(out.sources)),
                        pb_utils.Tensor("THRESHOLDS", out.thresholds),
                        pb_utils.Tensor("DECISIONS", out.decisions),
                        pb_utils.Tensor("SEVERITY", severity.probabilities),
                        pb_utils.Tensor("SEVERITY_GRADE", severity.grades),
                        pb_utils.Tensor("OOD_DISTANCE", ood.distance),
                        pb_utils.Tensor("OUT_OF_DISTRIBUTION", ood.flagged),
                    ]
                )
            )
        return responses
