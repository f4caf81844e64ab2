"""Evaluation: how good a model is, whether it may replace the champion, and what drifted.

Modules: ``metrics`` (per-task metrics by group, comparisons, plots), ``gate`` (the
promotion gate), ``psi`` (the drift statistic and thresholds), ``quality`` (data-quality
drift), ``drift`` (feature, score and quality drift between two windows),
``drift_report`` (its plots and HTML page), ``figures`` (inline PNGs for HTML pages).
"""

from journey_ml.evaluation.drift import (
    DriftReport,
    compare_scores,
    measure_drift,
    window_rows,
    window_summary,
)
from journey_ml.evaluation.drift_report import drift_figures, drift_report_html
from journey_ml.evaluation.figures import figure_to_data_uri
from journey_ml.evaluation.gate import beats, decide, primary_change, primary_metrics
from journey_ml.evaluation.quality import quality_drift, window_rejects

__all__ = [
    "DriftReport",
    "beats",
    "compare_scores",
    "decide",
    "drift_figures",
    "drift_report_html",
    "figure_to_data_uri",
    "measure_drift",
    "primary_change",
    "primary_metrics",
    "quality_drift",
    "window_rejects",
    "window_rows",
    "window_summary",
]
