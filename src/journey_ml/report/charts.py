"""Charts of the report: one neutral description, drawn twice.

A :class:`Chart` says what to draw (bars, horizontal bars with intervals, lines, box
plots from quartiles, a Sankey, stacked bars); :func:`plotly_div` draws it interactively
(plotly, its JS embedded once per page by :mod:`.page`) and :func:`static_svg` as an
inline SVG for print and for readers without JavaScript (plain markup: no library, and
vector output that prints sharp). One description keeps the two in step.

Colours are the Okabe–Ito palette, which stays distinguishable with every common form of
colour blindness; series are also told apart by position and labels, never colour alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from journey_ml.report.text import esc, human

__all__ = ["PALETTE", "Chart", "plotly_div", "static_svg"]

#: Okabe & Ito (2008): blue, orange, bluish green, vermillion, sky blue, reddish purple, yellow, black.
PALETTE: tuple[str, ...] = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#56B4E9", "#CC79A7", "#F0E442", "#000000")
_FONT = "-apple-system, Segoe UI, Helvetica, Arial, sans-serif"

Kind = Literal["bar", "hbar", "lines", "box", "sankey", "stack"]


@dataclass
class Chart:
    """What to draw, independent of the drawing library.

    ``categories`` are the x values (bars, lines, box) or the y labels (``hbar``,
    ``stack``); ``series`` maps a series name to one value per category. ``interval``
    holds (low, high) per category for ``hbar``; ``marker`` one extra point per
    category (e.g. the counterfactual check); ``boxes`` per category the keys q1,
    median, q3, lowerfence and upperfence; ``links`` the Sankey's (source, target,
    customers) with ``categories`` as its node labels.
    """

    kind: Kind
    title: str
    categories: Sequence[str]
    series: dict[str, Sequence[float]] = field(default_factory=dict)
    x_title: str = ""
    y_title: str = ""
    percent: bool = False
    interval: tuple[Sequence[float], Sequence[float]] | None = None
    marker: tuple[str, Sequence[float]] | None = None
    boxes: Sequence[dict[str, float]] = ()
    links: Sequence[tuple[int, int, float]] = ()
    node_colors: Sequence[str] = ()
    fallback: Chart | None = None
    height: int = 340


def _layout(chart: Chart) -> dict[str, Any]:
    axis_pct = {"tickformat": ".0%"} if chart.percent else {"tickformat": ",~r"}
    value_axis = {"title": {"text": chart.y_title}, "automargin": True, "gridcolor": "#e6e8ef", **axis_pct}
    cat_axis = {"title": {"text": chart.x_title}, "automargin": True, "type": "category"}
    horizontal = chart.kind in ("hbar", "stack")
    layout: dict[str, Any] = {
        "title": {"text": chart.title, "font": {"size": 15}, "x": 0, "xanchor": "left"},
        "height": chart.height,
        "autosize": True,
        "margin": {"l": 10, "r": 10, "t": 44, "b": 10},
        "font": {"family": _FONT, "size": 12, "color": "#1d2330"},
        "plot_bgcolor": "white",
        "paper_bgcolor": "white",
        "colorway": list(PALETTE),
        "legend": {"orientation": "h", "y": -0.2, "x": 0},
        "xaxis": {**(value_axis if horizontal else cat_axis)},
        "yaxis": {**(cat_axis if horizontal else value_axis)},
    }
    if horizontal:
        layout["yaxis"]["autorange"] = "reversed"
        layout["xaxis"]["title"] = {"text": chart.x_title}
        layout["yaxis"]["title"] = {"text": chart.y_title}
    if chart.kind == "stack":
        layout["barmode"] = "stack"
    return layout


def _traces(chart: Chart) -> list[dict[str, Any]]:
    """plotly trace dicts (plain dicts: no graph-object validation, which dominates the cost)."""
    cats = list(chart.categories)
    hover = "%{y:.1%}" if chart.percent else "%{y:,.3~r}"
    traces: list[dict[str, Any]] = []
    for i, (name, values) in enumerate(chart.series.items()):
        colour = PALETTE[i % len(PALETTE)]
        vals = [None if v is None or not np.isfinite(v) else float(v) for v in values]
        if chart.kind == "bar":
            traces.append({"type": "bar", "x": cats, "y": vals, "name": name, "marker": {"color": colour},
                           "hovertemplate": f"{name}<br>%{{x}}: {hover}<extra></extra>"})  # fmt: skip
        elif chart.kind == "lines":
            traces.append({"type": "scatter", "x": cats, "y": vals, "name": name, "mode": "lines+markers", "line": {"color": colour, "width": 2},
                           "marker": {"symbol": i % 12, "size": 7}, "hovertemplate": f"{name}<br>%{{x}}: {hover}<extra></extra>"})  # fmt: skip
        else:  # hbar, stack
            trace: dict[str, Any] = {"type": "bar", "y": cats, "x": vals, "name": name, "orientation": "h", "marker": {"color": colour},
                                     "hovertemplate": f"{name}<br>%{{y}}: %{{x:,.3~r}}<extra></extra>"}  # fmt: skip
            if chart.interval is not None and chart.kind == "hbar":
                lo, hi = np.asarray(chart.interval[0], float), np.asarray(chart.interval[1], float)
                v = np.asarray(vals, dtype=float)
                trace["error_x"] = {"type": "data", "array": np.clip(hi - v, 0, None).tolist(), "arrayminus": np.clip(v - lo, 0, None).tolist(), "color": "#333"}
            traces.append(trace)
    if chart.marker is not None:
        name, values = chart.marker
        traces.append({"type": "scatter", "y": cats, "x": [float(v) for v in values], "name": name, "mode": "markers",
                       "marker": {"symbol": "diamond", "size": 11, "color": PALETTE[1], "line": {"color": "#000", "width": 1}}})  # fmt: skip
    if chart.kind == "box":
        traces.append({
            "type": "box", "x": cats, "q1": [b["q1"] for b in chart.boxes], "median": [b["median"] for b in chart.boxes],
            "q3": [b["q3"] for b in chart.boxes], "lowerfence": [b["lowerfence"] for b in chart.boxes],
            "upperfence": [b["upperfence"] for b in chart.boxes], "marker": {"color": PALETTE[0]},
            "name": chart.y_title or "distribution", "showlegend": False,
        })  # fmt: skip
    if chart.kind == "sankey":
        src, tgt, val = zip(*chart.links, strict=True) if chart.links else ((), (), ())
        colours = list(chart.node_colors) or [PALETTE[0]] * len(cats)
        traces.append({
            "type": "sankey", "arrangement": "snap", "valueformat": ",d", "valuesuffix": " customers",
            "node": {"label": cats, "color": colours, "pad": 14, "thickness": 16},
            "link": {"source": list(src), "target": list(tgt), "value": list(val), "color": "rgba(0,114,178,0.25)"},
        })  # fmt: skip
    return traces


def plotly_div(chart: Chart, div_id: str) -> str:
    """The chart as a plotly ``<div>`` (the page embeds plotly's JS once, in its head)."""
    import plotly.io as pio

    fig = {"data": _traces(chart), "layout": _layout(chart)}
    config = {"displaylogo": False, "responsive": True, "modeBarButtonsToRemove": ["select2d", "lasso2d"]}
    return str(pio.to_html(fig, full_html=False, include_plotlyjs=False, div_id=div_id, config=config, default_width="100%", validate=False))


_W = 960


def _ticks(lo: float, hi: float, n: int = 5) -> np.ndarray:
    """About ``n`` round tick values spanning ``[lo, hi]``."""
    if not np.isfinite(lo) or not np.isfinite(hi) or hi <= lo:
        hi = lo + 1.0 if np.isfinite(lo) else 1.0
        lo = lo if np.isfinite(lo) else 0.0
    raw = (hi - lo) / n
    mag = 10 ** np.floor(np.log10(raw))
    step = mag * min((m for m in (1, 2, 2.5, 5, 10) if m * mag >= raw), default=10)
    return np.arange(np.floor(lo / step) * step, hi + step * 0.5, step)


def _num(v: float, percent: bool) -> str:
    return f"{100 * v:.0f}%" if percent else human(v, 3)


def _values(chart: Chart) -> np.ndarray:
    vals = [float(v) for s in chart.series.values() for v in s if v is not None]
    if chart.kind == "stack":
        vals += np.nansum(np.array([[np.nan if v is None else float(v) for v in s] for s in chart.series.values()], dtype=float), axis=0).tolist()
    if chart.interval is not None:
        vals += [float(v) for part in chart.interval for v in part]
    if chart.marker is not None:
        vals += [float(v) for v in chart.marker[1]]
    for b in chart.boxes:
        vals += [b["lowerfence"], b["upperfence"]]
    arr = np.asarray(vals, dtype=float)
    return arr[np.isfinite(arr)]


def _legend(names: list[str], y: float) -> str:
    out, x = [], 10.0
    for i, name in enumerate(names):
        out.append(f"<rect x='{x:.0f}' y='{y - 9:.0f}' width='10' height='10' fill='{PALETTE[i % len(PALETTE)]}'/>"
                   f"<text x='{x + 14:.0f}' y='{y:.0f}'>{esc(name)}</text>")  # fmt: skip
        x += 24 + 7 * len(name)
    return "".join(out)


def static_svg(chart: Chart) -> str:
    """The chart as inline SVG markup (a Sankey draws its ``fallback`` instead)."""
    if chart.kind == "sankey":
        return static_svg(chart.fallback) if chart.fallback is not None else ""
    cats = [str(c) for c in chart.categories]
    horizontal = chart.kind in ("hbar", "stack")
    names = list(chart.series)
    legend = len(names) > 1 or chart.marker is not None
    height = (60 + 26 * len(cats) + (24 if legend else 0)) if horizontal else chart.height
    left, right, top, bottom = (190, 20, 34, 34 + (22 if legend else 0)) if horizontal else (56, 16, 34, 50 + (22 if legend else 0))
    vals = _values(chart)
    lo = min(0.0, float(vals.min())) if len(vals) else 0.0
    hi = float(vals.max()) if len(vals) else 1.0
    ticks = _ticks(lo, hi)
    lo, hi = float(ticks[0]), float(max(ticks[-1], hi))
    span = (hi - lo) or 1.0
    out = [f"<svg viewBox='0 0 {_W} {height}' width='100%' role='img' "
           f"font-family='Helvetica,Arial,sans-serif' font-size='12'><title>{esc(chart.title)}</title>"
           f"<text x='0' y='16' font-size='14' font-weight='600'>{esc(chart.title)}</text>"]  # fmt: skip
    n = max(len(cats), 1)
    plot = (_W - left - right) if horizontal else (height - top - bottom)

    def at(v: float) -> float:  # value -> pixel along the value axis
        return left + (v - lo) / span * plot if horizontal else top + (hi - v) / span * plot

    for t in ticks:
        p, label = at(t), _num(t, chart.percent)
        out.append(
            f"<line x1='{p:.1f}' x2='{p:.1f}' y1='{top}' y2='{height - bottom}' stroke='#e6e8ef'/><text x='{p:.1f}' y='{height - bottom + 14}' text-anchor='middle'>{label}</text>"
            if horizontal
            else f"<line x1='{left}' x2='{_W - right}' y1='{p:.1f}' y2='{p:.1f}' stroke='#e6e8ef'/><text x='{left - 6}' y='{p + 4:.1f}' text-anchor='end'>{label}</text>"
        )
    if horizontal:
        out += _hbars(chart, cats, at, top, (height - top - bottom) / n, left)
    else:
        out += _vertical(chart, cats, at, left, (_W - left - right) / n, height - bottom)
    if legend:
        out.append(_legend(names + ([chart.marker[0]] if chart.marker is not None else []), height - 8))
    out.append("</svg>")
    return "".join(out)


def _hbars(chart: Chart, cats: list[str], vx: Any, top: float, band: float, left: float) -> list[str]:
    out = []
    zero = vx(0.0)
    for j, cat in enumerate(cats):
        y = top + j * band
        out.append(f"<text x='{left - 6}' y='{y + band / 2 + 4:.1f}' text-anchor='end'>{esc(cat[:28])}</text>")
        start = 0.0
        for i, vals in enumerate(chart.series.values()):
            v = vals[j]
            if v is None or not np.isfinite(v):
                continue
            a, b = (vx(start), vx(start + v)) if chart.kind == "stack" else (zero, vx(v))
            out.append(f"<rect x='{min(a, b):.1f}' y='{y + band * 0.15:.1f}' width='{abs(b - a):.1f}' height='{band * 0.7:.1f}' fill='{PALETTE[i % len(PALETTE)]}'/>")
            start += v if chart.kind == "stack" else 0.0
        if chart.interval is not None:
            a, b = vx(float(chart.interval[0][j])), vx(float(chart.interval[1][j]))
            mid = y + band / 2
            out.append(f"<path d='M{a:.1f},{mid - 5:.1f}v10M{a:.1f},{mid:.1f}H{b:.1f}M{b:.1f},{mid - 5:.1f}v10' stroke='#333' fill='none'/>")
        if chart.marker is not None and np.isfinite(chart.marker[1][j]):
            x, mid = vx(float(chart.marker[1][j])), y + band / 2
            out.append(f"<path d='M{x:.1f},{mid - 6:.1f}l6,6l-6,6l-6,-6z' fill='{PALETTE[1]}' stroke='#000'/>")
    return out


def _vertical(chart: Chart, cats: list[str], vy: Any, left: float, band: float, base: float) -> list[str]:
    out = []
    step = max(1, len(cats) // 12)  # at most about a dozen labels
    for j, cat in enumerate(cats):
        if j % step == 0:
            out.append(f"<text x='{left + (j + 0.5) * band:.1f}' y='{base + 16:.1f}' text-anchor='middle'>{esc(cat[:22])}</text>")
    series = list(chart.series.values())
    for i, vals in enumerate(series):
        colour = PALETTE[i % len(PALETTE)]
        if chart.kind == "bar":
            w = band * 0.8 / len(series)
            for j, v in enumerate(vals):
                if v is not None and np.isfinite(v):
                    x = left + j * band + band * 0.1 + i * w
                    out.append(f"<rect x='{x:.1f}' y='{min(vy(v), vy(0)):.1f}' width='{w:.1f}' height='{abs(vy(0) - vy(v)):.1f}' fill='{colour}'/>")
        elif chart.kind == "lines":
            pts = [(left + (j + 0.5) * band, vy(float(v))) for j, v in enumerate(vals) if v is not None and np.isfinite(v)]
            if pts:
                out.append(f"<polyline fill='none' stroke='{colour}' stroke-width='2' points='{' '.join(f'{x:.1f},{y:.1f}' for x, y in pts)}'/>")
                out += [f"<circle cx='{x:.1f}' cy='{y:.1f}' r='3' fill='{colour}'/>" for x, y in pts]
    for j, b in enumerate(chart.boxes):
        x, w = left + j * band + band * 0.3, band * 0.4
        out.append(f"<path d='M{x + w / 2:.1f},{vy(b['lowerfence']):.1f}V{vy(b['upperfence']):.1f}' stroke='#333'/>"
                   f"<rect x='{x:.1f}' y='{vy(b['q3']):.1f}' width='{w:.1f}' height='{abs(vy(b['q1']) - vy(b['q3'])):.1f}' fill='{PALETTE[4]}' stroke='#333'/>"
                   f"<path d='M{x:.1f},{vy(b['median']):.1f}h{w:.1f}' stroke='#000' stroke-width='2'/>")  # fmt: skip
    return out
