"""Plots and the self-contained HTML page of a drift report (logged by ``journey-ml retrain``).

Kept apart from the measurements in :mod:`journey_ml.evaluation.drift` so that measuring
needs no matplotlib; figures are drawn headless and inlined as PNG data URIs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from journey_ml.evaluation.drift import DriftReport
from journey_ml.evaluation.figures import figure_to_data_uri
from journey_ml.evaluation.psi import FLAG_AT, PSI_MAJOR, PSI_MODERATE, level
from journey_ml.evaluation.quality import quality_text

__all__ = ["drift_figures", "drift_report_html"]


def drift_figures(report: DriftReport) -> dict[str, Any]:
    """Matplotlib figures by artifact name: PSI per item, score distributions, event and stage mix."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures: dict[str, Any] = {}
    items = {**report.psi, **{f"score:{k}": v for k, v in report.scores.items()}}
    if report.quality:
        items["event_mix"] = report.quality["event_mix"]["psi"]
        items["stage_mix"] = report.quality["stage_mix"]["psi"]
    if items:
        names = sorted(items, key=lambda n: items[n])[-25:]
        values = np.array([items[n] for n in names])
        fig, ax = plt.subplots(figsize=(8, 0.32 * len(names) + 1.4))
        colors = np.where(values >= PSI_MAJOR, "#c0392b", np.where(values >= PSI_MODERATE, "#e6a23c", "#3b6fd8"))
        ax.barh(np.arange(len(names)), values, color=colors)
        ax.set_yticks(np.arange(len(names)), names, fontsize=8)
        for x, style in ((PSI_MODERATE, ":"), (PSI_MAJOR, "--")):
            ax.axvline(x, color="#333", ls=style, lw=0.9)
        ax.set_xlabel(f"PSI (moderate ≥ {PSI_MODERATE}, major ≥ {PSI_MAJOR})")
        ax.set_title("Drift: champion's training window vs newer data")
        fig.tight_layout()
        figures["psi.png"] = fig
    ref, cur = report.reference_scores, report.current_scores
    if ref is not None and cur is not None:
        cols = [c for c in report.scores if c != "next_stage"]
        if cols:
            fig, axes = plt.subplots(1, len(cols), figsize=(5 * len(cols), 3.4), squeeze=False)
            for ax, col in zip(axes[0], cols, strict=True):
                a = ref[col].to_numpy(dtype=np.float64, na_value=np.nan)
                b = cur[col].to_numpy(dtype=np.float64, na_value=np.nan)
                both = np.concatenate([a[np.isfinite(a)], b[np.isfinite(b)]])
                edges = np.histogram_bin_edges(both, bins=30) if both.size else 10
                ax.hist(a[np.isfinite(a)], bins=edges, density=True, alpha=0.55, label="reference", color="#3b6fd8")
                ax.hist(b[np.isfinite(b)], bins=edges, density=True, alpha=0.55, label="current", color="#c0392b")
                ax.set_title(f"{col} (PSI {report.scores[col]:.3f})")
                ax.legend()
            fig.tight_layout()
            figures["scores.png"] = fig
    for key, title, column in (("stage_mix", "Stage mix of active customers", None), ("event_mix", "Event-type mix", "event_type")):
        if not report.quality:
            continue
        if column is None:
            ref_s, cur_s = report.quality[key]["reference"], report.quality[key]["current"]
        else:
            changes = report.quality[key]["largest_changes"]
            ref_s = {c["event_type"]: c["reference_share"] for c in changes}
            cur_s = {c["event_type"]: c["current_share"] for c in changes}
        labels = sorted(set(ref_s) | set(cur_s))
        x = np.arange(len(labels))
        fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(labels) + 2), 3.4))
        ax.bar(x - 0.2, [ref_s.get(s, 0.0) for s in labels], width=0.4, label="reference", color="#3b6fd8")
        ax.bar(x + 0.2, [cur_s.get(s, 0.0) for s in labels], width=0.4, label="current", color="#c0392b")
        ax.set_xticks(x, labels, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel("share")
        suffix = " (largest changes)" if column else ""
        ax.set_title(f"{title}{suffix}, PSI {report.quality[key]['psi']:.3f}")
        ax.legend()
        fig.tight_layout()
        figures[f"{key}.png"] = fig
    return figures


def drift_report_html(report: DriftReport, figures: Mapping[str, Any] | None = None) -> str:
    """A self-contained HTML drift report (inline PNGs, no script); figures are closed."""
    import html

    figures = drift_figures(report) if figures is None else figures
    rows = [
        {"item": name, "psi": value, "level": level(value), "driven by": report.features.get(name, "")}
        for name, value in {**report.psi, **{f"score:{k}": v for k, v in report.scores.items()}}.items()
    ]
    table = pd.DataFrame(rows, columns=["item", "psi", "level", "driven by"]).sort_values("psi", ascending=False)
    flagged = ", ".join(report.flagged) or "nothing"
    watch = ", ".join(report.watch) or "nothing"
    quality = report.quality
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>journey-ml drift report</title>",
        "<style>body{font-family:Helvetica,Arial,sans-serif;max-width:1000px;margin:2rem auto;padding:0 1rem;color:#1d2330}"
        "table{border-collapse:collapse;font-size:.9rem}td,th{padding:.3rem .6rem;border-bottom:1px solid #e6e8ef}"
        "img{max-width:100%}</style></head><body>",
        "<h1>Drift report</h1>",
        f"<p>Reference: {html.escape(str(report.windows.get('reference')))}<br>"
        f"Current: {html.escape(str(report.windows.get('current')))}</p>",
        f"<p><b>Flagged</b> (PSI ≥ {FLAG_AT}, or a data-quality rule): {html.escape(flagged)}<br>"
        f"<b>Watch</b> (PSI {PSI_MODERATE}–{PSI_MAJOR}): {html.escape(watch)}</p>",
    ]
    parts += [f"<p class='note'>{html.escape(n)}</p>" for n in report.notes]
    for name, fig in figures.items():
        parts.append(f"<h2>{html.escape(name.removesuffix('.png'))}</h2><img src='{figure_to_data_uri(fig)}'>")
    parts.append("<h2>PSI per feature group and score</h2>")
    parts.append(table.to_html(index=False, float_format=lambda v: f"{v:.4f}", border=0))
    if quality:
        parts.append("<h2>Data quality</h2><pre>")
        parts.append(html.escape(quality_text(quality)))
        parts.append("</pre>")
    parts.append("</body></html>")
    return "".join(parts)
