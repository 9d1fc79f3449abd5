"""Triton's skin_analysis over HTTP and gRPC against the embedded runner, on a real server."""

from __future__ import annotations

import json
import shutil
import threading
import time

import numpy as np
import pytest

from client.result import build_result
from client.runner import EmbeddedRunner
from client.triton_client import ServerRequestError, TritonRunner
from tests.serving.conftest import start_server
from triton_models.build import build_repository

PROTOCOLS = ("grpc", "http")
MIXED = {"acne": "real+synthetic", "hyperpigmentation": "real+synthetic", "wrinkles": "synthetic"}
# Planted severity cutpoints for the tiny export (its P(grade > k) sit near 0.73, 0.66, 0.58:
# grade 3 by the median rule, 1 with these).
CUTPOINTS = [0.7, 0.7, 0.7]


@pytest.fixture(scope="module", params=PROTOCOLS)
def remote(request, triton_server) -> TritonRunner:
    url = triton_server.grpc_url if request.param == "grpc" else triton_server.http_url
    runner = TritonRunner(url)
    yield runner
    runner.close()


def assert_same_analysis(remote_raw, local_raw, *, cam: bool = True) -> None:
    assert remote_raw.num_faces == local_raw.num_faces
    np.testing.assert_allclose(remote_raw.probs, local_raw.probs, atol=1e-5, rtol=0)
    np.testing.assert_allclose(remote_raw.boxes, local_raw.boxes, atol=1e-3, rtol=0)
    np.testing.assert_allclose(remote_raw.scores, local_raw.scores, atol=1e-5, rtol=0)
    np.testing.assert_allclose(remote_raw.thresholds, local_raw.thresholds, atol=1e-12, rtol=0)
    np.testing.assert_array_equal(remote_raw.decisions, local_raw.decisions)
    assert remote_raw.groups == local_raw.groups
    assert remote_raw.sources == local_raw.sources
    if cam:
        assert remote_raw.cam.shape == local_raw.cam.shape
    # Acne severity [F, 4]: NaN rows on both paths for a model without the severity output.
    assert remote_raw.severity.shape == local_raw.severity.shape == (local_raw.num_faces, 4)
    np.testing.assert_allclose(remote_raw.severity, local_raw.severity, atol=1e-5, rtol=0)
    # The grade from the one severity step (cutpoints of thresholds.json; -1 without severity).
    assert remote_raw.severity_grade.dtype == np.int32
    np.testing.assert_array_equal(remote_raw.severity_grade, local_raw.severity_grade)
    # Verification, tone abstention, quality and the out-of-distribution score.
    assert remote_raw.rejected == local_raw.rejected
    assert remote_raw.warnings == local_raw.warnings
    assert remote_raw.tone_reasons == local_raw.tone_reasons
    np.testing.assert_allclose(remote_raw.ita, local_raw.ita, atol=1e-4, rtol=0)
    np.testing.assert_allclose(remote_raw.ita_interval, local_raw.ita_interval, atol=1e-4, rtol=0)
    np.testing.assert_allclose(remote_raw.face_presence, local_raw.face_presence, atol=1e-4)
    np.testing.assert_allclose(remote_raw.ood_distance, local_raw.ood_distance, atol=1e-3)
    np.testing.assert_array_equal(remote_raw.out_of_distribution, local_raw.out_of_distribution)


def test_shipped_model_serves_the_acne_severity_grade(remote, astronaut_path):
    raw = remote.analyze_bytes(astronaut_path.read_bytes())
    severity = build_result("a.png", raw, remote.info)["faces"][0]["conditions"]["acne"]["severity"]
    assert severity["grade"] in (0, 1, 2, 3)
    assert sum(severity["probabilities"]) == pytest.approx(1.0, abs=1e-4)


def test_model_info_comes_from_the_model_card(remote, embedded):
    assert (remote.info.name, remote.info.version) == (embedded.info.name, embedded.info.version)
    # Evidence per condition and the training note: from the skin_analysis config on this path.
    assert remote.info.evidence == embedded.info.evidence
    assert set(embedded.info.evidence.values()) <= {"real", "synthetic", "real+synthetic", "none"}
    assert remote.info.training_data == embedded.info.training_data is not None


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


def test_without_heatmaps_the_cam_is_left_out_and_nothing_else_changes(
    remote, embedded, astronaut_path
):
    data = astronaut_path.read_bytes()
    remote_raw = remote.analyze_bytes(data, heatmaps=False)
    local_raw = embedded.analyze_bytes(data, heatmaps=False)
    assert remote_raw.cam is None and local_raw.cam is None
    full = embedded.analyze_bytes(data)
    np.testing.assert_array_equal(local_raw.probs, full.probs)
    assert_same_analysis(remote_raw, full, cam=False)


def test_a_request_naming_no_outputs_gets_every_output_with_the_cam(triton_server, astronaut_path):
    """Triton lists every output as requested when the client names none: the model must then
    compute the CAM too."""
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(triton_server.http_url.split("://", 1)[1])
    image = httpclient.InferInput("IMAGE", [1], "BYTES")
    image.set_data_from_numpy(np.array([astronaut_path.read_bytes()], dtype=np.object_))
    result = client.infer("skin_analysis", [image])
    client.close()
    assert result.as_numpy("CAM").shape[:2] == (1, 3)
    assert result.as_numpy("OUT_OF_DISTRIBUTION").shape == (1,)


def test_one_instance_answers_sequential_requests(triton_server, synthetic_jpegs):
    """With the rate limiter's instance priorities, requests one at a time go to the preferred
    instance (the same warm process) instead of alternating between the two.

    The client pauses between requests: an instance is free again a moment after its answer has
    left, and on a loaded machine a request sent at once can find it still busy and go to the
    other instance, as it should."""
    runner = TritonRunner(triton_server.grpc_url)
    runner.analyze_bytes(synthetic_jpegs[0])
    before = triton_server.stub_cpu_seconds()
    for i in range(60):
        time.sleep(0.05)
        runner.analyze_bytes(synthetic_jpegs[i % 4])
    after = triton_server.stub_cpu_seconds()
    runner.close()
    used = {name: after[name] - before.get(name, 0.0) for name in after}
    assert set(used) == {"skin_analysis_0_0", "skin_analysis_1_0"}, used
    busiest = max(used.values())
    assert busiest > 0.1 and busiest >= 0.85 * sum(used.values()), used


def test_out_of_range_fitzpatrick_is_invalid_input(remote, astronaut_path):
    with pytest.raises(ServerRequestError, match="FITZPATRICK") as info:
        remote.analyze_bytes(astronaut_path.read_bytes(), fitzpatrick=9)
    assert info.value.invalid_input


def test_image_without_face_is_no_face(remote, no_face_png):
    raw = remote.analyze_bytes(no_face_png)
    result = build_result("gradient.png", raw, remote.info)
    assert result["status"] == "no_face" and result["faces"] == []


def test_group_photo_counts_the_hand_as_a_rejected_candidate(remote, embedded, group_photo_path):
    data = group_photo_path.read_bytes()
    remote_raw, local_raw = remote.analyze_bytes(data), embedded.analyze_bytes(data)
    assert remote_raw.num_faces == 6 and len(remote_raw.rejected) == 1
    assert_same_analysis(remote_raw, local_raw)


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


@pytest.fixture(scope="module")
def mixed_model_dir(severity_model_dir, tmp_path_factory):
    """The tiny export with the acne-severity output, its card saying it was trained on real
    and synthetic data (wrinkles synthetic only), as a card of a combined dataset does, and
    planted severity cutpoints in its thresholds.json."""
    import dataclasses

    from core.thresholds import load_thresholds, save_thresholds

    out = tmp_path_factory.mktemp("mixed_model")
    shutil.copytree(severity_model_dir, out, dirs_exist_ok=True)
    fit = {"cutpoints": CUTPOINTS, "qwk": None, "n": 0, "method": "planted for the test"}
    thresholds = load_thresholds(out / "thresholds.json")
    save_thresholds(dataclasses.replace(thresholds, acne_severity=fit), out / "thresholds.json")
    card = json.loads((out / "model_card.json").read_text())
    note = "trained on real photos (acne-new v36, CC BY 4.0) and synthetic faces (synthskin-v1)"
    card["training_data"] = {"synthetic": False, "evidence": MIXED, "note": note}
    (out / "model_card.json").write_text(json.dumps(card))
    return out


@pytest.fixture(scope="module")
def severity_server(mixed_model_dir, tmp_path_factory):
    """A second server whose classifier has the acne-severity output (a tiny export) and whose
    card has per-condition evidence."""
    repo = tmp_path_factory.mktemp("severity_repo")
    assert build_repository(mixed_model_dir, repo)["severity"] is True
    server = start_server(repo, tmp_path_factory.mktemp("severity_triton"))
    yield server
    server.stop()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_severity_and_evidence_match_embedded_runner(
    protocol, severity_server, mixed_model_dir, synthetic_jpegs, astronaut_path
):
    from core.severity import severity_grade

    url = severity_server.grpc_url if protocol == "grpc" else severity_server.http_url
    remote = TritonRunner(url)
    local = EmbeddedRunner(mixed_model_dir)
    assert local.thresholds.severity_cutpoints == tuple(CUTPOINTS)
    moved = 0  # faces whose grade the cutpoints changed
    try:
        for data in [*synthetic_jpegs[:2], astronaut_path.read_bytes()]:
            local_raw = local.analyze_bytes(data)
            remote_raw = remote.analyze_bytes(data)
            assert_same_analysis(remote_raw, local_raw)
            assert np.isfinite(remote_raw.severity).all()
            result_a = build_result("x", remote_raw, remote.info)
            result_b = build_result("x", local_raw, local.info)
            assert result_a["model"]["training_data"] == result_b["model"]["training_data"]
            assert result_a["model"]["training_data"].startswith("trained on real photos")
            a, b = result_a["faces"], result_b["faces"]
            for fa, fb in zip(a, b, strict=True):
                evidence_a = {c: v["evidence"] for c, v in fa["conditions"].items()}
                assert evidence_a == {c: v["evidence"] for c, v in fb["conditions"].items()}
                assert evidence_a == MIXED
                sa, sb = fa["conditions"]["acne"]["severity"], fb["conditions"]["acne"]["severity"]
                assert sa["grade"] == sb["grade"] and len(sa["probabilities"]) == 4
                np.testing.assert_allclose(sa["probabilities"], sb["probabilities"], atol=1e-5)
                # Both paths grade with the shipped cutpoints, not the median rule.
                probs = np.asarray(sb["probabilities"], np.float32)
                assert sa["grade"] == int(severity_grade(probs, CUTPOINTS))
                moved += sa["grade"] != int(severity_grade(probs))
    finally:
        remote.close()
    assert moved > 0


@pytest.fixture(scope="module")
def bls_server(tmp_path_factory):
    """The shipped model served as in the NGC container: skin_analysis calls the `classify`
    model through BLS (here a python stand-in for the onnxruntime backend)."""
    from triton_models.build import DEFAULT_MODEL_DIR

    repo = tmp_path_factory.mktemp("bls_repo")
    build_repository(DEFAULT_MODEL_DIR, repo)
    workdir = tmp_path_factory.mktemp("bls_triton")
    server = start_server(repo, workdir, classifier_in_process=False)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def many_faces_png() -> bytes:
    """36 synthetic faces tiled 6 x 6 (1536 px): more faces than the classifier's batch (32)."""
    import cv2

    from data.synthetic import SynthConfig, make_record

    config = SynthConfig(n=36, seed=5)
    tiles = [
        cv2.imdecode(np.frombuffer(make_record(config, i)[1], np.uint8), cv2.IMREAD_COLOR)
        for i in range(config.n)
    ]
    grid = np.concatenate([np.concatenate(tiles[r * 6 : r * 6 + 6], axis=1) for r in range(6)])
    return cv2.imencode(".png", grid)[1].tobytes()


def test_classifier_called_through_bls_matches_embedded_runner(
    bls_server, triton_server, embedded, synthetic_jpegs, group_photo_path, many_faces_png
):
    """Both ways of running the classifier (a BLS call to `classify`; its model.onnx inside
    skin_analysis, the local default) give the embedded runner's analysis."""
    from benchmarks.serving import model_stats
    from triton_models.local_repo import read_config

    local = bls_server.workdir / "repo"
    assert read_config(local / "classify" / "config.pbtxt").max_batch_size > 0
    assert "classifier_onnx" not in read_config(local / "skin_analysis" / "config.pbtxt").parameters
    inlined = read_config(triton_server.workdir / "repo" / "skin_analysis" / "config.pbtxt")
    assert inlined.parameters["classifier_onnx"].string_value == "classifier/model.onnx"
    assert not (triton_server.workdir / "repo" / "classify").exists()
    remote = TritonRunner(bls_server.grpc_url)
    try:
        for data in [synthetic_jpegs[0], group_photo_path.read_bytes()]:
            assert_same_analysis(remote.analyze_bytes(data), embedded.analyze_bytes(data))
        # Without the CAM, `classify` is asked for the other outputs only.
        lean = remote.analyze_bytes(group_photo_path.read_bytes(), heatmaps=False)
        assert lean.cam is None
        assert_same_analysis(lean, embedded.analyze_bytes(group_photo_path.read_bytes()), cam=False)
        # More faces than classify's max_batch_size: skin_analysis calls it in batches.
        many = embedded.analyze_bytes(many_faces_png)
        assert many.num_faces > read_config(local / "classify" / "config.pbtxt").max_batch_size
        assert_same_analysis(remote.analyze_bytes(many_faces_png), many)
        with pytest.raises(ServerRequestError, match="invalid image") as info:
            remote.analyze_bytes(b"not an image")
        assert info.value.invalid_input
    finally:
        remote.close()
    # The classifier ran as its own model: Triton's statistics counted its executions.
    assert model_stats(bls_server.grpc_url)["classify"]["count"] >= 2
