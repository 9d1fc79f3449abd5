"""Model card: intended use, data, per-group metrics with CIs and known limitations.

`make_model_card` builds a JSON-ready dict from the evaluation results; `render_model_card`
turns it into Markdown; `write_model_card` writes both files atomically. The serving side
can call `make_model_card` too, so the card beside the exported ONNX file says the same.
"""

from __future__ import annotations

import json
from pathlib import Path

from fairness.render import fmt_estimate, to_markdown

__all__ = ["make_model_card", "render_model_card", "write_model_card"]

GAP_TARGET = 0.15  # the target for the dark-vs-medium F1 gap
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


def _data_section(dataset: dict) -> dict:
    kind = dataset.get("kind", "unknown")
    note = {
        "synthetic": "All metrics are measured on synthetic images; they show that the pipeline "
        "works and how it behaves, not how it performs on real faces.",
        "real": "Metrics are measured on the held-out test split of the named data.",
        "unknown": "The data source is unknown (no dataset.json or source column was found); "
        "treat the metrics as unverified.",
    }.get(kind, "")
    return {"kind": kind, "name": dataset.get("name", "unknown"), "details": dataset, "note": note}


def _limitations(metrics: dict, dataset: dict) -> list[str]:
    from data.schema import CONDITIONS, FITZPATRICK_TYPES, GROUPS

    items = []
    if dataset.get("kind") == "synthetic":
        items.append("Evaluated on synthetic data only; real-world performance is unmeasured.")
    elif dataset.get("kind") == "unknown":
        items.append("The evaluation data could not be identified.")
    for cond in CONDITIONS:
        entry = metrics["conditions"][cond]
        short = [g for g in GROUPS if entry["by_group"][g]["status"] != "ok"]
        if short:
            items.append(
                f"{cond}: insufficient evidence for group(s) {', '.join(short)} "
                f"(fewer than {metrics['min_positives']} positives or "
                f"{metrics['min_negatives']} negatives in the test split)."
            )
        types = [t for t in map(str, FITZPATRICK_TYPES) if entry["by_type"][t]["status"] != "ok"]
        if types:
            items.append(f"{cond}: per-type metrics unavailable for type(s) {', '.join(types)}.")
    gap = metrics["summary"]["gap_dark_vs_medium_f1"]
    if gap.get("value") is not None:
        high = gap.get("ci_high")
        if gap["value"] > GAP_TARGET or (high is not None and high > GAP_TARGET):
            items.append(
                f"The macro-F1 gap between V-VI and III-IV is {fmt_estimate(gap)}, "
                f"above or not clearly below the {GAP_TARGET} target."
            )
    items += [
        "Skin tone, when not given, is estimated from the image (ITA) and can be wrong, "
        "especially under unusual lighting.",
        "Per-group thresholds are fitted on the validation split; groups with few positives "
        "are shrunk toward the global threshold and may remain poorly tuned.",
        "Labels are per-image presence labels; severity and lesion location are not evaluated "
        "here.",
    ]
    return items


def make_model_card(
    metrics: dict,
    *,
    dataset: dict,
    thresholds: dict | None = None,
    calibration: dict | None = None,
    model: dict | None = None,
) -> dict:
    """Build the model card dict (model_card.json) from evaluation results.

    Parameters
    ----------
    metrics : dict
        Output of `fairness.evaluate.evaluate_predictions` on the test split.
    dataset : dict
        From `fairness.io.read_dataset_info` (``kind``: synthetic/real/unknown, ``name``).
    thresholds : dict, optional
        `Thresholds.to_dict()` of the thresholds applied.
    calibration : dict, optional
        Output of `fairness.calibration.calibration_by_group`.
    model : dict, optional
        Architecture, input size, normalisation etc. (from the training config).
    """
    from data.schema import CONDITIONS, DISCLAIMER, GROUPS

    per_group = {
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
    card = {
        "schema_version": 1,
        "disclaimer": DISCLAIMER,
        "medical_device": False,
        "not_a_medical_device": NOT_A_MEDICAL_DEVICE,
        "intended_use": INTENDED_USE,
        "out_of_scope": OUT_OF_SCOPE,
        "model": model or {"name": "unknown"},
        "conditions": list(CONDITIONS),
        "groups": list(GROUPS),
        "data": _data_section(dataset),
        "evaluation": {
            "split": "test",
            "n": metrics["n"],
            "thresholds": metrics["thresholds"],
            "ci": f"{int(metrics['ci_level'] * 100)}% {metrics['ci_method']}, "
            f"{metrics['n_boot']} replicates, seed {metrics['seed']}",
            "minimum_counts": {
                "positives": metrics["min_positives"],
                "negatives": metrics["min_negatives"],
            },
            "summary": metrics["summary"],
            "per_group": per_group,
            "gaps": {c: metrics["conditions"][c]["gaps"] for c in CONDITIONS}
            | {"macro": metrics["macro"]["gaps"]},
        },
        "limitations": _limitations(metrics, dataset),
    }
    if thresholds is not None:
        card["thresholds"] = {
            c: {
                "global": thresholds["thresholds"][c]["global"]["threshold"],
                **{g: thresholds["thresholds"][c]["groups"][g]["threshold"] for g in GROUPS},
            }
            for c in CONDITIONS
        } | {"method": thresholds.get("method"), "unknown_group": "global"}
    if calibration is not None:
        card["calibration"] = {
            c: {
                g: {"ece": v.get("ece"), "brier": v.get("brier"), "n": v.get("n")}
                for g, v in calibration["conditions"][c].items()
            }
            for c in CONDITIONS
        }
    return card


def render_model_card(card: dict) -> str:
    """Markdown text of a model card dict."""
    from data.schema import CONDITIONS, GROUPS

    ev = card["evaluation"]
    blocks: list[tuple] = [
        ("h1", f"Model card: {card['model'].get('name', 'unknown')}"),
        ("p", f"**{card['disclaimer'].capitalize()}.** {card['not_a_medical_device']}"),
        ("h2", "Intended use"),
        ("p", card["intended_use"]),
        ("p", "Out of scope:"),
        ("list", card["out_of_scope"]),
        ("h2", "Model"),
        ("list", [f"{k}: {v}" for k, v in card["model"].items()] or ["unknown"]),
        ("h2", "Data"),
        ("p", f"{card['data']['kind']}: {card['data']['name']}. {card['data']['note']}"),
        ("h2", "Evaluation"),
        (
            "p",
            f"Split: {ev['split']} (n = {ev['n']}). Thresholds: {ev['thresholds']}. "
            f"Intervals: {ev['ci']}. A cell needs at least {ev['minimum_counts']['positives']} "
            f"positives and {ev['minimum_counts']['negatives']} negatives, otherwise it reads "
            "'insufficient evidence'.",
        ),
        (
            "table",
            ["summary", "value [95% CI]"],
            [[k, fmt_estimate(v)] for k, v in ev["summary"].items()],
        ),
    ]
    rows = []
    for cond in CONDITIONS:
        for g in GROUPS:
            cell = ev["per_group"][cond][g]
            rows.append(
                [
                    cond,
                    g,
                    cell["n"],
                    cell["positives"],
                    fmt_estimate(cell["f1"]),
                    fmt_estimate(cell["recall"]),
                    fmt_estimate(cell["precision"]),
                    fmt_estimate(cell["auroc"]),
                ]
            )
    blocks.append(
        (
            "table",
            ["condition", "group", "n", "positives", "F1", "recall", "precision", "AUROC"],
            rows,
        )
    )
    gap_rows = [
        [
            cond,
            fmt_estimate(ev["gaps"][cond]["f1_dark_vs_medium"]),
            fmt_estimate(ev["gaps"][cond]["f1_worst_best"]),
            fmt_estimate(ev["gaps"][cond]["equalized_odds"]),
        ]
        for cond in (*CONDITIONS, "macro")
    ]
    blocks.append(
        (
            "table",
            ["condition", "|F1 V-VI - F1 III-IV|", "F1 best - worst", "equalized odds diff."],
            gap_rows,
        )
    )
    if "thresholds" in card:
        blocks.append(("h2", "Decision thresholds"))
        blocks.append(
            (
                "table",
                ["condition", "global", *GROUPS],
                [
                    [c, *(f"{card['thresholds'][c][k]:.3f}" for k in ("global", *GROUPS))]
                    for c in CONDITIONS
                ],
            )
        )
    if "calibration" in card:
        blocks.append(("h2", "Calibration (ECE, test)"))
        blocks.append(
            (
                "table",
                ["condition", "overall", *GROUPS],
                [
                    [c, *(_fmt(card["calibration"][c][g]["ece"]) for g in ("overall", *GROUPS))]
                    for c in CONDITIONS
                ],
            )
        )
    blocks += [("h2", "Known limitations"), ("list", card["limitations"])]
    return to_markdown(blocks)


def _fmt(value) -> str:
    return "insufficient evidence" if value is None else f"{value:.3f}"


def write_model_card(card: dict, out_dir: str | Path) -> tuple[Path, Path]:
    """Write model_card.md and model_card.json atomically into `out_dir`."""
    from fairness.io import atomic_write_text

    out_dir = Path(out_dir)
    md = atomic_write_text(out_dir / "model_card.md", render_model_card(card))
    js = atomic_write_text(
        out_dir / "model_card.json", json.dumps(card, indent=2, allow_nan=False) + "\n"
    )
    return md, js
