"""The custom Prometheus counters of client/monitoring.py inside a Triton python model.

Counting is the pure client.monitoring.request_increments; this class only creates the
`pb_utils.MetricFamily` series and sends the increments from a background thread, off the
request's path: each increment is an IPC message to the server (about 60 µs) on the channel the
responses take, so the thread gathers them for `FLUSH_INTERVAL_S` and sends one message per
changed series, not several per request. Imported by
`skin_analysis/1/model.py` in the python-backend stub only (triton_python_backend_utils)."""

import collections
import threading

import triton_python_backend_utils as pb_utils

from client.monitoring import (
    DESCRIPTIONS,
    FLUSH_INTERVAL_S,
    initial_series,
    request_increments,
)


class Counters:
    """The custom counters of client.monitoring: every known label set at 0 from the start,
    others (an unknown reason code) on first use. Requests add their increments to a pending
    tally; a background thread sends it to Triton `interval_s` after the first pending increment
    (one IPC message per changed series), so the counting is off the request's path and the
    requests of that interval share one message per series."""

    def __init__(self, interval_s: float = FLUSH_INTERVAL_S) -> None:
        self.interval_s = float(interval_s)
        self.families, self.metrics = {}, {}
        self._pending: collections.Counter = collections.Counter()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closing = threading.Event()
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
            pb_utils.Logger.log_warn(f"skin_analysis: metrics not updated: {exc}")
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
            pb_utils.Logger.log_warn(f"skin_analysis: metrics not updated: {exc}")

    def _run(self) -> None:
        while not self._closing.is_set():
            self._wake.wait()
            self._closing.wait(self.interval_s)  # gather; cut short by close()
            self._wake.clear()
            self.flush()

    def close(self) -> None:
        """Send what is pending, stop the thread; metrics go before their families (the python
        backend requires that order)."""
        if self._thread is not None:
            self._closing.set()
            self._wake.set()
            self._thread.join(timeout=5)
            self.flush()
        self.metrics.clear()
        self.families.clear()
