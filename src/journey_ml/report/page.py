"""A self-contained HTML report of the touchpoint improvement ranking.

One file a product manager can open anywhere: inline CSS, every chart a base64 PNG
(matplotlib, Agg backend set inside the functions), no script and no external URL. It
shows the ranked fixes with intervals, an impact bar chart, SHAP summaries per
touchpoint, the stage funnel with drop-off between stages, and the comparators' rankings.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pandas as pd

from journey_ml.contract import JourneyMap
from journey_ml.evaluation.figures import figure_to_data_uri

if TYPE_CHECKING:
    from journey_ml.explain.shap import Bundle

    class ModelBundle(Bundle, Protocol):
        """What the report reads of a trained bundle: explain's view plus its version."""

        @property
        def version(self) -> str: ...

__all__ = ["impact_bar_chart", "report_for_bundle", "stage_funnel", "write_report"]

_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2rem auto;max-width:1100px;color:#1d2330;padding:0 1rem}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #dde;padding-bottom:.3rem}
.meta{color:#5a6275;font-size:.9rem}table{border-collapse:collapse;width:100%;font-size:.9rem;margin:.6rem 0}
th,td{padding:.35rem .6rem;border-bottom:1px solid #e6e8ef;text-align:right}th{background:#f3f5fa}
td.l,th.l{text-align:left}img{max-width:100%;border:1px solid #eef;margin:.4rem 0}.note{font-size:.85rem;color:#5a6275}
"""


def impact_bar_chart(improvements: pd.DataFrame) -> Any:
    """Horizontal bars of ``expected_impact`` with the bootstrap interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from journey_ml.explain import UNIT_WORDS

    words = UNIT_WORDS[improvements.attrs.get("unit", "revenue")]
    df = improvements.sort_values("expected_impact", kind="stable")
    fig, ax = plt.subplots(figsize=(8, 0.5 * len(df) + 1.2))
    y = np.arange(len(df))
    impact = df["expected_impact"].to_numpy(dtype=float)
    err = np.vstack([impact - df["ci_low"].to_numpy(dtype=float), df["ci_high"].to_numpy(dtype=float) - impact])
    ax.barh(y, impact, xerr=np.clip(err, 0, None), color="#3b6fd8", capsize=3)
    ax.set_yticks(y, df["touchpoint"].astype(str).tolist())
    ax.axvline(0, color="#333", lw=0.8)
    ax.set_xlabel(f"expected {words} gained by fixing it (95% bootstrap interval)")
    ax.set_title(f"Touchpoint fixes ranked by expected impact in {words}")
    fig.tight_layout()
    return fig


def stage_funnel(events: pd.DataFrame, journey_map: JourneyMap) -> pd.DataFrame:
    """Customers who reached each stage and the drop-off to the next one.

    Parameters
    ----------
    events : DataFrame
        Canonical events.
    journey_map : JourneyMap

    Returns
    -------
    DataFrame
        ``stage``, ``customers`` (reached at least this stage), ``share_of_start`` and
        ``drop_off_to_next`` (share of this stage's customers who never reached the next).
    """
    from journey_ml.contract.stages import customer_stages

    stages = list(journey_map.stage_names)
    values = customer_stages(events, journey_map)["stage_index"].to_numpy(dtype=np.int64)
    reached = np.array([(values >= i).sum() for i in range(len(stages))], dtype=np.int64)
    nxt = np.append(reached[1:], np.nan)
    start = max(int(reached[0]), 1) if len(reached) else 1
    return pd.DataFrame(
        {
            "stage": stages,
            "customers": reached,
            "share_of_start": reached / start,
            "drop_off_to_next": np.where(reached > 0, 1.0 - nxt / np.maximum(reached, 1), np.nan),
        }
    )


def funnel_chart(funnel: pd.DataFrame) -> Any:
    """Bar chart of the funnel with the drop-off between consecutive stages."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.6))
    x = np.arange(len(funnel))
    ax.bar(x, funnel["customers"], color="#6a9be8")
    ax.set_xticks(x, funnel["stage"].astype(str).tolist())
    for i, d in enumerate(funnel["drop_off_to_next"].to_numpy(dtype=float)[:-1]):
        if np.isfinite(d):
            ax.annotate(f"−{100 * d:.0f}%", (i + 0.5, funnel["customers"].iloc[i] * 0.9), ha="center", color="#b23")
    ax.set_ylabel("customers who reached the stage")
    ax.set_title("Stage funnel (red: drop-off to the next stage)")
    fig.tight_layout()
    return fig


def _fmt(v: Any) -> str:
    if isinstance(v, (float, np.floating)):
        return "–" if not np.isfinite(v) else f"{v:,.0f}" if abs(v) >= 100 else f"{v:,.2f}"
    return html.escape(str(v))


def _table(df: pd.DataFrame, left: tuple[str, ...] = ()) -> str:
    head = "".join(f'<th class="{"l" if c in left else ""}">{html.escape(str(c))}</th>' for c in df.columns)
    rows = []
    for rec in df.itertuples(index=False):
        cells = "".join(
            f'<td class="{"l" if c in left else ""}">{_fmt(v)}</td>' for c, v in zip(df.columns, rec, strict=True)
        )
        rows.append(f"<tr>{cells}</tr>")
    # Wide rankings scroll inside their box rather than running off the page.
    return (
        f"<div style='overflow-x:auto'><table><thead><tr>{head}</tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def build_report(
    improvements: pd.DataFrame,
    comparators: pd.DataFrame | None,
    funnel: pd.DataFrame | None,
    shap_summary_figures: Mapping[str, Any] | None,
    metadata: Mapping[str, Any] | None = None,
) -> str:
    """The report as one HTML string (no external resources).

    Parameters
    ----------
    improvements : DataFrame
        :func:`journey_ml.explain.rank_improvements` output.
    comparators : DataFrame, optional
        :func:`journey_ml.explain.attribution.friction_comparators` output.
    funnel : DataFrame, optional
        :func:`stage_funnel` output.
    shap_summary_figures : mapping of str to matplotlib Figure or data URI, optional
        E.g. :func:`journey_ml.explain.shap_summary_figures`.
    metadata : mapping, optional
        Shown in the header (model version, scoring time, customers...).

    Returns
    -------
    str
        A complete HTML document.
    """
    meta = dict(metadata or {})
    title = html.escape(str(meta.pop("title", "Touchpoint improvements ranked by expected revenue impact")))
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{title}</title><style>{_CSS}</style></head><body>"]
    parts.append(f"<h1>{title}</h1>")
    if meta:
        parts.append("<p class='meta'>" + " · ".join(f"{html.escape(str(k))}: {html.escape(str(v))}" for k, v in meta.items()) + "</p>")
    parts.append("<h2>Ranked fixes</h2>")
    if improvements.attrs.get("message"):
        parts.append(f"<p class='note'><strong>No ranking:</strong> {html.escape(str(improvements.attrs['message']))}</p>")
    unit = str(improvements.attrs.get("unit", "revenue"))
    parts.append(f"<p class='note'>Amounts are in {html.escape(unit)}.</p>")
    parts.append(
        "<p class='note'>Expected impact gained if the friction were fixed, over the ranked period: "
        "each friction occurrence valued once, on its own event-anchored row (or, for models trained "
        "on weekly snapshots only, the snapshot after it); interval: 95% bootstrap over customers. "
        "The counterfactual column re-predicts with the occurrence undone.</p>"
    )
    cols = [c for c in ("rank", "touchpoint", "touchpoint_group", "expected_impact", "ci_low", "ci_high",
                        "customers_affected", "mean_drop_off_points", "worst_stage", "counterfactual_impact") if c in improvements.columns]
    parts.append(_table(improvements[cols], left=("touchpoint", "touchpoint_group", "worst_stage")))
    if len(improvements):
        parts.append(f"<img alt='impact bar chart' src='{figure_to_data_uri(impact_bar_chart(improvements))}'>")
    if comparators is not None and len(comparators):
        parts.append("<h2>Comparators: how simpler attribution would rank them</h2>")
        cmp = comparators.copy()
        ours = improvements.set_index("touchpoint")["rank"] if "rank" in improvements else None
        if ours is not None:
            cmp.insert(1, "our_rank", cmp["touchpoint"].map(ours))
        parts.append(_table(cmp, left=("touchpoint",)))
        parts.append(
            "<p class='note'>Last touch: drop-offs credited to the last friction a dropped customer met. "
            "Markov: first-order removal effect over the journey chain with drop-off as the absorbing outcome.</p>"
        )
    if shap_summary_figures:
        parts.append("<h2>SHAP summary per touchpoint</h2>")
        for name, fig in shap_summary_figures.items():
            uri = fig if isinstance(fig, str) else figure_to_data_uri(fig)
            parts.append(f"<img alt='{html.escape(name)}' src='{uri}'>")
    if funnel is not None and len(funnel):
        parts.append("<h2>Stage funnel</h2>")
        parts.append(_table(funnel, left=("stage",)))
        parts.append(f"<img alt='funnel chart' src='{figure_to_data_uri(funnel_chart(funnel))}'>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(html_text: str, path: Any) -> Any:
    """Write the report to ``path`` (UTF-8) and return the path."""
    from pathlib import Path

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(html_text, encoding="utf-8")
    return p


def report_for_bundle(
    bundle: ModelBundle, events: pd.DataFrame, improvements: pd.DataFrame, at: Any = None
) -> str:
    """The full report for a ranking: comparators, funnel and SHAP plots computed here.

    Parameters
    ----------
    bundle : ModelBundle
        The models the ranking came from.
    events : DataFrame
        Canonical events (those after ``at`` are ignored).
    improvements : DataFrame
        :func:`journey_ml.explain.improvements_for_bundle` output.
    at : timestamp-like, optional
        Scoring time (default: the latest event).

    Returns
    -------
    str
        The HTML document (see :func:`build_report`).
    """
    from journey_ml.explain import friction_comparators, scoring_time, shap_summary_figures
    from journey_ml.features import features_at

    ts = scoring_time(events, at)
    seen = events.loc[events["timestamp"] <= ts]
    features = features_at(events, bundle.spec, ts)
    figures = shap_summary_figures(features, bundle) if len(features) else {}
    return build_report(
        improvements,
        friction_comparators(seen, bundle.journey_map, end=ts),
        stage_funnel(seen, bundle.journey_map),
        figures,
        {"model": bundle.version, "scored at": ts.isoformat(), "customers scored": len(features)},
    )
