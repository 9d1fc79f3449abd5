"""Fairness report: fit thresholds on validation, evaluate test per group, write everything.

Usage::

    python -m fairness.report --predictions outputs/<run> --out reports/<run> [--json]
    python -m fairness.report --predictions val.csv test.csv --out DIR --mlflow-run RUN_ID
    python -m fairness.report --predictions val.csv --out DIR    # no test split

Without a test split (one validation CSV, a run folder without predictions_test.csv, or
``--evaluate-on val``) the validation rows are evaluated with cross-fitted thresholds
(`fairness.crossfit`: 2 folds by subject, each decided with thresholds fitted on the other):
F1 and the other threshold metrics come from those out-of-fold decisions, AUROC and AP from all
rows; thresholds.json is still fitted on all validation rows (what is shipped). metrics.json's
``evaluation`` says which: "test, thresholds fitted on val" or "val, 2-fold cross-fitted
thresholds (no test split)", and the metrics sit under the evaluated split's name (``test`` or
``val``, with ``<split>_global_threshold``). metrics.json also holds ``goals`` (acne and
hyperpigmentation AUROC, acne AUROC per group and the largest gap to the best group) and, when
the predictions carry ``acne_severity`` and a grade, ``severity`` (QWK and MAE with CIs, grade
distribution, and the grade rule it used).

Acne severity: when the predictions carry ``acne_severity_prob_0..3``, the grade is recomputed
from them with cutpoints (`fairness.severity.fit_severity_cutpoints`, QWK-optimal) fitted on the
validation rows with a known severity, like the condition thresholds: applied to test, or
cross-fitted on the same folds when there is no test split. The cutpoints fitted on all
validation rows are shipped in thresholds.json under ``acne_severity`` (serving grades with
them). Without the probabilities the predictions' ``acne_severity_grade`` (the model's default
0.5 rule) is evaluated, and the section says so.

Writes into DIR: metrics.json, thresholds.json, calibration.json, report.md, report.html
(self-contained), group_metrics.png, roc.png, reliability.png, coverage.png, model_card.md,
model_card.json. With --mlflow-run it logs the summary metrics and these files to that run.

Where the groups come from (`fairness.tone_basis`): the predictions' `tone_source` column,
else labelled where a Fitzpatrick type is given, else the datacard's `tone_source`. When the
tone is estimated, every heading, legend and the model card say "estimated tone group (ITA)"
and state that the dataset has no skin-type labels; the JSON files carry `tone_source`,
`group_basis` and `group_label`. Data provenance comes from `datacard.json` beside the data
(found through the run's config.json) or `--datacard`; `--evidence COND=KIND` overrides what a
condition's evidence is said to be (real | synthetic | unknown).

Exit codes: 0 success; 2 bad input (file, line and column named on stderr); 3 MLflow error.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from fairness.io import (
    PredictionsError,
    atomic_write_text,
    read_dataset_info,
    read_predictions,
    resolve_prediction_files,
    to_arrays,
)
from fairness.model_card import DatacardError
from fairness.render import fmt_estimate, to_html, to_markdown
from fairness.thresholds import ThresholdsError, fit_thresholds, save_thresholds
from fairness.tone_basis import LABELLED, ToneBasis, row_tone_sources, tone_basis

__all__ = ["main", "make_report"]

EXIT_BAD_INPUT = 2
EXIT_MLFLOW = 3
DEFAULT_MLFLOW_URI = "sqlite:///outputs/mlflow.db"
EVALUATE_ON = ("auto", "test", "val")
CROSS_FITTED_GROUP = "per-group, cross-fitted (2 folds by {by}, fitted on the other fold)"
CROSS_FITTED_GLOBAL = "one global threshold per condition, cross-fitted (2 folds by {by})"
# The goals' per-group AUROC counts a group with at least this many labelled faces.
GOAL_MIN_FACES = 10
CROSS_FITTED_METRICS = ("f1", "precision", "recall", "specificity", "fpr")
GOAL_CONDITIONS = ("acne", "hyperpigmentation")
SEVERITY_PROB_COLUMNS = tuple(f"acne_severity_prob_{k}" for k in range(4))
SEVERITY_RULE_DEFAULT = (
    "default rule: grade = number of k with P(grade > k) > 0.5 (the model's own grade)"
)
SEVERITY_RULE_FITTED = (
    "cutpoints fitted on val (QWK-optimal), applied to test: grade = number of k with "
    "P(grade > k) > cutpoint k"
)
SEVERITY_RULE_CROSS_FITTED = (
    "cutpoints cross-fitted on val (2 folds by {by}; each fold graded with cutpoints fitted on "
    "the other fold): grade = number of k with P(grade > k) > cutpoint k"
)
GOALS_CI_METHOD = (
    "percentile bootstrap over images, stratified by skin-tone group x label; one set of "
    "replicates for all groups, so the gap's interval is paired"
)


class MlflowLoggingError(RuntimeError):
    """Logging the report to MLflow failed."""


def _dump(path: Path, obj) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, allow_nan=False) + "\n")


def make_report(
    val_csv: Path,
    test_csv: Path | None,
    out_dir: Path,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    min_positives: int = 10,
    min_negatives: int = 10,
    threshold_min_positives: int = 5,
    shrinkage_k: float = 20.0,
    run_dir: Path | None = None,
    mlflow_run_id: str | None = None,
    mlflow_uri: str | None = None,
    progress: bool = True,
    datacards: list[str | Path] | None = None,
    evidence: dict[str, str] | None = None,
) -> dict:
    """Build the whole report; returns a summary dict (paths and headline numbers).

    `test_csv` None: no test split; the validation rows are evaluated with cross-fitted
    thresholds (`fairness.crossfit`), and thresholds.json is still fitted on all of them.
    `datacards`: datacard files or dataset folders holding one or several (None: those beside
    the data the run's config.json names). `evidence`: condition -> real | synthetic | unknown,
    replacing the rule of `fairness.model_card.condition_evidence`.
    """
    from data.schema import CONDITIONS, DISCLAIMER, GROUPS
    from fairness import crossfit, plots
    from fairness.calibration import (
        apply_group_temperatures,
        calibration_by_group,
        fit_group_temperatures,
    )
    from fairness.coverage import coverage_counts
    from fairness.evaluate import evaluate_predictions
    from fairness.model_card import (
        condition_evidence,
        find_datacards,
        make_model_card,
        read_datacards,
        write_model_card,
    )

    out_dir = Path(out_dir)
    val_df = read_predictions(val_csv)
    test_df = None if test_csv is None else read_predictions(test_csv)
    frames = [val_df] if test_df is None else [val_df, test_df]
    split = "val" if test_df is None else "test"
    val = to_arrays(val_df)
    ev_df = val_df if test_df is None else test_df
    ev = to_arrays(ev_df)
    folders = [p for p in datacards or [] if Path(p).is_dir()]
    dataset = read_dataset_info(run_dir, frames, data_dirs=folders)
    if datacards is None:
        provenance = find_datacards(run_dir)
    else:
        provenance = [card for p in datacards for card in read_datacards(p)]
    tone = prediction_tone_basis(frames, provenance)
    evidence_by_condition = condition_evidence(
        _stack_labels(*(to_arrays(df).y_true for df in frames)),
        dataset.get("kind", "unknown"),
        evidence,
        synthetic_rows=_synthetic_rows(frames),
    )

    # Thresholds for serving: fitted on every validation row.
    fit_options = dict(min_positives=threshold_min_positives, shrinkage_k=shrinkage_k)
    global_options = dict(min_positives=10**9, shrinkage_k=shrinkage_k)
    thresholds = fit_thresholds(val.y_true, val.probs, val.groups, **fit_options)
    thresholds.extra.update(tone.to_dict())  # thresholds.json says what its groups are
    # Acne-severity cutpoints for serving: fitted on every validation row with a severity.
    severity_fit = fit_shipped_severity(val_df)
    if severity_fit is not None:
        thresholds = dataclasses.replace(thresholds, acne_severity=severity_fit)
    global_only = fit_thresholds(val.y_true, val.probs, val.groups, **global_options)
    options = dict(
        n_boot=n_boot,
        seed=seed,
        min_positives=min_positives,
        min_negatives=min_negatives,
        progress=progress,
    )
    temperatures = fit_group_temperatures(val.y_true, val.probs, val.groups)
    cross_fitting = None
    if test_df is not None:
        # Thresholds fitted on validation, applied to test.
        evaluation = {"split": "test", "method": crossfit.EVALUATION_TEST}
        metrics = evaluate_predictions(ev, thresholds, **options)
        metrics_global = evaluate_predictions(ev, global_only, **options)
        metrics_global["thresholds"] = "one global threshold per condition (fitted on val)"
        scaled_probs = apply_group_temperatures(ev.probs, ev.groups, temperatures)
        temperatures_applied = "fitted on val, applied to test"
        severity_grades, severity_rule = fitted_severity_grades(ev_df, severity_fit)
    else:
        # No test split: each fold of the validation rows is decided with thresholds fitted on
        # the other fold; threshold-free numbers use every row.
        evaluation = {"split": "val", "method": crossfit.EVALUATION_CROSS_FITTED}
        subjects = val_df["subject_id"].tolist() if "subject_id" in val_df.columns else None
        keys = crossfit.subject_keys(val_df["image"].tolist(), subjects)
        folds = crossfit.subject_folds(
            keys, crossfit.NUM_FOLDS, seed, strata=_fold_strata(val.y_true, val.groups)
        )
        decisions, fold_thresholds = crossfit.cross_fit_decisions(
            val.y_true, val.probs, val.groups, folds, **fit_options
        )
        decisions_global, _ = crossfit.cross_fit_decisions(
            val.y_true, val.probs, val.groups, folds, **global_options
        )
        metrics = evaluate_predictions(val, thresholds, decisions=decisions, **options)
        by = "subject" if subjects is not None else "image"
        metrics["thresholds"] = CROSS_FITTED_GROUP.format(by=by)
        metrics_global = evaluate_predictions(val, None, decisions=decisions_global, **options)
        metrics_global["thresholds"] = CROSS_FITTED_GLOBAL.format(by=by)
        scaled_probs, _ = crossfit.cross_fit(
            val.y_true,
            val.probs,
            val.groups,
            folds,
            fit_group_temperatures,
            lambda t, p, g: apply_group_temperatures(p, g, t),
        )
        temperatures_applied = f"cross-fitted on val (2 folds by {by})"
        cross_fitting = cross_fitting_info(keys, folds, fold_thresholds, seed, subjects)
        severity_grades, severity_rule = cross_fitted_severity_grades(
            val_df, severity_fit, folds, by
        )
        if "cutpoints_per_fold" in severity_rule:
            cross_fitting["severity_cutpoints_per_fold"] = severity_rule["cutpoints_per_fold"]

    calibration = calibration_by_group(ev.y_true, ev.probs, ev.groups)
    scaled = calibration_by_group(ev.y_true, scaled_probs, ev.groups)
    calibration.update(tone.to_dict())
    calibration["evaluated_split"] = split
    calibration["temperature_scaling"] = {
        "temperatures": temperatures,
        "fitted_on": "val",
        "ece_after_method": temperatures_applied,
        "ece_after": {
            c: {g: v["ece"] for g, v in scaled["conditions"][c].items()} for c in CONDITIONS
        },
    }
    coverage = {"val": coverage_counts(val.y_true, val.fitzpatrick, split="val")}
    if test_df is not None:
        coverage["test"] = coverage_counts(ev.y_true, ev.fitzpatrick, split="test")
    # Without any Fitzpatrick type (estimated tone) coverage per type is one "unknown" column:
    # count per group instead, under the group's own name.
    by_types = tone.source == LABELLED or bool((ev.fitzpatrick > 0).any())
    if not by_types:
        coverage["val_by_group"] = coverage_by_group(val.y_true, val.groups, "val", tone)
        if test_df is not None:
            coverage["test_by_group"] = coverage_by_group(ev.y_true, ev.groups, "test", tone)
    shown_coverage = coverage[split] if by_types else coverage[f"{split}_by_group"]
    severity = severity_section(
        ev_df, ev.groups, split, n_boot=n_boot, seed=seed, grade=severity_grades, rule=severity_rule
    )
    goals = auroc_goals(
        ev.y_true,
        ev.probs,
        ev.groups,
        n_boot=n_boot,
        seed=seed,
        face_found=ev_df["face_found"].tolist() if "face_found" in ev_df.columns else None,
    )

    out_dir.mkdir(parents=True, exist_ok=True)
    document = {
        "disclaimer": DISCLAIMER,
        "data": dataset,
        **tone.to_dict(),
        "evidence": evidence_by_condition,
        "data_provenance": provenance,
        "evaluation": evaluation["method"],
        "evaluated_split": split,
        "inputs": {"val": str(val_csv), **({"test": str(test_csv)} if test_csv else {})},
        "goals": goals,
        split: metrics,
        f"{split}_global_threshold": metrics_global,
        **({"cross_fitting": cross_fitting} if cross_fitting else {}),
        **({"severity": severity} if severity else {}),
        "coverage": coverage,
    }
    files = {
        "thresholds": save_thresholds(thresholds, out_dir / "thresholds.json"),
        "metrics": _dump(out_dir / "metrics.json", document),
        "calibration": _dump(out_dir / "calibration.json", calibration),
        "group_metrics_png": plots.plot_group_bars(
            metrics, out_dir / "group_metrics.png", **_bar_labels(tone)
        ),
        "roc_png": plots.plot_roc(
            ev.y_true,
            ev.probs,
            ev.groups,
            out_dir / "roc.png",
            split=split,
            **({} if tone.source == LABELLED else {"group_label": tone.label}),
        ),
        "reliability_png": plots.plot_reliability(
            calibration,
            out_dir / "reliability.png",
            group_label="" if tone.source == LABELLED else tone.label,
            split=split,
        ),
        "coverage_png": plots.plot_coverage(shown_coverage, out_dir / "coverage.png"),
    }
    model = _model_info(run_dir)
    card = make_model_card(
        metrics,
        dataset=dataset,
        thresholds=thresholds.to_dict(),
        calibration=calibration,
        model=model,
        tone=tone,
        provenance=provenance,
        evidence=evidence_by_condition,
        evaluation=evaluation,
        severity=severity,
    )
    files["model_card_md"], files["model_card_json"] = write_model_card(card, out_dir)

    blocks = _report_blocks(
        metrics,
        metrics_global,
        thresholds.to_dict(),
        calibration,
        shown_coverage,
        dataset,
        files,
        (CONDITIONS, GROUPS, DISCLAIMER),
        tone=tone,
        provenance=provenance,
        evidence=evidence_by_condition,
        show_types=by_types,
        evaluation=evaluation,
        goals=goals,
        severity=severity,
    )
    files["report_md"] = atomic_write_text(out_dir / "report.md", to_markdown(blocks, base=out_dir))
    files["report_html"] = atomic_write_text(
        out_dir / "report.html", to_html(blocks, title="Fairness report")
    )
    summary = {
        "out": str(out_dir),
        "files": {k: str(v) for k, v in files.items()},
        "data": dataset.get("kind"),
        **tone.to_dict(),
        "evaluation": evaluation["method"],
        "summary": metrics["summary"],
        "summary_global_threshold": metrics_global["summary"],
        "goals": goals,
    }
    if mlflow_run_id:
        log_to_mlflow(mlflow_run_id, mlflow_uri, out_dir, metrics, metrics_global, goals)
        summary["mlflow_run"] = mlflow_run_id
    return summary


def _fold_strata(y_true, groups) -> list[str]:
    """Per row: group x label pattern, so both folds get a like share of each."""
    import numpy as np

    y = np.asarray(y_true, dtype=np.float64)
    return [
        f"{g or ''}|" + ",".join("u" if np.isnan(v) else str(int(v)) for v in row)
        for g, row in zip(groups, y, strict=True)
    ]


def cross_fitting_info(keys, folds, fold_thresholds, seed: int, subjects) -> dict:
    """metrics.json's ``cross_fitting``: folds, their sizes and the thresholds each got."""
    import numpy as np

    folds = np.asarray(folds)
    key_array = np.asarray(keys, dtype=object)
    names = range(len(fold_thresholds))
    first = fold_thresholds[0]
    return {
        "folds": len(fold_thresholds),
        "split_by": "subject_id (image where empty)" if subjects is not None else "image",
        "seed": int(seed),
        "rows_per_fold": [int((folds == f).sum()) for f in names],
        "subjects_per_fold": [len(set(key_array[folds == f])) for f in names],
        "fitted_on": "the other fold; fold f is decided with thresholds fitted without its rows",
        "thresholds_per_fold": {
            c: {
                "global": [th.global_threshold(c) for th in fold_thresholds],
                **{g: [th.group_threshold(c, g) for th in fold_thresholds] for g in first.groups},
            }
            for c in first.conditions
        },
        "cross_fitted": [
            *CROSS_FITTED_METRICS,
            "gaps built on them",
            "calibration ece_after",
            "severity (grade cutpoints, when the predictions carry the severity probabilities)",
        ],
        "all_rows": ["auroc", "ap", "calibration ece and brier", "goals"],
        "shipped_thresholds": "thresholds.json: fitted on all validation rows (severity "
        "cutpoints included)",
    }


def severity_probs(df):
    """The predictions' ``acne_severity_prob_0..3`` as float64 [N, 4], or None when absent."""
    import numpy as np

    if not all(c in df.columns for c in SEVERITY_PROB_COLUMNS):
        return None
    return df[list(SEVERITY_PROB_COLUMNS)].to_numpy(dtype=np.float64)


def _severity_labels(df):
    """The ``acne_severity`` labels as float64 [N] (NaN = unknown), after checking them and the
    ``acne_severity_grade`` column hold grades 0-3; a `PredictionsError` names the lines."""
    import numpy as np

    from data.schema import SEVERITY_GRADES

    label = df["acne_severity"].to_numpy(dtype=np.float64)
    bad = np.isfinite(label) & ~np.isin(label, SEVERITY_GRADES)
    if "acne_severity_grade" in df.columns:
        column = df["acne_severity_grade"].to_numpy(dtype=np.float64)
        bad |= np.isfinite(column) & ~np.isin(column, SEVERITY_GRADES)
    if bad.any():
        rows = ", ".join(str(int(i) + 2) for i in np.flatnonzero(bad)[:5])
        raise PredictionsError(
            f"{df.attrs.get('path', 'predictions')}: columns 'acne_severity'/"
            f"'acne_severity_grade', line(s) {rows}: a grade must be one of "
            f"{list(SEVERITY_GRADES)} or empty"
        )
    return label


def fit_shipped_severity(val_df) -> dict | None:
    """Cutpoints fitted on every validation row with a known severity and probabilities (the
    ``acne_severity`` entry of thresholds.json); None when there is no such row."""
    import numpy as np

    from fairness.severity import fit_severity_cutpoints

    probs = severity_probs(val_df)
    if probs is None or "acne_severity" not in val_df.columns:
        return None
    label = _severity_labels(val_df)
    if not (np.isfinite(label) & np.isfinite(probs).all(axis=1)).any():
        return None
    return fit_severity_cutpoints(label, probs)


def _graded(probs, grades):
    """Grades as float64 [N], NaN where the probabilities are missing."""
    import numpy as np

    return np.where(np.isfinite(probs).all(axis=1), np.asarray(grades, np.float64), np.nan)


def fitted_severity_grades(test_df, fitted: dict | None) -> tuple:
    """(grades [N] or None, rule) of the test rows with the cutpoints fitted on val.

    None (the predictions' own grade column, the default rule) when either split lacks the
    severity probabilities.
    """
    from fairness.severity import severity_grade

    probs = severity_probs(test_df)
    if fitted is None or probs is None:
        return None, {"name": "default", "description": SEVERITY_RULE_DEFAULT, "cutpoints": None}
    rule = {
        "name": "cutpoints fitted on val",
        "description": SEVERITY_RULE_FITTED,
        "cutpoints": fitted["cutpoints"],
        "fitted_on_rows": fitted["n"],
    }
    return _graded(probs, severity_grade(probs, fitted["cutpoints"])), rule


def cross_fitted_severity_grades(val_df, fitted: dict | None, folds, by: str) -> tuple:
    """(out-of-fold grades [N] or None, rule): each fold graded with cutpoints fitted on the
    other fold (the folds of the cross-fitted thresholds)."""
    from fairness import crossfit

    probs = severity_probs(val_df)
    if fitted is None or probs is None:
        return None, {"name": "default", "description": SEVERITY_RULE_DEFAULT, "cutpoints": None}
    grades, fold_fits = crossfit.cross_fit_severity_grades(_severity_labels(val_df), probs, folds)
    rule = {
        "name": "cross-fitted cutpoints",
        "description": SEVERITY_RULE_CROSS_FITTED.format(by=by),
        "cutpoints": None,
        "cutpoints_per_fold": [f["cutpoints"] for f in fold_fits],
        "fitted_on_rows_per_fold": [f["n"] for f in fold_fits],
    }
    return _graded(probs, grades), rule


def severity_section(
    df,
    groups,
    split: str,
    *,
    n_boot: int,
    seed: int,
    grade=None,
    rule: dict | None = None,
) -> dict | None:
    """QWK and MAE of the acne-severity grade with CIs, and the grade distribution.

    From the predictions' `acne_severity` (label) and the predicted grade
    (`fairness.severity.severity_metrics`): `grade` (float [N], NaN = none; computed with the
    fitted cutpoints, `rule` saying how) or, when None, the `acne_severity_grade` column (the
    model's default rule). None when the label or every grade is missing.
    """
    import numpy as np

    from data.schema import GROUPS, SEVERITY_GRADES
    from fairness.severity import (
        mean_absolute_error,
        quadratic_weighted_kappa,
        severity_grade,
        severity_metrics,
    )

    if "acne_severity" not in df.columns:
        return None
    label = _severity_labels(df)
    column = (
        df["acne_severity_grade"].to_numpy(dtype=np.float64)
        if "acne_severity_grade" in df.columns
        else None
    )
    probs = severity_probs(df)
    if grade is None:
        if column is None and probs is None:
            return None
        grade = column if column is not None else _graded(probs, severity_grade(probs))
        rule = {"name": "default", "description": SEVERITY_RULE_DEFAULT, "cutpoints": None}
    grade = np.asarray(grade, dtype=np.float64)
    has_grade = np.isfinite(grade)
    both = has_grade & np.isfinite(label)
    if not both.any():
        return None
    group = np.asarray([g or "" for g in groups], dtype=object)
    rows = np.flatnonzero(has_grade)
    out = {
        "split": split,
        "grade_rule": rule
        or {"name": "given", "description": "grades given by the caller", "cutpoints": None},
        **severity_metrics(
            label[rows], grade[rows].astype(np.int64), list(group[rows]), n_boot, seed
        ),
    }
    if out["grade_rule"]["name"] != "default" and probs is not None:
        # The model's default rule on the same rows, to show what the cutpoints changed.
        default = _graded(probs, severity_grade(probs))
        same = both & np.isfinite(default)
        qwk = quadratic_weighted_kappa(label[same], default[same]) if same.any() else np.nan
        mae = mean_absolute_error(label[same], default[same]) if same.any() else np.nan
        out["default_rule"] = {
            "description": SEVERITY_RULE_DEFAULT,
            "n": int(same.sum()),
            "qwk": float(qwk) if np.isfinite(qwk) else None,
            "mae": float(mae) if np.isfinite(mae) else None,
        }

    def counts(values: np.ndarray) -> dict[str, int]:
        return {str(k): int((values == k).sum()) for k in SEVERITY_GRADES}

    out["distribution"] = {"label": counts(label[both]), "predicted": counts(grade[both])}
    out["distribution_by_group"] = {
        g: {
            "label": counts(label[both & (group == g)]),
            "predicted": counts(grade[both & (group == g)]),
        }
        for g in GROUPS
    }
    out["rows_without_grade"] = int((np.isfinite(label) & ~has_grade).sum())
    return out


def auroc_goals(
    y_true,
    probs,
    groups,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    ci_level: float = 0.95,
    min_faces: int = GOAL_MIN_FACES,
    face_found=None,
    chunk_size: int = 100,
) -> dict:
    """The AUROC goals: acne and hyperpigmentation AUROC, acne AUROC per group and its gap.

    Parameters
    ----------
    y_true, probs : array [N, C]
        Labels (NaN = unknown) and probabilities, columns in `CONDITIONS` order.
    groups : sequence of str or None, length N
    n_boot, seed, ci_level
        Percentile bootstrap (stratified by group x label; 0 = no intervals).
    min_faces : int
        A group enters the per-group AUROC and the gap with at least this many faces with a
        known acne label (and both labels present).
    face_found : sequence of "0" / "1" / "", optional
        Per row, whether a face was found and analysed; gives ``not_analysed`` when given.

    Returns
    -------
    dict (JSON-ready)
        ``{"<cond>_auroc": estimate + n, positives, "acne_auroc_by_group": {g: {"n",
        "positives", "auroc"}}, "acne_auroc_gap": estimate + best_group, worst_group,
        compared, "by_group" (gap of each group to the best), "min_faces", "ci_method",
        ["not_analysed": {"share", "count", "n"}]}``. Point values are the same AUROC as the
        report's tables (`fairness.metrics.auroc`, equal to scikit-learn's roc_auc_score).

    >>> nan = float("nan")
    >>> g = auroc_goals([[1, 0, nan], [0, 1, nan]], [[0.9, 0.2, 0.5], [0.1, 0.8, 0.5]],
    ...                 ["V-VI", "V-VI"], n_boot=0, min_faces=2)
    >>> g["acne_auroc"]["value"], g["acne_auroc_by_group"]["V-VI"]["auroc"]["value"]
    (1.0, 1.0)
    """
    import numpy as np

    from data.schema import CONDITIONS, GROUPS
    from fairness.bootstrap import percentile_ci, strata_codes, stratified_bootstrap_weights
    from fairness.metrics import score_metrics_batched

    y = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(probs, dtype=np.float64)
    group = np.asarray([g or "" for g in groups], dtype=object)
    out: dict = {}

    def estimate(point: float, reps) -> dict:
        if not np.isfinite(point):
            return _no_value("AUROC undefined: needs positives and negatives")
        low, high = percentile_ci(reps, ci_level) if reps is not None else (np.nan, np.nan)
        return {
            "value": float(point),
            "ci_low": float(low) if np.isfinite(low) else None,
            "ci_high": float(high) if np.isfinite(high) else None,
            "status": "ok",
        }

    for cond in GOAL_CONDITIONS:
        c = CONDITIONS.index(cond)
        known = np.isfinite(y[:, c])
        yk, pk, gk = y[known, c], p[known, c], group[known]
        cells = {"overall": np.ones(yk.size, bool), **{g: gk == g for g in GROUPS}}
        points = {
            name: float(score_metrics_batched(yk[m], pk[m], np.ones((1, int(m.sum()))))["auroc"][0])
            for name, m in cells.items()
        }
        reps: dict[str, np.ndarray | None] = dict.fromkeys(cells)
        if n_boot > 0 and yk.size:
            strata = strata_codes(gk, yk)
            rng = np.random.default_rng(seed)
            parts: dict[str, list] = {name: [] for name in cells}
            for start in range(0, n_boot, chunk_size):
                w = stratified_bootstrap_weights(strata, min(chunk_size, n_boot - start), rng)
                for name, m in cells.items():
                    parts[name].append(score_metrics_batched(yk[m], pk[m], w[:, m])["auroc"])
            reps = {name: np.concatenate(v) for name, v in parts.items()}
        n, pos = int(yk.size), int(yk.sum())
        overall = estimate(points["overall"], reps["overall"])
        out[f"{cond}_auroc"] = {**overall, "n": n, "positives": pos}
        if cond != "acne":
            continue
        by_group, eligible = {}, []
        for g in GROUPS:
            m = cells[g]
            n_g, pos_g = int(m.sum()), int(yk[m].sum())
            if n_g < min_faces:
                auc = _no_value(f"{n_g} faces with an acne label; need at least {min_faces}")
            else:
                auc = estimate(points[g], reps[g])
                if auc["status"] == "ok":
                    eligible.append(g)
            by_group[g] = {"n": n_g, "positives": pos_g, "auroc": auc}
        out["acne_auroc_by_group"] = by_group
        out["acne_auroc_gap"] = _auroc_gap(eligible, points, reps, estimate) | {
            "min_faces": int(min_faces)
        }
    out["ci_method"] = GOALS_CI_METHOD
    out["n_boot"], out["seed"], out["ci_level"] = int(n_boot), int(seed), ci_level
    if face_found is not None:
        values = [str(v).strip() for v in face_found]
        known_face = [v for v in values if v in ("0", "1")]
        if known_face:
            missed = sum(v == "0" for v in known_face)
            out["not_analysed"] = {
                "share": missed / len(known_face),
                "count": missed,
                "n": len(known_face),
                "column": "face_found",
            }
    return out


def _auroc_gap(eligible: list[str], points: dict, reps: dict, estimate) -> dict:
    """Best group's AUROC minus each eligible group's; the largest one (best - worst)."""
    if len(eligible) < 2:
        return _no_value(f"{len(eligible)} group(s) with enough faces and both labels; need 2")
    best = max(eligible, key=lambda g: points[g])
    worst = min(eligible, key=lambda g: points[g])

    def gap(g: str) -> dict:
        diff = None if reps[best] is None else reps[best] - reps[g]
        return estimate(points[best] - points[g], diff)

    return {
        **gap(worst),
        "best_group": best,
        "worst_group": worst,
        "compared": eligible,
        "by_group": {g: gap(g) for g in eligible},
    }


def _no_value(reason: str) -> dict:
    return {
        "value": None,
        "ci_low": None,
        "ci_high": None,
        "status": "insufficient evidence",
        "reason": reason,
    }


def prediction_tone_basis(frames: list, provenance: list[dict] | None = None) -> ToneBasis:
    """Where the groups of validated predictions DataFrames come from (`fairness.tone_basis`).

    Per row: the `tone_source` column, else labelled where a type is given, else the tone
    source the datacards agree on (none when they disagree or do not say).
    """
    said = {c["tone_source"] for c in provenance or () if c.get("tone_source")}
    default = said.pop() if len(said) == 1 else None
    groups: list[str | None] = []
    sources: list[str | None] = []
    for df in frames:
        column = df["tone_source"].tolist() if "tone_source" in df.columns else None
        try:
            sources += row_tone_sources(df["fitzpatrick"].tolist(), column, default=default)
        except ValueError as exc:
            raise PredictionsError(f"{df.attrs.get('path', 'predictions')}: {exc}") from None
        groups += [g if isinstance(g, str) and g else None for g in df["group"].tolist()]
    return tone_basis(groups, sources)


def coverage_by_group(y_true, groups, split: str, tone: ToneBasis) -> dict:
    """Counts per condition x group (and "unknown"): labelled images and positives.

    The per-group twin of `fairness.coverage.coverage_counts` (keys ``groups`` instead of
    ``types``) for data whose groups are not Fitzpatrick types.
    """
    import numpy as np

    from data.schema import CONDITIONS, GROUPS

    y = np.asarray(y_true, dtype=np.float64)
    g = np.asarray([x or "" for x in groups], dtype=object)
    names = [*GROUPS, "unknown"]
    masks = {name: g == name for name in GROUPS} | {"unknown": ~np.isin(g, GROUPS)}
    labelled = {c: {} for c in CONDITIONS}
    positives = {c: {} for c in CONDITIONS}
    for i, cond in enumerate(CONDITIONS):
        known = np.isfinite(y[:, i])
        for name in names:
            rows = known & masks[name]
            labelled[cond][name] = int(rows.sum())
            positives[cond][name] = int(y[rows, i].sum())
    return {
        "split": split,
        "groups": names,
        "group_label": tone.label,
        "labelled": labelled,
        "positives": positives,
        "images_per_group": {name: int(masks[name].sum()) for name in names},
    }


def _synthetic_rows(frames: list):
    """Per row of the frames: from a synthetic source; None unless every frame has `source`."""
    import numpy as np

    if not all("source" in df.columns for df in frames):
        return None
    source = np.concatenate([df["source"].astype(str).str.strip().to_numpy() for df in frames])
    if (source == "").any():  # a row of unknown source: fall back to the dataset's kind
        return None
    return np.char.find(np.char.lower(source.astype(str)), "synth") >= 0


def _stack_labels(*arrays):
    import numpy as np

    return np.concatenate([np.asarray(a, dtype=np.float64) for a in arrays], axis=0)


def _bar_labels(tone: ToneBasis) -> dict:
    if tone.source == LABELLED:
        return {}
    return {
        "group_label": tone.label,
        "title": f"Metrics per {tone.label} with 95% bootstrap CIs (n/a = insufficient evidence)",
    }


def _model_info(run_dir: Path | None) -> dict | None:
    if run_dir is None or not (run_dir / "config.json").is_file():
        return None
    try:
        config = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    model = config.get("model") if isinstance(config, dict) else None
    info = {"run": run_dir.name}
    if isinstance(model, dict):
        info |= {k: v for k, v in model.items() if isinstance(v, str | int | float | bool)}
        info.setdefault("name", str(model.get("name", run_dir.name)))
    else:
        info["name"] = str(model) if model else run_dir.name
    # The training recipe a reader of the card needs: sampling, loss, and whether lesion masks
    # shaped the heatmaps (the localisation loss).
    if isinstance(config, dict):
        recipe = training_recipe(config)
        if "balance" in recipe:
            info["training_balance"] = recipe["balance"]
        for key in ("loss", "loc_weight"):
            if isinstance(recipe.get(key), str | int | float):
                info[f"training_{key}"] = recipe[key]
    return info


# Training-config keys the model card repeats (the recipe a reader needs to reproduce the run).
TRAINING_KEYS = ("epochs", "batch_size", "loss", "loc_weight", "groupdro_eta", "select", "seed")


def training_recipe(config: dict, run_metrics: dict | None = None) -> dict:
    """How a run was trained, for the model card: recipe keys of its config.json, model
    overrides, sampling balance and learning rate, and the code version from its metrics.json."""
    recipe = {key: config.get(key) for key in TRAINING_KEYS if key in config}
    data, optim, model = (
        config.get(key) if isinstance(config.get(key), dict) else {}
        for key in ("data", "optim", "model")
    )
    if model.get("overrides"):
        recipe["model_overrides"] = model["overrides"]  # e.g. width, output stride
    if "balance" in data:
        recipe["balance"] = data["balance"]
    if "learning_rate" in optim:
        recipe["learning_rate"] = optim["learning_rate"]
    for key in ("code_version", "code_digest", "epochs_completed"):
        if run_metrics and run_metrics.get(key) is not None:
            recipe[key] = run_metrics[key]
    return recipe


def _report_blocks(
    metrics,
    metrics_global,
    thresholds,
    calibration,
    coverage,
    dataset,
    files,
    schema,
    *,
    tone: ToneBasis,
    provenance: list[dict] | None = None,
    evidence: dict[str, str] | None = None,
    show_types: bool = True,
    evaluation: dict | None = None,
    goals: dict | None = None,
    severity: dict | None = None,
) -> list[tuple]:
    from fairness.model_card import CROSS_FITTED_NOTE

    conditions, groups, disclaimer = schema
    s, sg = metrics["summary"], metrics_global["summary"]
    labelled = tone.source == LABELLED
    subset = "subset" if labelled else f"subset ({tone.label})"
    evaluation = evaluation or {"split": "test", "method": "test, thresholds fitted on val"}
    split = evaluation["split"]
    crossed = split != "test"
    where = f"{split} split, cross-fitted thresholds" if crossed else f"{split} split"
    blocks: list[tuple] = [
        ("h1", "Fairness report"),
        ("p", f"{disclaimer.capitalize()}. Not a medical device."),
        (
            "p",
            f"Data: {dataset.get('kind')} ({dataset.get('name', 'unknown')}). "
            + (
                "Numbers on synthetic data say nothing about real faces. "
                if dataset.get("kind") == "synthetic"
                else ""
            )
            + f"Evaluation: {evaluation['method']}. Images evaluated ({split}): {metrics['n']}.",
        ),
        *(
            [
                ("p", CROSS_FITTED_NOTE),
                (
                    "p",
                    "Cross-fitted: F1, precision, recall, specificity, FPR, the gaps built on "
                    "them, 'ECE after temperature' and the acne-severity grade (its "
                    "cutpoints, when the predictions carry the severity probabilities). On "
                    "all validation rows, not cross-fitted (no threshold): AUROC, AP, ECE, "
                    "Brier and the AUROC goals. thresholds.json (what is shipped, severity "
                    "cutpoints included) is fitted on all validation rows; the tables below "
                    "are out-of-fold. Intervals treat the cross-fitted decisions as fixed.",
                ),
            ]
            if crossed
            else []
        ),
        *([] if labelled else [("p", f"Skin-tone groups: {tone.label}. {tone.note}")]),
        *_provenance_block(provenance),
        (
            "p",
            f"Intervals: {int(metrics['ci_level'] * 100)}% {metrics['ci_method']}; "
            f"{metrics['n_boot']} replicates, seed {metrics['seed']}. Cells with fewer than "
            f"{metrics['min_positives']} positives or {metrics['min_negatives']} negatives read "
            "'insufficient evidence'.",
        ),
        *(_goal_blocks(goals, tone) if goals else []),
        ("h2", f"Summary ({where})"),
        (
            "table",
            ["metric", "per-group thresholds", "one global threshold"],
            [[k, fmt_estimate(s[k]), fmt_estimate(sg[k])] for k in s],
        ),
        (
            "p",
            "gap_dark_vs_medium_f1 is |macro-F1(V-VI) - macro-F1(III-IV)|"
            + ("" if labelled else f" (groups: {tone.label})")
            + "; its signed value "
            f"(V-VI minus III-IV) is {fmt_estimate(s['gap_dark_vs_medium_f1'].get('signed'))}.",
        ),
        *(
            [
                (
                    "p",
                    f"No ground truth for {', '.join(metrics['no_ground_truth'])} "
                    f"(no {split} image has a label): macro metrics average "
                    f"{', '.join(metrics['macro']['conditions'])} only.",
                )
            ]
            if metrics.get("no_ground_truth")
            else []
        ),
        ("img", "per-group metrics", files["group_metrics_png"]),
    ]
    for cond in conditions:
        entry = metrics["conditions"][cond]
        rows = []
        for name, cell in [
            ("overall", entry["overall"]),
            *[(g, entry["by_group"][g]) for g in groups],
            *([(f"type {t}", c) for t, c in entry["by_type"].items()] if show_types else []),
        ]:
            rows.append(
                [
                    name,
                    cell["n"],
                    cell["positives"],
                    *(
                        fmt_estimate(cell[m])
                        for m in ("f1", "precision", "recall", "specificity", "auroc", "ap")
                    ),
                ]
            )
        blocks += [
            ("h2", f"{cond}"),
            *(
                [
                    (
                        "p",
                        f"No ground truth: no {split} image has a {cond} label "
                        f"(evidence: {(evidence or {}).get(cond, 'synthetic')}).",
                    )
                ]
                if entry["overall"]["n"] == 0
                else []
            ),
            (
                "table",
                [
                    subset,
                    "n",
                    "positives",
                    "F1",
                    "precision",
                    "recall",
                    "specificity",
                    "AUROC",
                    "AP",
                ],
                rows,
            ),
            (
                "table",
                ["gap", "value [95% CI]"],
                [[k, fmt_estimate(v)] for k, v in entry["gaps"].items()],
            ),
        ]
    columns = coverage["groups"] if "groups" in coverage else coverage["types"]
    columns_named = [tone.group_name(t) if t in groups else t for t in columns]
    blocks += [
        ("h2", "Gaps on macro metrics (mean over conditions)"),
        (
            "table",
            ["gap", "per-group thresholds", "one global threshold"],
            [
                [k, fmt_estimate(v), fmt_estimate(metrics_global["macro"]["gaps"][k])]
                for k, v in metrics["macro"]["gaps"].items()
            ],
        ),
        (
            "h2",
            "Thresholds (fitted on all validation rows: thresholds.json, shipped)"
            if crossed
            else "Thresholds (fitted on validation)",
        ),
        (
            "p",
            f"Method: {thresholds['method']}; shrinkage {thresholds['shrinkage']['rule']} "
            f"with k = {thresholds['shrinkage']['k']}; groups with fewer than "
            f"{thresholds['shrinkage']['min_positives']} positives use the global threshold.",
        ),
        (
            "table",
            [
                "condition",
                "global",
                *(f"{tone.group_name(g)} (raw, w, positives)" for g in groups),
            ],
            [
                [
                    c,
                    f"{thresholds['thresholds'][c]['global']['threshold']:.3f}",
                    *(_threshold_cell(thresholds["thresholds"][c]["groups"][g]) for g in groups),
                ]
                for c in conditions
            ],
        ),
        *_severity_cutpoint_blocks(thresholds.get("acne_severity")),
        ("h2", f"Calibration ({split} split)"),
        (
            "table",
            ["condition", subset, "n", "ECE", "Brier", "ECE after temperature"],
            [
                [
                    c,
                    g,
                    v["n"],
                    _num(v["ece"]),
                    _num(v["brier"]),
                    _num(calibration["temperature_scaling"]["ece_after"][c][g]),
                ]
                for c in conditions
                for g, v in calibration["conditions"][c].items()
            ],
        ),
        ("img", "reliability diagrams", files["reliability_png"]),
        ("h2", "ROC per group" if labelled else f"ROC per {tone.label}"),
        ("img", "ROC per group", files["roc_png"]),
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
        ("img", "coverage matrix", files["coverage_png"]),
    ]
    if severity:
        from fairness.model_card import severity_blocks

        blocks += severity_blocks(severity, tone)
    return blocks


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
    from data.schema import GROUPS

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
    raw = "global" if entry.get("raw_threshold") is None else f"{entry['raw_threshold']:.3f}"
    return f"{entry['threshold']:.3f} ({raw}, {entry.get('weight', 0):.2f}, {entry['positives']})"


def _num(value) -> str:
    return "insufficient evidence" if value is None else f"{value:.4f}"


def flatten_summary(metrics: dict, prefix: str) -> dict[str, float]:
    """MLflow-ready scalars: value, ci_low, ci_high of each summary and gap estimate."""
    out: dict[str, float] = {}

    def add(name: str, est: dict) -> None:
        for field in ("value", "ci_low", "ci_high"):
            if est.get(field) is not None:
                key = name if field == "value" else f"{name}_{field}"
                out[f"{prefix}/{key}"] = float(est[field])

    for key, est in metrics["summary"].items():
        add(key, est)
    for cond, entry in metrics["conditions"].items():
        for gap, est in entry["gaps"].items():
            add(f"gap/{cond}/{gap}", est)
        for g, cell in entry["by_group"].items():
            add(f"f1/{cond}/{g}", cell["f1"])
    return out


def flatten_goals(goals: dict, prefix: str = "goals") -> dict[str, float]:
    """MLflow-ready scalars of the AUROC goals (value, ci_low, ci_high)."""
    from data.schema import GROUPS

    named = {f"{c}_auroc": goals[f"{c}_auroc"] for c in GOAL_CONDITIONS}
    named |= {f"acne_auroc/{g}": goals["acne_auroc_by_group"][g]["auroc"] for g in GROUPS}
    named["acne_auroc_gap"] = goals["acne_auroc_gap"]
    out: dict[str, float] = {}
    for name, est in named.items():
        for field in ("value", "ci_low", "ci_high"):
            if est.get(field) is not None:
                key = name if field == "value" else f"{name}_{field}"
                out[f"{prefix}/{key}"] = float(est[field])
    if "not_analysed" in goals:
        out[f"{prefix}/not_analysed_share"] = float(goals["not_analysed"]["share"])
    return out


def log_to_mlflow(
    run_id: str,
    tracking_uri: str | None,
    out_dir: Path,
    metrics: dict,
    metrics_global: dict,
    goals: dict | None = None,
) -> None:
    """Log summary metrics and the report files to an existing MLflow run."""
    try:
        import time

        from mlflow.entities import Metric
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=tracking_uri or DEFAULT_MLFLOW_URI)
        now = int(time.time() * 1000)
        values = flatten_summary(metrics, "fairness") | flatten_summary(
            metrics_global, "fairness_global_threshold"
        )
        if goals:
            values |= flatten_goals(goals, "fairness_goals")
        batch = [Metric(k, v, now, 0) for k, v in sorted(values.items())]
        for start in range(0, len(batch), 500):
            client.log_batch(run_id, metrics=batch[start : start + 500])
        client.log_artifacts(run_id, str(out_dir), artifact_path="fairness")
    except Exception as exc:  # noqa: BLE001 - any MLflow failure becomes one clear line
        raise MlflowLoggingError(f"MLflow run {run_id!r}: {exc}") from exc


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m fairness.report",
        description="Per-group fairness report with bootstrap CIs, thresholds and a model card. "
        "Exit codes: 0 ok, 2 bad input, 3 MLflow error.",
    )
    parser.add_argument(
        "--predictions",
        nargs="+",
        required=True,
        metavar="DIR_OR_CSV",
        help="a training run folder (predictions_val.csv [+ predictions_test.csv]), two CSVs "
        "(val then test), or one val CSV (no test split: cross-fitted, see --evaluate-on)",
    )
    parser.add_argument(
        "--evaluate-on",
        choices=EVALUATE_ON,
        default="auto",
        help="test: thresholds fitted on val, metrics on test; val: no test split, metrics on "
        "val with 2-fold cross-fitted thresholds (thresholds.json still fitted on all val "
        "rows); auto (default): val when only validation predictions are given or the run "
        "folder has no predictions_test.csv, else test",
    )
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--n-boot", type=int, default=1000, help="bootstrap replicates")
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the bootstrap and of the cross-fitting folds"
    )
    parser.add_argument(
        "--min-positives",
        type=int,
        default=10,
        help="minimum positives per cell, else 'insufficient evidence'",
    )
    parser.add_argument(
        "--min-negatives",
        type=int,
        default=10,
        help="minimum negatives per cell, else 'insufficient evidence'",
    )
    parser.add_argument(
        "--threshold-min-positives",
        type=int,
        default=5,
        help="fewer validation positives in a group -> global threshold",
    )
    parser.add_argument(
        "--shrinkage-k", type=float, default=20.0, help="k in w = n_pos / (n_pos + k)"
    )
    parser.add_argument("--mlflow-run", default=None, help="MLflow run id to log into")
    parser.add_argument(
        "--mlflow-uri", default=None, help=f"MLflow tracking URI (default {DEFAULT_MLFLOW_URI})"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument(
        "--datacard",
        action="append",
        default=None,
        metavar="FILE_OR_DIR",
        help="data provenance: a datacard.json/.yaml, or a dataset folder holding one "
        "(repeat for several datasets; default: the datacard beside the data named in the "
        "run's config.json)",
    )
    parser.add_argument(
        "--evidence",
        action="append",
        default=None,
        metavar="COND=KIND",
        help="what a condition's evidence is (real | synthetic | unknown), e.g. "
        "wrinkles=synthetic; default: real/synthetic from the data, synthetic when the "
        "condition has no label",
    )
    return parser


def resolve_inputs(paths: list[str], evaluate_on: str = "auto") -> tuple[Path, Path | None]:
    """(val_csv, test_csv or None) from --predictions and --evaluate-on (None: no test split)."""
    if evaluate_on not in EVALUATE_ON:
        raise ValueError(f"--evaluate-on {evaluate_on!r}: choose one of {sorted(EVALUATE_ON)}")
    first = Path(paths[0])
    if evaluate_on == "test" or (evaluate_on == "auto" and len(paths) == 2):
        return resolve_prediction_files(paths)
    if len(paths) != 1:
        raise PredictionsError(
            f"--evaluate-on {evaluate_on} takes a run folder or one validation CSV; "
            f"got {len(paths)} paths"
        )
    if first.is_dir():
        val, test = first / "predictions_val.csv", first / "predictions_test.csv"
        if not val.is_file():
            raise PredictionsError(f"{first}: missing {val}")
        if evaluate_on == "auto" and test.is_file():
            return val, test
        return val, None
    if not first.is_file():
        raise PredictionsError(f"{first}: file not found")
    return first, None


def parse_evidence(items: list[str] | None) -> dict[str, str] | None:
    """{"wrinkles": "synthetic"} from ["wrinkles=synthetic"]; None when no flag was given."""
    if not items:
        return None
    out = {}
    for item in items:
        cond, sep, kind = item.partition("=")
        if not sep or not cond.strip() or not kind.strip():
            raise ValueError(f"--evidence {item!r}: expected COND=KIND, e.g. wrinkles=synthetic")
        out[cond.strip()] = kind.strip()
    return out


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit code."""
    args = _parser().parse_args(argv)
    try:
        if args.n_boot < 0:
            raise ValueError(f"--n-boot must be >= 0, got {args.n_boot}")
        val_csv, test_csv = resolve_inputs(args.predictions, args.evaluate_on)
        run_dir = Path(args.predictions[0]) if Path(args.predictions[0]).is_dir() else None
        summary = make_report(
            val_csv,
            test_csv,
            args.out,
            n_boot=args.n_boot,
            seed=args.seed,
            min_positives=args.min_positives,
            min_negatives=args.min_negatives,
            threshold_min_positives=args.threshold_min_positives,
            shrinkage_k=args.shrinkage_k,
            run_dir=run_dir or val_csv.parent,
            mlflow_run_id=args.mlflow_run,
            mlflow_uri=args.mlflow_uri,
            progress=not args.no_progress,
            datacards=args.datacard,
            evidence=parse_evidence(args.evidence),
        )
    except (PredictionsError, ThresholdsError, DatacardError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except MlflowLoggingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_MLFLOW
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        s = summary["summary"]
        print(f"wrote {summary['out']} ({summary['data']} data; groups: {summary['group_label']})")
        print(f"evaluation: {summary['evaluation']}")
        for key in ("macro_f1", "worst_group_f1", "gap_dark_vs_medium_f1"):
            print(f"{key}: {fmt_estimate(s[key])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
