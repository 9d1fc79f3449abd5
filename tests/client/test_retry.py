"""client/retry.py and the error classification of client/triton_client.py (no server)."""

from __future__ import annotations

import pytest

from client import analyze, retry
from client.analyze import EXIT_UNREACHABLE, main
from client.triton_client import (
    ERROR_FAILED,
    ERROR_INVALID_INPUT,
    ERROR_UNAVAILABLE,
    ServerRequestError,
    ServerUnreachableError,
    classify_error,
)
from triton_models.server import free_port


class FakeClock:
    """Records the sleeps instead of sleeping."""

    def __init__(self) -> None:
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    @property
    def now(self) -> float:
        return sum(self.sleeps)


@pytest.mark.parametrize(
    ("status", "message", "kind"),
    [
        ("StatusCode.UNAVAILABLE", "failed to connect to all addresses", ERROR_UNAVAILABLE),
        ("503", "Server not ready", ERROR_UNAVAILABLE),
        (None, "[Errno 111] Connection refused", ERROR_UNAVAILABLE),
        ("StatusCode.INTERNAL", "Stub process 'preprocess_0_0' is not healthy.", ERROR_UNAVAILABLE),
        ("500", "in ensemble 'skin_analysis', Stub process 'x' is not healthy.", ERROR_UNAVAILABLE),
        (
            "StatusCode.NOT_FOUND",
            "Request for unknown model: 'skin_analysis' has no available versions",
            ERROR_UNAVAILABLE,
        ),
        ("StatusCode.UNAVAILABLE", "Server is stopping, scheduler has stopped", ERROR_UNAVAILABLE),
        ("StatusCode.INVALID_ARGUMENT", "invalid image: cannot decode", ERROR_INVALID_INPUT),
        ("400", "in ensemble 'skin_analysis', invalid image: too large", ERROR_INVALID_INPUT),
        ("400", "FITZPATRICK must be 0 (estimate) or a type 1-6, got 9", ERROR_INVALID_INPUT),
        # Bad input that is not the image's fault: never retried, and not "unavailable" either.
        ("StatusCode.INVALID_ARGUMENT", "unexpected shape for input 'IMAGE'", ERROR_FAILED),
        ("400", "model is not ready? no: unexpected datatype", ERROR_FAILED),
        ("StatusCode.INTERNAL", "preprocess failed: boom", ERROR_FAILED),
        ("500", "decode failed: out of memory", ERROR_FAILED),
    ],
)
def test_classify_error(status, message, kind):
    assert classify_error(status, message) == kind


def test_backoff_doubles_from_half_a_second_up_to_eight():
    assert retry.backoff_delays(0) == []
    assert retry.backoff_delays(7) == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert retry.backoff_delays(3, base_s=0.1, factor=3.0, max_s=0.5) == pytest.approx(
        [0.1, 0.3, 0.5]
    )
    with pytest.raises(ValueError):
        retry.backoff_delays(-1)


def test_unreachable_twice_then_ok_waits_the_schedule():
    clock, calls, seen = FakeClock(), [], []

    def flaky():
        calls.append(clock.now)
        if len(calls) < 3:
            raise ServerUnreachableError("Triton server at grpc://x is unreachable")
        return "ok"

    result = retry.call_with_retries(
        flaky, 5, sleep=clock.sleep, on_retry=lambda a, d, e: seen.append((a, d))
    )
    assert result == "ok"
    assert calls == [0.0, 0.5, 1.5] and clock.sleeps == [0.5, 1.0]
    assert seen == [(1, 0.5), (2, 1.0)]


def test_retries_used_up_raise_the_last_error():
    clock, calls = FakeClock(), []

    def down():
        calls.append(clock.now)
        raise ServerUnreachableError(f"down {len(calls)}")

    with pytest.raises(ServerUnreachableError, match="down 4"):
        retry.call_with_retries(down, 3, sleep=clock.sleep)
    assert clock.sleeps == [0.5, 1.0, 2.0] and len(calls) == 4


@pytest.mark.parametrize(
    "error",
    [
        ServerRequestError("invalid image: cannot decode", invalid_input=True),
        ServerRequestError("preprocess failed: boom", invalid_input=False),
        ValueError("bad url"),
    ],
)
def test_other_errors_are_never_retried(error):
    clock, calls = FakeClock(), []

    def bad():
        calls.append(1)
        raise error

    with pytest.raises(type(error)):
        retry.call_with_retries(bad, 5, sleep=clock.sleep)
    assert calls == [1] and clock.sleeps == []


class Reached(Exception):
    """The fake server answered (not retryable: ends the call)."""


class FlakyRunner:
    """A runner whose server fails with `error` for the first `failures` calls."""

    info = None

    def __init__(self, failures: int, error: Exception) -> None:
        self.failures, self.error, self.calls = failures, error, 0

    def analyze_bytes(self, data, *, fitzpatrick=None, heatmaps=True):
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        raise Reached


def test_analyze_file_retries_an_unavailable_server_but_not_bad_input(tmp_path, monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(retry.time, "sleep", clock.sleep)
    image = tmp_path / "a.jpg"
    image.write_bytes(b"x")
    runner = FlakyRunner(2, ServerUnreachableError("unavailable"))
    with pytest.raises(Reached):
        analyze.analyze_file(runner, image, fitzpatrick=None, overlay=None, retries=2)
    assert runner.calls == 3 and clock.sleeps == [0.5, 1.0]

    class Info:
        name, version, backend, evidence, training_data = "m", "v", "triton-grpc", {}, None

    bad = FlakyRunner(9, ServerRequestError("invalid image: nope", invalid_input=True))
    bad.info = Info()
    result = analyze.analyze_file(bad, image, fitzpatrick=None, overlay=None, retries=5)
    assert result["status"] == "invalid_image" and bad.calls == 1


@pytest.mark.parametrize("scheme", ["grpc", "http"])
def test_cli_retries_an_unreachable_server_then_exits_3(
    scheme, astronaut_path, capsys, monkeypatch
):
    clock = FakeClock()
    monkeypatch.setattr(retry.time, "sleep", clock.sleep)
    url = f"{scheme}://127.0.0.1:{free_port()}"
    assert main(["--image", str(astronaut_path), "--url", url, "--retries", "3"]) == (
        EXIT_UNREACHABLE
    )
    err = capsys.readouterr().err
    assert clock.sleeps == [0.5, 1.0, 2.0]
    assert err.count("retry ") == 3 and url in err


def test_cli_rejects_negative_retries(astronaut_path):
    with pytest.raises(SystemExit):
        main(["--image", str(astronaut_path), "--retries", "-1"])
