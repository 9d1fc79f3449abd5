"""The Triton ensemble over HTTP and gRPC against the embedded runner, on a real server."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from client.result import build_result
from client.triton_client import ServerRequestError, TritonRunner

PROTOCOLS = ("grpc", "http")


@pytest.fixture(scope="module", params=PROTOCOLS)
def remote(request, triton_server) -> TritonRunner:
    url = triton_server.grpc_url if request.param == "grpc" else triton_server.http_url
    runner = TritonRunner(url)
    yield runner
    runner.close()


def assert_same_analysis(remote_raw, local_raw) -> None:
    assert remote_raw.num_faces == local_raw.num_faces
    np.testing.assert_allclose(remote_raw.probs, local_raw.probs, atol=1e-5, rtol=0)
    np.testing.assert_allclose(remote_raw.boxes, local_raw.boxes, atol=1e-3, rtol=0)
    np.testing.assert_allclose(remote_raw.scores, local_raw.scores, atol=1e-5, rtol=0)
    np.testing.assert_allclose(remote_raw.thresholds, local_raw.thresholds, atol=1e-12, rtol=0)
    np.testing.assert_array_equal(remote_raw.decisions, local_raw.decisions)
    assert remote_raw.groups == local_raw.groups
    assert remote_raw.sources == local_raw.sources
    assert remote_raw.cam.shape == local_raw.cam.shape


def test_model_info_comes_from_the_model_card(remote, embedded):
    assert (remote.info.name, remote.info.version) == (embedded.info.name, embedded.info.version)


def test_synthetic_faces_match_embedded_runner(remote, embedded, synthetic_jpegs):
    for data in synthetic_jpegs:
        local = embedded.analyze_bytes(data)
        assert local.num_faces >= 1
        assert_same_analysis(remote.analyze_bytes(data), local)


def test_real_photo_matches_embedded_runner(remote, embedded, astronaut_path):
    data = astronaut_path.read_bytes()
    local = embedded.analyze_bytes(data)
    assert local.num_faces == 1
    assert_same_analysis(remote.analyze_bytes(data), local)


def test_given_fitzpatrick_overrides_estimate(remote, embedded, astronaut_path):
    data = astronaut_path.read_bytes()
    raw = remote.analyze_bytes(data, fitzpatrick=6)
    assert raw.groups == ["V-VI"] and raw.sources == ["given"]
    assert_same_analysis(raw, embedded.analyze_bytes(data, fitzpatrick=6))


def test_out_of_range_fitzpatrick_is_invalid_input(remote, astronaut_path):
    with pytest.raises(ServerRequestError, match="FITZPATRICK") as info:
        remote.analyze_bytes(astronaut_path.read_bytes(), fitzpatrick=9)
    assert info.value.invalid_input


def test_image_without_face_is_no_face(remote, no_face_png):
    raw = remote.analyze_bytes(no_face_png)
    result = build_result("gradient.png", raw, remote.info)
    assert result["status"] == "no_face" and result["faces"] == []


def test_corrupt_bytes_fail_one_request_and_server_stays_up(remote, synthetic_jpegs):
    with pytest.raises(ServerRequestError, match="invalid image") as info:
        remote.analyze_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    assert info.value.invalid_input
    assert remote.analyze_bytes(synthetic_jpegs[0]).num_faces == 1


def test_sixteen_threads_of_twenty_five_requests(triton_server, synthetic_jpegs):
    failures: list[BaseException] = []
    faces: list[int] = []

    def worker(k: int) -> None:
        runner = TritonRunner(triton_server.grpc_url if k % 2 else triton_server.http_url)
        try:
            for i in range(25):
                faces.append(runner.analyze_bytes(synthetic_jpegs[(k + i) % 4]).num_faces)
        except BaseException as exc:  # collected and reported below
            failures.append(exc)
        finally:
            runner.close()

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not failures, failures[:3]
    assert len(faces) == 16 * 25 and all(n == 1 for n in faces)
