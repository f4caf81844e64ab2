"""The journey map and the fix list, as HTML sections of the report page.

``id="journey-map"``: one card per stage, left to right (customers reaching it, the step
to the next stage, its top touchpoints, moments of truth and the frictions that bite
there with their amount at stake), then the Sankey of flows and exits.
``id="fixes"``: the ranked fixes in plain words, a sortable table with each interval and
counterfactual check, and the chart of amounts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from journey_ml.report.charts import PALETTE, Chart, plotly_div, static_svg
from journey_ml.report.journey import END_ACTIVE, END_EXIT, END_SILENT, JourneyData
from journey_ml.report.text import amount, amount_words, count, days, esc, human, missing, pct

__all__ = ["ReportInputs", "figure", "fix_sentence", "fixes_section", "journey_map_section", "table"]


@dataclass
class ReportInputs:
    """What the page is drawn from: the data's journey map and the model's outputs."""

    data: JourneyData
    ranking: pd.DataFrame
    comparators: pd.DataFrame | None = None
    scores: pd.DataFrame | None = None
    segment: str | None = None
    segments: pd.Series | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    currency: str = ""


def figure(chart: Chart, div_id: str, takeaway: str) -> str:
    """A chart (plotly on screen, SVG for print and without JS) with its one-line takeaway."""
    return (
        f"<figure class='chart'><div class='screen-only'>{plotly_div(chart, div_id)}</div>"
        f"<div class='print-only'>{static_svg(chart)}</div>"
        f"<figcaption class='takeaway'>{esc(takeaway)}</figcaption></figure>"
    )


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *, sortable: bool = False, cls: str = "") -> str:
    """A table; a cell is text, or (text, sort value[, css class]) to sort numbers as numbers."""
    attr = " data-sortable='1'" if sortable else ""
    head = "".join(f"<th scope='col'>{esc(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = []
        for cell in row:
            if isinstance(cell, tuple):
                text, key, klass = (*cell, "")[:3]
                if isinstance(key, (int, float, np.number)):
                    sort_key = "" if missing(key) else f" data-v='{float(key)!r}'"
                else:
                    sort_key = f" data-v='{esc(key)}'"
                cells.append(f"<td class='{esc(klass)}'{sort_key}>{text}</td>")
            else:
                cells.append(f"<td>{cell}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table class='{cls}'{attr}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _stage_card(inputs: ReportInputs, k: int) -> str:
    data = inputs.data
    s = data.stages.iloc[k]
    names = list(data.stages["stage"])
    parts = [f"<h3><span class='num'>{k + 1}</span> {esc(s['stage'])}</h3>",
             f"<div class='big'>{count(s['customers'])}</div>",
             f"<div class='sub'>customers reached it ({pct(s['share_of_start'])} of the first stage)</div>"]  # fmt: skip
    if k + 1 < len(names):
        parts.append(
            f"<div class='step'>→ {pct(s['to_next'])} go on to {esc(names[k + 1])}"
            f"{'' if missing(s['median_days_to_next']) else ', median ' + days(s['median_days_to_next'])}</div>"
        )
    parts.append(f"<div class='sub'>drop-off here: {pct(s['drop_off_rate'])} ({count(s['dropped_here'])} gone)</div>")
    tps = data.touchpoints[data.touchpoints["stage"] == s["stage"]]
    if len(tps):
        items = "".join(f"<li>{esc(t.touchpoint)} <span class='sub'>{count(t.events)}</span></li>" for t in tps.itertuples(index=False))
        parts.append(f"<h4>Top touchpoints</h4><ol class='tp'>{items}</ol>")
    mot = data.moments[data.moments["stage"] == s["stage"]]
    if len(mot):
        items = "".join(
            f"<li>{'▲' if m.difference > 0 else '▼'} {esc(m.touchpoint)}: {pct(m.rate_with)} {esc(m.outcome)} vs {pct(m.rate_without)}</li>"
            for m in mot.itertuples(index=False)
        )
        parts.append(f"<h4>Moments of truth</h4><ul class='mot'>{items}</ul>")
    fr = data.frictions[data.frictions["stage"] == s["stage"]]
    if len(fr):
        items = []
        for f in fr.itertuples(index=False):
            stake = f"{amount_words(f.amount, f.unit, inputs.currency)} at stake · " if not missing(f.amount) else ""
            items.append(f"<li>⚠ {esc(f.friction)}: {stake}{count(f.customers)} customers</li>")
        parts.append(f"<h4>Frictions</h4><ul class='fr'>{''.join(items)}</ul>")
    return f"<div class='stage'>{''.join(parts)}</div>"


def _sankey(data: JourneyData) -> tuple[Chart, str]:
    names = list(data.stages["stage"])
    ends = [END_EXIT, END_SILENT, END_ACTIVE]
    nodes = [*names, *ends]
    index = {n: i for i, n in enumerate(nodes)}
    links = [(index[f.source], index[f.target], float(f.customers)) for f in data.flows.itertuples(index=False)]
    colours = [PALETTE[0]] * len(names) + [PALETTE[3], PALETTE[1], PALETTE[2]]
    ended = data.flows[data.flows["target"].isin(ends)].pivot_table(index="source", columns="target", values="customers", aggfunc="sum").reindex(index=names, columns=ends).fillna(0)
    moved = data.stages["customers"].to_numpy() - data.stages["ended_here"].to_numpy()
    fallback = Chart("stack", "How journeys continue or end, by stage", names, {"went on": moved.tolist(), **{e: ended[e].tolist() for e in ends}}, x_title="customers")
    chart = Chart("sankey", "Flows between stages and exits (customers)", nodes, links=links, node_colors=colours, fallback=fallback, height=380)
    lost = ended[END_EXIT] + ended[END_SILENT]
    if lost.sum() > 0:
        worst = str(lost.idxmax())
        reached = int(data.stages.set_index("stage").loc[worst, "customers"])
        text = f"Most journeys that end are lost at {worst}: {count(lost.max())} customers ({pct(lost.max() / max(reached, 1))} of those who reached it) left or went silent there."
    else:
        text = "No journey has ended yet: every customer is still active."
    return chart, text


def journey_map_section(inputs: ReportInputs) -> str:
    """``id="journey-map"``: the stage cards left to right, then the Sankey."""
    data = inputs.data
    k = len(data.stages)
    columns = f"repeat({k}, minmax(0, 1fr))" if k <= 6 else "repeat(auto-fill, minmax(170px, 1fr))"
    cards = "".join(_stage_card(inputs, i) for i in range(k))
    chart, takeaway = _sankey(data)
    paths = data.paths
    span = (f"{pd.Timestamp(paths.ts.min(), tz='UTC'):%Y-%m-%d} to {paths.at:%Y-%m-%d}" if len(paths.ts) else "no events")
    notes = "".join(f"<li>{esc(n)}</li>" for n in data.notes)
    return (
        "<section id='journey-map'><h2>The journey map</h2>"
        f"<p class='lead'>{count(paths.n)} customers, {count(len(paths.events))} events, {span}. Stages run left to right; "
        "a customer counts at every stage up to the furthest one reached. Moments of truth are the touchpoints after which "
        "customers go on (▲) or stall (▼) most often compared with the rest of the stage — an association; the fix list "
        "below measures cause.</p>"
        + (f"<ul class='notes'>{notes}</ul>" if notes else "")
        + f"<div class='map' style='grid-template-columns:{columns}'>{cards}</div>"
        + figure(chart, "sankey", takeaway)
        + "</section>"
    )


def _fix_name(name: str) -> str:
    return name.replace("_", " ")


def fix_sentence(row: Any, unit: str, period: str, currency: str = "") -> str:
    """A fix in plain words: "Fix checkout error: ≈ $26,700 (95%: 24,400–29,600) over …, 499
    customers, mostly at decision"."""
    text = (
        f"Fix {_fix_name(row.touchpoint)}: ≈ {amount_words(row.expected_impact, unit, currency)} "
        f"(95%: {human(row.ci_low)}–{human(row.ci_high)}) {period}, "
        f"{count(row.customers_affected)} customers"
    )
    if row.worst_stage:
        text += f", mostly at {row.worst_stage}"
    return text


def _check(row: Any, unit: str, currency: str) -> tuple[str, str]:
    cf = float(row.counterfactual_impact)
    inside = float(row.ci_low) <= cf <= float(row.ci_high)
    word = "agrees: inside the interval" if inside else "differs: outside the interval"
    return f"{amount(cf, unit, currency)} ({word})", "ok" if inside else "warn"


def fixes_section(inputs: ReportInputs) -> str:
    """``id="fixes"``: the ranked fix list (sentences, sortable table, chart)."""
    ranking = inputs.ranking
    head = "<section id='fixes'><h2>Fixes, ranked by what they would bring back</h2>"
    if ranking is None or not len(ranking):
        message = (ranking.attrs.get("message") if ranking is not None else None) or "no ranking was computed"
        return head + f"<p class='note'><strong>No ranking:</strong> {esc(message)}.</p></section>"
    unit = str(ranking.attrs.get("unit") or ranking["unit"].iloc[0])
    cur = inputs.currency
    at = ranking.attrs.get("at")
    period = f"over the ranked period to {pd.Timestamp(at):%Y-%m-%d}" if at else "over the ranked period"
    sentences = "".join(f"<li>{esc(fix_sentence(r, unit, period, cur))}</li>" for r in ranking.itertuples(index=False))
    comp = inputs.comparators.set_index("touchpoint") if inputs.comparators is not None and len(inputs.comparators) else None
    rows = []
    # Partial fixes asked for (journey-ml improvements --scenario): one more column.
    partial = "scenario_fraction" in ranking.columns and bool((ranking["scenario_fraction"] > 0).any())
    for r in ranking.itertuples(index=False):
        check, klass = _check(r, unit, cur)
        row: list[Any] = [
            (str(r.rank), r.rank), (esc(_fix_name(r.touchpoint)), r.touchpoint),
            (amount(r.expected_impact, unit, cur), r.expected_impact),
            (f"{amount(r.ci_low, unit, cur)}–{amount(r.ci_high, unit, cur)}", r.ci_low),
            (count(r.customers_affected), r.customers_affected),
            (f"{esc(r.worst_stage)} ({pct(r.worst_stage_share)})" if r.worst_stage else "–", r.worst_stage),
            (esc(check), r.counterfactual_impact, klass),
        ]  # fmt: skip
        if partial:
            cut = f"−{100 * r.scenario_fraction:g}%: {amount(r.scenario_impact, unit, cur)} " if r.scenario_fraction > 0 else "–"
            span = f"({amount(r.scenario_ci_low, unit, cur)}–{amount(r.scenario_ci_high, unit, cur)})" if r.scenario_fraction > 0 else ""
            row.append((esc(cut + span), r.scenario_impact))
        if comp is not None:
            c = comp.loc[r.touchpoint] if r.touchpoint in comp.index else None
            for col in ("last_touch_rank", "markov_rank"):
                v = c[col] if c is not None and col in c.index else float("nan")
                row.append((count(v), v))
        rows.append(row)
    label = unit.replace("_", "-")
    headers = ["#", "Fix", f"Amount ({label})", "95% interval", "Customers", "Mostly at", "Counterfactual check"]
    if partial:
        headers.append("Partial fix (95%)")
    if comp is not None:
        headers += ["Last-touch rank", "Markov rank"]
    df = ranking
    chart = Chart(
        "hbar", f"Expected gain from each fix ({label}), with its 95% interval", [_fix_name(t) for t in df["touchpoint"]],
        {"expected gain": df["expected_impact"].astype(float).tolist()}, x_title=label,
        interval=(df["ci_low"].astype(float).tolist(), df["ci_high"].astype(float).tolist()),
        marker=("counterfactual check", df["counterfactual_impact"].astype(float).tolist()), height=140 + 46 * len(df),
    )  # fmt: skip
    return (
        head
        + f"<ol class='fixes'>{sentences}</ol>"
        + "<p class='note'>Amount: what fixing the friction would bring back if every occurrence were undone, each occurrence "
        "valued once by the models (SHAP); interval: 95% bootstrap over customers. The counterfactual check re-predicts each "
        "occurrence with the friction undone; inside the interval means the two methods agree. Click a column to sort.</p>"
        + table(headers, rows, sortable=True, cls="fixes-table")
        + figure(chart, "fix-chart", _fixes_takeaway(df, unit, cur))
        + "</section>"
    )


def _fixes_takeaway(df: pd.DataFrame, unit: str, currency: str) -> str:
    first = df.iloc[0]
    text = f"{_fix_name(first['touchpoint']).capitalize()} comes first at ≈ {amount_words(first['expected_impact'], unit, currency)}"
    if len(df) > 1:
        second = df.iloc[1]
        overlap = float(second["ci_high"]) >= float(first["ci_low"])
        ratio = float(first["expected_impact"]) / float(second["expected_impact"]) if float(second["expected_impact"]) > 0 else float("inf")
        text += (
            f"; its interval overlaps that of {_fix_name(second['touchpoint'])}, so their order is uncertain."
            if overlap
            else f", {human(ratio, 2)}× {_fix_name(second['touchpoint'])}, the next fix." if np.isfinite(ratio) else "."
        )
    return text if text.endswith(".") else text + "."
