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

__all__ = ["plot_coverage", "plot_group_bars", "plot_reliability", "plot_roc"]

NO_GROUND_TRUTH = "no ground truth"  # fairness.evaluate.NO_GROUND_TRUTH (no label at all)
GROUP_COLORS = {"I-II": "#f2c9a0", "III-IV": "#b8763e", "V-VI": "#5a3519", "overall": "#4c72b0"}
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
    from data.schema import CONDITIONS, GROUPS

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

    from data.schema import CONDITIONS, GROUPS

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
    from data.schema import CONDITIONS, GROUPS

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
    from data.schema import CONDITIONS

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
