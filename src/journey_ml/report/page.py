"""The journey-map report: one self-contained, interactive HTML page.

The page a product team opens first: the journey map drawn from the data, the ranked
fixes, stage KPIs, segments and trends (sections ``journey-map``, ``fixes``, ``stages``,
``segments``, ``trend``). plotly's JS is embedded once in the page, so it works offline
and without any external URL; every chart also carries a PNG that print and readers
without JavaScript see. The layout fits 1280 px without sideways scrolling.

:func:`journey_report` computes everything from a model bundle and events (the CLI's
``journey-ml report``, the training pipeline and ``GET /report`` serve the same page).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pandas as pd

from journey_ml.report.journey import customer_segments, journey_data
from journey_ml.report.kpis import segments_section, stages_section, trend_section
from journey_ml.report.sections import ReportInputs, fixes_section, journey_map_section
from journey_ml.report.text import count, esc

if TYPE_CHECKING:
    from journey_ml.explain.shap import Bundle

    class ModelBundle(Bundle, Protocol):
        """What the report reads of a trained bundle: explain's view plus its version."""

        @property
        def version(self) -> str: ...

__all__ = ["SECTIONS", "Report", "build_page", "journey_report", "report_for_bundle", "write_report"]

#: The page's sections, in order: (id, navigation label).
SECTIONS: tuple[tuple[str, str], ...] = (
    ("journey-map", "Journey map"), ("fixes", "Fixes"), ("stages", "Stage KPIs"), ("segments", "Segments"), ("trend", "Trend"),
)  # fmt: skip

_CSS = """
*{box-sizing:border-box}
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:0 auto;max-width:1200px;color:#1d2330;padding:0 16px 40px;line-height:1.4}
header{border-bottom:2px solid #0072B2;padding:12px 0 6px}h1{font-size:1.6rem;margin:.2rem 0}
nav{position:sticky;top:0;background:#fff;z-index:5;padding:6px 0;border-bottom:1px solid #dde}
nav a{margin-right:16px;color:#0072B2;text-decoration:none;font-weight:600}
h2{font-size:1.25rem;margin-top:2rem;border-bottom:1px solid #dde;padding-bottom:.3rem}section{scroll-margin-top:44px}
h3{font-size:1rem;margin:.1rem 0 .3rem}h4{font-size:.8rem;margin:.6rem 0 .2rem;color:#5a6275;text-transform:uppercase;letter-spacing:.03em}
.meta,.note,.sub{color:#5a6275;font-size:.88rem}.lead{font-size:.95rem}
.map{display:grid;gap:10px;margin:12px 0}
.stage{border:1px solid #d5d9e4;border-top:4px solid #0072B2;border-radius:6px;padding:8px 10px;min-width:0;overflow-wrap:anywhere;font-size:.86rem}
.stage .num{display:inline-block;background:#0072B2;color:#fff;border-radius:50%;width:1.4em;height:1.4em;text-align:center;font-size:.8rem;line-height:1.4em}
.big{font-size:1.5rem;font-weight:700}.step{margin:.3rem 0;font-weight:600;color:#0072B2}
.stage ol,.stage ul{margin:0;padding-left:1.1rem}.fr li{color:#a33c00}
table{border-collapse:collapse;width:100%;font-size:.86rem;margin:.6rem 0;table-layout:auto}
th,td{padding:.35rem .5rem;border-bottom:1px solid #e6e8ef;text-align:right;overflow-wrap:break-word}
th{background:#f3f5fa;vertical-align:bottom}td:first-child,th:first-child,td:nth-child(2),th:nth-child(2){text-align:left}
table[data-sortable] th{cursor:pointer}table[data-sortable] th[data-dir=asc]::after{content:" ▲"}table[data-sortable] th[data-dir=desc]::after{content:" ▼"}
td.warn{color:#a33c00;font-weight:600}td.hi-up{background:#d9ecf7;font-weight:700}td.hi-down{background:#fbe3d6;font-weight:700}
figure.chart{margin:14px 0;width:100%}figcaption.takeaway{font-size:.92rem;font-weight:600;margin-top:2px}
.print-only{display:none;max-width:100%}
ol.fixes li{margin:.25rem 0}ul.notes{background:#fff8e5;border-left:4px solid #E69F00;padding:6px 6px 6px 28px;font-size:.9rem}
code{background:#f3f5fa;padding:0 3px}
@media print{nav{display:none}.screen-only{display:none!important}.print-only{display:block}section{break-inside:auto}figure{break-inside:avoid}}
"""

# Click a header to sort a table by that column (numbers by their data-v value).
_SORT_JS = """
document.querySelectorAll('table[data-sortable] th').forEach(function (th) {
  th.tabIndex = 0; th.title = 'Sort by this column';
  var sort = function () {
    var table = th.closest('table'), body = table.tBodies[0], i = th.cellIndex;
    var asc = th.dataset.dir !== 'asc', rows = Array.prototype.slice.call(body.rows);
    table.querySelectorAll('th').forEach(function (h) { delete h.dataset.dir; });
    th.dataset.dir = asc ? 'asc' : 'desc';
    rows.sort(function (a, b) {
      var x = a.cells[i].dataset.v, y = b.cells[i].dataset.v, nx = parseFloat(x), ny = parseFloat(y);
      var c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : (x || a.cells[i].textContent).localeCompare(y || b.cells[i].textContent);
      return asc ? c : -c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  };
  th.addEventListener('click', sort);
  th.addEventListener('keydown', function (e) { if (e.key === 'Enter') { sort(); } });
});
"""


@dataclass
class Report:
    """The page and the journey summary that the trend across retrains follows."""

    html: str
    summary: dict[str, Any]


@lru_cache(maxsize=1)
def _plotly_js() -> str:
    """plotly.js itself (read once per process: several megabytes)."""
    from plotly.offline import get_plotlyjs

    return str(get_plotlyjs())


def build_page(inputs: ReportInputs, title: str = "Customer journey report") -> str:
    """The complete HTML document for ``inputs`` (plotly's JS inline: no external resource)."""
    meta = " · ".join(f"{esc(k)}: {esc(v)}" for k, v in inputs.meta.items())
    nav = "".join(f"<a href='#{sid}'>{esc(label)}</a>" for sid, label in SECTIONS)
    body = (
        journey_map_section(inputs) + fixes_section(inputs) + stages_section(inputs) + segments_section(inputs) + trend_section(inputs)
    )
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{esc(title)}</title><style>{_CSS}</style>"
        "<noscript><style>.print-only{display:block}.screen-only{display:none}</style></noscript>"
        f"<script>{_plotly_js()}</script></head><body>"
        f"<header><h1>{esc(title)}</h1><p class='meta'>{meta}</p></header><nav>{nav}</nav>"
        f"<main>{body}</main><script>{_SORT_JS}</script></body></html>"
    )


def _scores(bundle: ModelBundle, events: pd.DataFrame, ts: pd.Timestamp) -> pd.DataFrame | None:
    from journey_ml.features import features_at
    from journey_ml.registry.scoring import score_features

    features = features_at(events, bundle.spec, ts)
    return score_features(features, bundle) if len(features) else None


def _default_segment(events: pd.DataFrame) -> str | None:
    """``channel`` when the events have two or more channels, else no segments."""
    if "channel" in events.columns and events["channel"].nunique(dropna=True) >= 2:
        return "channel"
    return None


def journey_report(
    bundle: ModelBundle,
    events: pd.DataFrame,
    ranking: pd.DataFrame | None = None,
    *,
    at: Any = None,
    segment: str | None = None,
    history: list[dict[str, Any]] | None = None,
    n_bootstrap: int | None = None,
    seed: int = 0,
    currency: str = "",
) -> Report:
    """The report page for ``bundle`` on ``events`` up to ``at`` (default: the latest event).

    Parameters
    ----------
    bundle : ModelBundle
    events : DataFrame
        Canonical events (those after ``at`` are ignored).
    ranking : DataFrame, optional
        :func:`journey_ml.explain.improvements_for_bundle` output; computed when absent.
    segment : str, optional
        Event column whose first value per customer defines the segments (default:
        ``channel`` when the events have several).
    history : list of dict, optional
        :func:`journey_ml.report.history.retrain_history` entries; this report's own
        figures are appended as the last point.
    n_bootstrap, seed : int
        For the ranking when it is computed here.
    currency : str
        Symbol put before money amounts ("$"); none by default.
    """
    from journey_ml.explain import friction_comparators, improvements_for_bundle, scoring_time

    jm = bundle.journey_map
    ts = scoring_time(events, at)
    seen = events.loc[events["timestamp"] <= ts]
    if ranking is None:
        extra = {} if n_bootstrap is None else {"n_bootstrap": n_bootstrap}
        ranking = improvements_for_bundle(bundle, seen, at=ts, seed=seed, **extra)
    data = journey_data(seen, jm, at=ts, ranking=ranking)
    column = segment or _default_segment(seen)
    segments = customer_segments(data.paths, column) if column else None
    summary = data.summary()
    inputs = ReportInputs(
        data=data,
        ranking=ranking,
        comparators=friction_comparators(seen, jm, end=ts) if jm.friction and len(seen) else None,
        scores=_scores(bundle, seen, ts),
        segment=column,
        segments=segments,
        history=[*(history or []), {"label": "this report", "summary": summary}],
        meta={"model": bundle.version, "data up to": f"{ts:%Y-%m-%d %H:%M} UTC", "customers": count(data.paths.n), "value unit": data.paths.value_unit},
        currency=currency,
    )
    return Report(build_page(inputs, f"{jm.name}: the customer journey"), summary)


def report_for_bundle(bundle: ModelBundle, events: pd.DataFrame, improvements: pd.DataFrame, at: Any = None, **options: Any) -> str:
    """The report page's HTML for a ranking already computed (see :func:`journey_report`)."""
    return journey_report(bundle, events, improvements, at=at, **options).html


def write_report(html_text: str, path: str | Path) -> Path:
    """Write the page to ``path`` (UTF-8, parent directories created) and return the path."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(html_text, encoding="utf-8")
    return p
