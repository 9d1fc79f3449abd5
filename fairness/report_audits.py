"""The selective-prediction and counterfactual-robustness sections of the report and model card.

`selective_blocks` and `counterfactual_blocks` lay out the numbers of `fairness.selective` and
`fairness.counterfactual` as blocks of `fairness.render`; `selective_card` and
`counterfactual_card` are the compact versions the model card keeps. Nothing is computed here.
"""

from __future__ import annotations

from pathlib import Path

from fairness.render import fmt_estimate
from fairness.tone_basis import LABELLED, ToneBasis

__all__ = [
    "counterfactual_blocks",
    "counterfactual_card",
    "counterfactual_card_blocks",
    "selective_blocks",
    "selective_card",
    "selective_card_blocks",
]

VARIANT_TITLES = {
    "decision": "Deferring on decision certainty",
    "tone": "Deferring on tone uncertainty first, then on decision certainty",
}
CURVE_LEVELS = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5)  # the coverages the report's curve table shows
ALL_PHOTOS = "all photos"
ANY_CONDITION = "any condition"


def _share(value: float | None) -> str:
    """A share as a percentage with one decimal, or n/a."""
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _num(value: float | None, digits: int = 3) -> str:
    """A number, or n/a."""
    return "n/a" if value is None else f"{value:.{digits}f}"


def _rate(cell: dict) -> str:
    """'0.031 [0.015, 0.062]' of a Wilson rate cell, or n/a when nothing was compared."""
    if cell["rate"] is None:
        return "n/a"
    return f"{cell['rate']:.3f} [{cell['ci_low']:.3f}, {cell['ci_high']:.3f}]"


def _group_heading(tone: ToneBasis) -> str:
    """The column heading of the groups."""
    return "group" if tone.source == LABELLED else tone.label


def _operating_sentence(variant: dict, target: float) -> str:
    """One sentence on the operating point of a variant."""
    point = variant["operating_point"]
    full = variant["full_coverage"]["gap"]
    compared = ", ".join(variant["compared_groups"]) or "none"
    head = f"Groups compared: {compared}. Gap at full coverage: {fmt_estimate(full)}. "
    if point["status"] != "ok":
        where = (
            f"; the smallest gap is {_num(point['smallest_gap'])} at coverage "
            f"{_num(point['at_coverage'])}"
            if point["smallest_gap"] is not None
            else ""
        )
        return head + f"No coverage brings the gap under {target:g}{where}."
    most = (
        ", ".join(
            f"{g} ({_share(point['deferred_share_by_group'][g])})" for g in point["deferred_most"]
        )
        if point["deferred"]
        else "nothing is deferred"
    )
    high = point["gap"].get("ci_high")
    caveat = (
        f" The interval's upper end ({high:.3f}) is not under {target:g}: the data do not "
        "show the target met."
        if high is not None and high >= target
        else ""
    )
    return head + (
        f"Operating point: the largest coverage with a gap under {target:g} is "
        f"{point['coverage']:.3f} ({point['kept']} decisions kept, {point['deferred']} "
        f"deferred); gap there {fmt_estimate(point['gap'])}. Deferred most (share of the "
        f"group's decisions): {most}.{caveat}"
    )


def _variant_tables(variant: dict, section: dict, tone: ToneBasis) -> list[tuple]:
    """Tables of a variant: per group, per condition and along the curve.

    Accuracy and deferral at full coverage and at the operating point, balanced accuracy per
    condition, and the curve at a few coverages.
    """
    full, point = variant["full_coverage"], variant["operating_point"]
    at_point = point if point["status"] == "ok" else None
    groups = section["groups"]
    rows = [
        [
            g,
            full["kept_by_group"][g],
            fmt_estimate(full["accuracy_by_group"][g]),
            fmt_estimate(at_point["accuracy_by_group"][g]) if at_point else "n/a",
            _share(at_point["deferred_share_by_group"][g]) if at_point else "n/a",
        ]
        for g in groups
    ]
    ba_rows = [
        [
            cond,
            g,
            _num(full["balanced_accuracy"][cond][g]),
            _num(at_point["balanced_accuracy"][cond][g]) if at_point else "n/a",
        ]
        for cond in section["conditions"]
        if any(v is not None for v in full["balanced_accuracy"][cond].values())
        for g in groups
    ]
    curve = [p for p in variant["curve"] if p["level"] in CURVE_LEVELS]
    curve_rows = [
        [f"{p['coverage']:.3f}", _num(p["gap"]), *(_num(p["accuracy"][g]) for g in groups)]
        for p in curve
    ]
    head = _group_heading(tone)
    return [
        (
            "table",
            [
                head,
                "decisions",
                "accuracy (full coverage)",
                "accuracy (operating point)",
                "deferred (operating point)",
            ],
            rows,
        ),
        (
            "table",
            ["condition", head, "balanced accuracy (full)", "balanced accuracy (operating point)"],
            ba_rows,
        ),
        ("table", ["coverage", "gap", *(f"accuracy {g}" for g in groups)], curve_rows),
    ]


def selective_blocks(section: dict, tone: ToneBasis, png: Path) -> list[tuple]:
    """The report's selective-prediction section."""
    blocks: list[tuple] = [
        ("h2", "Selective prediction (the least certain decisions deferred to a human)"),
        (
            "p",
            "A case is one decision with a label (photo x condition). Certainty = |probability "
            f"- threshold| with the threshold that decided the row ({section['thresholds']}). "
            "One certainty cut-off for every group; coverage = share of decisions kept. "
            "Accuracy = share of kept decisions that match the label, pooled over conditions; "
            "per condition: balanced accuracy ((sensitivity + specificity) / 2, n/a unless "
            "both classes are kept). Gap = largest minus smallest accuracy of the groups with "
            f"at least {section['min_cases']} decisions at full coverage (undefined where one "
            f"keeps fewer). Target: gap under {section['target']:g}. Intervals: "
            f"{int(section['ci_level'] * 100)}% {section['ci_method']}, {section['n_boot']} "
            "replicates.",
        ),
    ]
    if tone.source != LABELLED:
        blocks.append(
            (
                "p",
                f"Groups: {tone.label}; 'no estimate' = the tone estimate "
                "abstained (those rows use the global thresholds).",
            )
        )
    for name, variant in section["variants"].items():
        blocks += [
            ("h3", VARIANT_TITLES.get(name, name)),
            ("p", _operating_sentence(variant, section["target"])),
            *_variant_tables(variant, section, tone),
        ]
    if "tone" not in section["variants"]:
        blocks.append(("p", section.get("tone_variant_note", "")))
    blocks.append(("img", "selective prediction", png))
    return blocks


def _counterfactual_intro(summary: dict, tone: ToneBasis) -> list[tuple]:
    """What the counterfactual section measured, on which photos."""
    estimated = summary["tone_source"] != "labelled"
    basis = (
        "groups = the served tone estimate of the as-taken photo ('no estimate' where it "
        "abstained); numbers on real photos with ESTIMATED tone"
        if estimated
        else "groups = the labelled Fitzpatrick type's group (decided as a request that gives "
        "the type)"
    )
    return [
        ("h2", "Counterfactual robustness (the same photo under controlled changes)"),
        (
            "p",
            f"Source: {summary['source']} ({summary['photos']} photos with a face as taken; "
            f"{summary.get('photos_in_predictions', 'n/a')} of them also in the evaluated "
            f"predictions). Changes: {', '.join(summary['changes'])}. {basis}. A flip is a "
            "served decision (probability >= the threshold of the face's group) that differs "
            "from the as-taken one, counted over photos with a face on both; tone change = the "
            "estimated group differs (abstaining counts as a value). Intervals: "
            f"{int(summary['ci_level'] * 100)}% {summary['ci_method']}.",
        ),
    ]


def counterfactual_blocks(summary: dict, tone: ToneBasis, png: Path) -> list[tuple]:
    """The report's counterfactual-robustness section."""
    groups, changes, conds = summary["groups"], summary["changes"], summary["conditions"]
    head = "group" if summary["tone_source"] == "labelled" else tone.label
    flips = summary["flip_rate"]
    flip_rows = [
        [
            g,
            ch,
            flips[g][ch][ANY_CONDITION]["n"],
            *(_rate(flips[g][ch][c]) for c in (*conds, ANY_CONDITION)),
        ]
        for g in groups
        for ch in changes
    ]
    other_rows = [
        [
            g,
            ch,
            _rate(summary["tone_change"][g][ch]),
            _rate(summary["face_lost"][g][ch]),
            _rate(summary["became_uncertain"][g][ch]),
        ]
        for g in groups
        for ch in changes
    ]
    prob = summary["prob_change"]
    prob_rows = [
        [g, ch, *(_range(prob[g][ch][c]) for c in conds)] for g in groups for ch in changes
    ]
    return [
        *_counterfactual_intro(summary, tone),
        ("h3", "Decision flip rate"),
        ("table", [head, "change", "photos compared", *conds, ANY_CONDITION], flip_rows),
        ("h3", "Tone-group change, lost faces, results turned uncertain"),
        (
            "table",
            [
                head,
                "change",
                "tone group changed",
                "face lost",
                "turned uncertain (quality warning)",
            ],
            other_rows,
        ),
        ("h3", "Probability change (changed - as taken): 5th to 95th percentile (min to max)"),
        ("table", [head, "change", *conds], prob_rows),
        ("img", "counterfactual robustness", png),
    ]


def _range(cell: dict) -> str:
    """'-0.031 .. 0.045 (-0.120 .. 0.200)' of a probability-change range cell."""
    if cell["n"] == 0:
        return "n/a"
    return f"{cell['p5']:+.3f} .. {cell['p95']:+.3f} ({cell['min']:+.3f} .. {cell['max']:+.3f})"


def selective_card(section: dict) -> dict:
    """The model card's ``selective_prediction``: per variant, the operating point.

    Also the target and the full-coverage gap; no curves.
    """
    keep = (
        "coverage",
        "kept",
        "deferred",
        "gap",
        "accuracy_by_group",
        "deferred_share_by_group",
        "deferred_most",
    )
    variants = {}
    for name, variant in section["variants"].items():
        point = variant["operating_point"]
        variants[name] = {
            "compared_groups": variant["compared_groups"],
            "gap_full_coverage": variant["full_coverage"]["gap"],
            "operating_point": {k: point[k] for k in keep if k in point}
            | {"status": point["status"]},
        }
        if point["status"] != "ok":
            variants[name]["operating_point"] |= {
                k: point[k] for k in ("smallest_gap", "at_coverage")
            }
    return {
        "target": section["target"],
        "min_cases": section["min_cases"],
        "thresholds": section["thresholds"],
        "ci": f"{int(section['ci_level'] * 100)}% {section['ci_method']}",
        "variants": variants,
    }


def counterfactual_card(summary: dict) -> dict:
    """The model card's ``counterfactual_robustness``: flip and tone-change rates per group."""
    strip = ("count", "n", "rate", "ci_low", "ci_high")
    return {
        "source": summary["source"],
        "photos": summary["photos"],
        "tone_source": summary["tone_source"],
        "changes": summary["changes"],
        "ci": f"{int(summary['ci_level'] * 100)}% {summary['ci_method']}",
        "flip_rate": {
            g: {
                ch: {c: {k: cell[k] for k in strip} for c, cell in cells.items()}
                for ch, cells in by_change.items()
            }
            for g, by_change in summary["flip_rate"].items()
        },
        "tone_change": summary["tone_change"],
    }


def selective_card_blocks(card: dict) -> list[tuple]:
    """Model-card Markdown: one row per variant with its operating point."""
    rows = []
    for name, v in card["variants"].items():
        point = v["operating_point"]
        ok = point["status"] == "ok"
        rows.append(
            [
                VARIANT_TITLES.get(name, name),
                fmt_estimate(v["gap_full_coverage"]),
                f"{point['coverage']:.3f}" if ok else "not reached",
                fmt_estimate(point["gap"]) if ok else "n/a",
                (", ".join(point["deferred_most"]) if point["deferred"] else "nothing deferred")
                if ok
                else "n/a",
            ]
        )
    return [
        ("h2", "Selective prediction"),
        (
            "p",
            f"Deferring the least certain decisions (certainty = |probability - threshold|; "
            f"{card['thresholds']}); operating point = the largest coverage with an accuracy "
            f"gap under {card['target']:g}. Intervals: {card['ci']}.",
        ),
        (
            "table",
            [
                "deferral",
                "gap (full coverage)",
                "coverage",
                "gap (operating point)",
                "deferred most",
            ],
            rows,
        ),
    ]


def counterfactual_card_blocks(card: dict) -> list[tuple]:
    """Model-card Markdown: per group and change, any-flip and tone-change rates."""
    rows = [
        [g, ch, _rate(card["flip_rate"][g][ch][ANY_CONDITION]), _rate(card["tone_change"][g][ch])]
        for g in card["flip_rate"]
        for ch in card["changes"]
    ]
    basis = "estimated tone" if card["tone_source"] != "labelled" else "labelled type"
    return [
        ("h2", "Counterfactual robustness"),
        (
            "p",
            f"{card['photos']} photos ({basis}) under {', '.join(card['changes'])}; "
            f"intervals: {card['ci']}. Source: {card['source']}.",
        ),
        ("table", ["group", "change", "any decision flipped", "tone group changed"], rows),
    ]
