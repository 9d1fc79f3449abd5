"""The out-of-distribution score: Mahalanobis maths, the step, ood.json and the fit."""

from __future__ import annotations

import json

import numpy as np
import pytest

from client.ood import OodModel, load_ood, mahalanobis, ood_step, write_ood
from train_jax.ood import fit_ood


def test_mahalanobis_scales_with_the_covariance():
    mean = np.array([1.0, -1.0])
    precision = np.linalg.inv(np.diag([4.0, 1.0]))
    d = mahalanobis(np.array([[3.0, -1.0], [1.0, 1.0]]), mean, precision)
    np.testing.assert_allclose(d, [1.0, 2.0])


def test_fit_calibrates_the_limit_and_flags_far_faces():
    rng = np.random.default_rng(0)
    train = rng.normal(size=(2000, 8))
    val = rng.normal(size=(400, 8))
    model = fit_ood(train, val, quantile=0.95)
    passed = ~ood_step(val, len(val), model).flagged
    assert passed.mean() == pytest.approx(0.95, abs=0.01)
    fresh = ood_step(rng.normal(size=(1000, 8)), 1000, model).flagged.mean()
    assert 0.02 < fresh < 0.09  # the same distribution: about 5 % flagged
    far = ood_step(rng.normal(loc=3.0, size=(50, 8)), 50, model)
    assert far.flagged.all() and np.isfinite(far.distance).all()


def test_step_without_features_or_model_measures_nothing():
    model = OodModel(np.zeros(2), np.eye(2), 1.0, 0.95)
    none = ood_step(None, 3, model)
    assert np.isnan(none.distance).all() and not none.flagged.any()
    assert np.isnan(ood_step(np.zeros((3, 2)), 3, None).distance).all()
    with pytest.raises(ValueError, match="2 rows for 3 faces"):
        ood_step(np.zeros((2, 2)), 3, model)


def test_ood_json_round_trip_and_bad_file(tmp_path):
    model = OodModel(np.arange(3.0), np.eye(3) * 2, 4.5, 0.95, "a train", "b val")
    path = write_ood(model, tmp_path / "ood.json")
    back = load_ood(path)
    np.testing.assert_array_equal(back.mean, model.mean)
    np.testing.assert_array_equal(back.precision, model.precision)
    assert (back.limit, back.fitted_on) == (4.5, "a train")
    assert load_ood(tmp_path / "missing.json") is None
    doc = json.loads(path.read_text())
    doc["precision"] = [[1.0]]
    path.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="ood.json"):
        load_ood(path)


def test_ood_cli_refuses_a_model_folder_without_its_files(tmp_path, capsys):
    from train_jax.ood import main

    code = main(["--model-dir", str(tmp_path), "--fit-data", "x", "--calibrate-data", "y"])
    assert code == 2 and str(tmp_path) in capsys.readouterr().err


def test_shipped_model_scores_a_face_in_and_a_chessboard_out(astronaut_path):
    from client.runner import EmbeddedRunner

    runner = EmbeddedRunner()
    assert runner.ood is not None  # models/default ships ood.json
    face = runner.analyze_bytes(astronaut_path.read_bytes())
    assert np.isfinite(face.ood_distance).all() and not face.out_of_distribution.any()
    chessboard = astronaut_path.with_name("chessboard_RGB.png").read_bytes()
    board = runner.analyze_bytes(chessboard, region="whole")
    assert board.out_of_distribution.all() and board.ood_distance[0] > runner.ood.limit
