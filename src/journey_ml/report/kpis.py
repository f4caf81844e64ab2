"""Stage KPIs, segments and trends, as HTML sections of the report page.

``id="stages"``: per stage customers, conversion to the next stage, drop-off rate, time
in stage, revenue and the distribution of predicted drop-off risk.
``id="segments"``: the same per segment of a column, with the differences that matter
highlighted (a two-proportion z-test of |z| >= 3 and at least 3 percentage points).
``id="trend"``: stage conversion and friction amounts per period of the data, and across
retrains from the registry's history.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import numpy as np
import pandas as pd

from journey_ml.report.charts import Chart
from journey_ml.report.journey import stage_table
from journey_ml.report.sections import ReportInputs, figure, table
from journey_ml.report.text import amount, count, days, esc, human, pct, points

__all__ = ["MIN_POINTS", "MIN_Z", "risk_by_stage", "segment_differences", "segments_section", "stages_section", "trend_section"]

#: A segment's rate differs "in a way that matters" when both hold.
MIN_Z = 3.0
MIN_POINTS = 0.03

_VALUE_TITLE = {"revenue": "Revenue", "conversions": "Conversions"}


def risk_by_stage(scores: pd.DataFrame | None, stages: list[str]) -> pd.DataFrame:
    """Quartiles, 5th/95th percentiles and the share at ≥ 50% of predicted drop-off risk per stage."""
    cols = ["stage", "scored", "q1", "median", "q3", "lowerfence", "upperfence", "high"]
    if scores is None or not len(scores):
        return pd.DataFrame(columns=cols)
    rows = []
    for stage in stages:
        r = scores.loc[scores["current_stage"] == stage, "drop_off_risk"].to_numpy(dtype=float)
        if len(r):
            q = np.percentile(r, [5, 25, 50, 75, 95])
            rows.append([stage, len(r), q[1], q[2], q[3], q[0], q[4], float((r >= 0.5).mean())])
    return pd.DataFrame(rows, columns=cols)


def stages_section(inputs: ReportInputs) -> str:
    """``id="stages"``: the KPI table, conversion and drop-off per stage, and predicted risk."""
    data = inputs.data
    st = data.stages
    names = list(st["stage"])
    unit = data.paths.value_unit
    risk = risk_by_stage(inputs.scores, names).set_index("stage")
    headers = ["Stage", "Customers", "Conversion to next", "Drop-off rate", "Time in stage (median)", "Time to next (median)"]
    if unit in _VALUE_TITLE:
        headers.append(_VALUE_TITLE[unit])
    headers.append("Predicted drop-off risk (median · ≥ 50%)")
    rows = []
    for r in st.itertuples(index=False):
        row: list[Any] = [esc(r.stage), (count(r.customers), r.customers), (pct(r.to_next), r.to_next), (pct(r.drop_off_rate), r.drop_off_rate),
                          (days(r.median_days_in_stage), r.median_days_in_stage), (days(r.median_days_to_next), r.median_days_to_next)]  # fmt: skip
        if unit in _VALUE_TITLE:
            row.append((amount(r.value, unit, inputs.currency if unit == "revenue" else ""), r.value))
        if r.stage in risk.index:
            q = risk.loc[r.stage]
            row.append((f"{pct(q['median'])} · {pct(q['high'])} of {count(q['scored'])}", q["median"]))
        else:
            row.append(("–", float("nan")))
        rows.append(row)
    charts = []
    if len(names) > 1:
        conv = Chart("bar", "Conversion to the next stage and drop-off rate, by stage", names,
                     {"conversion to next": st["to_next"].tolist(), "drop-off rate": st["drop_off_rate"].tolist()}, percent=True)  # fmt: skip
        steps = st["to_next"].to_numpy(dtype=float)[:-1]
        if np.isfinite(steps).any():
            i = int(np.nanargmin(steps))
            text = f"The weakest step is {names[i]} → {names[i + 1]}: {pct(steps[i])} of customers go on."
        else:
            text = "No customer in the data yet: there is no stage conversion to show."
    else:
        conv = Chart("bar", "Drop-off rate", names, {"drop-off rate": st["drop_off_rate"].tolist()}, percent=True)
        text = f"{pct(st['drop_off_rate'].iloc[0])} of customers have dropped off (one stage: no conversion between stages)."
    charts.append(figure(conv, "stage-kpis", text))
    if len(risk):
        box = Chart("box", "Predicted drop-off risk of active customers, by current stage (box: quartiles; whiskers: 5th–95th percentile)",
                    list(risk.index), y_title="drop-off risk", percent=True, boxes=risk.reset_index().to_dict("records"))  # fmt: skip
        top = risk["median"].idxmax()
        charts.append(figure(box, "risk", f"Customers now at {top} carry the highest predicted risk: median {pct(risk.loc[top, 'median'])} within {human(data.paths.journey_map.horizon_days)} days."))
    else:
        charts.append("<p class='note'>No active customer to score at the report time: the risk distribution is not shown.</p>")
    return (
        "<section id='stages'><h2>Stage KPIs</h2>"
        "<p class='note'>Conversion to next: share of the stage's customers who reached a later stage. Drop-off rate: share whose "
        "journey ended at this stage and who are gone (exit event, or silent longer than the inactivity limit). Risk: the "
        "drop-off model's prediction for customers active now.</p>"
        + table(headers, rows, sortable=True) + "".join(charts) + "</section>"
    )


def _z(x1: float, n1: float, x2: float, n2: float) -> float:
    if n1 < 1 or n2 < 1:
        return 0.0
    p = (x1 + x2) / (n1 + n2)
    se = np.sqrt(p * (1 - p) * (1 / n1 + 1 / n2))
    return float((x1 / n1 - x2 / n2) / se) if se > 0 else 0.0


def segment_differences(inputs: ReportInputs) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per segment the KPIs (table) and the (segment, measure) differences that matter."""
    paths = inputs.data.paths
    seg = inputs.segments
    assert seg is not None
    names = list(inputs.data.stages["stage"])
    values = seg.to_numpy(dtype=object)
    order = seg.value_counts().index.tolist()
    rows, diffs = [], []
    for v in order:
        mask = values == v
        st = stage_table(paths, mask)
        gone = paths.gone[mask]
        row: dict[str, Any] = {"segment": v, "customers": int(mask.sum()), "drop_off": float(gone.mean()) if mask.any() else float("nan")}
        for k in range(len(names) - 1):
            row[f"{names[k]} → {names[k + 1]}"] = st["to_next"].iloc[k]
            here = paths.reached(k)
            hit = paths.reached(k + 1)
            n1, x1 = (here & mask).sum(), (hit & mask).sum()
            n2, x2 = (here & ~mask).sum(), (hit & ~mask).sum()
            diffs.append(_diff(v, f"{names[k]} → {names[k + 1]}", x1, n1, x2, n2, "go on"))
        diffs.append(_diff(v, "drop-off", gone.sum(), mask.sum(), paths.gone[~mask].sum(), (~mask).sum(), "have dropped off"))
        row["value_per_customer"] = float(st["value"].sum() / max(mask.sum(), 1)) if paths.value_unit != "none" else float("nan")
        row["reach"] = st["customers"].to_numpy() / max(int(mask.sum()), 1)  # share of the segment reaching each stage
        rows.append(row)
    table_df = pd.DataFrame(rows)
    diff_df = pd.DataFrame(diffs)
    matters = (diff_df["z"].abs() >= MIN_Z) & (diff_df["difference"].abs() >= MIN_POINTS)
    return table_df, diff_df.loc[matters].sort_values("z", key=np.abs, ascending=False).reset_index(drop=True)


def _diff(segment: str, measure: str, x1: float, n1: float, x2: float, n2: float, verb: str) -> dict[str, Any]:
    r1 = x1 / n1 if n1 else float("nan")
    r2 = x2 / n2 if n2 else float("nan")
    return {"segment": segment, "measure": measure, "rate": r1, "rest": r2, "difference": r1 - r2 if n1 and n2 else 0.0,
            "customers": int(n1), "z": _z(x1, n1, x2, n2), "verb": verb}  # fmt: skip


def segments_section(inputs: ReportInputs) -> str:
    """``id="segments"``: KPIs per segment of the chosen column, differences highlighted."""
    head = "<section id='segments'><h2>Segments</h2>"
    if inputs.segments is None or inputs.segment is None:
        return head + "<p class='note'>No segment column: pass <code>--segment COLUMN</code> (e.g. channel, platform, persona).</p></section>"
    table_df, diffs = segment_differences(inputs)
    steps = [c for c in table_df.columns if "→" in c]
    hot = {(d.segment, d.measure): d for d in diffs.itertuples(index=False)}
    unit = inputs.data.paths.value_unit
    headers = ["Segment", "Customers", *steps, "Dropped off"] + ([f"{_VALUE_TITLE[unit]} per customer"] if unit in _VALUE_TITLE else [])
    rows = []
    for r in table_df.to_dict("records"):
        row: list[Any] = [esc(r["segment"]), (count(r["customers"]), r["customers"])]
        for measure, key in [*((s, s) for s in steps), ("drop-off", "drop_off")]:
            d = hot.get((r["segment"], measure))
            mark = "" if d is None else (" ▲" if d.difference > 0 else " ▼")
            better = d is not None and (d.difference > 0) == (measure != "drop-off")  # more drop-off is worse
            row.append((pct(r[key]) + mark, r[key], "" if d is None else ("hi-up" if better else "hi-down")))
        if unit in _VALUE_TITLE:
            row.append((amount(r["value_per_customer"], unit, inputs.currency if unit == "revenue" else ""), r["value_per_customer"]))
        rows.append(row)
    bullets = "".join(
        f"<li><strong>{esc(d.segment)}</strong>: {esc(d.measure)} — {pct(d.rate)} {esc(d.verb)} vs {pct(d.rest)} in the other segments "
        f"({points(d.difference)}, {count(d.customers)} customers)</li>"
        for d in diffs.head(8).itertuples(index=False)
    )
    segs = table_df["segment"].tolist()
    if steps:
        chart = Chart("bar", f"Conversion to the next stage by {inputs.segment}", steps,
                      {s: table_df.loc[table_df["segment"] == s, steps].iloc[0].tolist() for s in segs}, percent=True)  # fmt: skip
    else:
        chart = Chart("bar", f"Dropped off by {inputs.segment}", ["drop-off"], {s: [v] for s, v in zip(segs, table_df["drop_off"], strict=True)}, percent=True)
    if len(diffs):
        d = diffs.iloc[0]
        takeaway = f"The largest difference: {d['segment']} at {d['measure']}, {pct(d['rate'])} vs {pct(d['rest'])} elsewhere ({points(d['difference'])})."
    else:
        takeaway = f"No segment of {inputs.segment} differs from the others by ≥ {MIN_POINTS:.0%} points with |z| ≥ {MIN_Z:g}."
    return (
        head
        + f"<p class='note'>Each customer belongs to the first value of <code>{esc(inputs.segment)}</code> in their events; the largest "
        f"segments are shown, the rest is 'other'. Highlighted (▲ higher, ▼ lower; blue better, orange worse): the segment differs from all other customers by at "
        f"least {MIN_POINTS:.0%} points with a two-proportion |z| ≥ {MIN_Z:g}.</p>"
        + table(headers, rows, sortable=True)
        + (f"<ul class='diffs'>{bullets}</ul>" if bullets else "")
        + figure(chart, "segment-chart", takeaway)
        + _segment_reach(inputs, table_df)
        + "</section>"
    )


def _segment_reach(inputs: ReportInputs, table_df: pd.DataFrame) -> str:
    """The map per segment: the share of each segment's customers reaching every stage."""
    names = list(inputs.data.stages["stage"])
    if len(names) < 2:
        return ""
    reach = {str(r["segment"]): list(r["reach"]) for r in table_df.to_dict("records")}
    chart = Chart("lines", f"Share of each {inputs.segment} segment's customers who reached each stage", names, reach, percent=True)
    last = names[-1] if any(v[-1] > 0 for v in reach.values()) else names[-2]
    k = names.index(last)
    best = max(reach, key=lambda seg: reach[seg][k])
    worst = min(reach, key=lambda seg: reach[seg][k])
    return figure(chart, "segment-reach", f"{best} reaches {last} most often ({pct(reach[best][k])}), {worst} least ({pct(reach[worst][k])}).")


def _history_charts(inputs: ReportInputs) -> str:
    entries = [e for e in inputs.history if e.get("summary")]
    if len(entries) < 2:
        return ("<p class='note'>Across retrains: " + (f"{len(entries)} model version with a journey summary in the registry" if entries else "no registry history")
                + " — the trend across retrains starts once two versions have been trained with this report.</p>")  # fmt: skip
    labels = [str(e.get("label") or f"v{e['version']}") for e in entries]
    names = list(inputs.data.stages["stage"])
    steps = {f"{a} → {b}": a for a, b in pairwise(names)}
    series = {s: [e["summary"]["stages"].get(a, {}).get("to_next") for e in entries] for s, a in steps.items()}
    series = {s: [np.nan if v is None else v for v in vals] for s, vals in series.items()}
    out = ""
    if series:
        first, last = entries[0]["summary"]["stages"], entries[-1]["summary"]["stages"]
        moves = {s: (last.get(a, {}).get("to_next") or 0) - (first.get(a, {}).get("to_next") or 0) for s, a in steps.items()}
        s_max = max(moves, key=lambda s: abs(moves[s]))
        chart = Chart("lines", "Stage conversion across retrains (model versions)", labels, series, percent=True)
        out += figure(chart, "trend-retrain-stages", f"Across {len(entries)} versions, {s_max} moved most: {points(moves[s_max])}.")
    frictions = sorted({f for e in entries for f in e["summary"].get("frictions", {})})
    amounts = {f: [e["summary"]["frictions"].get(f, {}).get("amount") for e in entries] for f in frictions}
    amounts = {f: [np.nan if v is None else v for v in vals] for f, vals in amounts.items() if any(v is not None for v in vals)}
    if amounts:
        unit = next((e["summary"]["frictions"][f].get("unit") for e in entries for f in amounts if f in e["summary"]["frictions"]), "")
        top = max(amounts, key=lambda f: np.nan_to_num(amounts[f][-1]))
        chart = Chart("lines", f"Each friction's amount at stake across retrains ({unit})", labels, amounts)
        out += figure(chart, "trend-retrain-frictions", f"In the latest version {top} has the most at stake: ≈ {human(amounts[top][-1])} {unit}.")
    return out


def trend_section(inputs: ReportInputs) -> str:
    """``id="trend"``: stage conversion and friction amounts over time and across retrains."""
    data = inputs.data
    parts = ["<section id='trend'><h2>Trend</h2>"]
    st = data.stage_trend
    horizon = human(data.paths.journey_map.horizon_days)
    if len(st):
        wide = st.pivot_table(index="period", columns="step", values="rate", sort=True)
        steps = [s for s in dict.fromkeys(st["step"]) if s in wide.columns]
        chart = Chart("lines", f"Share going on to the next stage within {horizon} days, by {data.period} reached", wide.index.tolist(),
                      {s: wide[s].tolist() for s in steps}, percent=True)  # fmt: skip
        enough = [s for s in steps if wide[s].notna().sum() >= 4] or [s for s in steps if wide[s].notna().any()]
        change = {s: wide[s].dropna().iloc[-1] - wide[s].dropna().mean() for s in enough}
        s_max = max(change, key=lambda s: abs(change[s]))
        text = f"{s_max}: {pct(wide[s_max].dropna().iloc[-1])} in the latest complete {data.period} against {pct(wide[s_max].mean())} on average ({points(change[s_max])})."
        parts.append(figure(chart, "trend-stages", text))
    else:
        parts.append(f"<p class='note'>No stage-to-stage step with a complete {horizon}-day horizon in the data: stage conversion over time is not shown.</p>")
    ft = data.friction_trend
    if len(ft):
        has_amount = ft["amount"].notna().any()
        col = "amount" if has_amount else "customers"
        wide = ft.pivot_table(index="period", columns="friction", values=col, sort=True, aggfunc="sum").fillna(0.0)
        unit = inputs.ranking.attrs.get("unit", "") if inputs.ranking is not None else ""
        title = (f"Each friction's amount at stake per {data.period} ({unit}; customers affected × the ranking's amount per customer)"
                 if has_amount else f"Customers meeting each friction per {data.period}")  # fmt: skip
        chart = Chart("lines", title, wide.index.tolist(), {c: wide[c].tolist() for c in wide.columns})
        top = wide.iloc[-1].idxmax()
        parts.append(figure(chart, "trend-frictions", f"In the latest {data.period}, {top} weighs most: {human(wide[top].iloc[-1])} {'at stake' if has_amount else 'customers'}."))
    else:
        parts.append("<p class='note'>No friction occurs in the data: there is no friction trend.</p>")
    parts.append(_history_charts(inputs))
    parts.append("</section>")
    return "".join(parts)
