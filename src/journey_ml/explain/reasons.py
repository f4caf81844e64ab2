"""Per-customer reason codes: the touchpoints, frictions and behaviours that raise a
customer's drop-off risk, in plain words built from the customer's own values.

Each reason is a group of drop-off SHAP turned into probability points on the customer's
own base through the model's calibration. The groups are
:func:`journey_ml.explain.shap.reason_groups` made fit to act on
(:func:`action_groups`): a friction's own touchpoint (every ``checkout_error`` event is
the friction) joins the friction, and the behaviour families are split into named ones
(recent activity, tenure, conversions, spend, purchase rhythm, journey stage, sessions,
channels, journey path), each phrased from the column that raises the risk most.

Benign absences are never reasons: a touchpoint the customer has not used in the last 90
days (most customers never use most event × channel pairs, and a general fall in activity
is told by "recent activity"), nor a friction the customer never met.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from journey_ml.explain.impacts import scoring_time
from journey_ml.explain.shap import (
    FAMILIES,
    Bundle,
    behaviour_family,
    drop_probability,
    reason_groups,
    tree_shap,
)
from journey_ml.features import FeatureSpec, features_at
from journey_ml.features.vocabulary import OTHER

__all__ = ["FAMILIES", "action_groups", "add_reason_codes", "reason_codes", "reason_phrase", "reasons_from_shap"]

def action_groups(spec: FeatureSpec, groups: dict[str, list[str]] | None = None) -> dict[str, list[str]]:
    """Non-overlapping reason groups a person can act on, refined from ``groups``.

    ``groups`` defaults to :func:`~journey_ml.explain.shap.reason_groups`; frictions and
    touchpoints keep their names, except that a touchpoint whose every event is a friction
    (a friction with an event type and no measure) joins that friction, and every other
    column goes to its behaviour group of :data:`FAMILIES`. Idempotent.
    """
    groups = reason_groups(spec) if groups is None else groups
    pure: dict[str, str] = {}
    for fr in spec.journey_map.friction:
        if fr.event_type and fr.column is None:
            pure.setdefault(fr.event_type, fr.name)
    # Touchpoint columns by touchpoint (one named like a friction has no group of its own).
    tp_of = {c: tp for tp in [*spec.touchpoints, OTHER] for c in spec.feature_groups.get(tp, []) if c.startswith("tp_")}
    out: dict[str, list[str]] = {name: [] for name in spec.friction_features}
    for name, cols in groups.items():
        for c in cols:
            if name in spec.friction_features:
                target = name
            elif name in spec.feature_groups or c in tp_of:
                tp = tp_of.get(c, name)
                target = pure.get(tp.split(":", 1)[0], tp)
            else:
                target = behaviour_family(c)
            out.setdefault(target, []).append(c)
    return {name: list(dict.fromkeys(cols)) for name, cols in out.items() if cols}


# ---------------------------------------------------------------------------- phrasing
def _finite(v: float) -> bool:
    return math.isfinite(v)


def _num(v: float) -> str:
    """A count or amount as people write it: whole numbers plain, small ones with a decimal."""
    v = float(v)
    if not _finite(v):
        return "0"
    if v.is_integer() or abs(v) >= 100:
        return f"{v:,.0f}"
    return f"{v:,.1f}" if abs(v) >= 1 else f"{v:.2f}"


@functools.lru_cache(maxsize=4096)
def _plural_noun(noun: str) -> str | None:
    """English plural of a lower-case noun phrase (``late delivery`` -> ``late deliveries``),
    or None when it does not read as a noun (``coupon denied``, ``Order Completed``)."""
    last = noun.split(" ")[-1] if noun else ""
    if not last.isalpha() or not noun.replace(" ", "").islower() or last.endswith(("ed", "s", "ness")):
        return None
    if last.endswith("y") and last[-2:-1] not in tuple("aeiou"):
        return noun[:-1] + "ies"
    return noun + ("es" if last.endswith(("ch", "sh", "x")) else "s")


def _plural(noun: str) -> str:
    return _plural_noun(noun) or f"{noun} events"


def _times(n: float, noun: str) -> str:
    """``3 checkout errors``, or ``coupon denied 3 times`` when ``noun`` does not pluralise."""
    k = round(float(n))
    if _plural_noun(noun) is None:
        return f"{noun} {k} time" + ("" if k == 1 else "s")
    return f"{k} {noun}" if k == 1 else f"{k} {_plural_noun(noun)}"


def _days(d: float) -> str:
    if not _finite(d):
        return "an unknown time"
    return "less than a day" if d < 1 else f"{_num(round(d))} day" + ("" if round(d) == 1 else "s")


@functools.lru_cache(maxsize=4096)
def _label(name: str) -> str:
    """``site_visit:app`` -> ``site visit via app``."""
    et, _, ch = name.partition(":")
    return et.replace("_", " ") + (f" via {ch.replace('_', ' ')}" if ch else "")


def _val(row: dict[str, float], col: str) -> float:
    return float(row.get(col, np.nan))


def _friction_phrase(spec: FeatureSpec, name: str, row: dict[str, float]) -> str:
    i = [f.name for f in spec.journey_map.friction].index(name)
    fr, slug = spec.journey_map.friction[i], spec.friction_slugs[i]
    label = name.replace("_", " ")
    count = next(
        (
            f"{_times(row[c], label)} in the last {w} days"
            for w in (7, 30, 90)
            if (c := f"friction_{slug}_count_{w}d") in row and row[c] > 0
        ),
        None,
    )
    total = _val(row, f"friction_{slug}_count_total")
    if count is None and total > 0:
        count = f"{_times(total, label)} so far"
    if fr.column is None:
        return count or f"{label} so far"
    what = f"{fr.column.replace('_', ' ')} of {_label(fr.event_type) if fr.event_type else 'events'}"
    top, mean = _val(row, f"friction_{slug}_{fr.column}_max"), _val(row, f"friction_{slug}_{fr.column}_mean_90d")
    if count is not None:
        return count + (f" (up to {_num(top)} {fr.column.replace('_', ' ')})" if _finite(top) else "")
    if _finite(mean):
        return f"{what} averaging {_num(mean)} in the last 90 days"
    return f"{what} up to {_num(top)}" if _finite(top) else f"{label} so far"


def _touchpoint_phrase(name: str, cols: list[str], row: dict[str, float], dominant: str) -> str:
    label = "event of a rarer type" if name == "other" else _label(name)
    counts = {w: next((row[c] for c in cols if c.endswith(f"_count_{w}d")), 0.0) for w in (7, 30, 90)}
    if dominant.endswith("_share_90d") and _finite(row[dominant]):
        return f"{label}: {row[dominant]:.0%} of the last 90 days' events"
    if dominant.endswith("_days_since_last") and not counts[7] > 0 and _finite(row[dominant]):
        return f"last {label} {_days(row[dominant])} ago"
    for w, n in counts.items():
        if n > 0:
            et, _, ch = name.partition(":")
            what = _times(n, et.replace("_", " ")) + (f" via {ch.replace('_', ' ')}" if ch else "")
            return f"{what if name != 'other' else _times(n, 'event') + ' of rarer types'} in the last {w} days"
    return f"no {label} in the last 90 days"


def _stage_name(spec: FeatureSpec, slug: str) -> str:
    names = spec.journey_map.stage_names
    return dict(zip(spec.stage_slugs, names, strict=True)).get(slug, slug).replace("_", " ")


def _code_name(spec: FeatureSpec, col: str, code: float) -> str:
    cats = spec.categories[col]
    k = int(code) if _finite(code) else -1
    name = cats[k] if 0 <= k < len(cats) else ""
    return "another one" if name == "other" else _label(name) if name else "none"


def _activity_phrase(c: str, v: float, row: dict[str, float]) -> str:
    if c == "recency_days":
        return f"last active {_days(v)} ago" if _finite(v) else "no activity yet"
    if c == "events_total":
        return f"{_num(v)} events so far"
    if c.startswith("events_") and c.endswith("d") and c != "events_prev_7d":
        if v > 0:
            return f"{_times(v, 'event')} in the last {c[7:-1]} days"
        last = _val(row, "recency_days")
        return f"no activity in the last {c[7:-1]} days" + (f" (last active {_days(last)} ago)" if _finite(last) else "")
    prev = _val(row, "events_prev_7d")
    last = prev + _val(row, "trend_7d")
    if _finite(last):
        return f"{_num(last)} events in the last 7 days against {_num(prev)} the week before"
    return f"{_num(prev)} events the week before last" if _finite(prev) else "activity trend over two weeks"


def _conversion_phrase(spec: FeatureSpec, c: str, v: float, row: dict[str, float]) -> str:
    jm = spec.journey_map
    noun = jm.conversion_events[0].replace("_", " ") if jm.conversion_events else "conversion"
    total = _val(row, "conversions_total")
    if c == "conversions_90d":
        return f"{_times(v, noun)} in the last 90 days" if v > 0 else f"no {noun} in the last 90 days"
    if c == "days_since_last_conversion" and _finite(v):
        return f"last {noun} {_days(v)} ago"
    if c.startswith("revenue_") or c == "avg_order_value":
        what = {"revenue_total": "spent so far", "revenue_90d": "spent in the last 90 days"}.get(c, "average order value")
        return f"{what}: {_num(v)}" if _finite(v) else f"no {noun} yet"
    return f"{_times(total, noun)} so far" if total > 0 else f"no {noun} yet"


_RHYTHM = {
    "btyd_frequency": "{v} repeat {nouns}",
    "btyd_recency_days": "{d} between the first and the last {noun}",
    "btyd_age_days": "first {noun} {d} ago",
    "ipt_mean_days": "usually {d} between {nouns}",
    "ipt_std_days": "gaps between {nouns} vary by {d}",
    "ipt_max_days": "longest gap between {nouns}: {d}",
    "ipt_last_days": "last gap between {nouns}: {d}",
    "conversion_days_180d": "{noun} on {v} days in the last 180 days",
    "conversion_days_365d": "{noun} on {v} days in the last 365 days",
}


def _rhythm_phrase(spec: FeatureSpec, c: str, v: float, row: dict[str, float]) -> str:
    jm = spec.journey_map
    noun = jm.conversion_events[0].replace("_", " ") if jm.conversion_events else "conversion"
    horizon = f"{_num(jm.horizon_days)} days"
    if not _finite(v):
        return f"no repeat {noun} yet" if c.startswith(("ipt_", "since_")) else f"no {noun} yet"
    if c == "btyd_p_alive":
        return f"estimated {v:.0%} chance of still buying"
    if c == "btyd_expected_conversions":
        return f"expected {_num(v)} {_plural(noun)} in the next {horizon}"
    if c == "btyd_p_no_conversion":
        return f"{v:.0%} chance of no {noun} in the next {horizon}"
    if c.startswith("since_conversion_"):
        since = _val(row, "btyd_age_days") - _val(row, "btyd_recency_days")
        gap = "usual" if c.endswith("mean_ipt") else "longest"
        lead = f"{_days(since)} since the last {noun}, " if _finite(since) else ""
        return f"{lead}{_num(v)}× the {gap} gap"
    return _RHYTHM.get(c, c.replace("_", " ") + ": {v}").format(v=_num(v), d=_days(v), noun=noun, nouns=_plural(noun))


def _stage_phrase(spec: FeatureSpec, c: str, v: float, row: dict[str, float]) -> str:
    for kind, text in (
        ("_events", "{n} at the {s} stage"),
        ("_days_since_first", "reached the {s} stage {d} ago"),
        ("_days_since_last", "last {s}-stage event {d} ago"),
    ):
        if c.startswith("stage_") and c.endswith(kind) and c != "stage_dwell_days":
            s = _stage_name(spec, c[len("stage_") : -len(kind)])
            if not _finite(v) or (kind == "_events" and v <= 0):
                return f"never at the {s} stage"
            return text.format(n=_times(v, "event"), s=s, d=_days(v))
    stage = _code_name(spec, "current_stage", _val(row, "current_stage"))
    dwell = _val(row, "stage_dwell_days")
    if stage == "none":
        return "no stage reached yet"
    return f"at the {stage} stage for {_days(dwell)}" if _finite(dwell) else f"at the {stage} stage"


def _session_phrase(c: str, v: float) -> str:
    if not _finite(v):
        return "a single event so far"
    texts = {
        "sessions_total": f"{_times(v, 'session')} so far",
        "sessions_30d": f"{_times(v, 'session')} in the last 30 days",
        "events_per_session": f"{_num(v)} events per session",
        "mean_gap_hours": f"{_num(v)} hours between events on average",
        "last_gap_hours": f"{_num(v)} hours between the last two events",
        "max_gap_days": f"longest break {_days(v)}",
    }
    return texts.get(c, f"{c.replace('_', ' ')}: {_num(v)}")


def _channel_phrase(spec: FeatureSpec, c: str, v: float) -> str:
    if c in ("last_channel", "first_channel"):
        channel = _code_name(spec, c, v)
        return f"last event via {channel}" if c == "last_channel" else f"first came via {channel}"
    names = dict(zip(spec.channel_slugs, [*spec.channels, "other channels"], strict=True))
    slug = c[len("channel_") : -len("_share_90d")]
    share = v if _finite(v) else 0.0
    return f"{share:.0%} of the last 90 days' events via {names.get(slug, slug).replace('_', ' ')}"


_TRANSITIONS: dict[int, tuple[FeatureSpec, list[str], list[str]]] = {}


def _transition_columns(spec: FeatureSpec) -> tuple[list[str], list[str]]:
    """The spec's stage-transition and event-bigram columns, in their bigrams' order (cached)."""
    hit = _TRANSITIONS.get(id(spec))
    if hit is None or hit[0] is not spec:
        stage_cols = [f"trans_stage_{spec.stage_slugs[a]}__{spec.stage_slugs[b]}" for a, b in spec.stage_bigrams]
        event_cols = [n for n in spec.feature_names if n.startswith("trans_event_")]
        if len(_TRANSITIONS) > 8:
            _TRANSITIONS.clear()
        hit = _TRANSITIONS[id(spec)] = (spec, stage_cols, event_cols)
    return hit[1], hit[2]


def _path_phrase(spec: FeatureSpec, c: str, v: float) -> str:
    if c == "last_event_type":
        return f"last event: {_code_name(spec, c, v)}"
    stage_cols, event_cols = _transition_columns(spec)
    n = _num(v if _finite(v) else 0.0)
    if c in stage_cols:
        a, b = spec.stage_bigrams[stage_cols.index(c)]
        names = [s.replace("_", " ") for s in spec.journey_map.stage_names]
        return f"moved from {names[a]} to {names[b]} {n} time{'' if n == '1' else 's'}" if v > 0 else f"never moved from {names[a]} to {names[b]}"
    if c in event_cols and event_cols.index(c) < len(spec.event_bigrams):
        a_et, b_et = spec.event_bigrams[event_cols.index(c)]
        if not v > 0:
            return f"never {_label(b_et)} right after {_label(a_et)}"
        return f"{_label(b_et)} right after {_label(a_et)} {n} time{'' if n == '1' else 's'}"
    return f"{c.replace('_', ' ')}: {n}"


def reason_phrase(
    spec: FeatureSpec, group: str, cols: list[str], row: dict[str, float], dominant: str | None = None
) -> str:
    """Plain words for reason group ``group`` of one customer.

    ``row`` holds the group's column values (more columns are fine); ``dominant`` is the
    group's column that raises the risk most (default: its first column), which picks what
    a behaviour group talks about. Touchpoint names read ``event via channel``.
    """
    dominant = cols[0] if dominant is None else dominant
    if group in spec.friction_features:
        return _friction_phrase(spec, group, row)
    if group in spec.feature_groups:
        return _touchpoint_phrase(group, cols, row, dominant)
    v = _val(row, dominant)
    family = behaviour_family(dominant)
    if family == "recent activity":
        return _activity_phrase(dominant, v, row)
    if family == "tenure":
        return f"first seen {_days(v)} ago" if _finite(v) else "a new customer"
    if family in ("conversions", "spend"):
        return _conversion_phrase(spec, dominant, v, row)
    if family == "purchase rhythm":
        return _rhythm_phrase(spec, dominant, v, row)
    if family == "journey stage":
        return _stage_phrase(spec, dominant, v, row)
    if family == "sessions":
        return _session_phrase(dominant, v)
    if family == "channels":
        return _channel_phrase(spec, dominant, v)
    if family == "journey path":
        return _path_phrase(spec, dominant, v)
    return f"{family}: {_num(v)}" if _finite(v) else f"no {family}"


# ---------------------------------------------------------------------------- reasons
@dataclass(frozen=True)
class _Plan:
    """What every call needs from a spec's groups, computed once per (spec, groups)."""

    names: list[str]
    cols: list[list[str]]
    idx: list[np.ndarray]
    groups: dict[str, list[str]]
    member: np.ndarray  # (features, groups) 0/1: group SHAP is one product, as group_shap does
    # Groups that are benign when absent (friction and touchpoint groups): their positions,
    # the columns that show presence (counts) and measurement (a friction's measure), and
    # each such column's group among them (0/1 membership matrices).
    absent_groups: np.ndarray
    present_cols: np.ndarray
    present_member: np.ndarray
    measure_cols: np.ndarray
    measure_member: np.ndarray


_PLANS: dict[tuple[int, int], tuple[Any, Any, _Plan]] = {}


def _absence_columns(spec: FeatureSpec, name: str, cols: list[str]) -> tuple[list[str], list[str]] | None:
    """(presence, measure) columns of a friction or touchpoint group; None for behaviours."""
    if name in spec.friction_features:
        fr = spec.journey_map.friction[list(spec.friction_features).index(name)]
        present = [c for c in cols if c.endswith("_count_total") or (c.startswith("tp_") and c.endswith("_count_90d"))]
        ends = tuple(f"_{fr.column}_{k}" for k in ("max", "last", "mean_90d")) if fr.column else ()
        return present, [c for c in spec.friction_features[name] if ends and c.endswith(ends)]
    if name in spec.feature_groups:
        return [c for c in cols if c.endswith("_count_90d")], []
    return None


def _plan(spec: FeatureSpec, groups: dict[str, list[str]] | None) -> _Plan:
    key = (id(spec), id(groups))
    hit = _PLANS.get(key)
    if hit is not None and hit[0] is spec and hit[1] is groups:
        return hit[2]
    acted = action_groups(spec, groups)
    pos = {c: i for i, c in enumerate(spec.feature_names)}
    names, cols = list(acted), list(acted.values())
    absent, present, measure = [], [], []
    for g, (name, gcols) in enumerate(acted.items()):
        found = _absence_columns(spec, name, gcols)
        if found is None:
            continue
        k = len(absent)
        absent.append(g)
        present += [(pos[c], k) for c in found[0]]
        measure += [(pos[c], k) for c in found[1]]

    def member(pairs: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
        m = np.zeros((len(pairs), len(absent)))
        m[np.arange(len(pairs)), [k for _, k in pairs]] = 1.0
        return np.array([c for c, _ in pairs], dtype=np.int64), m

    idx = [np.array([pos[c] for c in gc], dtype=np.int64) for gc in cols]
    group_member = np.zeros((len(pos), len(names)))
    for g, gi in enumerate(idx):
        group_member[gi, g] = 1.0
    plan = _Plan(
        names, cols, idx, acted, group_member, np.array(absent, dtype=np.int64), *member(present), *member(measure),
    )  # fmt: skip
    if len(_PLANS) > 8:
        _PLANS.clear()
    _PLANS[key] = (spec, groups, plan)
    return plan


def _benign(Xa: np.ndarray, plan: _Plan) -> np.ndarray:
    """(n, G): the group is only an absence for this row (never a reason): a touchpoint
    without an event in the last 90 days, a friction never met nor measured."""
    out = np.zeros((len(Xa), len(plan.names)), dtype=bool)
    present = (Xa[:, plan.present_cols] > 0) @ plan.present_member
    measured = np.isfinite(Xa[:, plan.measure_cols]) @ plan.measure_member
    out[:, plan.absent_groups] = (present == 0) & (measured == 0)
    return out


def reason_codes(
    features: pd.DataFrame, bundle: Bundle, top: int = 3
) -> list[list[dict[str, Any]]]:
    """Top reasons for each feature row's drop-off risk, in probability points.

    Per row, at most ``top`` groups (:func:`action_groups`) that *raise* the risk and are
    not a benign absence, as ``{"touchpoint", "points", "text"}`` sorted by ``points``
    descending; ``touchpoint`` names the friction, touchpoint or behaviour group;
    ``points`` = 100 × (p_drop − p_drop with the group's SHAP removed), on the customer's
    own base through the model's calibration.
    """
    if top < 1:
        raise ValueError(f"top must be >= 1, got {top}")
    Xa = features[bundle.spec.feature_names].to_numpy(dtype=np.float64, na_value=np.nan)
    if not len(Xa):
        return []
    return reasons_from_shap(Xa, tree_shap(bundle.drop_off, Xa), bundle, top)


def reasons_from_shap(
    Xa: np.ndarray, phi: np.ndarray, bundle: Bundle, top: int = 3, groups: dict[str, list[str]] | None = None
) -> list[list[dict[str, Any]]]:
    """:func:`reason_codes` of a float64 feature matrix (``spec.feature_names`` order) and
    its drop-off TreeSHAP ``phi`` (:func:`~journey_ml.explain.shap.tree_shap`); the online
    scorer computes both without a frame and passes the spec's ``reason_groups`` it keeps
    (refined by :func:`action_groups` here, once per groups object)."""
    spec = bundle.spec
    names = spec.feature_names
    plan = _plan(spec, groups)
    m = phi.sum(axis=1)
    gphi = phi[:, : len(names)] @ plan.member  # = group_shap(phi, plan.groups, names), member cached
    benign = _benign(Xa, plan)
    p = drop_probability(bundle.drop_off, m)
    # Points per group: only computed for each row's top-k positive, non-benign groups.
    k = min(top, gphi.shape[1])
    order = np.argsort(-np.where(benign, -np.inf, gphi), axis=1, kind="stable")[:, :k]
    at_row = np.arange(len(order))[:, None]
    top_phi = gphi[at_row, order]
    without = drop_probability(bundle.drop_off, (m[:, None] - top_phi).ravel()).reshape(top_phi.shape)
    points = 100.0 * (p[:, None] - without)
    keep = (top_phi > 0) & (points >= 0.05) & ~benign[at_row, order]
    out: list[list[dict[str, Any]]] = [[] for _ in range(len(Xa))]
    rows, slots = np.nonzero(keep)  # row-major: each row's reasons in slot (points) order
    chosen = order[rows, slots]
    # Each reason's dominant column: the group's column that raises the risk most.
    dominant = np.empty(len(rows), dtype=np.int64)
    for g in sorted(set(chosen.tolist())):
        at = np.flatnonzero(chosen == g)
        dominant[at] = plan.idx[g][np.argmax(phi[rows[at]][:, plan.idx[g]], axis=1)]
    for i, g, d, pts in zip(rows.tolist(), chosen.tolist(), dominant.tolist(), points[rows, slots].tolist(), strict=True):
        cols = plan.cols[g]
        row = dict(zip(cols, Xa[i, plan.idx[g]].tolist(), strict=True))
        amount = f"{pts:.0f}" if pts >= 1 else f"{pts:.1f}"
        text = f"{reason_phrase(spec, plan.names[g], cols, row, names[d])}: +{amount} points of drop-off risk"
        out[i].append({"touchpoint": plan.names[g], "points": round(pts, 2), "text": text})
    return out


def add_reason_codes(
    scores: pd.DataFrame, events: pd.DataFrame, bundle: Bundle, at: Any = None, *, top: int = 3
) -> pd.DataFrame:
    """``scores`` with a ``reasons`` column: each customer's reason texts joined by ``"; "``.

    A joined string (not a list) so the column survives CSV as well as Parquet unchanged.

    Parameters
    ----------
    scores : DataFrame
        Output of :func:`journey_ml.registry.scoring.score` (needs ``customer_id``).
    events : DataFrame
        The canonical events the scores came from.
    bundle : Bundle
    at : timestamp-like, optional
        The scoring time used for ``scores`` (default: the latest event).
    top : int, default 3

    Returns
    -------
    DataFrame
        A copy of ``scores`` with ``reasons`` (empty string when nothing raises the risk).
    """
    out = scores.copy()
    if out.empty:
        out["reasons"] = pd.Series([], dtype="str")
        return out
    features = features_at(events, bundle.spec, scoring_time(events, at))
    codes = reason_codes(features, bundle, top=top)
    texts = pd.Series(
        ["; ".join(r["text"] for r in rs) for rs in codes], index=features["customer_id"].to_numpy()
    )
    texts = texts[~texts.index.duplicated()]
    out["reasons"] = out["customer_id"].astype("str").map(texts).fillna("").astype("str").to_numpy()
    return out
