"""Fixtures for the serving tests: a real tritonserver process and the embedded runner.

The server runs from its own numpy<2 environment (`.venv-triton/`, created on first use and
reused; notes/triton-local.md) over a repository built from models/default into a temp folder.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from client.runner import DEFAULT_MODEL_DIR, EmbeddedRunner
from data.synthetic import SynthConfig, make_record
from triton_models.build import build_repository
from triton_models.server import TritonServer, free_port


def start_server(repo, workdir, **options) -> TritonServer:
    """A real tritonserver on free loopback ports serving `repo`, started and ready; `options`
    are further TritonServer fields."""
    server = TritonServer(
        repo=repo,
        http_port=free_port(),
        grpc_port=free_port(),
        metrics_port=free_port(),
        workdir=workdir,
        **options,
    )
    server.start(timeout_s=240)
    return server


@pytest.fixture(scope="session")
def embedded() -> EmbeddedRunner:
    return EmbeddedRunner(DEFAULT_MODEL_DIR)


def serve_shipped_model(tmp_path_factory, prefix: str):
    """Yield a tritonserver of the shipped model on free loopback ports; SIGTERM at the end."""
    repo = tmp_path_factory.mktemp(f"{prefix}_repo")
    build_repository(DEFAULT_MODEL_DIR, repo)
    server = start_server(repo, tmp_path_factory.mktemp(f"{prefix}_triton"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def triton_server(tmp_path_factory):
    """A tritonserver on free loopback ports, shared by the serving tests."""
    yield from serve_shipped_model(tmp_path_factory, "shared")


@pytest.fixture(scope="session")
def synthetic_jpegs() -> list[bytes]:
    """Four synthetic faces, one per Fitzpatrick group and more (data.synthetic)."""
    config = SynthConfig(n=4, seed=3)
    return [make_record(config, i)[1] for i in range(config.n)]


@pytest.fixture(scope="session")
def no_face_png() -> bytes:
    """A smooth colour gradient: an image without a face."""
    y, x = np.mgrid[0:240, 0:320]
    image = np.stack([x * 255 // 320, y * 255 // 240, np.full_like(x, 90)], -1).astype(np.uint8)
    ok, data = cv2.imencode(".png", image)
    assert ok
    return data.tobytes()
