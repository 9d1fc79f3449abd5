"""Report figures (matplotlib, Agg backend): bars with CI whiskers, ROC, reliability, coverage.

Each function writes one PNG atomically and returns its path. matplotlib is imported inside
the functions so that importing `fairness` never needs it.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fairness.io import atomic_write_bytes

__all__ = [
    "plot_counterfactual",
    "plot_coverage",
    "plot_group_bars",
    "plot_reliability",
    "plot_roc",
    "plot_selective",
]

NO_GROUND_TRUTH = "no ground truth"  # fairness.evaluate.NO_GROUND_TRUTH (no label at all)
GROUP_COLORS = {"I-II": "#f2c9a0", "III-IV": "#b8763e", "V-VI": "#5a3519", "overall": "#4c72b0"}
OTHER_COLORS = {"no estimate": "#9e9e9e", "unknown": "#9e9e9e", "all photos": "#4c72b0"}
VARIANT_STYLES = {"decision": "-", "tone": "--"}
VARIANT_LABELS = {"decision": "deferring on decision certainty", "tone": "tone uncertainty first"}
DPI = 110


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    _pyplot().close(fig)
    return atomic_write_bytes(path, buffer.getvalue())


def plot_group_bars(
    metrics: dict,
    path: Path,
    *,
    names: Sequence[str] = ("f1", "recall", "auroc"),
    title: str = "",
    group_label: str = "Fitzpatrick",
) -> Path:
    """Per condition and group, one bar per metric value with its 95% CI as a whisker.

    `group_label` titles the legend (`ToneBasis.label`, e.g. "estimated tone group (ITA)").
    """
    from core.schema import CONDITIONS, GROUPS

    plt = _pyplot()
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.6), squeeze=False)
    width = 0.8 / len(GROUPS)
    x = np.arange(len(CONDITIONS))
    for ax, name in zip(axes[0], names, strict=True):
        for k, group in enumerate(GROUPS):
            for i, cond in enumerate(CONDITIONS):
                est = metrics["conditions"][cond]["by_group"][group][name]
                xpos = x[i] + (k - (len(GROUPS) - 1) / 2) * width
                if est["status"] == NO_GROUND_TRUTH:  # one label per condition, not per group
                    if k == 0:
                        ax.text(x[i], 0.02, NO_GROUND_TRUTH, ha="center", va="bottom", fontsize=7)
                    continue
                if est["status"] != "ok":
                    ax.text(xpos, 0.02, "n/a", ha="center", va="bottom", fontsize=7, rotation=90)
                    continue
                low, high = est["ci_low"], est["ci_high"]
                err = None
                if low is not None and high is not None:
                    err = [[est["value"] - low], [high - est["value"]]]
                ax.bar(
                    xpos,
                    est["value"],
                    width,
                    color=GROUP_COLORS[group],
                    edgecolor="black",
                    linewidth=0.5,
                    yerr=err,
                    capsize=3,
                    label=group if i == 0 else None,
                )
        ax.set_xticks(x, CONDITIONS, fontsize=8)
        ax.set_xlim(-0.5, len(CONDITIONS) - 0.5)
        ax.set_ylim(0, 1.05)
        ax.set_title(name.upper() if name == "auroc" else name)
        ax.grid(axis="y", alpha=0.3)
    if axes[0][0].get_legend_handles_labels()[0]:
        axes[0][0].legend(title=group_label, fontsize=8, title_fontsize=8)
    fig.suptitle(
        title or "Per-group metrics with 95% bootstrap CIs (n/a = insufficient evidence)",
        fontsize=10,
    )
    return _save(fig, path)


def plot_roc(
    y_true: np.ndarray,
    probs: np.ndarray,
    groups: Sequence[str | None],
    path: Path,
    *,
    min_positives: int = 1,
    group_label: str = "skin-tone group",
    split: str = "test",
) -> Path:
    """ROC curve per group for each condition (groups with both classes only).

    `group_label` names the groups in the title and the legend (`ToneBasis.label`); `split`
    the evaluated split in the title.
    """
    from sklearn.metrics import roc_curve

    from core.schema import CONDITIONS, GROUPS

    plt = _pyplot()
    g = np.asarray([x or "" for x in groups], dtype=object)
    fig, axes = plt.subplots(
        1, len(CONDITIONS), figsize=(4.2 * len(CONDITIONS), 3.8), squeeze=False
    )
    for c, (ax, cond) in enumerate(zip(axes[0], CONDITIONS, strict=True)):
        known = np.isfinite(y_true[:, c])
        if not known.any():
            ax.text(0.5, 0.5, NO_GROUND_TRUTH, ha="center", va="center", fontsize=9)
        for name in ("overall", *GROUPS):
            mask = known if name == "overall" else known & (g == name)
            yc = y_true[mask, c]
            if yc.sum() < min_positives or yc.sum() == yc.size:
                continue
            fpr, tpr, _ = roc_curve(yc, probs[mask, c])
            style = "--" if name == "overall" else "-"
            ax.plot(fpr, tpr, style, color=GROUP_COLORS[name], label=f"{name} (n={yc.size})")
        ax.plot([0, 1], [0, 1], ":", color="grey", linewidth=0.8)
        ax.set_title(cond)
        ax.set_xlabel("false-positive rate")
        ax.set_ylabel("true-positive rate")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="lower right", title=group_label, title_fontsize=7)
    fig.suptitle(f"ROC per {group_label} ({split} split)", fontsize=10)
    return _save(fig, path)


def plot_reliability(
    calibration: dict, path: Path, *, group_label: str = "", split: str = "test"
) -> Path:
    """Reliability diagram per condition: observed frequency vs mean prediction per bin.

    `group_label` (`ToneBasis.label`) titles the legend and the figure; "" = no group name.
    `split` names the evaluated split in the title.
    """
    from core.schema import CONDITIONS, GROUPS

    plt = _pyplot()
    fig, axes = plt.subplots(
        1, len(CONDITIONS), figsize=(4.2 * len(CONDITIONS), 3.8), squeeze=False
    )
    for ax, cond in zip(axes[0], CONDITIONS, strict=True):
        for name in ("overall", *GROUPS):
            entry = calibration["conditions"][cond][name]
            if entry["status"] != "ok":
                continue
            curve = entry["reliability"]
            pts = [
                (m, f)
                for m, f in zip(curve["mean_predicted"], curve["fraction_positive"], strict=True)
                if m is not None
            ]
            if not pts:
                continue
            xs, ys = zip(*pts, strict=True)
            style = "--o" if name == "overall" else "-o"
            ax.plot(
                xs,
                ys,
                style,
                markersize=3,
                color=GROUP_COLORS[name],
                label=f"{name} (ECE {entry['ece']:.3f})",
            )
        ax.plot([0, 1], [0, 1], ":", color="grey", linewidth=0.8)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_title(cond)
        ax.set_xlabel("mean predicted probability")
        ax.set_ylabel("observed frequency")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="upper left", title=group_label or None, title_fontsize=7)
    by = f" per {group_label}" if group_label else ""
    fig.suptitle(
        f"Reliability{by} ({calibration['n_bins']} equal-width bins, {split} split)", fontsize=10
    )
    return _save(fig, path)


def plot_coverage(coverage: dict, path: Path) -> Path:
    """Heatmap of condition x Fitzpatrick type (or x group): positives / labelled images per cell.

    A coverage dict with ``groups`` (and ``group_label``) instead of ``types`` is drawn per
    group, its columns named by the group label (e.g. "estimated tone group (ITA)").
    """
    from core.schema import CONDITIONS

    plt = _pyplot()
    by_group = "groups" in coverage
    types = coverage["groups"] if by_group else coverage["types"]
    pos = np.asarray([[coverage["positives"][c][t] for t in types] for c in CONDITIONS], float)
    tot = np.asarray([[coverage["labelled"][c][t] for t in types] for c in CONDITIONS], float)
    fig, ax = plt.subplots(figsize=(1.1 * len(types) + 2.5, 0.8 * len(CONDITIONS) + 1.5))
    ax.imshow(pos, cmap="Blues", aspect="auto", vmin=0)
    for i in range(len(CONDITIONS)):
        for j in range(len(types)):
            colour = "white" if pos[i, j] > pos.max() / 2 else "black"
            ax.text(
                j,
                i,
                f"{int(pos[i, j])}/{int(tot[i, j])}",
                ha="center",
                va="center",
                fontsize=8,
                color=colour,
            )
    if by_group:
        ax.set_xticks(range(len(types)), types, fontsize=8)
        ax.set_xlabel(coverage.get("group_label", "group"), fontsize=8)
    else:
        ax.set_xticks(
            range(len(types)), [f"type {t}" if t != "unknown" else t for t in types], fontsize=8
        )
    ax.set_yticks(range(len(CONDITIONS)), CONDITIONS, fontsize=8)
    ax.set_title(f"Coverage ({coverage['split']}): positives / labelled images", fontsize=10)
    return _save(fig, path)


def _colour(group: str) -> str:
    """The colour of a group, of "no estimate" / "unknown", or of all photos."""
    return GROUP_COLORS.get(group) or OTHER_COLORS.get(group, "#4c72b0")


def plot_selective(section: dict, path: Path, *, group_label: str = "group") -> Path:
    """Selective prediction: accuracy per group and the gap, both against coverage.

    Accuracy per group while deferring on decision certainty; the gap of each variant with the
    target and the operating point (`fairness.selective.selective_prediction`).
    """
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    decision = section["variants"]["decision"]["plot"]
    for g, values in decision["accuracy"].items():
        ys = [np.nan if v is None else v for v in values]
        left.plot(decision["coverage"], ys, color=_colour(g), label=g)
    left.set_ylabel("accuracy of the kept decisions")
    left.set_title("Accuracy per group (deferring on decision certainty)", fontsize=9)
    left.legend(fontsize=7, title=group_label, title_fontsize=7)
    for name, variant in section["variants"].items():
        curve = variant["plot"]
        ys = [np.nan if v is None else v for v in curve["gap"]]
        right.plot(
            curve["coverage"],
            ys,
            VARIANT_STYLES.get(name, "-"),
            color="#333333",
            label=VARIANT_LABELS.get(name, name),
        )
        point = variant["operating_point"]
        if point.get("status") == "ok":
            right.plot(point["coverage"], point["gap"]["value"], "o", color="#c44e52")
    right.axhline(
        section["target"],
        color="#c44e52",
        linestyle=":",
        linewidth=1,
        label=f"target {section['target']:g}",
    )
    right.set_ylabel("accuracy gap (largest - smallest group)")
    right.set_title("Gap between groups; dot = operating point", fontsize=9)
    right.legend(fontsize=7)
    for ax in (left, right):
        ax.set_xlim(1.0, 0.0)
        ax.set_xlabel("coverage (share of decisions kept)")
        ax.grid(alpha=0.3)
    fig.suptitle("Selective prediction: the least certain decisions deferred", fontsize=10)
    return _save(fig, path)


def _rate_bars(
    ax: object, table: dict, groups: Sequence[str], changes: Sequence[str], key: str | None = None
) -> None:
    """Grouped bars (one per group) of Wilson-interval rates per change."""
    width = 0.8 / max(len(groups), 1)
    x = np.arange(len(changes))
    top = 0.05
    for k, g in enumerate(groups):
        cells = [table[g][c] if key is None else table[g][c][key] for c in changes]
        values = [np.nan if c["rate"] is None else c["rate"] for c in cells]
        low = [0 if c["rate"] is None else c["rate"] - c["ci_low"] for c in cells]
        high = [0 if c["rate"] is None else c["ci_high"] - c["rate"] for c in cells]
        top = max([top, *(c["ci_high"] for c in cells if c["rate"] is not None)])
        ax.bar(
            x + (k - (len(groups) - 1) / 2) * width,
            values,
            width,
            color=_colour(g),
            edgecolor="black",
            linewidth=0.5,
            yerr=[low, high],
            capsize=2,
            label=g,
        )
    ax.set_xticks(x, changes, fontsize=7, rotation=20)
    ax.set_ylim(0, min(1.0, 1.1 * top))
    ax.set_ylabel("share of photos (95% Wilson CI)", fontsize=8)
    ax.grid(axis="y", alpha=0.3)


def plot_counterfactual(summary: dict, path: Path, *, group_label: str = "group") -> Path:
    """Counterfactual robustness: flipped decisions and changed tone groups per change.

    Per change and group: the share of photos with any decision flipped and the share whose
    estimated tone group changed, with 95% Wilson intervals (`fairness.counterfactual`).
    """
    plt = _pyplot()
    groups = [g for g in summary["groups"] if g != "all photos"]
    changes = summary["changes"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    _rate_bars(left, summary["flip_rate"], groups, changes, key="any condition")
    left.set_title("Photos with any decision flipped", fontsize=9)
    _rate_bars(right, summary["tone_change"], groups, changes)
    right.set_title("Photos whose estimated tone group changed", fontsize=9)
    left.legend(fontsize=7, title=group_label, title_fontsize=7)
    fig.suptitle("Counterfactual robustness per group (95% Wilson intervals)", fontsize=10)
    return _save(fig, path)
