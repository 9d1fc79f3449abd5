"""Fairness report: fit thresholds on validation, evaluate test per group, write everything.

Usage::

    python -m fairness.report --predictions outputs/<run> --out reports/<run> [--json]
    python -m fairness.report --predictions val.csv test.csv --out DIR
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

Selective prediction (`fairness.selective`) always: per group, accuracy and the accuracy gap
as the least certain decisions (|probability - threshold|) are deferred, and the operating point:
the largest coverage with a gap under ``--selective-target`` (default 0.05). The threshold of a
row is the one that decided it: thresholds.json's on test; without a test split the cross-fitted
one of its fold. metrics.json ``selective_prediction``. Counterfactual robustness
(`fairness.counterfactual`) with ``--counterfactual FILE.csv`` (written by ``python -m
client.counterfactual``): decision flip and tone-group change rates per group and change,
metrics.json ``counterfactual``. Both also go into report.html and the model card.

Writes into DIR: metrics.json, thresholds.json, calibration.json, report.md, report.html
(self-contained), group_metrics.png, roc.png, reliability.png, coverage.png, selective.png,
counterfactual.png (with --counterfactual), model_card.md, model_card.json (the schema of
`fairness.model_card`, with the evaluation sections). ``python -m train_jax.report`` takes the same
flags plus ``--mlflow-run RUN_ID`` and logs the report into that MLflow run (this package does not
import MLflow).

Where the groups come from (`fairness.tone_basis`): the predictions' `tone_source` column,
else labelled where a Fitzpatrick type is given, else the datacard's `tone_source`. When the
tone is estimated, every heading, legend and the model card say "estimated tone group (ITA)"
and state that the dataset has no skin-type labels; the JSON files carry `tone_source`,
`group_basis` and `group_label`. Data provenance comes from `datacard.json` beside the data
(found through the run's config.json) or `--datacard`; `--evidence COND=KIND` overrides what a
condition's evidence is said to be (real | synthetic | unknown).

Exit codes: 0 success; 2 bad input (file, line and column named on stderr).

Modules: this one reads the inputs, runs the steps and writes the files (and the CLI);
`fairness.report_goals` computes the AUROC goals, `fairness.report_severity` the acne-severity
section, and `fairness.report_blocks` lays the numbers out for report.md / report.html.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from core.thresholds import Thresholds, ThresholdsError, apply_thresholds, save_thresholds
from data.run import Run
from fairness import crossfit, plots
from fairness.calibration import (
    apply_group_temperatures,
    calibration_by_group,
    fit_group_temperatures,
)
from fairness.counterfactual import (
    CounterfactualTable,
    counterfactual_summary,
    read_counterfactual,
)
from fairness.coverage import coverage_counts
from fairness.evaluate import evaluate_predictions
from fairness.io import (
    PredictionArrays,
    PredictionsError,
    atomic_write_text,
    read_dataset_info,
    read_predictions,
    resolve_prediction_files,
    to_arrays,
)
from fairness.model_card import (
    DatacardError,
    add_audit_sections,
    condition_evidence,
    evaluation_sections,
    find_datacards,
    make_model_card,
    read_datacards,
    write_model_card,
)
from fairness.render import fmt_estimate, to_html, to_markdown
from fairness.report_audits import counterfactual_blocks, selective_blocks
from fairness.report_blocks import report_blocks
from fairness.report_goals import (
    GOAL_CONDITIONS,
    GOAL_MIN_FACES,
    GOALS_CI_METHOD,
    auroc_goals,
    flatten_goals,
)
from fairness.report_severity import (
    SEVERITY_PROB_COLUMNS,
    SEVERITY_RULE_CROSS_FITTED,
    SEVERITY_RULE_DEFAULT,
    SEVERITY_RULE_FITTED,
    cross_fitted_severity_grades,
    fit_shipped_severity,
    fitted_severity_grades,
    severity_probs,
    severity_section,
)
from fairness.selective import DEFAULT_MIN_CASES, DEFAULT_TARGET, selective_prediction
from fairness.thresholds import fit_thresholds
from fairness.tone_basis import ESTIMATED, LABELLED, ToneBasis, row_tone_sources, tone_basis

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "GOALS_CI_METHOD",
    "GOAL_CONDITIONS",
    "GOAL_MIN_FACES",
    "SEVERITY_PROB_COLUMNS",
    "SEVERITY_RULE_CROSS_FITTED",
    "SEVERITY_RULE_DEFAULT",
    "SEVERITY_RULE_FITTED",
    "auroc_goals",
    "cross_fitted_severity_grades",
    "fit_shipped_severity",
    "fitted_severity_grades",
    "flatten_goals",
    "main",
    "make_report",
    "severity_probs",
    "severity_section",
]

EXIT_BAD_INPUT = 2
EVALUATE_ON = ("auto", "test", "val")
CROSS_FITTED_GROUP = "per-group, cross-fitted (2 folds by {by}, fitted on the other fold)"
CROSS_FITTED_GLOBAL = "one global threshold per condition, cross-fitted (2 folds by {by})"
CROSS_FITTED_METRICS = ("f1", "precision", "recall", "specificity", "fpr")
SELECTIVE_THRESHOLDS = {
    "test": "thresholds.json's per-group thresholds, fitted on val, applied to test",
    "val": "the cross-fitted per-group thresholds of the row's fold (fitted on the other fold; "
    "thresholds.json, fitted on these same rows, would flatter)",
}
NO_ESTIMATE, UNKNOWN_GROUP = "no estimate", "unknown"  # rows without a group


def _dump(path: Path, obj: object) -> Path:
    """Write `obj` as indented JSON (no NaN) atomically."""
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
    progress: bool = True,
    datacards: list[str | Path] | None = None,
    evidence: dict[str, str] | None = None,
    counterfactual: Path | None = None,
    selective: dict | None = None,
) -> dict:
    """Build the whole report; returns a summary dict (paths and headline numbers).

    `test_csv` None: no test split; the validation rows are evaluated with cross-fitted
    thresholds (`fairness.crossfit`), and thresholds.json is still fitted on all of them.
    `datacards`: datacard files or dataset folders holding one or several (None: those beside
    the data the run's config.json names). `evidence`: condition -> real | synthetic | unknown,
    replacing the rule of `fairness.model_card.condition_evidence`. `counterfactual`: a
    counterfactual CSV (`fairness.counterfactual`); `selective`: ``{"target", "min_cases"}``.
    """
    out_dir = Path(out_dir)
    inputs = _read_inputs(val_csv, test_csv, run_dir, datacards, evidence)
    cf_table = None if counterfactual is None else read_counterfactual(counterfactual)
    fit_options = dict(min_positives=threshold_min_positives, shrinkage_k=shrinkage_k)
    global_options = dict(min_positives=10**9, shrinkage_k=shrinkage_k)
    thresholds, global_only, severity_fit = _shipped_thresholds(inputs, fit_options, global_options)
    options = dict(
        n_boot=n_boot,
        seed=seed,
        min_positives=min_positives,
        min_negatives=min_negatives,
        progress=progress,
    )
    val = inputs.val
    temperatures = fit_group_temperatures(val.y_true, val.probs, val.groups)
    if inputs.test_df is not None:
        result = _evaluate_on_test(
            inputs, (thresholds, global_only), temperatures, severity_fit, options
        )
    else:
        result = _evaluate_cross_fitted(
            inputs, thresholds, temperatures, severity_fit, (fit_options, global_options), options
        )
    sections = _sections(inputs, result, temperatures, n_boot=n_boot, seed=seed)
    audits = _audits(inputs, result, cf_table, selective or {}, n_boot=n_boot, seed=seed)
    sections = dataclasses.replace(sections, **audits)
    out_dir.mkdir(parents=True, exist_ok=True)
    document = _metrics_document(inputs, result, sections, (val_csv, test_csv))
    files = _write_numbers_and_plots(out_dir, inputs, result, thresholds, document, sections)
    files |= _write_documents(out_dir, inputs, result, thresholds, sections, files, run_dir)
    return _run_summary(out_dir, files, inputs, result, sections)


@dataclass(frozen=True)
class _Inputs:
    """The predictions of both splits and what is known about their data."""

    val_df: pd.DataFrame
    test_df: pd.DataFrame | None  # None: no test split, val is evaluated (cross-fitted)
    val: PredictionArrays
    ev_df: pd.DataFrame  # the evaluated split: test, else val
    ev: PredictionArrays
    split: str  # "test" or "val"
    dataset: dict  # fairness.io.read_dataset_info
    provenance: list[dict]  # datacards
    tone: ToneBasis
    evidence: dict[str, str]  # condition -> real | synthetic | unknown


@dataclass(frozen=True)
class _Evaluation:
    """The evaluated split's metrics and how its decisions and grades were made."""

    evaluation: dict  # {"split", "method"}
    metrics: dict  # per-group thresholds
    metrics_global: dict  # one global threshold per condition
    scaled_probs: np.ndarray  # probabilities after temperature scaling
    temperatures_applied: str
    severity_grades: np.ndarray | None  # None: the predictions' own grade column
    severity_rule: dict
    cross_fitting: dict | None  # metrics.json's cross_fitting (no test split only)
    row_thresholds: np.ndarray  # [N, C] the threshold that decided each evaluated cell


@dataclass(frozen=True)
class _Sections:
    """The report's sections besides the metrics."""

    calibration: dict  # calibration.json
    coverage: dict
    shown_coverage: dict  # the coverage the report and coverage.png show
    by_types: bool  # per Fitzpatrick type (else per group: the groups are not types)
    severity: dict | None
    goals: dict
    selective: dict | None = None  # fairness.selective.selective_prediction (+ how, thresholds)
    counterfactual: dict | None = None  # fairness.counterfactual.counterfactual_summary


def _read_inputs(
    val_csv: Path,
    test_csv: Path | None,
    run_dir: Path | None,
    datacards: list[str | Path] | None,
    evidence: dict[str, str] | None,
) -> _Inputs:
    """Read and check the predictions; find the data's kind, provenance, groups and evidence."""
    val_df = read_predictions(val_csv)
    test_df = None if test_csv is None else read_predictions(test_csv)
    frames = [val_df] if test_df is None else [val_df, test_df]
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
    split = "val" if test_df is None else "test"
    return _Inputs(
        val_df, test_df, val, ev_df, ev, split, dataset, provenance, tone, evidence_by_condition
    )


def _shipped_thresholds(
    inputs: _Inputs, fit_options: dict, global_options: dict
) -> tuple[Thresholds, Thresholds, dict | None]:
    """Thresholds for serving (per group, and one global), fitted on every validation row, and
    the acne-severity cutpoints fitted on every validation row with a severity (or None)."""
    val = inputs.val
    thresholds = fit_thresholds(val.y_true, val.probs, val.groups, **fit_options)
    thresholds.extra.update(inputs.tone.to_dict())  # thresholds.json says what its groups are
    severity_fit = fit_shipped_severity(inputs.val_df)
    if severity_fit is not None:
        thresholds = dataclasses.replace(thresholds, acne_severity=severity_fit)
    global_only = fit_thresholds(val.y_true, val.probs, val.groups, **global_options)
    return thresholds, global_only, severity_fit


def _evaluate_on_test(
    inputs: _Inputs,
    fitted: tuple[Thresholds, Thresholds],
    temperatures: dict,
    severity_fit: dict | None,
    options: dict,
) -> _Evaluation:
    """Thresholds, temperatures and severity cutpoints fitted on val, applied to test."""
    thresholds, global_only = fitted
    ev = inputs.ev
    metrics = evaluate_predictions(ev, thresholds, **options)
    metrics_global = evaluate_predictions(ev, global_only, **options)
    metrics_global["thresholds"] = "one global threshold per condition (fitted on val)"
    scaled_probs = apply_group_temperatures(ev.probs, ev.groups, temperatures)
    severity_grades, severity_rule = fitted_severity_grades(inputs.ev_df, severity_fit)
    return _Evaluation(
        evaluation={"split": "test", "method": crossfit.EVALUATION_TEST},
        metrics=metrics,
        metrics_global=metrics_global,
        scaled_probs=scaled_probs,
        temperatures_applied="fitted on val, applied to test",
        severity_grades=severity_grades,
        severity_rule=severity_rule,
        cross_fitting=None,
        row_thresholds=apply_thresholds(ev.probs, ev.groups, thresholds)[1],
    )


def _evaluate_cross_fitted(
    inputs: _Inputs,
    thresholds: Thresholds,
    temperatures: dict,
    severity_fit: dict | None,
    fit_options: tuple[dict, dict],
    options: dict,
) -> _Evaluation:
    """No test split: each fold of the validation rows is decided with thresholds fitted on
    the other fold; threshold-free numbers use every row. `fit_options`: (per-group, global)."""
    group_options, global_options = fit_options
    val, val_df, seed = inputs.val, inputs.val_df, options["seed"]
    subjects = val_df["subject_id"].tolist() if "subject_id" in val_df.columns else None
    keys = crossfit.subject_keys(val_df["image"].tolist(), subjects)
    folds = crossfit.subject_folds(
        keys, crossfit.NUM_FOLDS, seed, strata=_fold_strata(val.y_true, val.groups)
    )
    decisions, fold_thresholds = crossfit.cross_fit_decisions(
        val.y_true, val.probs, val.groups, folds, **group_options
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
    cross_fitting = cross_fitting_info(keys, folds, fold_thresholds, seed, subjects)
    severity_grades, severity_rule = cross_fitted_severity_grades(val_df, severity_fit, folds, by)
    if "cutpoints_per_fold" in severity_rule:
        cross_fitting["severity_cutpoints_per_fold"] = severity_rule["cutpoints_per_fold"]
    return _Evaluation(
        evaluation={"split": "val", "method": crossfit.EVALUATION_CROSS_FITTED},
        metrics=metrics,
        metrics_global=metrics_global,
        scaled_probs=scaled_probs,
        temperatures_applied=f"cross-fitted on val (2 folds by {by})",
        severity_grades=severity_grades,
        severity_rule=severity_rule,
        cross_fitting=cross_fitting,
        row_thresholds=_fold_row_thresholds(val, folds, fold_thresholds),
    )


def _sections(
    inputs: _Inputs, result: _Evaluation, temperatures: dict, *, n_boot: int, seed: int
) -> _Sections:
    """Calibration, coverage, the acne-severity section and the AUROC goals."""
    ev, split = inputs.ev, inputs.split
    calibration = _calibration(inputs, result, temperatures)
    coverage, by_types = _coverage(inputs)
    severity = severity_section(
        inputs.ev_df,
        ev.groups,
        split,
        n_boot=n_boot,
        seed=seed,
        grade=result.severity_grades,
        rule=result.severity_rule,
    )
    ev_df = inputs.ev_df
    goals = auroc_goals(
        ev.y_true,
        ev.probs,
        ev.groups,
        n_boot=n_boot,
        seed=seed,
        face_found=ev_df["face_found"].tolist() if "face_found" in ev_df.columns else None,
    )
    shown_coverage = coverage[split] if by_types else coverage[f"{split}_by_group"]
    return _Sections(calibration, coverage, shown_coverage, by_types, severity, goals)


def _calibration(inputs: _Inputs, result: _Evaluation, temperatures: dict) -> dict:
    """calibration.json: ECE and Brier per group, and the ECE after temperature scaling."""
    from core.schema import CONDITIONS

    ev = inputs.ev
    calibration = calibration_by_group(ev.y_true, ev.probs, ev.groups)
    scaled = calibration_by_group(ev.y_true, result.scaled_probs, ev.groups)
    calibration.update(inputs.tone.to_dict())
    calibration["evaluated_split"] = inputs.split
    calibration["temperature_scaling"] = {
        "temperatures": temperatures,
        "fitted_on": "val",
        "ece_after_method": result.temperatures_applied,
        "ece_after": {
            c: {g: v["ece"] for g, v in scaled["conditions"][c].items()} for c in CONDITIONS
        },
    }
    return calibration


def _coverage(inputs: _Inputs) -> tuple[dict, bool]:
    """Labelled images and positives per condition and type of each split, and whether the
    report shows them per type (else per group, under the group's own name)."""
    val, ev, tone, has_test = inputs.val, inputs.ev, inputs.tone, inputs.test_df is not None
    coverage = {"val": coverage_counts(val.y_true, val.fitzpatrick, split="val")}
    if has_test:
        coverage["test"] = coverage_counts(ev.y_true, ev.fitzpatrick, split="test")
    # Without any Fitzpatrick type (estimated tone) coverage per type is one "unknown" column:
    # count per group instead, under the group's own name.
    by_types = tone.source == LABELLED or bool((ev.fitzpatrick > 0).any())
    if not by_types:
        coverage["val_by_group"] = coverage_by_group(val.y_true, val.groups, "val", tone)
        if has_test:
            coverage["test_by_group"] = coverage_by_group(ev.y_true, ev.groups, "test", tone)
    return coverage, by_types


def _metrics_document(
    inputs: _Inputs, result: _Evaluation, sections: _Sections, paths: tuple[Path, Path | None]
) -> dict:
    """metrics.json: data, evaluation, goals, the split's metrics, severity and coverage."""
    from core.schema import DISCLAIMER

    val_csv, test_csv = paths
    split = inputs.split
    return {
        "disclaimer": DISCLAIMER,
        "data": inputs.dataset,
        **inputs.tone.to_dict(),
        "evidence": inputs.evidence,
        "data_provenance": inputs.provenance,
        "evaluation": result.evaluation["method"],
        "evaluated_split": split,
        "inputs": {"val": str(val_csv), **({"test": str(test_csv)} if test_csv else {})},
        "goals": sections.goals,
        split: result.metrics,
        f"{split}_global_threshold": result.metrics_global,
        **({"cross_fitting": result.cross_fitting} if result.cross_fitting else {}),
        **({"severity": sections.severity} if sections.severity else {}),
        "coverage": sections.coverage,
        **(
            {"selective_prediction": _without_plot(sections.selective)}
            if sections.selective
            else {}
        ),
        **({"counterfactual": sections.counterfactual} if sections.counterfactual else {}),
    }


def _write_numbers_and_plots(
    out_dir: Path,
    inputs: _Inputs,
    result: _Evaluation,
    thresholds: Thresholds,
    document: dict,
    sections: _Sections,
) -> dict[str, Path]:
    """Write thresholds.json, metrics.json, calibration.json and the four plots."""
    tone, ev, split = inputs.tone, inputs.ev, inputs.split
    return {
        "thresholds": save_thresholds(thresholds, out_dir / "thresholds.json"),
        "metrics": _dump(out_dir / "metrics.json", document),
        "calibration": _dump(out_dir / "calibration.json", sections.calibration),
        "group_metrics_png": plots.plot_group_bars(
            result.metrics, out_dir / "group_metrics.png", **_bar_labels(tone)
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
            sections.calibration,
            out_dir / "reliability.png",
            group_label="" if tone.source == LABELLED else tone.label,
            split=split,
        ),
        "coverage_png": plots.plot_coverage(sections.shown_coverage, out_dir / "coverage.png"),
        **_audit_plots(out_dir, tone, sections),
    }


def _write_documents(
    out_dir: Path,
    inputs: _Inputs,
    result: _Evaluation,
    thresholds: Thresholds,
    sections: _Sections,
    files: dict[str, Path],
    run_dir: Path | None,
) -> dict[str, Path]:
    """Write model_card.md/.json, report.md and report.html (which embed the plots)."""
    from core.schema import CONDITIONS, DISCLAIMER, GROUPS

    evaluation = evaluation_sections(
        result.metrics,
        dataset=inputs.dataset,
        thresholds=thresholds.to_dict(),
        calibration=sections.calibration,
        tone=inputs.tone,
        provenance=inputs.provenance,
        evidence=inputs.evidence,
        evaluation=result.evaluation,
        severity=sections.severity,
    )
    evaluation = add_audit_sections(evaluation, sections.selective, sections.counterfactual)
    run = Run(run_dir) if run_dir is not None else None
    model = run.model_info() if run is not None else None
    card = make_model_card(
        name=str((model or {}).get("name", "unknown")),
        model=model,
        training=(run.training_recipe() or None) if run is not None else None,
        evaluation=evaluation,
    )
    card_md, card_json = write_model_card(card, out_dir)
    written = {"model_card_md": card_md, "model_card_json": card_json}
    blocks = report_blocks(
        result.metrics,
        result.metrics_global,
        thresholds.to_dict(),
        sections.calibration,
        sections.shown_coverage,
        inputs.dataset,
        files | written,
        (CONDITIONS, GROUPS, DISCLAIMER),
        tone=inputs.tone,
        provenance=inputs.provenance,
        evidence=inputs.evidence,
        show_types=sections.by_types,
        evaluation=result.evaluation,
        goals=sections.goals,
        severity=sections.severity,
    )
    if sections.selective:
        blocks += selective_blocks(sections.selective, inputs.tone, files["selective_png"])
    if sections.counterfactual:
        blocks += counterfactual_blocks(
            sections.counterfactual, inputs.tone, files["counterfactual_png"]
        )
    written["report_md"] = atomic_write_text(
        out_dir / "report.md", to_markdown(blocks, base=out_dir)
    )
    written["report_html"] = atomic_write_text(
        out_dir / "report.html", to_html(blocks, title="Fairness report")
    )
    return written


def _fold_row_thresholds(
    val: PredictionArrays, folds: np.ndarray, fold_thresholds: list[Thresholds]
) -> np.ndarray:
    """[N, C] the cross-fitted threshold of every cell: its fold's, fitted on the other folds."""
    used = np.empty_like(np.asarray(val.probs, np.float64))
    for k, fold in enumerate(np.unique(folds)):  # crossfit.cross_fit fits in this order
        rows = np.flatnonzero(folds == fold)
        groups = [val.groups[i] for i in rows]
        used[rows] = apply_thresholds(val.probs[rows], groups, fold_thresholds[k])[1]
    return used


def _audits(
    inputs: _Inputs,
    result: _Evaluation,
    cf_table: CounterfactualTable | None,
    options: dict,
    *,
    n_boot: int,
    seed: int,
) -> dict:
    """The selective-prediction section and, with a counterfactual CSV, its summary."""
    from core.schema import CONDITIONS, GROUPS

    ev = inputs.ev
    missing = NO_ESTIMATE if inputs.tone.estimated else UNKNOWN_GROUP
    tone_certainty, note = _tone_certainty(inputs)
    selective = selective_prediction(
        ev.y_true,
        ev.probs,
        result.row_thresholds,
        [g or missing for g in ev.groups],
        conditions=CONDITIONS,
        compared=GROUPS,
        tone_certainty=tone_certainty,
        target=options.get("target", DEFAULT_TARGET),
        min_cases=options.get("min_cases", DEFAULT_MIN_CASES),
        n_boot=n_boot,
        seed=seed,
    )
    selective |= {"thresholds": SELECTIVE_THRESHOLDS[inputs.split], "tone_variant_note": note}
    counterfactual = None
    if cf_table is not None:
        counterfactual = counterfactual_summary(cf_table)
        images = set(inputs.val_df["image"]) | set(inputs.ev_df["image"])
        counterfactual["photos_in_predictions"] = len(set(cf_table.image.tolist()) & images)
    return {"selective": selective, "counterfactual": counterfactual}


def _tone_certainty(inputs: _Inputs) -> tuple[np.ndarray | None, str]:
    """Per evaluated row the tone certainty of the tone variant, and a note on it.

    0 = an estimated tone that abstained, else its tone confidence (1 when not given or not
    estimated); None when no row has an estimated tone that is uncertain.
    """
    df, groups = inputs.ev_df, inputs.ev.groups
    said = {c["tone_source"] for c in inputs.provenance if c.get("tone_source")}
    column = df["tone_source"].tolist() if "tone_source" in df.columns else None
    sources = row_tone_sources(
        df["fitzpatrick"].tolist(), column, default=said.pop() if len(said) == 1 else None
    )
    estimated = np.asarray([s == ESTIMATED for s in sources], bool)
    abstained = estimated & np.asarray([g is None for g in groups], bool)
    confidence = (
        df["tone_confidence"].to_numpy(np.float64) if "tone_confidence" in df.columns else None
    )
    if not estimated.any():
        return None, "No tone-uncertainty variant: no row's tone comes from the ITA estimate."
    if confidence is None and not abstained.any():
        return None, (
            "No tone-uncertainty variant: the predictions carry no tone confidence and no "
            "abstained tone estimate."
        )
    certainty = np.ones(len(groups), np.float64)
    if confidence is not None:
        known = estimated & np.isfinite(confidence)
        certainty[known] = np.clip(confidence[known], 0.0, 1.0)
    certainty[abstained] = 0.0
    then = ", then those of lower tone confidence" if confidence is not None else ""
    return certainty, (
        f"Tone uncertainty: the decisions of the {int(abstained.sum())} rows whose {ESTIMATED} "
        f"tone abstained are deferred first{then}, the rest by decision certainty."
    )


def _without_plot(section: dict) -> dict:
    """The selective-prediction section without the full curves (kept for the plot only)."""
    variants = {
        name: {k: v for k, v in variant.items() if k != "plot"}
        for name, variant in section["variants"].items()
    }
    return section | {"variants": variants}


def _audit_plots(out_dir: Path, tone: ToneBasis, sections: _Sections) -> dict[str, Path]:
    """selective.png and, with a counterfactual summary, counterfactual.png."""
    label = "group" if tone.source == LABELLED else tone.label
    files = {}
    if sections.selective:
        files["selective_png"] = plots.plot_selective(
            sections.selective, out_dir / "selective.png", group_label=label
        )
    if sections.counterfactual:
        cf_label = "group" if sections.counterfactual["tone_source"] == LABELLED else label
        files["counterfactual_png"] = plots.plot_counterfactual(
            sections.counterfactual, out_dir / "counterfactual.png", group_label=cf_label
        )
    return files


def _run_summary(
    out_dir: Path, files: dict, inputs: _Inputs, result: _Evaluation, sections: _Sections
) -> dict:
    """The summary `make_report` returns (and --json prints)."""
    summary = {
        "out": str(out_dir),
        "files": {k: str(v) for k, v in files.items()},
        "data": inputs.dataset.get("kind"),
        **inputs.tone.to_dict(),
        "evaluation": result.evaluation["method"],
        "summary": result.metrics["summary"],
        "summary_global_threshold": result.metrics_global["summary"],
        "goals": sections.goals,
    }
    if sections.selective:
        summary["selective_prediction"] = {
            name: {k: v["operating_point"].get(k) for k in ("status", "coverage", "gap")}
            for name, v in sections.selective["variants"].items()
        }
    if sections.counterfactual:
        summary["counterfactual_photos"] = sections.counterfactual["photos"]
    return summary


def _fold_strata(y_true: np.ndarray, groups: list[str | None]) -> list[str]:
    """Per row: group x label pattern, so both folds get a like share of each."""
    y = np.asarray(y_true, dtype=np.float64)
    return [
        f"{g or ''}|" + ",".join("u" if np.isnan(v) else str(int(v)) for v in row)
        for g, row in zip(groups, y, strict=True)
    ]


def cross_fitting_info(keys, folds, fold_thresholds, seed: int, subjects) -> dict:
    """metrics.json's ``cross_fitting``: folds, their sizes and the thresholds each got."""
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
    from core.schema import CONDITIONS, GROUPS

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


def _synthetic_rows(frames: list) -> np.ndarray | None:
    """Per row of the frames: from a synthetic source; None unless every frame has `source`."""
    if not all("source" in df.columns for df in frames):
        return None
    source = np.concatenate([df["source"].astype(str).str.strip().to_numpy() for df in frames])
    if (source == "").any():  # a row of unknown source: fall back to the dataset's kind
        return None
    return np.char.find(np.char.lower(source.astype(str)), "synth") >= 0


def _stack_labels(*arrays: np.ndarray) -> np.ndarray:
    """Label arrays [N_i, C] stacked into one [sum N_i, C] float64 array."""
    return np.concatenate([np.asarray(a, dtype=np.float64) for a in arrays], axis=0)


def _bar_labels(tone: ToneBasis) -> dict:
    """The group-bar plot's legend and title when the groups are not labelled types."""
    if tone.source == LABELLED:
        return {}
    return {
        "group_label": tone.label,
        "title": f"Metrics per {tone.label} with 95% bootstrap CIs (n/a = insufficient evidence)",
    }


def build_parser() -> argparse.ArgumentParser:
    """The command-line flags of python -m fairness.report."""
    parser = argparse.ArgumentParser(
        prog="python -m fairness.report",
        description="Per-group fairness report with bootstrap CIs, thresholds and a model card. "
        "Exit codes: 0 ok, 2 bad input.",
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
    _add_audit_arguments(parser)
    return parser


def _add_audit_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of the selective-prediction and counterfactual sections."""
    parser.add_argument(
        "--counterfactual",
        type=Path,
        default=None,
        metavar="FILE.csv",
        help="counterfactual CSV (python -m client.counterfactual): adds the counterfactual "
        "robustness section",
    )
    parser.add_argument(
        "--selective-target",
        type=float,
        default=DEFAULT_TARGET,
        help="selective prediction: the accuracy gap the operating point must fall under "
        f"(default {DEFAULT_TARGET})",
    )
    parser.add_argument(
        "--selective-min-cases",
        type=int,
        default=DEFAULT_MIN_CASES,
        help="selective prediction: decisions a group needs to be compared "
        f"(default {DEFAULT_MIN_CASES})",
    )


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
        val, test = Run(first).predictions("val"), Run(first).predictions("test")
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
    args = build_parser().parse_args(argv)
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
            progress=not args.no_progress,
            datacards=args.datacard,
            evidence=parse_evidence(args.evidence),
            counterfactual=args.counterfactual,
            selective={"target": args.selective_target, "min_cases": args.selective_min_cases},
        )
    except (PredictionsError, ThresholdsError, DatacardError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        s = summary["summary"]
        print(f"wrote {summary['out']} ({summary['data']} data; groups: {summary['group_label']})")
        print(f"evaluation: {summary['evaluation']}")
        for key in ("macro_f1", "worst_group_f1", "gap_dark_vs_medium_f1"):
            print(f"{key}: {fmt_estimate(s[key])}")
        for name, point in summary.get("selective_prediction", {}).items():
            where = point["status"]
            if where == "ok":
                where = f"coverage {point['coverage']:.3f}, gap {fmt_estimate(point['gap'])}"
            print(f"selective ({name}): {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
