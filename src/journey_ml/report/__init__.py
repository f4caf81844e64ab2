"""The journey-map report: the self-contained interactive page product teams open first.

:mod:`.journey` computes the journey map from the data, :mod:`.sections` and :mod:`.kpis`
draw its sections, :mod:`.charts` the charts (plotly, with a PNG for print),
:mod:`.history` reads the trend across retrains from the registry and :mod:`.page`
assembles the page (:func:`journey_report`); :mod:`.served` finds it for ``GET /report``.
"""

from journey_ml.report.journey import JourneyData, journey_data
from journey_ml.report.page import (
    SECTIONS,
    Report,
    build_page,
    journey_report,
    report_for_bundle,
    write_report,
)

__all__ = ["SECTIONS", "JourneyData", "Report", "build_page", "journey_data", "journey_report", "report_for_bundle", "write_report"]
