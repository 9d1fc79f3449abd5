"""BlazeFace short-range face detection on onnxruntime, with tiling for small faces.

Split in three so the Triton python model can run the ONNX model in between:
`make_detector_input` (pure: whole image plus overlapping tiles, letterboxed to 128x128),
the ONNX model over the whole batch in one call, and `decode_detections` (pure: decoding,
dropping faces cut by a tile edge, weighted NMS across tiles, largest first).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from preprocessing import decode, onnx_session
from preprocessing.anchors import INPUT_SIZE, make_anchors

ASSETS = Path(__file__).resolve().parent / "assets"
MODEL_PATH = ASSETS / "blazeface_short_range.onnx"
# sha256 of the committed model (PROVENANCE.md); checked every time the model is loaded.
MODEL_SHA256 = "7c6b3dfa32f8233c5cba853618b543131638cc6a0a5f519a81bc09ecc56a4da3"
CONVERTER = "preprocessing/convert_blazeface.py"
INPUT_NAME = "input"
OUTPUT_NAMES = ("regressors", "classificators")

# Tiling: the short-range model sees faces of roughly 15-70 % of its input, so a group photo
# is also cut into square tiles of side max(TILE_MIN_PX, TILE_FRACTION * long side) with
# 50 % overlap; images whose long side is at most NO_TILE_MAX_PX are only seen whole.
TILE_MIN_PX = 448
TILE_FRACTION = 0.35
NO_TILE_MAX_PX = 560
CONTAINMENT = 0.6  # a face mostly inside a better-scoring face is a duplicate
# Keypoint sanity: the eyes of a near-frontal face (all the short-range model handles) are
# 0.25-0.5 box widths apart; below MIN_EYE_DISTANCE the "face" is a texture false positive.
MIN_EYE_DISTANCE = 0.15


@dataclass(frozen=True, eq=False)  # holds arrays: compare fields explicitly
class Face:
    """One detected face: box (x, y, w, h) in original pixels, score, keypoints (6, 2).

    Keypoints (x, y), in MediaPipe order: right eye, left eye (the subject's), nose tip,
    mouth centre, right ear tragion, left ear tragion.
    """

    box: tuple[float, float, float, float]
    score: float
    keypoints: np.ndarray


@dataclass(frozen=True, eq=False)  # holds arrays: compare fields explicitly
class DetectorMeta:
    """How each input row maps back to the image.

    transforms [T, 4]: (ox, oy, kx, ky) with x = ox + u * kx for u in [0, 1] of the 128 input;
    regions [T, 4]: the tile (x, y, w, h) in image pixels; image_size: (width, height).
    """

    transforms: np.ndarray
    regions: np.ndarray
    image_size: tuple[int, int]

    def to_array(self) -> np.ndarray:
        """Flatten to float64 [T, 10] (to pass between Triton models; float32 loses pixels)."""
        size = np.tile(np.asarray(self.image_size, np.float64), (len(self.transforms), 1))
        return np.concatenate([self.transforms, self.regions, size], axis=1)

    @classmethod
    def from_array(cls, array: np.ndarray) -> DetectorMeta:
        """Inverse of `to_array`."""
        array = np.asarray(array, dtype=np.float64).reshape(-1, 10)
        return cls(array[:, :4], array[:, 4:8], (int(array[0, 8]), int(array[0, 9])))


FACE_ARRAY_WIDTH = 17  # box (4), score (1), keypoints (6 x 2)


def faces_to_array(faces: list[Face]) -> np.ndarray:
    """Faces as float64 [F, 17]: box, score, keypoints (to pass between Triton models)."""
    rows = [np.concatenate([f.box, [f.score], np.ravel(f.keypoints)]) for f in faces]
    return np.asarray(rows, np.float64).reshape(-1, FACE_ARRAY_WIDTH)


def faces_from_array(array: np.ndarray) -> list[Face]:
    """Inverse of `faces_to_array`."""
    rows = np.asarray(array, np.float64).reshape(-1, FACE_ARRAY_WIDTH)
    return [Face(tuple(float(v) for v in r[:4]), float(r[4]), r[5:].reshape(6, 2)) for r in rows]


def tile_positions(length: int, tile: int) -> list[int]:
    """Start offsets of tiles of side `tile` with 50 % overlap covering [0, length).

    >>> tile_positions(1280, 448)
    [0, 224, 448, 672, 832]
    """
    if length <= tile:
        return [0]
    step = tile // 2
    starts = list(range(0, length - tile, step))
    if starts[-1] != length - tile:
        starts.append(length - tile)
    return starts


def tile_side(height: int, width: int) -> int | None:
    """Side in pixels of the square tiles for an image, or None when it is only seen whole."""
    long_side = max(height, width)
    if long_side <= NO_TILE_MAX_PX:
        return None
    return max(TILE_MIN_PX, int(round(TILE_FRACTION * long_side)))


def plan_regions(height: int, width: int) -> np.ndarray:
    """Regions (x, y, w, h) in image pixels: the whole image first, then the tiles.

    Tiles are laid out on the image shrunk so that a tile is 128 px (steps of 64 px there),
    so one area resize serves every tile.
    """
    regions = [(0.0, 0.0, float(width), float(height))]
    tile = tile_side(height, width)
    if tile is not None:
        (sw, sh), (sx, sy) = _shrunk_size(height, width, tile)
        for y in tile_positions(sh, INPUT_SIZE):
            for x in tile_positions(sw, INPUT_SIZE):
                regions.append((x / sx, y / sy, min(INPUT_SIZE, sw) / sx, min(INPUT_SIZE, sh) / sy))
    return np.asarray(regions, dtype=np.float64)


def _shrunk_size(height: int, width: int, tile: int) -> tuple[tuple[int, int], tuple[float, float]]:
    scale = INPUT_SIZE / tile
    sw, sh = max(1, int(round(width * scale))), max(1, int(round(height * scale)))
    return (sw, sh), (sw / width, sh / height)


def letterbox(image: np.ndarray, size: int = INPUT_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Resize keeping the aspect ratio and pad to size x size (zeros, centred).

    Returns the uint8 canvas and (ox, oy, kx, ky) mapping normalised coords back to `image`.
    """
    h, w = image.shape[:2]
    scale = size / max(h, w)
    new_w, new_h = max(1, int(round(w * scale))), max(1, int(round(h * scale)))
    if (new_w, new_h) == (w, h):
        resized = image
    else:
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        resized = cv2.resize(image, (new_w, new_h), interpolation=interp)
    pad_x, pad_y = (size - new_w) // 2, (size - new_h) // 2
    canvas = np.zeros((size, size, 3), dtype=np.uint8)
    canvas[pad_y : pad_y + new_h, pad_x : pad_x + new_w] = resized
    sx, sy = new_w / w, new_h / h
    return canvas, np.array([-pad_x / sx, -pad_y / sy, size / sx, size / sy])


def make_detector_input(image: np.ndarray) -> tuple[np.ndarray, DetectorMeta]:
    """Build the detector tensor float32 [T, 128, 128, 3] in [-1, 1] and its metadata.

    Row 0 is the whole image letterboxed; rows 1.. are the tiles (see `plan_regions`).
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 image [H, W, 3], got {image.dtype} {image.shape}")
    height, width = image.shape[:2]
    regions = plan_regions(height, width)
    batch = np.empty((len(regions), INPUT_SIZE, INPUT_SIZE, 3), dtype=np.uint8)
    transforms = np.empty((len(regions), 4), dtype=np.float64)
    batch[0], transforms[0] = letterbox(image)
    if len(regions) > 1:
        (sw, sh), (sx, sy) = _shrunk_size(height, width, tile_side(height, width))
        small = cv2.resize(image, (sw, sh), interpolation=cv2.INTER_AREA)
        for i, (x, y, _, _) in enumerate(regions[1:], start=1):
            xs, ys = int(round(x * sx)), int(round(y * sy))
            canvas, (ox, oy, kx, ky) = letterbox(small[ys : ys + INPUT_SIZE, xs : xs + INPUT_SIZE])
            batch[i] = canvas
            transforms[i] = ((ox + xs) / sx, (oy + ys) / sy, kx / sx, ky / sy)
    tensor = batch.astype(np.float32)
    tensor *= 1.0 / 127.5
    tensor -= 1.0
    return tensor, DetectorMeta(transforms, regions, (width, height))


_ANCHORS = make_anchors()


def decode_detections(
    regressors: np.ndarray,
    scores: np.ndarray,
    meta: DetectorMeta | np.ndarray,
    *,
    min_score: float = decode.MIN_SCORE,
) -> list[Face]:
    """Turn raw outputs [T, 896, 16] and [T, 896, 1] into faces in image pixels, largest first."""
    if not isinstance(meta, DetectorMeta):
        meta = DetectorMeta.from_array(meta)
    regressors = np.asarray(regressors).reshape(len(meta.transforms), -1, 16)
    probs = decode.sigmoid_scores(np.asarray(scores).reshape(len(meta.transforms), -1))
    all_boxes, all_kps, all_scores = [], [], []
    for t in range(len(meta.transforms)):
        keep = np.flatnonzero(probs[t] >= min_score)
        if keep.size == 0:
            continue
        boxes, kps = decode.decode_raw(regressors[t, keep], _ANCHORS[keep])
        boxes, kps = decode.to_image_space(boxes, kps, meta.transforms[t])
        region = meta.regions[t]
        is_whole = region[2] >= meta.image_size[0] and region[3] >= meta.image_size[1]
        for j in range(len(keep)):
            if is_whole or not decode.touches_inner_edge(boxes[j], region, meta.image_size):
                all_boxes.append(boxes[j])
                all_kps.append(kps[j])
                all_scores.append(probs[t, keep[j]])
    if not all_boxes:
        return []
    boxes, kps, final_scores = decode.weighted_nms(
        np.stack(all_boxes), np.stack(all_kps), np.asarray(all_scores)
    )
    kept = [i for i in suppress_contained(boxes, final_scores) if plausible(boxes[i], kps[i])]
    faces = [
        Face(tuple(float(v) for v in boxes[i]), float(final_scores[i]), kps[i].astype(np.float32))
        for i in kept
    ]
    return sorted(faces, key=lambda f: (-f.box[2] * f.box[3], -f.score))


def plausible(box: np.ndarray, keypoints: np.ndarray) -> bool:
    """False when the eyes are implausibly close for the box (MIN_EYE_DISTANCE)."""
    eye_distance = float(np.linalg.norm(keypoints[1] - keypoints[0]))
    return eye_distance >= MIN_EYE_DISTANCE * float(box[2])


def suppress_contained(boxes: np.ndarray, scores: np.ndarray) -> list[int]:
    """Indices kept after dropping boxes mostly inside a better-scoring box."""
    kept: list[int] = []
    for i in np.argsort(-scores, kind="stable"):
        if kept and (decode.intersection_over_smaller(boxes[i], boxes[kept]) > CONTAINMENT).any():
            continue
        kept.append(int(i))
    return kept


def verify_checksum(path: Path, expected: str = MODEL_SHA256) -> None:
    """Raise RuntimeError when the model file's sha256 differs from the committed one."""
    onnx_session.verify_checksum(path, expected, CONVERTER)


class FaceDetector:
    """Runs the committed BlazeFace ONNX model with onnxruntime (CPU).

    num_threads=1 by default: the model is small, and on a shared machine one intra-op thread
    was 2x faster than onnxruntime's default (0 = all cores); see benchmarks/detect_speed.py.
    """

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        min_score: float = decode.MIN_SCORE,
        num_threads: int = 1,
        spinning: bool = True,
        expected_sha256: str | None = MODEL_SHA256,
    ) -> None:
        path = Path(model_path) if model_path is not None else MODEL_PATH
        self.session = onnx_session.verified_session(
            path,
            expected_sha256=expected_sha256,
            converter=CONVERTER,
            num_threads=num_threads,
            spinning=spinning,
        )
        self.min_score = min_score

    def run(self, tensor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The raw model over a batch [T, 128, 128, 3]: (regressors, classificators)."""
        regressors, scores = self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: tensor})
        return regressors, scores

    def detect(self, image_rgb: np.ndarray) -> list[Face]:
        """Faces in an RGB uint8 image, largest first."""
        tensor, meta = make_detector_input(image_rgb)
        regressors, scores = self.run(tensor)
        return decode_detections(regressors, scores, meta, min_score=self.min_score)
