"""Retries with exponential backoff for a Triton server that is unreachable or unavailable.

Only `ServerUnreachableError` is retried: connection refused, gRPC UNAVAILABLE, HTTP 503, a model
or server that is not ready, a python stub that died (`client.triton_client.classify_error`).
Bad input (INVALID_ARG / 400, an image that does not decode) and every other server error fail
at once. The delays double from BASE_DELAY_S up to MAX_DELAY_S, without jitter (one client
per process here; add jitter before pointing many clients at one server).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from client.triton_client import ServerUnreachableError

T = TypeVar("T")
DEFAULT_RETRIES = 0  # analyze.py: fail at once (exit 3) unless --retries is given
BASE_DELAY_S = 0.5
BACKOFF_FACTOR = 2.0
MAX_DELAY_S = 8.0


def is_retryable(exc: BaseException) -> bool:
    """Whether a retry may cure the error: the server could not answer now."""
    return isinstance(exc, ServerUnreachableError)


def backoff_delays(
    retries: int,
    *,
    base_s: float = BASE_DELAY_S,
    factor: float = BACKOFF_FACTOR,
    max_s: float = MAX_DELAY_S,
) -> list[float]:
    """The wait before each retry: base_s * factor**k, capped at max_s (k = 0 .. retries-1).

    >>> backoff_delays(6)
    [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]
    """
    if retries < 0:
        raise ValueError(f"retries must be >= 0, got {retries}")
    return [min(max_s, base_s * factor**k) for k in range(retries)]


def call_with_retries(
    func: Callable[[], T],
    retries: int = DEFAULT_RETRIES,
    *,
    sleep: Callable[[float], None] | None = None,
    on_retry: Callable[[int, float, BaseException], None] | None = None,
    delays: list[float] | None = None,
) -> T:
    """`func()`, retried up to `retries` times after a retryable error (see the module doc).

    `on_retry(attempt, delay_s, error)` is called before each wait (attempt counts from 1);
    the last error is raised when the retries are used up; a non-retryable one at once.
    `sleep` defaults to time.sleep (tests pass a fake clock).
    """
    sleep = sleep or time.sleep
    waits = backoff_delays(retries) if delays is None else list(delays)
    for attempt in range(len(waits) + 1):
        try:
            return func()
        except Exception as exc:
            if not is_retryable(exc) or attempt == len(waits):
                raise
            if on_retry is not None:
                on_retry(attempt + 1, waits[attempt], exc)
            sleep(waits[attempt])
    raise AssertionError("unreachable")  # the loop returns or raises
