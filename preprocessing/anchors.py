"""SSD anchors of BlazeFace short range (MediaPipe's SsdAnchorsCalculator), pure numpy."""

from __future__ import annotations

import numpy as np

INPUT_SIZE = 128
# MediaPipe face_detection_short_range options: num_layers 4, strides [8, 16, 16, 16],
# aspect_ratios [1], interpolated_scale_aspect_ratio 1, fixed_anchor_size true, offsets 0.5.
STRIDES: tuple[int, ...] = (8, 16, 16, 16)
ANCHORS_PER_LAYER = 2  # aspect ratio 1 plus the interpolated scale
NUM_ANCHORS = 896


def make_anchors(
    input_size: int = INPUT_SIZE, strides: tuple[int, ...] = STRIDES, offset: float = 0.5
) -> np.ndarray:
    """Anchor centres [N, 2] (x, y) in [0, 1], in the model's output order.

    Consecutive layers with the same stride share one feature map, so the short-range
    model has a 16x16 map with 2 anchors per cell and an 8x8 map with 6: 512 + 384 = 896.

    >>> make_anchors().shape
    (896, 2)
    """
    centres = []
    layer = 0
    while layer < len(strides):
        stride = strides[layer]
        num_layers_same = 0
        while layer < len(strides) and strides[layer] == stride:
            num_layers_same += 1
            layer += 1
        size = int(np.ceil(input_size / stride))
        ys, xs = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
        cells = np.stack([(xs + offset) / size, (ys + offset) / size], axis=-1).reshape(-1, 2)
        centres.append(np.repeat(cells, ANCHORS_PER_LAYER * num_layers_same, axis=0))
    return np.concatenate(centres, axis=0).astype(np.float32)
