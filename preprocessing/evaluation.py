"""Detection rate and skin-tone accuracy on a canonical dataset with known Fitzpatrick types.

Used by `python -m preprocessing.tone_eval` and `python -m preprocessing.detect_eval`.
A face counts as found when the centre of a detected box lies inside the dataset's
`face_box` (x y w h) column, or, without that column, when any face is detected.
Numbers on the synthetic benchmark are synthetic numbers.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.schema import GROUPS, fitzpatrick_to_group
from preprocessing.face_detect import Face, FaceDetector
from preprocessing.image_io import InvalidImageError, load_image
from preprocessing.landmarks import is_face, landmarks_for
from preprocessing.pipeline import crop_face

NO_FACE = "no face"
ABSTAIN = "abstain"
COLUMNS = (*GROUPS, ABSTAIN, NO_FACE)


@dataclass
class EvalResult:
    """Per-image outcomes of one evaluation run."""

    illumination: str
    true_groups: list[str] = field(default_factory=list)
    predicted: list[str] = field(default_factory=list)  # a group, ABSTAIN or NO_FACE
    ita_errors: list[float] = field(default_factory=list)  # |estimated - true| where known
    false_positives: int = 0
    invalid: list[str] = field(default_factory=list)

    def confusion(self) -> dict[str, dict[str, int]]:
        """Counts: true group -> predicted column (groups, abstain, no face)."""
        table = {g: dict.fromkeys(COLUMNS, 0) for g in GROUPS}
        for t, p in zip(self.true_groups, self.predicted, strict=True):
            table[t][p] += 1
        return table

    def summary(self) -> dict:
        """Detection rate, accuracy (overall and per group) and coverage as a dict."""
        true = np.array(self.true_groups)
        pred = np.array(self.predicted)
        n = len(true)
        found = pred != NO_FACE
        answered = found & (pred != ABSTAIN)
        per_group = {}
        for g in GROUPS:
            sel = true == g
            per_group[g] = {
                "n": int(sel.sum()),
                "accuracy_answered": _ratio(
                    (pred[sel & answered] == g).sum(), (sel & answered).sum()
                ),
                "accuracy_all": _ratio((pred[sel] == g).sum(), sel.sum()),
            }
        return {
            "illumination": self.illumination,
            "images": n,
            "invalid_images": len(self.invalid),
            "detection_rate": _ratio(found.sum(), n),
            "false_positive_faces": self.false_positives,
            "coverage": _ratio(answered.sum(), found.sum()),
            "accuracy_answered": _ratio((pred[answered] == true[answered]).sum(), answered.sum()),
            "accuracy_all": _ratio((pred == true).sum(), n),
            "ita_mae": round(float(np.mean(self.ita_errors)), 2) if self.ita_errors else None,
            "per_group": per_group,
            "confusion": self.confusion(),
        }


def _ratio(num, den) -> float | None:
    return round(float(num) / float(den), 4) if den else None


def read_rows(data_dir: Path) -> list[dict[str, str]]:
    """Rows of DIR/metadata.csv with a known Fitzpatrick type."""
    with (data_dir / "metadata.csv").open(newline="") as handle:
        return [row for row in csv.DictReader(handle) if row.get("fitzpatrick", "").strip()]


def _matches(face: Face, truth_box: list[float] | None) -> bool:
    if truth_box is None:
        return True
    x, y, w, h = truth_box
    cx, cy = face.box[0] + face.box[2] / 2, face.box[1] + face.box[3] / 2
    return x <= cx <= x + w and y <= cy <= y + h


def evaluate(
    data_dir: Path,
    *,
    illuminations: Iterable[str] = ("none",),
    size: int = 224,
    limit: int | None = None,
    detector: FaceDetector | None = None,
    progress: bool = False,
    reject_lesions: bool = True,
) -> list[EvalResult]:
    """Detect and estimate the tone of every image; one EvalResult per illumination option.

    The tone is the served one (`crop_face` with FaceMesh landmarks) for illumination "none";
    "shades_of_gray" is the keypoint-mask ablation.
    """
    detector = detector or FaceDetector()
    rows = read_rows(data_dir)[:limit]
    results = [EvalResult(name) for name in illuminations]
    iterator = rows
    if progress:
        from tqdm import tqdm

        iterator = tqdm(rows, desc="evaluate", unit="img", disable=None)
    for row in iterator:
        truth = fitzpatrick_to_group(int(row["fitzpatrick"]))
        try:
            image = load_image(data_dir / row["image"])
        except InvalidImageError as err:
            for res in results:
                res.invalid.append(str(err))
            continue
        box = [float(v) for v in row["face_box"].split()] if row.get("face_box") else None
        faces = detector.detect(image)
        matched = [f for f in faces if _matches(f, box)]
        # The served path: FaceMesh verifies the face and gives the landmark frame and mask.
        landmarks, presence = landmarks_for(image, matched[:1])
        if matched and not is_face(presence).all():
            matched = []
        for res in results:
            res.true_groups.append(truth)
            res.false_positives += len(faces) - len(matched)
            if not matched:
                res.predicted.append(NO_FACE)
                continue
            tone = crop_face(
                image,
                matched[0],
                size=size,
                illumination=res.illumination,
                reject_lesions=reject_lesions,
                landmarks=landmarks[0],
            ).skin_tone
            res.predicted.append(tone.fitzpatrick_group or ABSTAIN)
            if tone.ita is not None and row.get("ita_true"):
                res.ita_errors.append(abs(tone.ita - float(row["ita_true"])))
    return results


def format_confusion(summary: dict) -> str:
    """The confusion matrix and headline numbers as text."""
    width = max(len(c) for c in COLUMNS) + 2
    lines = [
        f"illumination={summary['illumination']}  images={summary['images']}  "
        f"detection_rate={summary['detection_rate']}  coverage={summary['coverage']}  "
        f"accuracy(answered)={summary['accuracy_answered']}  "
        f"accuracy(all)={summary['accuracy_all']}  ITA MAE={summary['ita_mae']}",
        "true \\ predicted".ljust(18) + "".join(c.rjust(width) for c in COLUMNS),
    ]
    for g, row in summary["confusion"].items():
        lines.append(g.ljust(18) + "".join(str(row[c]).rjust(width) for c in COLUMNS))
    for g, stats in summary["per_group"].items():
        lines.append(
            f"  {g}: n={stats['n']} accuracy(answered)={stats['accuracy_answered']} "
            f"accuracy(all)={stats['accuracy_all']}"
        )
    return "\n".join(lines)
