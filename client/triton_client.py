"""Client of the Triton model `skin_analysis` over HTTP or gRPC."""

from __future__ import annotations

import http.client
from urllib.parse import urlparse

import numpy as np

from client.result import EVIDENCE_VALUES, ModelInfo, RawAnalysis
from client.steps import INVALID_IMAGE_PREFIX
from core.schema import CONDITIONS, SEVERITY_GRADES

MODEL = "skin_analysis"
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
# Acne-severity probabilities [F, 4]; NaN rows for a model without severity. Requested only
# when the model has it (repositories built before it do not).
SEVERITY = "SEVERITY"
# Acne-severity grade [F] (INT32, -1 = none) graded with the shipped cutpoints; requested only
# when the model has it (the result then grades the probabilities with the default rule).
SEVERITY_GRADE = "SEVERITY_GRADE"
# Verification, tone-abstention and quality outputs of the face stage; requested only when the
# model has them (repositories built before them do not).
TRUST_OUTPUTS = ("TONE_REASON", "ITA_INTERVAL", "FACE_PRESENCE", "WARNINGS", "REJECTED")
OOD_OUTPUTS = ("OOD_DISTANCE", "OUT_OF_DISTRIBUTION")
SCHEMES = ("grpc", "http")
# String parameters of the skin_analysis config, written by `python -m triton_models.build` from the
# model card: name, version, per-condition training evidence ("" = unknown), training note.
MODEL_NAME_PARAMETER, MODEL_VERSION_PARAMETER = "model_name", "model_version"
EVIDENCE_PARAMETER = "evidence_{}"  # .format(condition)
TRAINING_DATA_PARAMETER = "training_data"


# Server errors that mean "not now" (the request may succeed later): gRPC UNAVAILABLE, HTTP 503,
# a model that is not ready or not loaded (starting, stopping), a python-backend stub that died
# (Triton 2.51 does not restart it; `python -m triton_models.serve` restarts the server).
# Never a bad-input error (INVALID_ARG / 400).
UNAVAILABLE_STATUSES = ("UNAVAILABLE", "503")
UNAVAILABLE_MESSAGES = (
    "unavailable",
    "not ready",
    "is not healthy",  # a python stub died
    "connection refused",
    "has no available versions",  # skin_analysis is not loaded (yet, or any more)
    "server is stopping",
)
INVALID_ARG_STATUSES = ("INVALID_ARGUMENT", "400")
ERROR_INVALID_INPUT, ERROR_UNAVAILABLE, ERROR_FAILED = "invalid_input", "unavailable", "failed"


class ServerUnreachableError(ConnectionError):
    """The server did not answer, is not ready or is unavailable; the message names the URL.
    The one error that a retry may cure (`client.retry`)."""


class ServerRequestError(RuntimeError):
    """The server rejected one request; `invalid_input` when it was the input's fault."""

    def __init__(self, message: str, *, invalid_input: bool) -> None:
        super().__init__(message)
        self.invalid_input = invalid_input


def classify_error(status: str | None, message: str | None) -> str:
    """ERROR_INVALID_INPUT (the input's fault: never retried), ERROR_UNAVAILABLE (the server
    cannot answer now: retried) or ERROR_FAILED (any other server error: not retried).

    `status` is tritonclient's: "StatusCode.<CODE>" over gRPC, the HTTP status over HTTP.
    """
    status, text = str(status or ""), str(message or "")
    if INVALID_IMAGE_PREFIX in text or "FITZPATRICK must be" in text:
        return ERROR_INVALID_INPUT  # the decode step's rejection, or a bad FITZPATRICK
    if any(code in status for code in INVALID_ARG_STATUSES):
        return ERROR_FAILED
    lowered = text.lower()
    if any(code in status for code in UNAVAILABLE_STATUSES) or any(
        m in lowered for m in UNAVAILABLE_MESSAGES
    ):
        return ERROR_UNAVAILABLE
    return ERROR_FAILED


def parse_url(url: str) -> tuple[str, str]:
    """'grpc://host:port' or 'http://host:port' -> (scheme, 'host:port'); raises ValueError."""
    parsed = urlparse(url)
    if parsed.scheme not in SCHEMES or not parsed.netloc:
        raise ValueError(f"--url must look like grpc://HOST:PORT or http://HOST:PORT, got {url!r}")
    return parsed.scheme, parsed.netloc


def model_info_from_config(config: dict, backend: str) -> ModelInfo:
    """The served model's name, version, evidence and training note from its config (the
    JSON of `get_model_config`); a repository built before a parameter existed gives
    "unknown" (name, version) or None."""
    params = config.get("parameters") or {}

    def get(key: str) -> str | None:
        return (params.get(key) or {}).get("string_value") or None

    evidence = {c: get(EVIDENCE_PARAMETER.format(c)) for c in CONDITIONS}
    return ModelInfo(
        get(MODEL_NAME_PARAMETER) or "unknown",
        get(MODEL_VERSION_PARAMETER) or "unknown",
        backend,
        evidence={c: v if v in EVIDENCE_VALUES else None for c, v in evidence.items()},
        training_data=get(TRAINING_DATA_PARAMETER),
    )


def _strings(array: np.ndarray) -> list[str | None]:
    return [(v.decode() if isinstance(v, bytes) else str(v)) or None for v in array.reshape(-1)]


class TritonRunner:
    """Sends one image per request to skin_analysis and returns its per-face outputs."""

    def __init__(self, url: str, *, timeout_s: float = 30.0, check_ready: bool = True) -> None:
        self.url = url
        self.scheme, address = parse_url(url)
        self.timeout_s = timeout_s
        if self.scheme == "grpc":
            import tritonclient.grpc as tc
        else:
            import tritonclient.http as tc
        self._tc = tc
        self._address = address
        self.client = self._connect()
        self.info = ModelInfo("unknown", "unknown", f"triton-{self.scheme}")
        self.outputs = OUTPUTS
        if check_ready:
            self._check_ready()

    def _connect(self):
        kwargs = (
            {}
            if self.scheme == "grpc"
            else {"connection_timeout": self.timeout_s, "network_timeout": self.timeout_s}
        )
        return self._tc.InferenceServerClient(self._address, **kwargs)

    def _unavailable(self, message: str) -> ServerUnreachableError:
        """The error for a server that cannot answer now, after replacing the connection: a
        gRPC channel that failed backs off its reconnects (up to minutes), and a retry must
        reach a server that came back at once."""
        try:
            self.client.close()
        except Exception:  # noqa: BLE001 - the old connection may be broken in any way
            pass
        self.client = self._connect()
        return ServerUnreachableError(f"Triton server at {self.url} is unavailable: {message}")

    def _check_ready(self) -> None:
        try:
            ready = self.client.is_server_ready() and self.client.is_model_ready(MODEL)
            if self.scheme == "grpc":
                config = self.client.get_model_config(MODEL, as_json=True)["config"]
            else:
                config = self.client.get_model_config(MODEL)
        except Exception as exc:  # tritonclient, grpc and gevent raise their own types
            raise ServerUnreachableError(
                f"Triton server at {self.url} is unreachable: {exc}"
            ) from None
        if not ready:
            raise ServerUnreachableError(f"Triton server at {self.url} is not ready ({MODEL})")
        # Read once per client: the result's model block and conditions.<cond>.evidence.
        self.info = model_info_from_config(config, f"triton-{self.scheme}")
        names = {o.get("name") for o in config.get("output", [])}
        optional = (SEVERITY, SEVERITY_GRADE, *TRUST_OUTPUTS, *OOD_OUTPUTS)
        self.outputs = (*OUTPUTS, *(n for n in optional if n in names))

    def analyze_bytes(
        self, data: bytes, *, fitzpatrick: int | None = None, heatmaps: bool = True
    ) -> RawAnalysis:
        """Analyse one encoded image; raises ServerRequestError or ServerUnreachableError.
        heatmaps: False does not ask for the CAM output (RawAnalysis.cam is None): the server
        then leaves it out, 196 kB per face at 128 px."""
        from tritonclient.utils import InferenceServerException

        tc = self._tc
        image = tc.InferInput("IMAGE", [1], "BYTES")
        image.set_data_from_numpy(np.array([bytes(data)], dtype=np.object_))
        inputs = [image]
        if fitzpatrick is not None:
            fitz = tc.InferInput("FITZPATRICK", [1], "INT32")
            fitz.set_data_from_numpy(np.array([int(fitzpatrick)], dtype=np.int32))
            inputs.append(fitz)
        names = [n for n in self.outputs if heatmaps or n != "CAM"]
        outputs = [tc.InferRequestedOutput(name) for name in names]
        kwargs = {"client_timeout": self.timeout_s} if self.scheme == "grpc" else {}
        try:
            result = self.client.infer(MODEL, inputs, outputs=outputs, **kwargs)
        except InferenceServerException as exc:
            message = exc.message() or str(exc)
            kind = classify_error(exc.status(), message)
            if kind == ERROR_UNAVAILABLE:
                raise self._unavailable(message) from None
            # Only the decode step's own rejection (or a bad FITZPATRICK) is the input's fault.
            raise ServerRequestError(message, invalid_input=kind == ERROR_INVALID_INPUT) from None
        except (OSError, ConnectionError, http.client.HTTPException) as exc:
            raise self._unavailable(str(exc) or type(exc).__name__) from None
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
            cam=get("CAM") if heatmaps else None,
            severity=(
                get(SEVERITY).reshape(num, len(SEVERITY_GRADES))
                if SEVERITY in self.outputs
                else None
            ),
            severity_grade=(
                get(SEVERITY_GRADE).reshape(num) if SEVERITY_GRADE in self.outputs else None
            ),
            **_trust_fields(get, num, set(self.outputs)),
        )

    def close(self) -> None:
        """Close the connection."""
        self.client.close()


def _trust_fields(get, num: int, requested: set[str]) -> dict:
    """RawAnalysis's verification, tone-abstention, quality and OOD fields (absent: left out)."""
    fields = {}
    if set(OOD_OUTPUTS) <= requested:
        fields["ood_distance"] = get("OOD_DISTANCE").reshape(num)
        fields["out_of_distribution"] = get("OUT_OF_DISTRIBUTION").reshape(num).astype(bool)
    if not set(TRUST_OUTPUTS) <= requested:
        return fields
    return {
        **fields,
        "tone_reasons": [s or None for s in _strings(get("TONE_REASON"))],
        "ita_interval": get("ITA_INTERVAL").reshape(num, 2),
        "face_presence": get("FACE_PRESENCE").reshape(num),
        "warnings": [tuple(w.split(",")) if w else () for w in _strings(get("WARNINGS"))],
        "rejected": [s or "" for s in _strings(get("REJECTED"))],
    }
