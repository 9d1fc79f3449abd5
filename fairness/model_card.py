"""Model card: intended use, data and its provenance, per-group metrics with CIs, limitations.

One schema (``schema_version`` `SCHEMA_VERSION`) for both model_card.json files: the exported
model's (models/default, written by ``train_jax.export``) and the fairness report's (written by
``fairness.report``). `make_model_card` is the one builder: the fields every card has (name,
version, disclaimer, intended use, model, training, training_data) plus the exported model's
sections (`export_sections`: input, outputs, opset, parity, per-group metrics, quantization)
and/or the evaluation sections (`evaluation_sections`: data, evaluation, limitations,
thresholds, calibration, ...). `validate_model_card` checks a card, `read_model_card` reads one
(older cards are upgraded in memory, `upgrade_model_card`), `render_model_card` turns one into
Markdown and `write_model_card` writes it atomically. Errors name the file and the field.

Where the skin-tone groups come from (`fairness.tone_basis`) is stated in the card: with an
estimated tone every heading says "estimated tone group (ITA)", never Fitzpatrick.

Data provenance comes from a datacard: `datacard.json` (or `.yaml` / `.yml`) beside a dataset's
metadata.csv, one JSON object::

    {"name": "acne-new v36", "licence": "CC BY 4.0",
     "attribution": "buyumedatasets (Roboflow Universe workspace)",
     "url": "https://universe.roboflow.com/buyumedatasets/acne-new/dataset/36",
     "tone_source": "estimated"}

`name` is required; the other keys are optional strings (`tone_source`: labelled | estimated,
the default for rows whose predictions do not say). Any other key is an error. A dataset
combined from several (`data.combine`) keeps each input's datacard in ``OUT/<input>/``;
`read_datacards` and `find_datacards` collect those when OUT has none of its own.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from core.schema import TRAINING_EVIDENCE
from data.run import Run
from fairness.render import fmt_estimate, to_markdown
from fairness.report_audits import (
    counterfactual_card,
    counterfactual_card_blocks,
    selective_card,
    selective_card_blocks,
)
from fairness.tone_basis import LABELLED, TONE_SOURCES, ToneBasis, make_tone_basis

__all__ = [
    "DATACARD_KEYS",
    "DATACARD_NAMES",
    "EVIDENCE_KINDS",
    "SCHEMA_VERSION",
    "DatacardError",
    "ModelCardError",
    "add_audit_sections",
    "condition_evidence",
    "evaluation_sections",
    "export_sections",
    "find_datacards",
    "make_model_card",
    "read_datacard",
    "read_datacards",
    "read_model_card",
    "render_model_card",
    "upgrade_model_card",
    "validate_model_card",
    "write_model_card",
]

DATACARD_NAMES = ("datacard.json", "datacard.yaml", "datacard.yml")
DATACARD_KEYS = ("name", "licence", "attribution", "url", "tone_source")
# What a condition's numbers rest on: labels on real photos, synthetic images only, or unknown
# (a dataset of unknown kind).
EVIDENCE_KINDS = ("real", "synthetic", "unknown")
EVIDENCE_NOTE = (
    "Per condition: 'real' = labelled on real photographs in the evaluation data; 'synthetic' "
    "= only synthetic evidence (synthetic evaluation data, or no label for the condition in "
    "the evaluation data, so whatever the model says about it rests on synthetic training "
    "data at most); 'unknown' = labelled, but the data's kind is unknown."
)

# model_card.json's schema: 2 = one schema for the exported model's card and the fairness
# report's (1: the report's card before; none: the exported model's card before).
SCHEMA_VERSION = 2
INPUT_NAME = "image"  # the exported graph's input
SEVERITY_GRADES_NOTE = "ACNE04 bands of the acne lesion count: 0 <=5, 1 6-20, 2 21-50, 3 >50"
GAP_TARGET = 0.15  # the target for the dark-vs-medium F1 gap
# The per-group estimates and the gaps the Markdown card shows, in column order.
CARD_METRICS = ("f1", "recall", "precision", "auroc")
CARD_GAPS = ("f1_dark_vs_medium", "f1_worst_best", "equalized_odds")
NOT_A_MEDICAL_DEVICE = "This model is not a medical device and is not cleared for clinical use."
INTENDED_USE = (
    "Research aid for studying automated detection of acne, hyperpigmentation and wrinkles "
    "in face photographs, and for measuring how that detection differs across skin tones "
    "(Fitzpatrick groups I-II, III-IV, V-VI)."
)
OUT_OF_SCOPE = [
    "diagnosis, treatment or triage of any person",
    "any decision about a person's care, insurance, employment or access to services",
    "use on images unlike the training data (non-face images, heavy filters, children)",
]


class DatacardError(ValueError):
    """A datacard that cannot be read; the message names the file and the field."""


def read_datacard(path: str | Path) -> dict:
    """One datacard (JSON or YAML), or the one in a dataset folder, as a checked dict.

    Returns the keys of `DATACARD_KEYS` that are set (name always) plus ``file``.
    """
    path = Path(path)
    if path.is_dir():
        found = [path / n for n in DATACARD_NAMES if (path / n).is_file()]
        if not found:
            raise DatacardError(f"{path}: no {' / '.join(DATACARD_NAMES)} in this folder")
        path = found[0]
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DatacardError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            doc = yaml.safe_load(text)
        else:
            doc = json.loads(text)
    except ValueError as exc:  # JSONDecodeError and yaml.YAMLError's subclasses of it
        raise DatacardError(f"{path}: not valid JSON/YAML ({exc})") from None
    except Exception as exc:  # noqa: BLE001 - yaml.YAMLError is not a ValueError
        raise DatacardError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(doc, dict):
        raise DatacardError(f"{path}: expected one object, got {type(doc).__name__}")
    unknown = sorted(set(doc) - set(DATACARD_KEYS))
    if unknown:
        raise DatacardError(f"{path}: unknown field(s) {unknown}; allowed: {sorted(DATACARD_KEYS)}")
    if not isinstance(doc.get("name"), str) or not doc["name"].strip():
        raise DatacardError(f"{path}: field 'name': required, a non-empty string")
    card: dict = {}
    for key in DATACARD_KEYS:
        value = doc.get(key)
        if value is None:
            continue
        if not isinstance(value, str):
            raise DatacardError(f"{path}: field {key!r}: expected a string, got {value!r}")
        card[key] = value.strip()
    if "tone_source" in card and card["tone_source"] not in TONE_SOURCES:
        raise DatacardError(
            f"{path}: field 'tone_source': must be one of {sorted(TONE_SOURCES)}, "
            f"got {card['tone_source']!r}"
        )
    return card | {"file": str(path)}


def _card_files(folder: Path) -> list[Path]:
    """The datacard of a dataset folder, else those of its subfolders (a combined dataset)."""
    own = [folder / n for n in DATACARD_NAMES if (folder / n).is_file()]
    if own:
        return own[:1]
    found = []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        found += [sub / n for n in DATACARD_NAMES if (sub / n).is_file()][:1]
    return found


def read_datacards(path: str | Path) -> list[dict]:
    """Datacards from a file, a dataset folder holding one, or a combined dataset's folder.

    A folder without a datacard of its own gives those of its immediate subfolders, sorted by
    name (``OUT/<input>/datacard.json`` of `data.combine`); `DatacardError` when there is none.
    """
    path = Path(path)
    if not path.is_dir():
        return [read_datacard(path)]
    files = _card_files(path)
    if not files:
        raise DatacardError(
            f"{path}: no {' / '.join(DATACARD_NAMES)} in this folder or its subfolders"
        )
    return [read_datacard(f) for f in files]


def find_datacards(run_dir: str | Path | None) -> list[dict]:
    """The datacards beside the datasets a run names in its config.json (none: []).

    Any string value of config.json that is a folder holding metadata.csv counts as a dataset
    (as `fairness.io.read_dataset_info` finds dataset.json); paths are taken as written. A
    dataset without a datacard of its own gives its subfolders' (`read_datacards`).
    """
    if run_dir is None:
        return []
    doc = Run(run_dir).config_or_none()
    if doc is None:
        return []
    cards, seen = [], set()
    for value in _strings(doc):
        folder = Path(value)
        try:
            if not (folder / "metadata.csv").is_file():
                continue
        except OSError:
            continue
        key = folder.resolve()
        if key in seen:
            continue
        seen.add(key)
        cards += [read_datacard(f) for f in _card_files(folder)]
    return cards


def _strings(value) -> list[str]:
    if isinstance(value, str):
        return [value] if 0 < len(value) < 500 else []
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def condition_evidence(
    y_true: np.ndarray,
    kind: str,
    overrides: Mapping[str, str] | None = None,
    *,
    synthetic_rows: np.ndarray | None = None,
) -> dict[str, str]:
    """What each condition's numbers rest on (`EVIDENCE_KINDS`; see `EVIDENCE_NOTE`).

    Parameters
    ----------
    y_true : array [N, C]
        Labels of the evaluation data (NaN = unknown), columns in `CONDITIONS` order.
    kind : str
        The data's kind: synthetic, real or unknown (`fairness.io.read_dataset_info`).
    overrides : mapping, optional
        Condition -> kind, replacing the rule (e.g. from ``--evidence wrinkles=synthetic``).
    synthetic_rows : bool array [N], optional
        Per row: from a synthetic source (a `source` column). With it a condition is "real"
        when some real row has its label, whatever `kind` says (a real set combined with the
        synthetic benchmark: wrinkles labelled on synthetic rows only -> "synthetic").

    Returns
    -------
    dict condition -> "real" | "synthetic" | "unknown"

    >>> y = np.array([[1.0, 0.0, np.nan], [0.0, np.nan, np.nan]])
    >>> condition_evidence(y, "real")
    {'acne': 'real', 'hyperpigmentation': 'real', 'wrinkles': 'synthetic'}
    >>> condition_evidence(y, "real", synthetic_rows=np.array([True, False]))["hyperpigmentation"]
    'synthetic'
    """
    from core.schema import CONDITIONS

    y = np.asarray(y_true, dtype=np.float64)
    if y.ndim != 2 or y.shape[1] != len(CONDITIONS):
        raise ValueError(f"y_true must have shape [N, {len(CONDITIONS)}], got {y.shape}")
    base = kind if kind in EVIDENCE_KINDS else "unknown"
    out = {}
    for i, c in enumerate(CONDITIONS):
        known = np.isfinite(y[:, i])
        if not known.any():
            out[c] = "synthetic"
        elif synthetic_rows is None:
            out[c] = base
        else:
            out[c] = "synthetic" if np.asarray(synthetic_rows, bool)[known].all() else "real"
    for cond, value in (overrides or {}).items():
        if cond not in out:
            raise ValueError(f"evidence: unknown condition {cond!r}; choose one of {sorted(out)}")
        if value not in EVIDENCE_KINDS:
            raise ValueError(
                f"evidence for {cond}: unknown kind {value!r}; choose one of "
                f"{sorted(EVIDENCE_KINDS)}"
            )
        out[cond] = value
    return out


def _intended_use(tone: ToneBasis) -> str:
    if tone.source == LABELLED:
        return INTENDED_USE
    return INTENDED_USE.replace(
        "(Fitzpatrick groups I-II, III-IV, V-VI)",
        f"(skin-tone groups I-II, III-IV, V-VI: {tone.group_basis})",
    )


def _has_types(metrics: dict) -> bool:
    return any(
        cell["n"] > 0
        for entry in metrics["conditions"].values()
        for cell in entry["by_type"].values()
    )


# What the numbers were measured on, when the data has no test split (`fairness.crossfit`).
CROSS_FITTED_NOTE = (
    "The data has no test split: metrics are measured on the validation split. Thresholds are "
    "cross-fitted (the rows split into 2 folds by subject, or by image where no subject is "
    "given; each fold decided with thresholds "
    "fitted on the other), so no threshold-dependent number (F1, precision, recall) comes from "
    "thresholds fitted on its own rows; AUROC and AP use every row. The validation split also "
    "chose the training checkpoint, so the numbers may still be optimistic."
)


def _data_section(dataset: dict, split: str = "test") -> dict:
    kind = dataset.get("kind", "unknown")
    measured = (
        "the held-out test split" if split == "test" else "the validation split (no test split)"
    )
    note = {
        "synthetic": "All metrics are measured on synthetic images; they show that the pipeline "
        "works and how it behaves, not how it performs on real faces.",
        "real": f"Metrics are measured on {measured} of the named data.",
        "unknown": "The data source is unknown (no dataset.json or source column was found); "
        "treat the metrics as unverified.",
    }.get(kind, "")
    return {"kind": kind, "name": dataset.get("name", "unknown"), "details": dataset, "note": note}


def _limitations(
    metrics: dict,
    dataset: dict,
    tone: ToneBasis,
    evidence: Mapping[str, str] | None = None,
    provenance: list | None = None,
    split: str = "test",
    severity: bool = False,
) -> list[str]:
    from core.schema import CONDITIONS, FITZPATRICK_TYPES, GROUPS

    items = []
    if split != "test":
        items.append(CROSS_FITTED_NOTE)
    if tone.note:
        items.append(tone.note)
    if dataset.get("kind") == "synthetic":
        items.append("Evaluated on synthetic data only; real-world performance is unmeasured.")
    elif dataset.get("kind") == "unknown":
        items.append("The evaluation data could not be identified.")
    if provenance is not None and not provenance:
        items.append(
            "Data provenance (licence, attribution) is not recorded: no datacard was found."
        )
    has_types = tone.source == LABELLED or _has_types(metrics)
    for cond in CONDITIONS:
        entry = metrics["conditions"][cond]
        if entry["overall"]["n"] == 0:
            kind = (evidence or {}).get(cond, "synthetic")
            items.append(
                f"{cond}: no ground truth in the {split} split (no image has a label); "
                f"evidence: {kind}."
            )
            continue
        short = [g for g in GROUPS if entry["by_group"][g]["status"] != "ok"]
        if short:
            where = ", ".join(tone.group_name(g) for g in short)
            if tone.source == LABELLED:
                where = f"group(s) {where}"
            items.append(
                f"{cond}: insufficient evidence for {where} "
                f"(fewer than {metrics['min_positives']} positives or "
                f"{metrics['min_negatives']} negatives in the {split} split)."
            )
        types = [t for t in map(str, FITZPATRICK_TYPES) if entry["by_type"][t]["status"] != "ok"]
        if types and has_types:
            items.append(f"{cond}: per-type metrics unavailable for type(s) {', '.join(types)}.")
    gap = metrics["summary"]["gap_dark_vs_medium_f1"]
    if gap.get("value") is not None:
        high = gap.get("ci_high")
        if gap["value"] > GAP_TARGET or (high is not None and high > GAP_TARGET):
            items.append(
                f"The macro-F1 gap between {tone.group_name('V-VI')} and III-IV is "
                f"{fmt_estimate(gap)}, "
                f"above or not clearly below the {GAP_TARGET} target."
            )
    items += [
        "Skin tone, when not given, is estimated from the image (ITA) and can be wrong, "
        "especially under unusual lighting.",
        "Per-group thresholds are fitted on the validation split; groups with few positives "
        "are shrunk toward the global threshold and may remain poorly tuned.",
        "Labels are per-image presence labels (plus the acne-severity grade, evaluated in its "
        "own section); lesion location is not evaluated here."
        if severity
        else "Labels are per-image presence labels; severity and lesion location are not "
        "evaluated here.",
    ]
    return items


def evaluation_sections(
    metrics: dict,
    *,
    dataset: dict,
    thresholds: dict | None = None,
    calibration: dict | None = None,
    tone: ToneBasis | None = None,
    provenance: list[dict] | None = None,
    evidence: Mapping[str, str] | None = None,
    evaluation: Mapping[str, object] | None = None,
    severity: dict | None = None,
) -> dict:
    """The card's evaluation sections (`make_model_card`'s ``evaluation``) from the results.

    Parameters
    ----------
    metrics : dict
        Output of `fairness.evaluate.evaluate_predictions` on the evaluated split.
    dataset : dict
        From `fairness.io.read_dataset_info` (``kind``: synthetic/real/unknown, ``name``).
    thresholds : dict, optional
        `Thresholds.to_dict()` of the thresholds applied.
    calibration : dict, optional
        Output of `fairness.calibration.calibration_by_group`.
    tone : ToneBasis, optional
        Where the groups come from (`fairness.tone_basis`); None = labelled Fitzpatrick
        groups, as before.
    provenance : list of dict, optional
        Datacards of the data (`read_datacard`): name, licence, attribution, url, tone_source.
        None = not looked for (no key in the card); [] = looked for, none found.
    evidence : mapping, optional
        Condition -> "real" | "synthetic" | "unknown" (`condition_evidence`).
    evaluation : mapping, optional
        ``{"split": "test" | "val", "method": "..."}`` (`fairness.crossfit`); None = test with
        thresholds fitted on val.
    severity : dict, optional
        The report's severity section (`fairness.report.severity_section`): QWK and MAE of the
        acne-severity grade, overall and per group, and the grade distribution.

    Returns
    -------
    dict: ``tone_source``, ``group_basis``, ``group_label``, ``data``, ``evaluation``,
    ``limitations`` and, when given, ``severity``, ``group_note``, ``data_provenance``,
    ``evidence`` (+ ``evidence_note``), ``thresholds`` and ``calibration``.
    """
    tone = tone or make_tone_basis(LABELLED)
    split = str((evaluation or {}).get("split", "test"))
    card = {
        **tone.to_dict(),
        "data": _data_section(dataset, split),
        "evaluation": _evaluation_section(metrics, split, evaluation),
        "limitations": _limitations(
            metrics, dataset, tone, evidence, provenance, split, severity is not None
        ),
    }
    if severity is not None:
        card["severity"] = severity
    if tone.note:
        card["group_note"] = tone.note
    return card | _given_sections(provenance, evidence, thresholds, calibration)


# What each severity head's output is (train_jax.models.ordinal, train_jax.models.count).
SEVERITY_HEAD_MEANINGS = {
    "ordinal": "ordinal CORAL head on the grades",
    "count": "Poisson lesion count from a density map, trained on the lesion counts: the "
    "probability that the count falls in each grade's band",
}


def export_sections(
    *,
    architecture: str,
    input_size: int,
    opset: int,
    normalisation: str,
    parity: dict[str, float] | None,
    metrics: dict | None = None,
    measured_on_synthetic: bool = False,
    run: str | None = None,
    graph_optimisation: str | None = None,
    feature_dim: int | None = None,
    quantization: dict | None = None,
    severity_head: str = "ordinal",
) -> dict:
    """The card's exported-model sections (`make_model_card`'s ``export``): the graph's input
    and outputs, the opset and graph optimisation, the parity with JAX, the per-group metrics
    of the fairness report (`train_jax.export.compact_metrics`) and where they were measured.

    ``feature_dim``: the width of the ``features`` output (None: the model has none);
    ``severity_head``: "ordinal" or "count", the head behind the ``severity`` output.
    """
    from core.schema import CONDITIONS, SEVERITY_GRADES

    if severity_head not in SEVERITY_HEAD_MEANINGS:
        raise ValueError(
            f"severity_head must be one of {list(SEVERITY_HEAD_MEANINGS)}, got {severity_head!r}"
        )

    outputs = {
        "probs": {"shape": ["B", len(CONDITIONS)], "meaning": "sigmoid probability per condition"},
        "cam": {
            "shape": ["B", len(CONDITIONS), input_size, input_size],
            "meaning": "class activation map per condition, normalised to [0, 1]",
        },
        "severity": {
            "shape": ["B", len(SEVERITY_GRADES)],
            "meaning": "acne severity: probability of each grade 0-3 "
            f"({SEVERITY_HEAD_MEANINGS[severity_head]}; "
            "the grade is the median, core.severity.severity_grade)",
            "head": severity_head,
            "grades": SEVERITY_GRADES_NOTE,
        },
    }
    if feature_dim:
        outputs["features"] = {
            "shape": ["B", feature_dim],
            "meaning": "pooled features the heads see; their Mahalanobis distance to the "
            "training data is the out-of-distribution score (client/ood.py, ood.json)",
        }
    return {
        "architecture": architecture,
        "input_size": input_size,
        "input": {
            "name": INPUT_NAME,
            "dtype": "float32",
            "shape": ["B", input_size, input_size, 3],
            "layout": "NHWC",
            "range": "RGB 0..255",
            "normalisation": normalisation,
        },
        "graph_optimisation": graph_optimisation or "none",
        "outputs": outputs,
        "onnx_opset": opset,
        "metrics": metrics,
        "metrics_note": "measured on synthetic data" if measured_on_synthetic else None,
        "source_run": run,
        "export_parity_max_abs_diff": parity,
        "quantization": quantization,
        "exported_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def make_model_card(
    *,
    name: str,
    version: str | None = None,
    model: dict | None = None,
    training: dict | None = None,
    training_data: dict | None = None,
    export: Mapping[str, object] | None = None,
    evaluation: Mapping[str, object] | None = None,
) -> dict:
    """The model card (model_card.json, schema `SCHEMA_VERSION`): the one builder of both cards.

    The fields every card has (name, version, disclaimer, intended use, model, training,
    training_data) plus the exported model's sections (`export_sections`: model.onnx's card,
    written by ``train_jax.export``) and/or the evaluation sections (`evaluation_sections`:
    the fairness report's card). The card is checked (`validate_model_card`).
    """
    from core.schema import CONDITIONS, DISCLAIMER, GROUPS

    tone = make_tone_basis(str((evaluation or {}).get("tone_source", LABELLED)))
    card = {
        "schema_version": SCHEMA_VERSION,
        "name": name,
        "version": version,
        "disclaimer": DISCLAIMER,
        "medical_device": False,
        "not_a_medical_device": NOT_A_MEDICAL_DEVICE,
        "intended_use": _intended_use(tone),
        "out_of_scope": OUT_OF_SCOPE,
        "model": model or {"name": "unknown"},
        "conditions": list(CONDITIONS),
        "groups": list(GROUPS),
        "training": training,
        "training_data": training_data,
        **(export or {}),
        **(evaluation or {}),
    }
    return validate_model_card(card)


def add_audit_sections(card: dict, selective: dict | None, counterfactual: dict | None) -> dict:
    """The card with ``selective_prediction`` and ``counterfactual_robustness`` added.

    Each when given: the operating points, and the per-group flip and tone-change rates.
    """
    out = dict(card)
    if selective:
        out["selective_prediction"] = selective_card(selective)
    if counterfactual:
        out["counterfactual_robustness"] = counterfactual_card(counterfactual)
    return out


def _given_sections(
    provenance: list[dict] | None,
    evidence: Mapping[str, str] | None,
    thresholds: dict | None,
    calibration: dict | None,
) -> dict:
    """The card's sections of the optional inputs that were given (None: no section)."""
    from core.schema import CONDITIONS

    sections: dict = {}
    if provenance is not None:
        sections["data_provenance"] = [
            {k: entry.get(k) for k in DATACARD_KEYS} for entry in provenance
        ]
    if evidence is not None:
        sections["evidence"] = {c: evidence[c] for c in CONDITIONS if c in evidence}
        sections["evidence_note"] = EVIDENCE_NOTE
    if thresholds is not None:
        sections["thresholds"] = _threshold_section(thresholds)
    if calibration is not None:
        sections["calibration"] = _calibration_section(calibration)
    return sections


def _evaluation_section(metrics: dict, split: str, evaluation: Mapping[str, object] | None) -> dict:
    """The card's ``evaluation``: how it was measured, the summary, per-group cells and gaps."""
    from core.schema import CONDITIONS

    section = {
        "split": split,
        "method": str((evaluation or {}).get("method", "test, thresholds fitted on val")),
        "n": metrics["n"],
        "thresholds": metrics["thresholds"],
        "ci": f"{int(metrics['ci_level'] * 100)}% {metrics['ci_method']}, "
        f"{metrics['n_boot']} replicates, seed {metrics['seed']}",
        "minimum_counts": {
            "positives": metrics["min_positives"],
            "negatives": metrics["min_negatives"],
        },
        "summary": metrics["summary"],
        "macro_over": metrics["macro"].get("conditions", list(CONDITIONS)),
        "no_ground_truth": metrics.get("no_ground_truth", []),
        "per_group": _per_group_section(metrics),
        "gaps": {c: metrics["conditions"][c]["gaps"] for c in CONDITIONS}
        | {"macro": metrics["macro"]["gaps"]},
    }
    if split != "test":
        section["note"] = CROSS_FITTED_NOTE
    return section


def _per_group_section(metrics: dict) -> dict:
    """Condition -> group -> the group's estimates, n and positives."""
    from core.schema import CONDITIONS, GROUPS

    return {
        cond: {
            g: {
                m: metrics["conditions"][cond]["by_group"][g][m]
                for m in ("f1", "precision", "recall", "specificity", "auroc", "ap")
            }
            | {
                "n": metrics["conditions"][cond]["by_group"][g]["n"],
                "positives": metrics["conditions"][cond]["by_group"][g]["positives"],
            }
            for g in GROUPS
        }
        for cond in CONDITIONS
    }


def _threshold_section(thresholds: dict) -> dict:
    """Condition -> global and per-group threshold, plus the fitting method."""
    from core.schema import CONDITIONS, GROUPS

    return {
        c: {
            "global": thresholds["thresholds"][c]["global"]["threshold"],
            **{g: thresholds["thresholds"][c]["groups"][g]["threshold"] for g in GROUPS},
        }
        for c in CONDITIONS
    } | {"method": thresholds.get("method"), "unknown_group": "global"}


def _calibration_section(calibration: dict) -> dict:
    """Condition -> subset -> ECE, Brier score and n."""
    from core.schema import CONDITIONS

    return {
        c: {
            g: {"ece": v.get("ece"), "brier": v.get("brier"), "n": v.get("n")}
            for g, v in calibration["conditions"][c].items()
        }
        for c in CONDITIONS
    }


def render_model_card(card: dict) -> str:
    """Markdown text of a model card dict (an exported model's, a report's, or both)."""
    tone = make_tone_basis(card.get("tone_source", LABELLED))
    blocks = _card_intro_blocks(card)
    if "input_size" in card:
        blocks += _card_export_blocks(card)
    if "evaluation" in card:
        blocks += [
            *_card_data_blocks(card, tone),
            *_card_evaluation_blocks(card["evaluation"], tone),
            *_card_threshold_blocks(card, tone),
        ]
    if "severity" in card:
        blocks += severity_blocks(card["severity"], tone)
    if "selective_prediction" in card:
        blocks += selective_card_blocks(card["selective_prediction"])
    if "counterfactual_robustness" in card:
        blocks += counterfactual_card_blocks(card["counterfactual_robustness"])
    if card.get("limitations"):
        blocks += [("h2", "Known limitations"), ("list", card["limitations"])]
    return to_markdown(blocks)


def _card_intro_blocks(card: dict) -> list[tuple]:
    """Title, intended use, the model and its training data."""
    blocks = [
        ("h1", f"Model card: {card['name']}"),
        ("p", f"**{card['disclaimer'].capitalize()}.** {card['not_a_medical_device']}"),
        ("h2", "Intended use"),
        ("p", card["intended_use"]),
        ("p", "Out of scope:"),
        ("list", card["out_of_scope"]),
        ("h2", "Model"),
        ("list", [f"{k}: {v}" for k, v in card["model"].items()] or ["unknown"]),
    ]
    note = (card.get("training_data") or {}).get("note")
    if note:
        blocks.append(("p", f"Training data: {note}."))
    return blocks


def _card_export_blocks(card: dict) -> list[tuple]:
    """The exported graph: version, input, outputs and the parity with JAX."""
    parity = card.get("export_parity_max_abs_diff") or {}
    return [
        ("h2", "Exported model"),
        (
            "list",
            [
                f"version: {card.get('version')}",
                f"input: {card['input_size']} x {card['input_size']} RGB, "
                f"{card['input'].get('normalisation', '')}",
                f"ONNX opset {card.get('onnx_opset')}; graph: {card.get('graph_optimisation')}",
                *(f"output {k}: {v.get('meaning', '')}" for k, v in card["outputs"].items()),
                *(f"parity with JAX ({k}): {v:.1e}" for k, v in parity.items()),
            ],
        ),
    ]


def _card_data_blocks(card: dict, tone: ToneBasis) -> list[tuple]:
    """The evaluation data, its provenance and how the evaluation was done."""
    ev = card["evaluation"]
    return [
        ("h2", "Data"),
        ("p", f"{card['data']['kind']}: {card['data']['name']}. {card['data']['note']}"),
        *_provenance_blocks(card),
        *(
            [("p", f"Skin-tone groups: {tone.label}. {card.get('group_note', tone.note)}")]
            if tone.source != LABELLED
            else []
        ),
        ("h2", "Evaluation"),
        (
            "p",
            f"Split: {ev['split']} (n = {ev['n']}); evaluation: "
            f"{ev.get('method', 'test, thresholds fitted on val')}. "
            f"Thresholds: {ev['thresholds']}. "
            f"Intervals: {ev['ci']}. A cell needs at least {ev['minimum_counts']['positives']} "
            f"positives and {ev['minimum_counts']['negatives']} negatives, otherwise it reads "
            "'insufficient evidence'.",
        ),
        *([("p", ev["note"])] if ev.get("note") else []),
    ]


def _card_evaluation_blocks(ev: dict, tone: ToneBasis) -> list[tuple]:
    """The summary table, the per-group table and the gap table."""
    from core.schema import CONDITIONS, GROUPS

    group_head = "group" if tone.source == LABELLED else tone.label
    rows = [
        [
            cond,
            g,
            ev["per_group"][cond][g]["n"],
            ev["per_group"][cond][g]["positives"],
            *(fmt_estimate(ev["per_group"][cond][g][m]) for m in CARD_METRICS),
        ]
        for cond in CONDITIONS
        for g in GROUPS
    ]
    gap_rows = [
        [cond, *(fmt_estimate(ev["gaps"][cond][k]) for k in CARD_GAPS)]
        for cond in (*CONDITIONS, "macro")
    ]
    dark_vs_medium = "|F1 V-VI - F1 III-IV|"
    if tone.source != LABELLED:
        dark_vs_medium += f" ({tone.label})"
    return [
        (
            "table",
            ["summary", "value [95% CI]"],
            [[k, fmt_estimate(v)] for k, v in ev["summary"].items()],
        ),
        (
            "table",
            ["condition", group_head, "n", "positives", "F1", "recall", "precision", "AUROC"],
            rows,
        ),
        (
            "table",
            ["condition", dark_vs_medium, "F1 best - worst", "equalized odds diff."],
            gap_rows,
        ),
    ]


def _card_threshold_blocks(card: dict, tone: ToneBasis) -> list[tuple]:
    """The decision thresholds and the calibration (ECE) tables, when the card has them."""
    from core.schema import CONDITIONS, GROUPS

    blocks: list[tuple] = []
    if "thresholds" in card:
        blocks.append(("h2", "Decision thresholds"))
        blocks.append(
            (
                "table",
                ["condition", "global", *(tone.group_name(g) for g in GROUPS)],
                [
                    [c, *(f"{card['thresholds'][c][k]:.3f}" for k in ("global", *GROUPS))]
                    for c in CONDITIONS
                ],
            )
        )
    if "calibration" in card:
        blocks.append(("h2", f"Calibration (ECE, {card['evaluation']['split']})"))
        blocks.append(
            (
                "table",
                ["condition", "overall", *(tone.group_name(g) for g in GROUPS)],
                [
                    [c, *(_fmt(card["calibration"][c][g]["ece"]) for g in ("overall", *GROUPS))]
                    for c in CONDITIONS
                ],
            )
        )
    return blocks


def severity_blocks(severity: dict, tone: ToneBasis, heading: str = "h2") -> list[tuple]:
    """Blocks of the acne-severity section: QWK and MAE per group, grade distribution."""
    from core.schema import GROUPS, SEVERITY_GRADES

    cells = [("overall", severity["overall"])] + [
        (tone.group_name(g), severity["by_group"][g]) for g in GROUPS
    ]
    dist = severity["distribution"]
    grades = [str(k) for k in SEVERITY_GRADES]
    return [
        (heading, "Acne severity (grade 0-3)"),
        (
            "p",
            f"Grade predicted by the severity head vs the label, on {severity['n']} images with "
            f"a known severity ({severity['split']} split). Quadratic weighted kappa (1 = "
            "perfect, 0 = chance) and mean absolute error in grades; intervals: "
            f"{int(severity['ci_level'] * 100)}% {severity['ci_method']}, "
            f"{severity['n_boot']} replicates.",
        ),
        *_severity_rule_blocks(severity),
        (
            "table",
            ["subset", "n", "QWK", "MAE"],
            [[name, c["n"], fmt_estimate(c["qwk"]), fmt_estimate(c["mae"])] for name, c in cells],
        ),
        (
            "table",
            ["grade", *grades],
            [
                ["label", *(dist["label"][k] for k in grades)],
                ["predicted", *(dist["predicted"][k] for k in grades)],
            ],
        ),
    ]


def _severity_rule_blocks(severity: dict) -> list[tuple]:
    """The grade rule the severity numbers used, and the default rule's numbers beside them."""
    rule = severity.get("grade_rule")
    if not rule:
        return []

    def cuts(values) -> str:
        return "[" + ", ".join(f"{c:.3f}" for c in values) + "]"

    text = f"Grade rule: {rule['description']}"
    if rule.get("cutpoints"):
        text += f"; cutpoints {cuts(rule['cutpoints'])}"
    if rule.get("cutpoints_per_fold"):
        text += "; cutpoints per fold " + ", ".join(cuts(c) for c in rule["cutpoints_per_fold"])
    text += "."
    default = severity.get("default_rule")
    if default:
        qwk, mae = default["qwk"], default["mae"]
        text += (
            " With the default 0.5 rule on the same rows: QWK "
            f"{'undefined' if qwk is None else f'{qwk:.3f}'}, MAE "
            f"{'undefined' if mae is None else f'{mae:.3f}'}."
        )
    return [("p", text)]


def _provenance_blocks(card: dict) -> list[tuple]:
    blocks: list[tuple] = []
    if "data_provenance" in card:
        items = [
            "; ".join(
                f"{k}: {entry[k]}" if k != "name" else str(entry[k])
                for k in DATACARD_KEYS
                if entry.get(k)
            )
            for entry in card["data_provenance"]
        ]
        blocks += [("p", "Data provenance:"), ("list", items or ["not recorded (no datacard)"])]
    if "evidence" in card:
        blocks += [
            ("table", ["condition", "evidence"], [[c, k] for c, k in card["evidence"].items()]),
            ("p", card.get("evidence_note", "")),
        ]
    return blocks


def _fmt(value) -> str:
    return "insufficient evidence" if value is None else f"{value:.3f}"


class ModelCardError(ValueError):
    """A model card that does not follow the schema; the message names the file and field."""


_NULL = type(None)
# field -> the JSON types it may hold, for the fields every card has ...
_COMMON_FIELDS: dict[str, tuple[type, ...]] = {
    "schema_version": (int,),
    "name": (str,),
    "version": (str, _NULL),
    "disclaimer": (str,),
    "medical_device": (bool,),
    "intended_use": (str,),
    "out_of_scope": (list,),
    "model": (dict,),
    "conditions": (list,),
    "groups": (list,),
    "training": (dict, _NULL),
    "training_data": (dict, _NULL),
}
# ... for an exported model's card (`export_sections`) ...
_EXPORT_FIELDS: dict[str, tuple[type, ...]] = {
    "architecture": (str,),
    "input_size": (int,),
    "input": (dict,),
    "outputs": (dict,),
    "onnx_opset": (int,),
    "graph_optimisation": (str,),
    "metrics": (dict, _NULL),
    "source_run": (str, _NULL),
    "export_parity_max_abs_diff": (dict, _NULL),
    "quantization": (dict, _NULL),
}
# ... and for a card with an evaluation (`evaluation_sections`).
_EVALUATION_FIELDS: dict[str, tuple[type, ...]] = {
    "tone_source": (str,),
    "group_label": (str,),
    "data": (dict,),
    "evaluation": (dict,),
    "limitations": (list,),
}
_TRAINING_DATA_FIELDS: dict[str, tuple[type, ...]] = {
    "synthetic": (bool,),
    "evidence": (dict, _NULL),
    "note": (str, _NULL),
}


def _check_fields(doc: Mapping, fields: Mapping[str, tuple[type, ...]], where: str) -> None:
    """ModelCardError unless `doc` has every field of `fields` with an allowed type."""
    names = {dict: "an object", list: "a list", str: "a string", int: "an integer"}
    names |= {bool: "true/false", _NULL: "null"}
    for field, types in fields.items():
        path = f"{where}{field}"
        if field not in doc:
            raise ModelCardError(f"field {path!r}: missing")
        value = doc[field]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            wanted = " or ".join(names[t] for t in types)
            raise ModelCardError(f"field {path!r}: expected {wanted}, got {value!r:.60}")


def _check_sections(card: Mapping) -> None:
    """The exported model's and the evaluation's sections, and the nested blocks."""
    exported, evaluated = "input_size" in card, "evaluation" in card
    if not (exported or evaluated):
        raise ModelCardError(
            "field 'input_size' / 'evaluation': missing (neither an exported model's card nor "
            "an evaluation's)"
        )
    if exported:
        _check_fields(card, _EXPORT_FIELDS, "")
        if card["input_size"] <= 0:
            raise ModelCardError(f"field 'input_size': expected > 0, got {card['input_size']}")
        for name in ("probs", "cam"):
            if name not in card["outputs"]:
                raise ModelCardError(f"field 'outputs.{name}': missing")
        for name, output in card["outputs"].items():
            entry = output if isinstance(output, dict) else {}
            _check_fields(entry, {"shape": (list,)}, f"outputs.{name}.")
        if card["metrics"] is not None:
            _check_fields(card["metrics"], {"per_group": (dict,)}, "metrics.")
    if evaluated:
        _check_fields(card, _EVALUATION_FIELDS, "")
        _check_fields(card["evaluation"], {"split": (str,), "per_group": (dict,)}, "evaluation.")
    data = card["training_data"]
    if data is not None:
        _check_fields(data, _TRAINING_DATA_FIELDS, "training_data.")
        for cond, kind in (data["evidence"] or {}).items():
            if kind not in TRAINING_EVIDENCE:
                raise ModelCardError(
                    f"field 'training_data.evidence.{cond}': expected one of "
                    f"{list(TRAINING_EVIDENCE)}, got {kind!r}"
                )


def validate_model_card(card: Mapping, source: str = "model card") -> dict:
    """`card` when it follows the schema (`SCHEMA_VERSION`); else `ModelCardError` naming
    `source` (the file) and the field."""
    try:
        if not isinstance(card, Mapping):
            raise ModelCardError(f"expected one object, got {type(card).__name__}")
        _check_fields(card, _COMMON_FIELDS, "")
        if card["schema_version"] != SCHEMA_VERSION:
            raise ModelCardError(
                f"field 'schema_version': expected {SCHEMA_VERSION}, got {card['schema_version']}"
            )
        if not card["name"].strip():
            raise ModelCardError("field 'name': expected a non-empty string")
        _check_sections(card)
    except ModelCardError as err:
        raise ModelCardError(f"{source}: {err}") from None
    return dict(card)


def upgrade_model_card(card: dict) -> dict:
    """A card of an older schema in the current one (an object of another kind is returned as
    is, for `validate_model_card` to reject).

    Without ``schema_version``: the exported model's card before the schema was shared
    (``intended_use`` held the disclaimer); 1: the fairness report's card (no name, version,
    training or training data).
    """
    from core.schema import DISCLAIMER, GROUPS

    if not isinstance(card, dict):
        return card
    if "schema_version" not in card and "input_size" in card:
        architecture = card.get("architecture", "unknown")
        base = {
            "disclaimer": DISCLAIMER,
            "medical_device": False,
            "not_a_medical_device": NOT_A_MEDICAL_DEVICE,
            "intended_use": INTENDED_USE,
            "out_of_scope": OUT_OF_SCOPE,
            "model": {"name": architecture, "architecture": architecture},
            "groups": list(GROUPS),
            "training": None,
            "training_data": None,
        }
        old = {k: v for k, v in card.items() if k != "intended_use"}
        return base | old | {"schema_version": SCHEMA_VERSION}
    if card.get("schema_version") == 1:
        model = card.get("model") if isinstance(card.get("model"), dict) else {}
        new = {"name": str(model.get("name") or "unknown"), "version": None, "training": None}
        return new | {"training_data": None} | card | {"schema_version": SCHEMA_VERSION}
    return card


def read_model_card(path: str | Path) -> dict:
    """The model card in `path` (or in the folder `path`), checked and in the current schema
    (`upgrade_model_card`); `ModelCardError` names the file and the field."""
    path = Path(path)
    if path.is_dir():
        path = path / "model_card.json"
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ModelCardError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise ModelCardError(f"{path}: not valid JSON ({exc})") from None
    return validate_model_card(upgrade_model_card(doc), str(path))


def _finite(value):
    """`value` with every NaN / infinite float replaced by None (strict JSON)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def write_model_card(
    card: dict, out_dir: str | Path, *, markdown: bool = True
) -> tuple[Path | None, Path]:
    """Check the card, then write model_card.json (and, with `markdown`, model_card.md)
    atomically into `out_dir`; returns (md or None, json)."""
    from fairness.io import atomic_write_text

    out_dir = Path(out_dir)
    card = validate_model_card(_finite(card), str(out_dir / "model_card.json"))
    md = atomic_write_text(out_dir / "model_card.md", render_model_card(card)) if markdown else None
    js = atomic_write_text(
        out_dir / "model_card.json", json.dumps(card, indent=2, allow_nan=False) + "\n"
    )
    return md, js
