"""The served tone is the measured tone: crop_step gives analyze_image's skin tone and crop."""

from __future__ import annotations

import numpy as np

from client.steps import crop_step, decode_step, landmark_input_step
from preprocessing.face_detect import FaceDetector
from preprocessing.image_io import load_image
from preprocessing.landmarks import LandmarkModel
from preprocessing.pipeline import analyze_image


def test_crop_step_tone_equals_the_pipeline_tone(astronaut_path) -> None:
    detector = FaceDetector()
    decoded = decode_step(astronaut_path.read_bytes())
    regressors, scores = detector.run(decoded.detector_input)
    mesh = landmark_input_step(decoded.image, regressors, scores, decoded.detector_meta)
    landmarks, face_flag = LandmarkModel().run(mesh.tensor)
    served = crop_step(decoded.image, mesh.candidates, landmarks, face_flag, mesh.affines, size=96)
    measured = analyze_image(load_image(astronaut_path), size=96, detector=detector)
    assert served.tone_groups == [f.skin_tone.fitzpatrick_group for f in measured]
    np.testing.assert_allclose(served.ita, [f.skin_tone.ita for f in measured], atol=1e-4)
    np.testing.assert_allclose(
        served.tone_confidence, [f.skin_tone.confidence for f in measured], atol=1e-6
    )
    np.testing.assert_array_equal(served.crops[0].astype(np.uint8), measured[0].crop)
