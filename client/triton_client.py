"""Client of the Triton ensemble `skin_analysis` over HTTP or gRPC."""

from __future__ import annotations

from urllib.parse import urlparse

import numpy as np

from client.result import ModelInfo, RawAnalysis
from client.steps import INVALID_IMAGE_PREFIX
from data.schema import CONDITIONS

ENSEMBLE = "skin_analysis"
OUTPUTS = (
    "BOXES",
    "SCORES",
    "ITA",
    "TONE_CONFIDENCE",
    "AFFINES",
    "GROUP",
    "GROUP_SOURCE",
    "PROBS",
    "THRESHOLDS",
    "DECISIONS",
    "CAM",
)
SCHEMES = ("grpc", "http")


class ServerUnreachableError(ConnectionError):
    """The server did not answer or is not ready; the message names the URL."""


class ServerRequestError(RuntimeError):
    """The server rejected one request; `invalid_input` when it was the input's fault."""

    def __init__(self, message: str, *, invalid_input: bool) -> None:
        super().__init__(message)
        self.invalid_input = invalid_input


def parse_url(url: str) -> tuple[str, str]:
    """'grpc://host:port' or 'http://host:port' -> (scheme, 'host:port'); raises ValueError."""
    parsed = urlparse(url)
    if parsed.scheme not in SCHEMES or not parsed.netloc:
        raise ValueError(f"--url must look like grpc://HOST:PORT or http://HOST:PORT, got {url!r}")
    return parsed.scheme, parsed.netloc


def _strings(array: np.ndarray) -> list[str | None]:
    return [(v.decode() if isinstance(v, bytes) else str(v)) or None for v in array.reshape(-1)]


class TritonRunner:
    """Sends one image per request to the ensemble and returns its per-face outputs."""

    def __init__(self, url: str, *, timeout_s: float = 30.0, check_ready: bool = True) -> None:
        self.url = url
        self.scheme, address = parse_url(url)
        self.timeout_s = timeout_s
        if self.scheme == "grpc":
            import tritonclient.grpc as tc
        else:
            import tritonclient.http as tc
        self._tc = tc
        kwargs = (
            {}
            if self.scheme == "grpc"
            else {"connection_timeout": timeout_s, "network_timeout": timeout_s}
        )
        self.client = tc.InferenceServerClient(address, **kwargs)
        self.info = ModelInfo("unknown", "unknown", f"triton-{self.scheme}")
        if check_ready:
            self._check_ready()

    def _check_ready(self) -> None:
        try:
            ready = self.client.is_server_ready() and self.client.is_model_ready(ENSEMBLE)
            if self.scheme == "grpc":
                config = self.client.get_model_config(ENSEMBLE, as_json=True)["config"]
            else:
                config = self.client.get_model_config(ENSEMBLE)
        except Exception as exc:  # tritonclient, grpc and gevent raise their own types
            raise ServerUnreachableError(
                f"Triton server at {self.url} is unreachable: {exc}"
            ) from None
        if not ready:
            raise ServerUnreachableError(f"Triton server at {self.url} is not ready ({ENSEMBLE})")
        params = config.get("parameters", {})
        name, version = (
            params.get(k, {}).get("string_value", "unknown")
            for k in ("model_name", "model_version")
        )
        self.info = ModelInfo(name, version, f"triton-{self.scheme}")

    def analyze_bytes(self, data: bytes, *, fitzpatrick: int | None = None) -> RawAnalysis:
        """Analyse one encoded image; raises ServerRequestError or ServerUnreachableError."""
        from tritonclient.utils import InferenceServerException

        tc = self._tc
        image = tc.InferInput("IMAGE", [1], "BYTES")
        image.set_data_from_numpy(np.array([bytes(data)], dtype=np.object_))
        inputs = [image]
        if fitzpatrick is not None:
            fitz = tc.InferInput("FITZPATRICK", [1], "INT32")
            fitz.set_data_from_numpy(np.array([int(fitzpatrick)], dtype=np.int32))
            inputs.append(fitz)
        outputs = [tc.InferRequestedOutput(name) for name in OUTPUTS]
        kwargs = {"client_timeout": self.timeout_s} if self.scheme == "grpc" else {}
        try:
            result = self.client.infer(ENSEMBLE, inputs, outputs=outputs, **kwargs)
        except InferenceServerException as exc:
            status = str(exc.status() or "")
            message = exc.message() or str(exc)
            if "UNAVAILABLE" in status or "unavailable" in message.lower():
                raise ServerUnreachableError(
                    f"Triton server at {self.url} is unreachable: {message}"
                ) from None
            # Only the decode step's own rejection (or a bad FITZPATRICK) is the input's fault.
            invalid = INVALID_IMAGE_PREFIX in message or "FITZPATRICK must be" in message
            raise ServerRequestError(message, invalid_input=invalid) from None
        except (OSError, ConnectionError) as exc:
            raise ServerUnreachableError(
                f"Triton server at {self.url} is unreachable: {exc}"
            ) from None
        get = result.as_numpy
        num = get("BOXES").shape[0]
        return RawAnalysis(
            boxes=get("BOXES").reshape(num, 4),
            scores=get("SCORES").reshape(num),
            ita=get("ITA").reshape(num),
            tone_confidence=get("TONE_CONFIDENCE").reshape(num),
            affines=get("AFFINES").reshape(num, 2, 3),
            groups=_strings(get("GROUP")),
            sources=[s or "estimated" for s in _strings(get("GROUP_SOURCE"))],
            probs=get("PROBS").reshape(num, len(CONDITIONS)),
            thresholds=get("THRESHOLDS").reshape(num, len(CONDITIONS)),
            decisions=get("DECISIONS").reshape(num, len(CONDITIONS)).astype(bool),
            cam=get("CAM"),
        )

    def close(self) -> None:
        """Close the connection."""
        self.client.close()
