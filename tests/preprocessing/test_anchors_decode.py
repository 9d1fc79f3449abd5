"""Pure numpy parts of detection: anchors, decoding, weighted NMS, tiling, de-duplication."""

from __future__ import annotations

import numpy as np
import pytest

from preprocessing import decode
from preprocessing.anchors import NUM_ANCHORS, make_anchors
from preprocessing.face_detect import (
    DetectorMeta,
    decode_detections,
    letterbox,
    plan_regions,
    suppress_contained,
    tile_positions,
)


def test_anchor_layout():
    anchors = make_anchors()
    assert anchors.shape == (NUM_ANCHORS, 2)
    # 16x16 map, 2 anchors per cell, then 8x8 map, 6 anchors per cell.
    np.testing.assert_allclose(anchors[0], anchors[1])
    np.testing.assert_allclose(anchors[0], [0.5 / 16, 0.5 / 16])
    np.testing.assert_allclose(anchors[2], [1.5 / 16, 0.5 / 16])
    np.testing.assert_allclose(anchors[2 * 16], [0.5 / 16, 1.5 / 16])
    np.testing.assert_allclose(anchors[512:518], [[0.5 / 8, 0.5 / 8]] * 6)
    np.testing.assert_allclose(anchors[518], [1.5 / 8, 0.5 / 8])
    np.testing.assert_allclose(anchors[-1], [7.5 / 8, 7.5 / 8])


def test_decode_raw_offsets_are_in_input_pixels():
    anchors = np.array([[0.5, 0.25]])
    reg = np.zeros((1, 16))
    reg[0, :4] = [12.8, -6.4, 64.0, 32.0]  # dx, dy, w, h in 128-pixel units
    reg[0, 4:6] = [-12.8, 0.0]  # first keypoint
    boxes, kps = decode.decode_raw(reg, anchors)
    # centre (0.6, 0.2), size (0.5, 0.25)
    np.testing.assert_allclose(boxes[0], [0.35, 0.075, 0.5, 0.25])
    np.testing.assert_allclose(kps[0, 0], [0.4, 0.25])
    np.testing.assert_allclose(kps[0, 1], [0.5, 0.25])


def test_sigmoid_scores_clip():
    s = decode.sigmoid_scores(np.array([0.0, 1000.0, -1000.0]))
    assert s[0] == 0.5 and s[1] == pytest.approx(1.0) and 0 < s[2] < 1e-40


def test_to_image_space():
    boxes, kps = decode.to_image_space(
        np.array([[0.5, 0.5, 0.25, 0.25]]), np.full((1, 6, 2), 0.5), np.array([10, 20, 100, 200])
    )
    np.testing.assert_allclose(boxes[0], [60, 120, 25, 50])
    np.testing.assert_allclose(kps[0, 0], [60, 120])


def test_weighted_nms_merges_by_score_weights():
    boxes = np.array([[0, 0, 10, 10], [2, 0, 10, 10], [100, 100, 10, 10]], float)
    kps = np.zeros((3, 6, 2))
    kps[1] += 3.0
    scores = np.array([0.6, 0.9, 0.8])
    out_b, out_k, out_s = decode.weighted_nms(boxes, kps, scores)
    assert out_s.tolist() == [0.9, 0.8]
    # (0.9 * 2 + 0.6 * 0) / 1.5 = 1.2
    np.testing.assert_allclose(out_b[0], [1.2, 0, 10, 10])
    np.testing.assert_allclose(out_k[0], np.full((6, 2), 0.9 * 3 / 1.5))
    np.testing.assert_allclose(out_b[1], boxes[2])


def test_weighted_nms_empty():
    b, k, s = decode.weighted_nms(np.zeros((0, 4)), np.zeros((0, 6, 2)), np.zeros(0))
    assert b.shape == (0, 4) and k.shape == (0, 6, 2) and s.shape == (0,)


def test_iou_and_containment():
    box = np.array([0, 0, 10, 10.0])
    others = np.array([[5, 0, 10, 10], [2, 2, 4, 4], [20, 20, 1, 1]], float)
    np.testing.assert_allclose(decode.iou_one_to_many(box, others), [50 / 150, 16 / 100, 0])
    np.testing.assert_allclose(decode.intersection_over_smaller(box, others), [0.5, 1.0, 0.0])
    # in score order; the box inside the best one (row 2) is dropped
    assert suppress_contained(np.vstack([box, others]), np.array([0.9, 0.5, 0.8, 0.7])) == [0, 3, 1]


def test_touches_inner_edge():
    region = np.array([100, 0, 200, 200.0])
    size = (1000, 200)
    assert decode.touches_inner_edge(np.array([101, 50, 40, 40.0]), region, size)  # left cut
    assert decode.touches_inner_edge(np.array([250, 50, 49, 40.0]), region, size)  # right cut
    assert not decode.touches_inner_edge(np.array([150, 0, 40, 40.0]), region, size)  # image top
    assert not decode.touches_inner_edge(np.array([150, 50, 40, 40.0]), region, size)


def test_tiles_cover_the_image_with_overlap():
    assert tile_positions(400, 448) == [0]
    assert tile_positions(886, 448) == [0, 224, 438]
    regions = plan_regions(886, 1280)
    assert regions[0].tolist() == [0, 0, 1280, 886]
    assert len(regions) == 1 + 5 * 3
    assert len(plan_regions(512, 512)) == 1  # small images are only seen whole


def test_letterbox_transform_maps_back():
    img = np.zeros((100, 200, 3), np.uint8)
    canvas, (ox, oy, kx, ky) = letterbox(img)
    assert canvas.shape == (128, 128, 3)
    # the canvas centre maps to the image centre; the padded band is 32 px high
    assert (ox + 0.5 * kx, oy + 0.5 * ky) == pytest.approx((100, 50))
    assert (oy + 32 / 128 * ky) == pytest.approx(0.0)


def test_meta_round_trips_through_an_array():
    meta = DetectorMeta(np.arange(8.0).reshape(2, 4), np.arange(8.0, 16).reshape(2, 4), (64, 32))
    back = DetectorMeta.from_array(meta.to_array())
    np.testing.assert_allclose(back.transforms, meta.transforms)
    np.testing.assert_allclose(back.regions, meta.regions)
    assert back.image_size == (64, 32)


def test_decode_detections_with_synthetic_outputs():
    """One confident anchor on a whole-image row gives one face in image pixels."""
    meta = DetectorMeta(
        np.array([[0.0, 0.0, 256.0, 256.0]]), np.array([[0, 0, 256, 256.0]]), (256, 256)
    )
    reg = np.zeros((1, NUM_ANCHORS, 16), np.float32)
    logits = np.full((1, NUM_ANCHORS, 1), -10.0, np.float32)
    i = 512  # first anchor of the 8x8 map: centre (1/16, 1/16)
    logits[0, i] = 3.0
    reg[0, i, 2:4] = 32.0  # w = h = 0.25 of the input
    reg[0, i, 4:16] = np.tile([-8.0, 0.0, 8.0, 0.0], 3)  # eyes 16 px apart at 128
    faces = decode_detections(reg, logits, meta)
    assert len(faces) == 1
    np.testing.assert_allclose(faces[0].box, [16 - 32, 16 - 32, 64, 64], atol=1e-4)
    assert faces[0].score == pytest.approx(1 / (1 + np.exp(-3.0)))
    assert decode_detections(reg, logits, meta.to_array())[0].box == faces[0].box
