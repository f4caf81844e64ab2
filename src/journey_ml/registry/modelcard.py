"""The model card: one markdown page saying what a registered version is and how far to trust it.

Built from the bundle's metadata (data window, journey shape, test metrics beside the
baselines) and, when ``journey-ml retrain`` made the version, the champion/challenger
comparison on one window, the champion's backtest on the labels that matured since it was
trained, and the drift report. Sections: data window and journey shape; metrics beside the
baselines; drift; known limits. Every number comes from the run; a section without data
says so instead of showing a placeholder.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from journey_ml.models.tasks import PRIMARY

__all__ = ["METRIC_COLUMNS", "SECTIONS", "auc_standard_error", "render_model_card"]

#: The section headings, in order (tests and readers rely on them).
SECTIONS: tuple[str, ...] = ("Data window and journey shape", "Metrics beside the baselines", "Drift", "Known limits")

#: Metrics shown per task, primary first.
METRIC_COLUMNS: dict[str, tuple[str, ...]] = {
    "next_stage": ("log_loss", "accuracy", "macro_f1"),
    "drop_off": ("roc_auc", "pr_auc", "brier", "ece", "lift_at_10"),
    "revenue": ("mae", "spearman", "gini"),
}


def auc_standard_error(auc: float, positives: int, negatives: int) -> float:
    """Hanley & McNeil (1982) standard error of a ROC-AUC from the class counts (NaN if undefined)."""
    if not (math.isfinite(auc) and positives > 0 and negatives > 0):
        return float("nan")
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    var = (auc * (1 - auc) + (positives - 1) * (q1 - auc**2) + (negatives - 1) * (q2 - auc**2)) / (positives * negatives)
    return math.sqrt(max(var, 0.0))


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        v = float(value)
        if not math.isfinite(v):
            return "–"
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        return str(int(v)) if v == int(v) else f"{v:.4f}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_fmt(c) for c in row) + " |" for row in rows]
    return lines


def _day(value: Any) -> str:
    return str(value)[:10] if value else "–"


def render_model_card(
    metadata: Mapping[str, Any],
    *,
    gate: Mapping[str, Any] | None = None,
    comparison: Mapping[str, Any] | None = None,
    backtest: Mapping[str, Any] | None = None,
    drift: Mapping[str, Any] | None = None,
) -> str:
    """The model card of a bundle as markdown.

    Parameters
    ----------
    metadata : mapping
        ``bundle.metadata`` (``training_window``, ``splits``, ``metrics``, ``baselines``,
        ``data``, ``journey_shape``, ``model_version``, ``alias``, ...).
    gate : mapping, optional
        The promotion gate's record (``new``, ``champion``, ``champion_version``, ``reason``).
    comparison, backtest, drift : mapping, optional
        From ``journey-ml retrain``: both models on the same window, the champion on the
        labels matured since its training, and the drift report (``DriftReport.to_dict``).
    """
    name = metadata.get("name", "journey-ml")
    version = metadata.get("model_version", "unregistered")
    lines = [f"# Model card: {name} version {version}", ""]
    alias = metadata.get("alias")
    reason = (gate or {}).get("reason")
    lines.append(
        f"Created {metadata.get('created', '–')} by journey_ml {metadata.get('journey_ml_version', '–')}; "
        f"MLflow run `{metadata.get('run_id', '–')}`; "
        + (f"registered as **{alias}**" + (f" ({reason})" if reason else "") + "." if alias else "not registered.")
    )
    lines.append("")
    lines += _data_section(metadata)
    lines += _metrics_section(metadata, gate, comparison, backtest)
    lines += _drift_section(drift)
    lines += _limits_section(metadata, backtest, drift)
    return "\n".join(lines).rstrip() + "\n"


# ---------------------------------------------------------------------------- sections
def _data_section(meta: Mapping[str, Any]) -> list[str]:
    lines = [f"## {SECTIONS[0]}", ""]
    data = meta.get("data") or {}
    window = meta.get("training_window") or {}
    splits = meta.get("splits") or {}
    rows = [
        ("events", f"{_fmt(data.get('rows'))} events of {_fmt(data.get('customers'))} customers, "
                   f"{_day(data.get('start'))} to {_day(data.get('end'))}"),
        ("training window", f"first training cutoff {_day(window.get('start'))} to last test cutoff "
                            f"{_day(window.get('end'))}; horizon {_fmt(window.get('horizon_days'))} days"),
    ]  # fmt: skip
    for part in ("train", "valid", "test"):
        s = splits.get(part)
        if s:
            rows.append(
                (f"{part} split", f"{_fmt(s.get('rows'))} rows, {_fmt(s.get('customers'))} customers, "
                                  f"{_fmt(s.get('cutoffs'))} cutoffs ({_day(s.get('first_cutoff'))} to "
                                  f"{_day(s.get('last_cutoff'))}), drop-off rate {_fmt(s.get('drop_off_rate'))}")
            )  # fmt: skip
    if data.get("sha256"):
        rows.append(("data fingerprint", f"sha256 {str(data['sha256'])[:16]}…"))
    lines += _table(("", ""), rows)
    shape = meta.get("journey_shape")
    lines.append("")
    if shape:
        lines.append(
            f"**Journey shape.** Models: {', '.join(shape.get('tasks', [])) or '–'}; "
            f"the value model predicts **{shape.get('value_unit', 'revenue')}**."
        )
        lines.append("")
        lines += _table(
            ("part", "state", "why"),
            [(p, "on" if d.get("on") else "**off**", d.get("reason", "")) for p, d in shape.get("parts", {}).items()],
        )
    else:
        lines.append("**Journey shape.** Not recorded in this bundle (made before journey shapes were tracked).")
    lines.append("")
    return lines


def _metrics_section(
    meta: Mapping[str, Any],
    gate: Mapping[str, Any] | None,
    comparison: Mapping[str, Any] | None,
    backtest: Mapping[str, Any] | None,
) -> list[str]:
    lines = [f"## {SECTIONS[1]}", ""]
    test = (meta.get("metrics") or {}).get("test") or {}
    baselines = meta.get("baselines") or {}
    split = (meta.get("splits") or {}).get("test") or {}
    lines.append(
        f"Test window {_day(split.get('first_cutoff'))} to {_day(split.get('last_cutoff'))} "
        f"({_fmt(split.get('rows'))} weekly snapshot rows), every model beside every baseline on the same rows."
    )
    lines.append("")
    for task, cols in METRIC_COLUMNS.items():
        if task not in test:
            continue
        label = task if task != "revenue" else f"revenue (value model, {(meta.get('journey_shape') or {}).get('value_unit', 'revenue')})"
        lines.append(f"**{label}**")
        lines.append("")
        rows = [("lightgbm", *(test[task].get(c) for c in cols))]
        rows += [(b, *(m.get(c) for c in cols)) for b, m in (baselines.get(task) or {}).items()]
        lines += _table(("model", *cols), rows)
        lines.append("")
    if gate:
        lines.append("**Promotion gate** (primary metrics on this version's test window):")
        lines.append("")
        champion = gate.get("champion") or {}
        against = gate.get("champion_version")
        rows = [(k, v, champion.get(k)) for k, v in (gate.get("new") or {}).items()]
        lines += _table(("metric", "this version", f"champion v{against}" if against else "champion"), rows)
        lines.append("")
        lines.append(f"Decision: {meta.get('alias', '–')}, {gate.get('reason', '–')}.")
        lines.append("")
    if comparison and comparison.get("champion") is not None:
        w = comparison.get("window") or {}
        lines.append(
            f"**Champion and challenger on the same window** ({_day(w.get('first_cutoff'))} to "
            f"{_day(w.get('last_cutoff'))}, {_fmt(w.get('rows'))} rows):"
        )
        lines.append("")
        rows = []
        for task, cols in METRIC_COLUMNS.items():
            for c in cols:
                a = (comparison["champion"].get(task) or {}).get(c)
                b = (comparison.get("challenger", {}).get(task) or {}).get(c)
                if a is not None or b is not None:
                    rows.append((task, c, a, b))
        lines += _table(
            ("task", "metric", f"champion v{comparison.get('champion_version', '?')}",
             f"challenger v{comparison.get('challenger_version', '?')}"),
            rows,
        )  # fmt: skip
        lines.append("")
    if backtest is not None:
        lines += _backtest_lines(backtest)
    return lines


def _backtest_lines(backtest: Mapping[str, Any]) -> list[str]:
    w = backtest.get("window") or {}
    lines = [
        f"**Champion since its training** (backtest on the labels matured after its training window: "
        f"{_day(w.get('first_cutoff'))} to {_day(w.get('last_cutoff'))}, {_fmt(w.get('rows'))} rows):",
        "",
    ]
    if not backtest.get("champion"):
        lines += [backtest.get("message", "no matured labels since the champion's training window."), ""]
        return lines
    rows = []
    for task, (name, _) in PRIMARY.items():
        key = f"{task}.{name}"
        now = (backtest["champion"].get(task) or {}).get(name)
        then = ((backtest.get("at_training") or {}).get(task) or {}).get(name)
        if now is not None or then is not None:
            rows.append((key, then, now, (backtest.get("change") or {}).get(key)))
    lines += _table(("metric", "at training (its test window)", "since", "change"), rows)
    lines.append("")
    return lines


def _drift_section(drift: Mapping[str, Any] | None) -> list[str]:
    lines = [f"## {SECTIONS[2]}", ""]
    if not drift:
        lines += [
            "Not measured for this run: `journey-ml retrain` measures drift against the champion's "
            "training window and writes it here.",
            "",
        ]
        return lines
    th = drift.get("thresholds") or {}
    windows = drift.get("windows") or {}
    ref, cur = windows.get("reference") or {}, windows.get("current") or {}
    lines.append(
        f"Population stability index (PSI, {th.get('bins', '?')} quantile bins of the reference) between the "
        f"champion's training window ({_day(ref.get('first_cutoff'))} to {_day(ref.get('last_cutoff'))}, "
        f"{_fmt(ref.get('rows'))} rows) and the newer data ({_day(cur.get('first_cutoff'))} to "
        f"{_day(cur.get('last_cutoff'))}, {_fmt(cur.get('rows'))} rows). Moderate from {th.get('moderate')}, "
        f"major from {th.get('major')}; flagged at {th.get('flag_at')}."
    )
    lines.append("")
    lines.append(f"- **Flagged:** {', '.join(drift.get('flagged') or []) or 'nothing'}")
    lines.append(f"- **Watch:** {', '.join(drift.get('watch') or []) or 'nothing'}")
    for note in drift.get("notes") or []:
        lines.append(f"- {note}")
    lines.append("")
    psi = drift.get("psi") or {}
    features = drift.get("features") or {}
    items = sorted(psi.items(), key=lambda kv: -kv[1])[:10]
    if items:
        lines += _table(("feature group", "PSI", "driven by"), [(g, v, features.get(g, "")) for g, v in items])
        lines.append("")
    scores = drift.get("scores") or {}
    if scores:
        lines += _table(("score", "PSI"), list(scores.items()))
        lines.append("")
    quality = drift.get("quality") or {}
    if quality:
        types = quality.get("event_types") or {}
        rejects = quality.get("reject_share")
        lines.append(f"- event-type mix PSI {_fmt(quality['event_mix']['psi'])}; stage mix PSI {_fmt(quality['stage_mix']['psi'])}")
        lines.append(f"- new event types: {_fmt(', '.join(types.get('new') or {}) or 'none')}; "
                     f"vanished: {_fmt(', '.join(types.get('vanished') or {}) or 'none')}")  # fmt: skip
        if rejects:
            lines.append(f"- rejected rows: {rejects['reference']:.2%} before, {rejects['current']:.2%} after "
                         f"({rejects['unplaced']} without a usable timestamp)")  # fmt: skip
        else:
            lines.append("- rejected rows: not measured")
        lines.append("")
    return lines


def _limits_section(
    meta: Mapping[str, Any], backtest: Mapping[str, Any] | None, drift: Mapping[str, Any] | None
) -> list[str]:
    lines = [f"## {SECTIONS[3]}", ""]
    shape = meta.get("journey_shape") or {}
    for part, d in (shape.get("parts") or {}).items():
        # "conversions" is off exactly when revenue is on: not a limit.
        if not d.get("on", True) and not (part == "conversions" and shape.get("value_unit") == "revenue"):
            lines.append(f"- **{part}** is off: {d.get('reason', '')}.")
    for warning in shape.get("warnings") or []:
        lines.append(f"- {warning}.")
    drop = ((meta.get("metrics") or {}).get("test") or {}).get("drop_off") or {}
    n, rate, auc = drop.get("n"), drop.get("base_rate"), drop.get("roc_auc")
    if n and rate is not None and auc is not None:
        pos = round(float(n) * float(rate))
        se = auc_standard_error(float(auc), pos, int(float(n)) - pos)
        if math.isfinite(se):
            lines.append(
                f"- Drop-off ROC-AUC {float(auc):.3f} ± {1.96 * se:.3f} (95%, Hanley & McNeil) on {pos:,} drop-offs and "
                f"{int(float(n)) - pos:,} retained rows of the test window; the rows are weekly snapshots, so one "
                "customer appears in several and the interval is, if anything, narrow."
            )
    lines.append(
        "- Scores are for customers active at the scoring time (an event within the map's `inactivity_days`, "
        "no exit event); the models assume the journey map (stages, events, frictions) is as it was at training, "
        "and event types or touchpoints unseen then are pooled into `other`."
    )
    ranking = meta.get("ranking") or {}
    if (shape.get("parts") or {}).get("ranking", {}).get("on", True) and ranking:
        lines.append(
            "- The touchpoint ranking comes from SHAP attributions on observational data, checked by a "
            "counterfactual re-prediction; it is not a randomised experiment."
        )
    if backtest is not None and not backtest.get("champion"):
        lines.append("- No backtest: no labels have matured since the champion's training window.")
    if drift:
        lines.append(
            "- PSI thresholds are rules of thumb; cumulative features (tenure, lifetime counts) rise as a young "
            "customer base ages and usually sit in the moderate band without anything being wrong."
        )
    lines.append("")
    return lines
