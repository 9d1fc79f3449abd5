"""onnxruntime sessions for the committed preprocessing models, checked against their sha256.

BlazeFace (`face_detect.FaceDetector`) and FaceMesh (`landmarks.LandmarkModel`) load their ONNX
files through `verified_session`: the file's sha256 must equal the one recorded in
assets/PROVENANCE.md, so a replaced or corrupted model is refused before it runs.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

CHECKSUM_MISMATCH = "does not match the expected"


def verify_checksum(path: Path, expected: str, converter: str) -> None:
    """Raise RuntimeError when the file's sha256 differs from `expected`; the message names
    the `converter` script that rebuilds it."""
    actual = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    if actual != expected:
        raise RuntimeError(
            f"{path}: sha256 {actual} {CHECKSUM_MISMATCH} {expected}; "
            f"re-run {converter} or restore the committed file"
        )


def verified_session(
    path: Path,
    *,
    expected_sha256: str | None,
    converter: str,
    num_threads: int = 1,
    spinning: bool = True,
):
    """A CPU onnxruntime session of `path` with `num_threads` intra-op threads (checked first
    unless `expected_sha256` is None); spinning=False lets idle pool threads sleep, which
    leaves the cores to other processes when several sessions share them."""
    import onnxruntime as ort

    if expected_sha256 is not None:
        verify_checksum(path, expected_sha256, converter)
    options = ort.SessionOptions()
    options.intra_op_num_threads = num_threads
    options.log_severity_level = 3
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
