"""The analysis result: per-face arrays shared by both backends, and the JSON of the contract.

Both the embedded runner and the Triton client produce a `RawAnalysis` (skin_analysis's outputs);
`build_result` turns it into the "Analysis result" dict of docs/architecture.md, so both paths
print the same JSON for the same image.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from client.ood import WARNING as OOD_WARNING
from core.schema import CONDITIONS, DISCLAIMER, TRAINING_EVIDENCE

STATUS_OK, STATUS_NO_FACE, STATUS_INVALID = "ok", "no_face", "invalid_image"
# Warnings (client.steps.face_warnings) after which a face's decisions are reported as
# uncertain (`present: null`) unless the caller forces them; colour_cast alone only warns.
UNCERTAIN_WARNINGS = frozenset(
    {"blur", "underexposed", "overexposed", "face_too_small", "out_of_distribution"}
)
# conditions.<cond>.evidence: which kinds of data had labels for the condition in training
# (the model card's training_data.evidence, train_jax/export.py); null = unknown.
EVIDENCE_VALUES = TRAINING_EVIDENCE  # the model card's training_data.evidence values


@dataclass(frozen=True)
class RawAnalysis:
    """Per-face outputs of the pipeline for F faces (skin_analysis's output tensors)."""

    boxes: np.ndarray  # float32 [F, 4]
    scores: np.ndarray  # float32 [F]
    ita: np.ndarray  # float32 [F], NaN = not measured
    tone_confidence: np.ndarray  # float32 [F]
    affines: np.ndarray  # float32 [F, 2, 3]
    groups: list[str | None]
    sources: list[str]
    probs: np.ndarray  # float32 [F, 3]
    thresholds: np.ndarray  # float64 [F, 3]
    decisions: np.ndarray  # bool [F, 3]
    cam: np.ndarray | None  # float32 [F, 3, h, w]; None when the heatmaps were not asked for
    # float32 [F, 4] acne-severity probabilities (grades 0-3); None or NaN rows = the model has
    # no severity output
    severity: np.ndarray | None = None
    # int [F] the grade of each face from the severity step (client.steps.severity_step, with
    # the shipped cutpoints); None (a server built before it) or -1 = grade the probabilities
    # with the default 0.5 rule
    severity_grade: np.ndarray | None = None
    # Trust outputs (client.steps.FaceBatch); None = a server built before them.
    tone_reasons: list[str | None] | None = None  # why the tone estimate abstained, per face
    ita_interval: np.ndarray | None = None  # float32 [F, 2] low, high; NaN = not measured
    face_presence: np.ndarray | None = None  # float32 [F] the face-verification score
    warnings: list[tuple[str, ...]] | None = None  # quality warning codes per face
    rejected: list[str] | None = None  # one reason per face candidate that was not analysed
    ood_distance: np.ndarray | None = None  # float32 [F] client/ood.py; NaN = not measured
    out_of_distribution: np.ndarray | None = None  # bool [F] beyond the ood.json limit

    @property
    def num_faces(self) -> int:
        return int(self.boxes.shape[0])


@dataclass(frozen=True)
class ModelInfo:
    """Name and version of the served classifier, and which backend answered."""

    name: str
    version: str
    backend: str  # "embedded" | "triton-grpc" | "triton-http"
    # condition -> EVIDENCE_VALUES or None (`card_evidence`); None = unknown for every condition
    evidence: Mapping[str, str | None] | None = None
    training_data: str | None = None  # the model card's training_data.note


def card_evidence(card: Mapping) -> dict[str, str | None]:
    """Per condition, the model card's ``training_data.evidence``; a card without it gives
    "synthetic" when ``training_data.synthetic`` is true (all training data synthetic), else
    None (unknown)."""
    data = card.get("training_data") or {}
    evidence = data.get("evidence") or {}
    fallback = "synthetic" if data.get("synthetic") is True else None
    return {
        cond: evidence[cond] if evidence.get(cond) in EVIDENCE_VALUES else fallback
        for cond in CONDITIONS
    }


def card_training_note(card: Mapping) -> str | None:
    """The model card's one-line ``training_data.note``, if any."""
    note = (card.get("training_data") or {}).get("note")
    return str(note) if note else None


def _number(value) -> float | None:
    value = float(value)
    return None if math.isnan(value) else value


def build_result(
    image: str,
    raw: RawAnalysis | None,
    model: ModelInfo,
    *,
    heatmaps: list[dict[str, str | None]] | None = None,
    error: str | None = None,
    force: bool = False,
    region: str = "face",
) -> dict:
    """The result JSON dict; `raw=None` means the image was invalid (`error` says why).

    A face with one of UNCERTAIN_WARNINGS reports each condition as `present: null`
    (uncertain) unless `force`. `region`: "face", or "whole" when the whole image was
    analysed as one skin region (`faces` then holds that region).
    """
    result: dict = {"image": image, "region": region}
    if raw is None:
        result.update(status=STATUS_INVALID, faces=[], rejected_candidates=0, rejected_reasons={})
        if error:
            result["error"] = error
    else:
        result["status"] = STATUS_OK if raw.num_faces else STATUS_NO_FACE
        result["faces"] = [
            _face(raw, i, (heatmaps or [None] * raw.num_faces)[i], model.evidence or {}, force)
            for i in range(raw.num_faces)
        ]
        result["rejected_candidates"] = len(raw.rejected or [])
        result["rejected_reasons"] = _rejected(raw.rejected)
    result["model"] = {
        "name": model.name,
        "version": model.version,
        "backend": model.backend,
        "training_data": model.training_data,
    }
    result["disclaimer"] = DISCLAIMER
    return result


def _severity(raw: RawAnalysis, i: int) -> dict | None:
    """`{"grade", "probabilities"}` of face i, or None when the model has no severity output."""
    if raw.severity is None:
        return None
    probs = np.asarray(raw.severity[i], np.float64)
    if not np.all(np.isfinite(probs)):
        return None
    grade = -1 if raw.severity_grade is None else int(raw.severity_grade[i])
    if grade < 0:
        from core.severity import severity_grade

        grade = int(severity_grade(probs))
    return {"grade": grade, "probabilities": [float(p) for p in probs]}


def _rejected(reasons: list[str] | None) -> dict[str, int]:
    """{reason: number of candidates} of the detector candidates not analysed."""
    counts: dict[str, int] = {}
    for reason in reasons or []:
        counts[reason] = counts.get(reason, 0) + 1
    return counts


def _skin_tone(raw: RawAnalysis, i: int) -> dict:
    """The `skin_tone` block of face i: ITA, its interval, the group, and why it abstained."""
    given = raw.sources[i] == "given"
    interval = None
    if raw.ita_interval is not None and np.all(np.isfinite(raw.ita_interval[i])):
        interval = [float(v) for v in raw.ita_interval[i]]
    reason = None if raw.tone_reasons is None else raw.tone_reasons[i]
    return {
        "ita": _number(raw.ita[i]),
        "ita_interval": interval,
        "fitzpatrick_group": raw.groups[i],
        "source": raw.sources[i],
        "confidence": 1.0 if given else float(raw.tone_confidence[i]),
        "abstain_reason": None if given else (reason or None),
    }


def _face(
    raw: RawAnalysis,
    i: int,
    heatmaps: dict[str, str | None] | None,
    evidence: Mapping,
    force: bool = False,
) -> dict:
    warnings = list(raw.warnings[i]) if raw.warnings is not None else []
    if raw.out_of_distribution is not None and bool(raw.out_of_distribution[i]):
        warnings.append(OOD_WARNING)
    uncertain = not force and bool(UNCERTAIN_WARNINGS.intersection(warnings))
    conditions = {
        cond: {
            "probability": float(raw.probs[i, c]),
            "threshold": float(raw.thresholds[i, c]),
            "present": None if uncertain else bool(raw.decisions[i, c]),
            "evidence": evidence.get(cond),
        }
        for c, cond in enumerate(CONDITIONS)
    }
    conditions["acne"]["severity"] = _severity(raw, i)
    presence = None if raw.face_presence is None else _number(raw.face_presence[i])
    ood = None if raw.ood_distance is None else _number(raw.ood_distance[i])
    return {
        "box": [float(v) for v in raw.boxes[i]],
        "score": _number(raw.scores[i]),
        "face_presence": presence,
        "ood_distance": ood,
        "skin_tone": _skin_tone(raw, i),
        "warnings": warnings,
        "conditions": conditions,
        "heatmaps": {cond: (heatmaps or {}).get(cond) for cond in CONDITIONS},
    }


def summarize(result: dict) -> str:
    """A short human-readable summary of one result."""
    lines = [f"{result['image']}: {result['status']}"]
    if result.get("error"):
        lines[0] += f" ({result['error']})"
    for k, face in enumerate(result["faces"]):
        tone = face["skin_tone"]
        group = tone["fitzpatrick_group"] or "unknown"
        if tone.get("abstain_reason"):
            group += f": {tone['abstain_reason']}"
        what = "region" if result.get("region") == "whole" else f"face {k + 1}"
        score = "" if face["score"] is None else f" score {face['score']:.2f}"
        lines.append(
            f"  {what}: box {[round(v) for v in face['box']]}{score}, "
            f"skin tone {group} ({tone['source']})"
        )
        if face.get("warnings"):
            lines.append(f"    warnings: {', '.join(face['warnings'])}")
        for cond, c in face["conditions"].items():
            mark = {True: "present", False: "absent", None: "uncertain"}[c["present"]]
            if c.get("evidence"):
                mark += f" [trained on: {c['evidence']}]"
            lines.append(
                f"    {cond:<18} p={c['probability']:.3f} (threshold {c['threshold']:.3f}) {mark}"
            )
            if c.get("severity"):
                lines.append(
                    f"      severity grade {c['severity']['grade']} (0-3, "
                    f"p={max(c['severity']['probabilities']):.2f})"
                )
            if face["heatmaps"].get(cond):
                lines.append(f"      heatmap: {face['heatmaps'][cond]}")
    if result.get("rejected_candidates"):
        reasons = ", ".join(f"{n} {r}" for r, n in result.get("rejected_reasons", {}).items())
        lines.append(f"  not analysed: {result['rejected_candidates']} candidate(s) ({reasons})")
    model = result["model"]
    lines.append(
        f"  model {model['name']} {model['version']} via {model['backend']}; {result['disclaimer']}"
    )
    if model.get("training_data"):
        lines.append(f"  {model['training_data']}")
    return "\n".join(lines)
