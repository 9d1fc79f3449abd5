"""Fairness evaluation: per-group metrics with bootstrap CIs, gaps, calibration, thresholds.

numpy, scikit-learn and fairlearn only (never JAX, MLflow or the trainer: checked by
tests/test_import_graph.py).
Modules: `batched` (metric cores over bootstrap weight matrices), `metrics` (pure metric
functions, `epoch_metrics`), `bootstrap`, `gaps`, `evaluate` (`evaluate_predictions`),
`calibration`, `thresholds` (fitting; the file format and applying are `core.thresholds`),
`coverage`, `severity` (acne-severity QWK / MAE with CIs and cutpoint fitting; the grade is
`core.severity`), `io` (predictions CSVs), `plots`, `render`, `model_card`
(the one model-card schema), `flatten` (the one flattener of a report's metrics),
`report` (the CLI) with `report_goals` (AUROC goals), `report_severity` (the severity section)
and `report_blocks` (the report's document layout).
"""
