"""BlazeFace ONNX on real photos: parity with MediaPipe, small faces, the committed asset."""

from __future__ import annotations

import hashlib
import shutil

import numpy as np
import onnx
import pytest

from preprocessing.decode import iou_one_to_many
from preprocessing.face_detect import (
    MODEL_PATH,
    MODEL_SHA256,
    FaceDetector,
    decode_detections,
    make_detector_input,
)
from preprocessing.image_io import load_image

# MediaPipe 0.10.21's own result on astronaut.png (measured once with its wheel).
MEDIAPIPE_ASTRONAUT_BOX = [177.0, 82.0, 95.0, 95.0]
MEDIAPIPE_ASTRONAUT_SCORE = 0.922
# Face centres in t1.jpg, annotated by hand on a 100 px grid (not from this detector).
T1_FACE_CENTRES = [(115, 335), (330, 215), (520, 340), (800, 415), (960, 135), (1175, 335)]


def test_committed_model_matches_its_checksum_and_has_a_variable_batch():
    assert hashlib.sha256(MODEL_PATH.read_bytes()).hexdigest() == MODEL_SHA256
    model = onnx.load(str(MODEL_PATH))
    (inp,) = model.graph.input
    dims = inp.type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [128, 128, 3]


def test_tampered_model_is_refused(tmp_path):
    copy = tmp_path / "model.onnx"
    shutil.copy(MODEL_PATH, copy)
    with copy.open("ab") as handle:
        handle.write(b"\0")
    with pytest.raises(RuntimeError, match="does not match the expected"):
        FaceDetector(copy)


def test_astronaut_parity_with_mediapipe(detector, astronaut):
    faces = detector.detect(astronaut)
    assert len(faces) == 1
    iou = iou_one_to_many(np.array(faces[0].box), np.array([MEDIAPIPE_ASTRONAUT_BOX]))[0]
    assert iou >= 0.9
    assert abs(faces[0].score - MEDIAPIPE_ASTRONAUT_SCORE) <= 0.02
    right_eye, left_eye = faces[0].keypoints[:2]
    assert right_eye[0] < left_eye[0]  # the subject's right eye is on the image's left


def test_group_photo_all_faces_at_most_one_false_positive(detector, group_photo_path):
    faces = detector.detect(load_image(group_photo_path))
    boxes = np.array([f.box for f in faces])

    def contains(box, point):
        return box[0] <= point[0] <= box[0] + box[2] and box[1] <= point[1] <= box[1] + box[3]

    for centre in T1_FACE_CENTRES:
        assert sum(contains(b, centre) for b in boxes) == 1, centre
    unmatched = [b for b in boxes if not any(contains(b, c) for c in T1_FACE_CENTRES)]
    assert len(unmatched) <= 1
    areas = boxes[:, 2] * boxes[:, 3]
    assert (np.diff(areas) <= 0).all()  # largest first


def test_split_halves_run_the_whole_batch_in_one_call(detector, group_photo_path):
    image = load_image(group_photo_path)
    tensor, meta = make_detector_input(image)
    assert tensor.shape == (16, 128, 128, 3) and tensor.dtype == np.float32
    assert tensor.min() >= -1.0 and tensor.max() <= 1.0
    regressors, scores = detector.run(tensor)
    assert regressors.shape == (16, 896, 16) and scores.shape == (16, 896, 1)
    faces = decode_detections(regressors, scores, meta.to_array())
    assert [f.box for f in faces] == [f.box for f in detector.detect(image)]


def test_grayscale_photo_face_found(detector, grayscale_photo_path):
    assert len(detector.detect(load_image(grayscale_photo_path))) == 1


def test_blank_image_has_no_face(detector):
    assert detector.detect(np.full((300, 400, 3), 127, np.uint8)) == []


def test_rejects_non_rgb_input():
    with pytest.raises(ValueError, match="RGB uint8"):
        make_detector_input(np.zeros((10, 10), np.uint8))
