"""FaceMesh ONNX: parity with MediaPipe, the face-presence gate on real and drawn images, the
pure halves on synthetic arrays, the committed asset."""

from __future__ import annotations

import hashlib
import shutil

import numpy as np
import onnx
import pytest

from preprocessing.face_detect import Face
from preprocessing.image_io import load_image
from preprocessing.landmarks import (
    CHECKSUM_MISMATCH,
    INPUT_SIZE,
    MIN_FACE_PRESENCE,
    MODEL_PATH,
    MODEL_SHA256,
    LandmarkModel,
    decode_landmarks,
    is_face,
    landmarks_for,
    make_landmark_input,
    roi_affine,
    warp_roi,
)
from tests.benchmark_loader import load_benchmark

# MediaPipe 0.10.21's own FaceMesh (static_image_mode, refine_landmarks=False) on
# astronaut.png, in image pixels: nose tip, forehead top, eye corners, chin.
MEDIAPIPE_ASTRONAUT = {
    1: (224.1, 131.2),
    10: (227.5, 72.4),
    33: (194.6, 100.9),
    133: (213.8, 103.6),
    152: (221.3, 175.5),
    263: (256.7, 104.1),
    362: (237.4, 104.8),
}


@pytest.fixture(scope="module")
def landmark_model() -> LandmarkModel:
    return LandmarkModel()


def draw_die(value: int = 5, size: int = 320) -> np.ndarray:
    """A white rounded die with black pips on grey; BlazeFace scores it 0.69 (a 'face')."""
    return load_benchmark("robustness").draw_die(value, np.full((size, size, 3), 200, np.uint8))


def draw_smiley(size: int = 160) -> np.ndarray:
    """A yellow smiley logo with dot eyes: the most face-like drawing measured (presence 0.99)."""
    return load_benchmark("robustness").draw_smiley(size)


# --- the committed asset


def test_committed_model_checksum_names_and_variable_batch():
    assert hashlib.sha256(MODEL_PATH.read_bytes()).hexdigest() == MODEL_SHA256
    graph = onnx.load(str(MODEL_PATH)).graph
    (inp,) = graph.input
    dims = inp.type.tensor_type.shape.dim
    assert inp.name == "input" and dims[0].dim_param
    assert [d.dim_value for d in dims[1:]] == [INPUT_SIZE, INPUT_SIZE, 3]
    outputs = {
        o.name: [d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim]
        for o in graph.output
    }
    assert outputs == {"landmarks": ["batch", 1404], "face_flag": ["batch", 1]}


def test_tampered_model_is_refused(tmp_path):
    copy = tmp_path / "face_landmark.onnx"
    shutil.copy(MODEL_PATH, copy)
    with copy.open("ab") as handle:
        handle.write(b"\0")
    with pytest.raises(RuntimeError, match=CHECKSUM_MISMATCH):
        LandmarkModel(copy)


# --- real images


def test_astronaut_passes_the_gate_with_mediapipe_landmarks(detector, astronaut, landmark_model):
    faces = detector.detect(astronaut)
    landmarks, presence = landmark_model.landmarks(astronaut, faces)
    assert landmarks.shape == (1, 468, 3) and presence.shape == (1,)
    assert is_face(presence).tolist() == [True]
    for index, expected in MEDIAPIPE_ASTRONAUT.items():
        assert np.linalg.norm(landmarks[0, index, :2] - expected) < 2.0, index
    # The mesh's eye centres sit on BlazeFace's eye keypoints (within 10 % of the eye distance).
    mesh_eyes = np.stack(
        [landmarks[0, [33, 133], :2].mean(0), landmarks[0, [263, 362], :2].mean(0)]
    )
    blaze_eyes = faces[0].keypoints[:2]
    eye_distance = np.linalg.norm(blaze_eyes[1] - blaze_eyes[0])
    assert (np.linalg.norm(mesh_eyes - blaze_eyes, axis=1) < 0.1 * eye_distance).all()
    nose_z, cheek_z = landmarks[0, 1, 2], landmarks[0, [234, 454], 2].mean()
    assert nose_z < cheek_z  # z: nearer the camera is smaller


@pytest.mark.parametrize("name", ["die", "smiley"])
def test_drawn_non_faces_found_by_blazeface_are_rejected(detector, landmark_model, name):
    image = draw_die() if name == "die" else draw_smiley()
    faces = detector.detect(image)
    assert faces, "BlazeFace must propose a candidate, or this test checks nothing"
    _, presence = landmark_model.landmarks(image, faces)
    assert not is_face(presence).any(), presence
    if name == "die":
        assert presence.max() < 0.1


def test_group_photo_keeps_six_faces_and_drops_the_hand(detector, landmark_model, group_photo_path):
    image = load_image(group_photo_path)
    faces = detector.detect(image)
    assert len(faces) == 7  # six faces and a hand holding a glass (BlazeFace 0.53)
    tensor, affines = make_landmark_input(image, faces)
    landmarks, presence = decode_landmarks(*landmark_model.run(tensor), affines)
    assert is_face(presence).sum() == 6
    hand = faces[int(np.argmin(presence))]
    assert hand.score < 0.6 and presence.min() < 0.5
    # One batched call gives what one call per face gives.
    single = [landmarks_for(image, [face])[0][0] for face in faces[:2]]
    np.testing.assert_allclose(landmarks[:2], np.stack(single), atol=1e-3)


# --- the pure halves on synthetic arrays


def test_roi_affine_squares_scales_and_rotates():
    # Horizontal eyes: a square of 1.5 x the long side, centred on the box.
    affine = roi_affine((10, 20, 100, 60), np.array([[40, 40], [80, 40.0]]))
    scale = 150 / INPUT_SIZE
    np.testing.assert_allclose(affine[:, :2], scale * np.eye(2))
    np.testing.assert_allclose(affine @ [96, 96, 1], [60, 50])  # input centre -> box centre
    # Eyes along the image's y axis: the input's x axis runs down the image.
    affine = roi_affine((0, 0, 64, 64), np.array([[32, 10], [32, 50.0]]))
    np.testing.assert_allclose(affine[:, 0], [0, 96 / INPUT_SIZE], atol=1e-12)
    np.testing.assert_allclose(affine[:, 1], [-96 / INPUT_SIZE, 0], atol=1e-12)


def test_warp_roi_samples_the_image_where_the_affine_points():
    # A float image holding its own coordinates: the crop must read them back exactly.
    yy, xx = np.mgrid[0:300, 0:400].astype(np.float32)
    image = np.stack([xx, yy, xx + yy], axis=-1)
    face = Face((100.0, 80.0, 96.0, 96.0), 0.9, np.array([[120, 110], [170, 100]], np.float32))
    affine = roi_affine(face.box, face.keypoints)
    crop = warp_roi(image, affine)
    for j, i in [(20, 30), (96, 96), (150, 170)]:
        x, y = affine @ [j + 0.5, i + 0.5, 1] - 0.5  # pixel centres -> image pixel indices
        np.testing.assert_allclose(crop[i, j], [x, y, x + y], atol=0.05)
    # Outside the image the border is replicated (MediaPipe), not black.
    corner = warp_roi(image + 10, roi_affine((0.0, 0.0, 96.0, 96.0), face.keypoints))
    np.testing.assert_allclose(corner[0, 0], [10, 10, 10], atol=0.05)


def test_make_landmark_input_shapes_range_and_errors(astronaut):
    face = Face((178.0, 81.0, 94.0, 94.0), 0.9, np.array([[204, 101], [248, 108.0]]))
    batch, affines = make_landmark_input(astronaut, [face, face])
    assert batch.shape == (2, INPUT_SIZE, INPUT_SIZE, 3) and batch.dtype == np.float32
    assert affines.shape == (2, 2, 3) and affines.dtype == np.float64
    assert 0.0 <= batch.min() and batch.max() <= 1.0 and batch.max() > 0.9
    empty, empty_affines = make_landmark_input(astronaut, [])
    assert empty.shape == (0, INPUT_SIZE, INPUT_SIZE, 3) and empty_affines.shape == (0, 2, 3)
    with pytest.raises(ValueError, match="RGB uint8"):
        make_landmark_input(astronaut[..., 0], [face])


def test_decode_landmarks_maps_back_to_image_pixels():
    affines = np.stack(
        [roi_affine((50, 40, 80, 80), np.array([[70, 60], [110, 70.0]])), np.eye(2, 3)]
    )
    rng = np.random.default_rng(0)
    raw = rng.uniform(0, INPUT_SIZE, size=(2, 468, 3))
    landmarks, presence = decode_landmarks(raw.reshape(2, -1), np.array([[0.0], [30.0]]), affines)
    assert landmarks.shape == (2, 468, 3) and landmarks.dtype == np.float32
    expected_xy = raw[0, :, :2] @ affines[0, :, :2].T + affines[0, :, 2]
    np.testing.assert_allclose(landmarks[0, :, :2], expected_xy, atol=1e-3)
    np.testing.assert_allclose(landmarks[0, :, 2], raw[0, :, 2] * 120 / INPUT_SIZE, rtol=1e-5)
    np.testing.assert_allclose(landmarks[1], raw[1], atol=1e-4)  # identity affine
    np.testing.assert_allclose(presence, [0.5, 1 / (1 + np.exp(-30.0))])


def test_gate_threshold_and_empty_batch(landmark_model):
    assert is_face(np.array([MIN_FACE_PRESENCE, 0.998, 0.5])).tolist() == [True, False, False]
    raw, flags = landmark_model.run(np.zeros((0, INPUT_SIZE, INPUT_SIZE, 3), np.float32))
    assert raw.shape == (0, 1404) and flags.shape == (0, 1)
