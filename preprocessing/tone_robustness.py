"""Skin-tone estimate on real photos: stability under lighting changes, and agreement with
by-eye tone labels (estimated tone vs a person's look at the face; neither is Fitzpatrick).

`estimate_under_lighting` runs the serving path (`preprocessing.pipeline.analyze_image`, the
largest verified face) on a photo and on its copies under `preprocessing.colour.
LIGHTING_CHANGES`; `lighting_summary` and `label_agreement` are pure functions of the results.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from core.schema import GROUPS
from preprocessing.colour import LIGHTING_CHANGES, relight
from preprocessing.tone import SkinTone

BASE = "as taken"
CONFIDENCE_BINS = (0.0, 0.5, 0.9, 1.01)


def estimate_under_lighting(
    image_rgb: np.ndarray, *, size: int = 224, changes=LIGHTING_CHANGES
) -> dict[str, SkinTone | None]:
    """The largest face's tone as taken and under each lighting change (None: no face)."""
    from preprocessing.pipeline import analyze_image

    out: dict[str, SkinTone | None] = {}
    for name, (ev, gains) in {BASE: (0.0, (1.0, 1.0, 1.0)), **changes}.items():
        image = image_rgb if name == BASE else relight(image_rgb, ev, gains)
        faces = analyze_image(image, size=size)
        out[name] = faces[0].skin_tone if faces else None
    return out


def _group(tone: SkinTone | None) -> str | None:
    return None if tone is None else tone.fitzpatrick_group


def lighting_summary(results: Iterable[Mapping[str, SkinTone | None]]) -> dict:
    """Per change: the fraction of faces whose group changed (both estimated and different),
    and the fraction abstaining under the change; plus the abstention rate as taken."""
    results = [r for r in results if r.get(BASE) is not None]
    n = len(results)
    summary = {
        "faces": n,
        "abstain_as_taken": _rate(sum(_group(r[BASE]) is None for r in results), n),
    }
    for name in (k for k in (results[0] if results else {}) if k != BASE):
        changed = sum(
            _group(r[BASE]) is not None
            and _group(r[name]) is not None
            and _group(r[BASE]) != _group(r[name])
            for r in results
        )
        abstain = sum(_group(r[name]) is None for r in results)
        summary[name] = {"group_changed": _rate(changed, n), "abstain": _rate(abstain, n)}
    return summary


def _rate(count: int, total: int) -> float | None:
    return None if total == 0 else round(count / total, 4)


def label_agreement(
    tones: Mapping[str, SkinTone | None], labels: Mapping[str, str], *, min_confidence: float = 0.9
) -> dict:
    """Agreement of the estimated group with by-eye labels where the label is a clear group.

    Returns coverage (estimated / clear), agreement among estimated, agreement at confidence
    >= min_confidence, the fraction of clearly light (I-II) faces estimated V-VI, agreement
    per confidence bin (the calibration of the confidence), and per by-eye group how its faces
    were estimated ("None": abstained).
    """
    clear = [(labels[k], tones[k]) for k in labels if k in tones and labels[k] in GROUPS]
    estimated = [(label, t) for label, t in clear if _group(t) is not None]
    light = [t for label, t in clear if label == GROUPS[0]]
    agree = np.array([label == t.fitzpatrick_group for label, t in estimated], bool)
    confidence = np.array([t.confidence for _, t in estimated], float)
    binned = confidence_report(confidence, agree, min_confidence)
    key = f"agreement_at_confidence_{min_confidence}"
    return {
        "clear_labels": len(clear),
        "estimated": len(estimated),
        "coverage": _rate(len(estimated), len(clear)),
        "agreement": _rate(int(agree.sum()), len(estimated)),
        key: binned[key],
        "confident": binned["confident"],
        "light_estimated_v_vi": _rate(sum(_group(t) == GROUPS[2] for t in light), len(light)),
        "light_faces": len(light),
        "by_confidence": binned["by_confidence"],
        "by_label": {
            g: {
                "faces": sum(label == g for label, _ in clear),
                "estimated_as": {
                    str(e): sum(label == g and _group(t) == e for label, t in clear)
                    for e in (*GROUPS, None)
                },
            }
            for g in GROUPS
        },
    }


def calibration_rows(
    tones: Mapping[str, SkinTone | None], labels: Mapping[str, str]
) -> tuple[np.ndarray, np.ndarray]:
    """(features [N, 3], agree [N]) of the faces with a clear by-eye label and an estimated
    group, in image order: what `preprocessing.tone_calibration` is fitted on."""
    from preprocessing.tone_calibration import confidence_features

    keys = sorted(
        k for k in labels if labels[k] in GROUPS and k in tones and _group(tones[k]) is not None
    )
    features = np.array(
        [confidence_features(tones[k].ita, tones[k].ita_interval) for k in keys], np.float64
    ).reshape(-1, 3)
    agree = np.array([tones[k].fitzpatrick_group == labels[k] for k in keys], bool)
    return features, agree


def confidence_report(confidence: np.ndarray, agree: np.ndarray, min_confidence: float) -> dict:
    """Agreement per CONFIDENCE_BINS bin and at >= min_confidence of given confidences."""
    confidence, agree = np.asarray(confidence, float), np.asarray(agree, bool)
    bins = []
    for lo, hi in zip(CONFIDENCE_BINS[:-1], CONFIDENCE_BINS[1:], strict=True):
        members = (confidence >= lo) & (confidence < hi)
        bins.append(
            {
                "confidence": [lo, min(hi, 1.0)],
                "n": int(members.sum()),
                "agreement": _rate(int(agree[members].sum()), int(members.sum())),
            }
        )
    confident = confidence >= min_confidence
    return {
        "faces": int(len(agree)),
        f"agreement_at_confidence_{min_confidence}": _rate(
            int(agree[confident].sum()), int(confident.sum())
        ),
        "confident": int(confident.sum()),
        "by_confidence": bins,
    }
