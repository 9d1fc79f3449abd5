"""FaceMesh landmarks (468 points) and face presence for BlazeFace faces, on onnxruntime.

Split like `face_detect` so the Triton python model can run the ONNX model in between:
`make_landmark_input` (pure: one 192x192 crop per face), the ONNX model over the whole
batch, and `decode_landmarks` (pure: landmarks in image pixels, face-presence probability).

The crop is MediaPipe's (face_detection_front_detection_to_roi + face_landmark_cpu graphs):
a square centred on the detection box, side 1.5 x the box's long side, rotated so that the
line from keypoint 0 to keypoint 1 (the eyes) is horizontal, warped bilinearly with border
replication and scaled to [0, 1]. The model gives 468 x (x, y, z) in 192x192 input pixels
(z: depth, same scale as x, smaller = nearer the camera) and a face-flag logit;
face presence = sigmoid(logit), which MediaPipe thresholds at 0.5.

Face gate (`is_face`, MIN_FACE_PRESENCE = 0.999), measured on BlazeFace candidates
(FaceDetector, score >= 0.5 unless noted); presence = this module's output:

| candidates | n | min | 1st pct | 5th pct | max | >= 0.5 | >= 0.999 |
|---|---|---|---|---|---|---|---|
| acne-new valid, first 100 images: real faces | 101 | 0.999975 | 0.999996 | 1.0 | 1.0 | 101 | 101 |
| acne-new valid, all 323 images: real faces | 328 | 0.063 | 0.999979 | 1.0 | 1.0 | 327 | 326 |
| astronaut, Tom_Hanks_54745, t1.jpg (6 faces, tiled) | 8 | 0.999992 | | | 1.0 | 8 | 8 |
| skimage camera.png (the cameraman, 3/4 profile) | 1 | 0.987 | | | | 1 | 0 |
| acne-new false positives (hair, ear, foliage, ...) | 5 | 0.00004 | | | 0.0089 | 0 | 0 |
| t1.jpg false positive (hand holding a glass) | 1 | 0.095 | | | | 0 | 0 |
| other skimage data images (5 of 24 give candidates) | 9 | 0.0003 | | | 0.011 | 0 | 0 |
| drawn dice (36 images), words (30) | 15 | 0.00009 | | | 0.013 | 0 | 0 |
| drawn smiley logos (24 images) | 19 | 0.0019 | | | 0.9945 | 4 | 0 |
| skimage + drawn non-faces, BlazeFace >= 0.3 | 107 | 0.00001 | | | 0.9968 | 9 | 0 |
| 300 random smileys (colours, eyes, mouths) | 115 | | | | 0.9983 | 19 | 0 |

Real faces that are not in profile score above 0.99994 (logit > 9.8; eyes closed and head
tilted back included), and the first 100 acne-new faces stay above 0.999 in grey, dark
(x 0.35), blurred, warm-cast, JPEG-15 and downscaled copies. Every textured non-face scores
below 0.32; only cartoon faces (smileys with dot eyes) come near, up to 0.9983. 0.999
rejects all of them and keeps 326 of 328 real acne-new faces (99.4 %; 101 of 101 in the
first 100 images); the two it loses are a face in full profile (0.990) and an out-of-focus
bystander (0.063). It also rejects the cameraman in skimage's camera.png (0.987).
MediaPipe's own threshold, 0.5, keeps those three but passes 4 of 19 smileys.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from preprocessing import onnx_session
from preprocessing.decode import sigmoid_scores
from preprocessing.face_detect import Face

ASSETS = Path(__file__).resolve().parent / "assets"
MODEL_PATH = ASSETS / "face_landmark.onnx"
# sha256 of the committed model (PROVENANCE.md); checked every time the model is loaded.
MODEL_SHA256 = "f7212da56926cf8a69bdee8044ec3ed3706308f9ccf10e49d24885825fc2ed68"
CONVERTER = "preprocessing/convert_face_landmark.py"
INPUT_NAME = "input"
OUTPUT_NAMES = ("landmarks", "face_flag")
INPUT_SIZE = 192
NUM_LANDMARKS = 468
ROI_SCALE = 1.5  # MediaPipe's RectTransformationCalculator scale_x / scale_y
RIGHT_EYE, LEFT_EYE = 0, 1  # BlazeFace keypoints; MediaPipe's rotation vector runs 0 -> 1
MIN_FACE_PRESENCE = 0.999  # measured: see the module docstring
CHECKSUM_MISMATCH = onnx_session.CHECKSUM_MISMATCH


def roi_affine(box: Sequence[float], keypoints: np.ndarray) -> np.ndarray:
    """The 2x3 affine from 192x192 input coordinates to image pixels for one detection.

    >>> a = roi_affine((10, 20, 64, 64), np.array([[20, 40], [60, 40.]]))
    >>> (a.round(3) + 0.0).tolist()
    [[0.5, 0.0, -6.0], [0.0, 0.5, 4.0]]
    """
    x, y, w, h = (float(v) for v in box)
    eyes = np.asarray(keypoints, dtype=np.float64)[[RIGHT_EYE, LEFT_EYE]]
    dx, dy = eyes[1] - eyes[0]
    angle = np.arctan2(dy, dx)
    side = ROI_SCALE * max(w, h)
    cos, sin = np.cos(angle), np.sin(angle)
    linear = (side / INPUT_SIZE) * np.array([[cos, -sin], [sin, cos]])
    centre = np.array([x + w / 2.0, y + h / 2.0])
    shift = centre - linear @ np.full(2, INPUT_SIZE / 2.0)
    return np.hstack([linear, shift[:, None]])


def warp_roi(image_rgb: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """The 192x192 uint8 crop whose continuous coordinates map to the image by `affine`."""
    # Pixel (j, i) covers [j, j + 1): its centre is j + 0.5 in both frames.
    sample = affine.copy()
    sample[:, 2] += affine[:, :2] @ np.full(2, 0.5) - 0.5
    return cv2.warpAffine(
        image_rgb,
        sample,
        (INPUT_SIZE, INPUT_SIZE),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REPLICATE,
    )


def make_landmark_input(
    image_rgb: np.ndarray, faces: Sequence[Face]
) -> tuple[np.ndarray, np.ndarray]:
    """The model batch float32 [F, 192, 192, 3] in [0, 1] and affines float64 [F, 2, 3].

    Each affine maps the model's input coordinates (0-192) to image pixels.
    """
    if image_rgb.ndim != 3 or image_rgb.shape[2] != 3 or image_rgb.dtype != np.uint8:
        raise ValueError(
            f"expected an RGB uint8 image [H, W, 3], got {image_rgb.dtype} {image_rgb.shape}"
        )
    batch = np.empty((len(faces), INPUT_SIZE, INPUT_SIZE, 3), dtype=np.float32)
    affines = np.empty((len(faces), 2, 3), dtype=np.float64)
    for i, face in enumerate(faces):
        affines[i] = roi_affine(face.box, face.keypoints)
        batch[i] = warp_roi(image_rgb, affines[i])
    batch *= 1.0 / 255.0
    return batch, affines


def decode_landmarks(
    raw_landmarks: np.ndarray, face_flag_logits: np.ndarray, affines: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Landmarks float32 [F, 468, 3] in image pixels and face-presence probabilities [F].

    x, y are image pixels; z is depth in pixels of the same scale (relative to the face).
    """
    affines = np.asarray(affines, dtype=np.float64).reshape(-1, 2, 3)
    raw = np.asarray(raw_landmarks, dtype=np.float64).reshape(len(affines), NUM_LANDMARKS, 3)
    xy = np.einsum("fij,fnj->fni", affines[:, :, :2], raw[..., :2]) + affines[:, None, :, 2]
    scale = np.linalg.norm(affines[:, :, 0], axis=1)  # image pixels per input pixel
    z = raw[..., 2] * scale[:, None]
    landmarks = np.concatenate([xy, z[..., None]], axis=-1).astype(np.float32)
    presence = sigmoid_scores(np.asarray(face_flag_logits).reshape(len(affines)))
    return landmarks, presence


def verify_checksum(path: Path, expected: str = MODEL_SHA256) -> None:
    """Raise RuntimeError when the model file's sha256 differs from the committed one."""
    onnx_session.verify_checksum(path, expected, CONVERTER)


class LandmarkModel:
    """Runs the committed FaceMesh ONNX model with onnxruntime (CPU).

    num_threads=1 by default: 2.2 ms per face with one intra-op thread against 6.1 ms with
    two on the 2-core development machine (as for FaceDetector).
    """

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        num_threads: int = 1,
        expected_sha256: str | None = MODEL_SHA256,
    ) -> None:
        path = Path(model_path) if model_path is not None else MODEL_PATH
        self.session = onnx_session.verified_session(
            path, expected_sha256=expected_sha256, converter=CONVERTER, num_threads=num_threads
        )

    def run(self, tensor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The raw model over a batch [F, 192, 192, 3]: (landmarks [F, 1404], face_flag [F, 1])."""
        if len(tensor) == 0:
            return np.zeros((0, 3 * NUM_LANDMARKS), np.float32), np.zeros((0, 1), np.float32)
        landmarks, flags = self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: tensor})
        return landmarks, flags

    def landmarks(
        self, image_rgb: np.ndarray, faces: Sequence[Face]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Landmarks [F, 468, 3] in image pixels and face-presence probabilities [F]."""
        tensor, affines = make_landmark_input(image_rgb, faces)
        return decode_landmarks(*self.run(tensor), affines)


_DEFAULT_MODEL: LandmarkModel | None = None


def landmarks_for(
    image_rgb: np.ndarray, faces: Sequence[Face], model: LandmarkModel | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Landmarks and face presence of `faces` (a process-wide model unless one is given)."""
    global _DEFAULT_MODEL
    if model is None:
        if _DEFAULT_MODEL is None:
            _DEFAULT_MODEL = LandmarkModel()
        model = _DEFAULT_MODEL
    return model.landmarks(image_rgb, faces)


def is_face(presence: np.ndarray, min_presence: float = MIN_FACE_PRESENCE) -> np.ndarray:
    """Bool [F]: the faces that pass the FaceMesh gate."""
    return np.asarray(presence) >= min_presence
