"""The self-contained HTML report a product team opens: ranked fixes with intervals, the
impact chart, SHAP summaries per touchpoint and the stage funnel (:mod:`.page`)."""

from journey_ml.report.page import (
    build_report,
    impact_bar_chart,
    report_for_bundle,
    stage_funnel,
    write_report,
)

__all__ = ["build_report", "impact_bar_chart", "report_for_bundle", "stage_funnel", "write_report"]
