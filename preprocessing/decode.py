"""Pure numpy decoding of BlazeFace outputs: boxes, keypoints, weighted NMS, tile de-duplication.

Coordinates are (x, y, w, h) boxes and (x, y) keypoints. `decode_raw` works in the model's
normalised [0, 1] input space; `to_image_space` maps them through a tile's transform.
"""

from __future__ import annotations

import numpy as np

from preprocessing.anchors import INPUT_SIZE

NUM_KEYPOINTS = 6
SCORE_CLIP = 100.0
MIN_SCORE = 0.5
NMS_IOU = 0.3


def sigmoid_scores(logits: np.ndarray) -> np.ndarray:
    """Detection scores: sigmoid of the logits clipped to +-100 (MediaPipe)."""
    clipped = np.clip(np.asarray(logits, dtype=np.float64), -SCORE_CLIP, SCORE_CLIP)
    return 1.0 / (1.0 + np.exp(-clipped))


def decode_raw(
    regressors: np.ndarray, anchors: np.ndarray, input_size: int = INPUT_SIZE
) -> tuple[np.ndarray, np.ndarray]:
    """Boxes [N, 4] (x, y, w, h) and keypoints [N, 6, 2], normalised to [0, 1] of the input.

    Fixed-size anchors: centre = offset / input_size + anchor; size = raw / input_size.
    """
    reg = np.asarray(regressors, dtype=np.float64).reshape(-1, 4 + 2 * NUM_KEYPOINTS)
    anchors = np.asarray(anchors, dtype=np.float64)
    cx = reg[:, 0] / input_size + anchors[:, 0]
    cy = reg[:, 1] / input_size + anchors[:, 1]
    w = reg[:, 2] / input_size
    h = reg[:, 3] / input_size
    boxes = np.stack([cx - w / 2, cy - h / 2, w, h], axis=1)
    kps = reg[:, 4:].reshape(-1, NUM_KEYPOINTS, 2) / input_size + anchors[:, None, :]
    return boxes, kps


def to_image_space(
    boxes: np.ndarray, keypoints: np.ndarray, transform: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Map normalised boxes/keypoints through (ox, oy, kx, ky): x = ox + u * kx."""
    ox, oy, kx, ky = (float(v) for v in transform[:4])
    scale = np.array([kx, ky, kx, ky])
    offset = np.array([ox, oy, 0.0, 0.0])
    return boxes * scale + offset, keypoints * np.array([kx, ky]) + np.array([ox, oy])


def iou_one_to_many(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one (x, y, w, h) box with each row of boxes [N, 4].

    >>> float(iou_one_to_many(np.array([0, 0, 2, 2.]), np.array([[1, 0, 2, 2.]]))[0])
    0.3333333333333333
    """
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[0] + box[2], boxes[:, 0] + boxes[:, 2])
    y2 = np.minimum(box[1] + box[3], boxes[:, 1] + boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    union = box[2] * box[3] + boxes[:, 2] * boxes[:, 3] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def intersection_over_smaller(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Intersection divided by the smaller of the two areas, for each row of boxes."""
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[0] + box[2], boxes[:, 0] + boxes[:, 2])
    y2 = np.minimum(box[1] + box[3], boxes[:, 1] + boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    smaller = np.minimum(box[2] * box[3], boxes[:, 2] * boxes[:, 3])
    return np.where(smaller > 0, inter / np.maximum(smaller, 1e-12), 0.0)


def weighted_nms(
    boxes: np.ndarray,
    keypoints: np.ndarray,
    scores: np.ndarray,
    *,
    iou_threshold: float = NMS_IOU,
    containment_threshold: float | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MediaPipe's weighted NMS: each cluster becomes the score-weighted mean of its members.

    The best remaining detection collects every detection overlapping it by IoU above
    `iou_threshold` (or, if given, with intersection-over-smaller above
    `containment_threshold`, which merges a face cut by a tile edge into the whole face);
    the cluster keeps the best score. Ties in score are broken by input order, so the
    result is deterministic.

    >>> b = np.array([[0, 0, 10, 10], [1, 0, 10, 10], [50, 50, 5, 5]], float)
    >>> out_b, _, out_s = weighted_nms(b, np.zeros((3, 6, 2)), np.array([0.9, 0.6, 0.7]))
    >>> out_b[0].round(2).tolist(), out_s.tolist()
    ([0.4, 0.0, 10.0, 10.0], [0.9, 0.7])
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    keypoints = np.asarray(keypoints, dtype=np.float64).reshape(len(boxes), NUM_KEYPOINTS, 2)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    order = np.argsort(-scores, kind="stable")
    remaining = order
    out_boxes, out_kps, out_scores = [], [], []
    while remaining.size:
        top = remaining[0]
        overlap = iou_one_to_many(boxes[top], boxes[remaining]) > iou_threshold
        if containment_threshold is not None:
            overlap |= (
                intersection_over_smaller(boxes[top], boxes[remaining]) > containment_threshold
            )
        overlap[0] = True
        members = remaining[overlap]
        weights = scores[members] / scores[members].sum()
        out_boxes.append((boxes[members] * weights[:, None]).sum(axis=0))
        out_kps.append((keypoints[members] * weights[:, None, None]).sum(axis=0))
        out_scores.append(scores[top])
        remaining = remaining[~overlap]
    if not out_boxes:
        return np.zeros((0, 4)), np.zeros((0, NUM_KEYPOINTS, 2)), np.zeros((0,))
    return np.stack(out_boxes), np.stack(out_kps), np.asarray(out_scores)


def touches_inner_edge(
    box: np.ndarray, region: np.ndarray, image_size: tuple[int, int], *, tolerance: float = 0.05
) -> bool:
    """True when a box reaches a tile edge that is not also an image edge (a cut face)."""
    x, y, w, h = box
    rx, ry, rw, rh = region
    img_w, img_h = image_size
    tol = tolerance * max(rw, rh)
    if rx > 0 and x < rx + tol:
        return True
    if ry > 0 and y < ry + tol:
        return True
    if rx + rw < img_w and x + w > rx + rw - tol:
        return True
    return bool(ry + rh < img_h and y + h > ry + rh - tol)
