"""The fairness report as a document: the blocks report.md and report.html render.

`report_blocks` lays out the numbers `fairness.report.make_report` computed (metrics, goals,
thresholds, calibration, coverage, severity) as blocks of `fairness.render`; it computes no
metric itself.
"""

from __future__ import annotations

from collections.abc import Sequence

from fairness.model_card import CROSS_FITTED_NOTE, severity_blocks
from fairness.render import fmt_estimate
from fairness.report_goals import GOAL_CONDITIONS
from fairness.tone_basis import LABELLED, ToneBasis

__all__ = ["report_blocks"]

# Columns of the per-condition tables, in order.
TABLE_METRICS = ("f1", "precision", "recall", "specificity", "auroc", "ap")
CROSS_FITTED_SCOPE = (
    "Cross-fitted: F1, precision, recall, specificity, FPR, the gaps built on "
    "them, 'ECE after temperature' and the acne-severity grade (its "
    "cutpoints, when the predictions carry the severity probabilities). On "
    "all validation rows, not cross-fitted (no threshold): AUROC, AP, ECE, "
    "Brier and the AUROC goals. thresholds.json (what is shipped, severity "
    "cutpoints included) is fitted on all validation rows; the tables below "
    "are out-of-fold. Intervals treat the cross-fitted decisions as fixed."
)


def report_blocks(
    metrics: dict,
    metrics_global: dict,
    thresholds: dict,
    calibration: dict,
    coverage: dict,
    dataset: dict,
    files: dict,
    schema: tuple,
    *,
    tone: ToneBasis,
    provenance: list[dict] | None = None,
    evidence: dict[str, str] | None = None,
    show_types: bool = True,
    evaluation: dict | None = None,
    goals: dict | None = None,
    severity: dict | None = None,
) -> list[tuple]:
    """The report's blocks: intro, summary, per-condition tables, gaps, thresholds,
    calibration, ROC, coverage and, when given, the acne-severity section."""
    conditions, groups, disclaimer = schema
    labelled = tone.source == LABELLED
    subset = "subset" if labelled else f"subset ({tone.label})"
    evaluation = evaluation or {"split": "test", "method": "test, thresholds fitted on val"}
    split = evaluation["split"]
    blocks = [
        *_intro_blocks(metrics, dataset, disclaimer, evaluation, tone, provenance),
        *(_goal_blocks(goals, tone) if goals else []),
        *_summary_blocks(metrics, metrics_global, split, tone),
        ("img", "per-group metrics", files["group_metrics_png"]),
    ]
    for cond in conditions:
        blocks += _condition_blocks(
            cond, metrics["conditions"][cond], groups, subset, split, evidence, show_types
        )
    blocks += [
        *_macro_gap_blocks(metrics, metrics_global),
        *_threshold_blocks(thresholds, conditions, groups, tone, crossed=split != "test"),
        *_calibration_blocks(calibration, conditions, subset, split),
        ("img", "reliability diagrams", files["reliability_png"]),
        ("h2", "ROC per group" if labelled else f"ROC per {tone.label}"),
        ("img", "ROC per group", files["roc_png"]),
        *_coverage_blocks(coverage, conditions, groups, split, tone),
        ("img", "coverage matrix", files["coverage_png"]),
    ]
    if severity:
        blocks += severity_blocks(severity, tone)
    return blocks


def _intro_blocks(
    metrics: dict,
    dataset: dict,
    disclaimer: str,
    evaluation: dict,
    tone: ToneBasis,
    provenance: list[dict] | None,
) -> list[tuple]:
    """Title, disclaimer, data, how it was evaluated, the groups, provenance, intervals."""
    split = evaluation["split"]
    synthetic = dataset.get("kind") == "synthetic"
    return [
        ("h1", "Fairness report"),
        ("p", f"{disclaimer.capitalize()}. Not a medical device."),
        (
            "p",
            f"Data: {dataset.get('kind')} ({dataset.get('name', 'unknown')}). "
            + ("Numbers on synthetic data say nothing about real faces. " if synthetic else "")
            + f"Evaluation: {evaluation['method']}. Images evaluated ({split}): {metrics['n']}.",
        ),
        *([("p", CROSS_FITTED_NOTE), ("p", CROSS_FITTED_SCOPE)] if split != "test" else []),
        *(
            []
            if tone.source == LABELLED
            else [("p", f"Skin-tone groups: {tone.label}. {tone.note}")]
        ),
        *_provenance_block(provenance),
        (
            "p",
            f"Intervals: {int(metrics['ci_level'] * 100)}% {metrics['ci_method']}; "
            f"{metrics['n_boot']} replicates, seed {metrics['seed']}. Cells with fewer than "
            f"{metrics['min_positives']} positives or {metrics['min_negatives']} negatives read "
            "'insufficient evidence'.",
        ),
    ]


def _summary_blocks(
    metrics: dict, metrics_global: dict, split: str, tone: ToneBasis
) -> list[tuple]:
    """The summary table (per-group vs one global threshold) and what its gap means."""
    s, sg = metrics["summary"], metrics_global["summary"]
    where = f"{split} split, cross-fitted thresholds" if split != "test" else f"{split} split"
    blocks: list[tuple] = [
        ("h2", f"Summary ({where})"),
        (
            "table",
            ["metric", "per-group thresholds", "one global threshold"],
            [[k, fmt_estimate(s[k]), fmt_estimate(sg[k])] for k in s],
        ),
        (
            "p",
            "gap_dark_vs_medium_f1 is |macro-F1(V-VI) - macro-F1(III-IV)|"
            + ("" if tone.source == LABELLED else f" (groups: {tone.label})")
            + "; its signed value "
            f"(V-VI minus III-IV) is {fmt_estimate(s['gap_dark_vs_medium_f1'].get('signed'))}.",
        ),
    ]
    if metrics.get("no_ground_truth"):
        blocks.append(
            (
                "p",
                f"No ground truth for {', '.join(metrics['no_ground_truth'])} "
                f"(no {split} image has a label): macro metrics average "
                f"{', '.join(metrics['macro']['conditions'])} only.",
            )
        )
    return blocks


def _condition_blocks(
    cond: str,
    entry: dict,
    groups: Sequence[str],
    subset: str,
    split: str,
    evidence: dict[str, str] | None,
    show_types: bool,
) -> list[tuple]:
    """One condition: its metrics overall, per group (and per type), and its gaps."""
    cells = [
        ("overall", entry["overall"]),
        *[(g, entry["by_group"][g]) for g in groups],
        *([(f"type {t}", c) for t, c in entry["by_type"].items()] if show_types else []),
    ]
    rows = [
        [name, cell["n"], cell["positives"], *(fmt_estimate(cell[m]) for m in TABLE_METRICS)]
        for name, cell in cells
    ]
    no_truth = []
    if entry["overall"]["n"] == 0:
        kind = (evidence or {}).get(cond, "synthetic")
        no_truth = [
            ("p", f"No ground truth: no {split} image has a {cond} label (evidence: {kind}).")
        ]
    headers = [subset, "n", "positives", "F1", "precision", "recall", "specificity", "AUROC", "AP"]
    return [
        ("h2", f"{cond}"),
        *no_truth,
        ("table", headers, rows),
        (
            "table",
            ["gap", "value [95% CI]"],
            [[k, fmt_estimate(v)] for k, v in entry["gaps"].items()],
        ),
    ]


def _macro_gap_blocks(metrics: dict, metrics_global: dict) -> list[tuple]:
    """The gaps of the macro metrics, with per-group and with one global threshold."""
    return [
        ("h2", "Gaps on macro metrics (mean over conditions)"),
        (
            "table",
            ["gap", "per-group thresholds", "one global threshold"],
            [
                [k, fmt_estimate(v), fmt_estimate(metrics_global["macro"]["gaps"][k])]
                for k, v in metrics["macro"]["gaps"].items()
            ],
        ),
    ]


def _threshold_blocks(
    thresholds: dict,
    conditions: Sequence[str],
    groups: Sequence[str],
    tone: ToneBasis,
    *,
    crossed: bool,
) -> list[tuple]:
    """How the thresholds were fitted, the table of them and the severity cutpoints."""
    shrinkage = thresholds["shrinkage"]
    table = thresholds["thresholds"]
    return [
        (
            "h2",
            "Thresholds (fitted on all validation rows: thresholds.json, shipped)"
            if crossed
            else "Thresholds (fitted on validation)",
        ),
        (
            "p",
            f"Method: {thresholds['method']}; shrinkage {shrinkage['rule']} "
            f"with k = {shrinkage['k']}; groups with fewer than "
            f"{shrinkage['min_positives']} positives use the global threshold.",
        ),
        (
            "table",
            ["condition", "global", *(f"{tone.group_name(g)} (raw, w, positives)" for g in groups)],
            [
                [
                    c,
                    f"{table[c]['global']['threshold']:.3f}",
                    *(_threshold_cell(table[c]["groups"][g]) for g in groups),
                ]
                for c in conditions
            ],
        ),
        *_severity_cutpoint_blocks(thresholds.get("acne_severity")),
    ]


def _calibration_blocks(
    calibration: dict, conditions: Sequence[str], subset: str, split: str
) -> list[tuple]:
    """ECE and Brier score per condition and subset, and ECE after temperature scaling."""
    after = calibration["temperature_scaling"]["ece_after"]
    return [
        ("h2", f"Calibration ({split} split)"),
        (
            "table",
            ["condition", subset, "n", "ECE", "Brier", "ECE after temperature"],
            [
                [c, g, v["n"], _num(v["ece"]), _num(v["brier"]), _num(after[c][g])]
                for c in conditions
                for g, v in calibration["conditions"][c].items()
            ],
        ),
    ]


def _coverage_blocks(
    coverage: dict, conditions: Sequence[str], groups: Sequence[str], split: str, tone: ToneBasis
) -> list[tuple]:
    """Positives / labelled images per condition and type (or group)."""
    columns = coverage["groups"] if "groups" in coverage else coverage["types"]
    columns_named = [tone.group_name(t) if t in groups else t for t in columns]
    return [
        ("h2", f"Coverage (positives / labelled, {split} split)"),
        (
            "table",
            ["condition", *columns_named],
            [
                [
                    c,
                    *(
                        f"{coverage['positives'][c][t]}/{coverage['labelled'][c][t]}"
                        for t in columns
                    ),
                ]
                for c in conditions
            ],
        ),
    ]


def _severity_cutpoint_blocks(fit: dict | None) -> list[tuple]:
    """One line on the shipped acne-severity cutpoints (thresholds.json ``acne_severity``)."""
    if not fit:
        return []

    def qwk(value) -> str:
        return "undefined" if value is None else f"{value:.3f}"

    cuts = ", ".join(f"{c:.3f}" for c in fit["cutpoints"])
    return [
        (
            "p",
            f"Acne-severity cutpoints (thresholds.json acne_severity, shipped): grade = number "
            f"of k with P(grade > k) > cutpoint k, cutpoints [{cuts}]; {fit['method']} on "
            f"{fit['n']} rows with a known severity (QWK {qwk(fit['qwk'])} on them; the "
            f"default 0.5 rule: {qwk(fit.get('qwk_default'))}).",
        )
    ]


def _goal_blocks(goals: dict, tone: ToneBasis) -> list[tuple]:
    """The AUROC goals as one table (threshold-free: every evaluated row)."""
    from core.schema import GROUPS

    rows = [
        [f"{cond} AUROC", goals[f"{cond}_auroc"]["n"], fmt_estimate(goals[f"{cond}_auroc"])]
        for cond in GOAL_CONDITIONS
    ]
    for g in GROUPS:
        cell = goals["acne_auroc_by_group"][g]
        rows.append([f"acne AUROC, {tone.group_name(g)}", cell["n"], fmt_estimate(cell["auroc"])])
    gap = goals["acne_auroc_gap"]
    name = "acne AUROC gap, best group - worst group"
    if gap.get("best_group"):
        name += f" ({gap['best_group']} - {gap['worst_group']})"
    rows.append([name, "", fmt_estimate(gap)])
    if "not_analysed" in goals:
        na = goals["not_analysed"]
        rows.append(["share of faces not analysed", na["n"], f"{na['share']:.3f} ({na['count']})"])
    return [
        ("h2", "AUROC goals"),
        (
            "p",
            f"Every evaluated row (no threshold). A group's AUROC counts with at least "
            f"{gap['min_faces']} faces with an acne label; the gap compares those groups with "
            f"the best one. Intervals: {int(goals['ci_level'] * 100)}% {goals['ci_method']}.",
        ),
        ("table", ["goal", "n", "value [95% CI]"], rows),
    ]


def _provenance_block(provenance: list[dict] | None) -> list[tuple]:
    """The datacards the data comes from, one line each."""
    if not provenance:
        return []
    items = [
        "; ".join(
            str(card[k]) if k == "name" else f"{k}: {card[k]}"
            for k in ("name", "licence", "attribution", "url", "tone_source")
            if card.get(k)
        )
        for card in provenance
    ]
    return [("p", "Data provenance (datacard):"), ("list", items)]


def _threshold_cell(entry: dict) -> str:
    """'threshold (raw, weight, positives)' of one group's threshold entry."""
    raw = "global" if entry.get("raw_threshold") is None else f"{entry['raw_threshold']:.3f}"
    return f"{entry['threshold']:.3f} ({raw}, {entry.get('weight', 0):.2f}, {entry['positives']})"


def _num(value: float | None) -> str:
    """A number to 4 decimals, or 'insufficient evidence' for None."""
    return "insufficient evidence" if value is None else f"{value:.4f}"
