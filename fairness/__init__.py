"""Fairness evaluation: per-group metrics with bootstrap CIs, gaps, calibration, thresholds.

numpy, scikit-learn and fairlearn only (never JAX, MLflow or the trainer: checked by
tests/test_import_graph.py), so Triton's python models can import it.
Modules: `batched` (metric cores over bootstrap weight matrices), `metrics` (pure metric
functions, `epoch_metrics`), `bootstrap`, `gaps`, `evaluate` (`evaluate_predictions`),
`calibration`, `thresholds` (numpy-only: fit/save/load/apply), `coverage`, `severity`
(acne-severity QWK / MAE with CIs), `io` (predictions CSVs), `plots`, `render`, `model_card`
(the one model-card schema), `flatten` (the one flattener of a report's metrics),
`report` (the CLI) with `report_goals` (AUROC goals), `report_severity` (the severity section)
and `report_blocks` (the report's document layout).
"""
