"""The journey map computed from the event log: what the report draws.

From canonical events and the journey map this derives, per customer, when each stage
was first reached (the furthest stage so far, :mod:`journey_ml.contract.stages`), how
the journey ended (an exit event, silence beyond ``inactivity_days``, or still active)
and from that:

* per stage: customers who reached it, conversion to the next stage, the median time
  to it, time in stage, the drop-off rate (journeys that ended here and are gone),
  revenue (or conversions) booked while in it;
* the top touchpoints of each stage by volume (events while the customer was in it);
* moments of truth: touchpoints after which progression differs most from the rest of
  the stage (an association, not a causal effect — the fix list is the causal part);
* each friction at the stage where it bites, with the ranking's amount at stake;
* stage-to-stage flows and how journeys end (the Sankey);
* stage conversion and friction reach per calendar period (the trend within the data).

Everything is vectorised over events; customers are never looped over in Python.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from journey_ml.contract import JourneyMap
from journey_ml.contract.frictions import friction_occurrences
from journey_ml.contract.stages import (
    furthest_stage_over_time,
    is_conversion,
    is_exit,
    sort_events,
)
from journey_ml.contract.time import to_utc

__all__ = [
    "END_ACTIVE",
    "END_EXIT",
    "END_SILENT",
    "MIN_PERIOD_CUSTOMERS",
    "JourneyData",
    "Paths",
    "customer_paths",
    "customer_segments",
    "friction_table",
    "journey_data",
    "moments_of_truth",
    "stage_flows",
    "stage_table",
    "top_touchpoints",
]

END_EXIT = "exit event"
END_SILENT = "dropped off (silent)"
END_ACTIVE = "still active"
_DAY_NS = 86_400 * 10**9
_MISSING = np.iinfo(np.int64).max


@dataclass
class Paths:
    """Per-customer journey facts and the per-event arrays they came from.

    ``reach[c, k]`` is the time (int64 ns) customer ``c`` first reached stage ``k`` or a
    later one (``_MISSING`` if never); ``end`` is how the journey stands at ``at``.
    """

    journey_map: JourneyMap
    events: pd.DataFrame
    at: pd.Timestamp
    customers: pd.Index
    codes: np.ndarray
    ts: np.ndarray
    stage: np.ndarray
    reach: np.ndarray
    furthest: np.ndarray
    first: np.ndarray
    last: np.ndarray
    exited: np.ndarray
    gone: np.ndarray
    value: np.ndarray
    value_unit: str

    @property
    def n(self) -> int:
        return len(self.customers)

    def reached(self, k: int) -> np.ndarray:
        return self.reach[:, k] != _MISSING

    def outcome(self, k: int) -> np.ndarray:
        """Per customer: progressed past stage ``k`` (the last stage: still active)."""
        if k + 1 < self.reach.shape[1]:
            return self.reached(k + 1)
        return ~self.gone


def customer_paths(events: pd.DataFrame, journey_map: JourneyMap, at: Any = None) -> Paths:
    """Per-customer stage reach times and journey ends at ``at`` (default: the latest event)."""
    ev = sort_events(events)
    if at is not None:
        ev = ev.loc[ev["timestamp"] <= to_utc(at)].reset_index(drop=True)
    end = to_utc(at) if at is not None else (pd.Timestamp(ev["timestamp"].max()) if len(ev) else pd.Timestamp(0, tz="UTC"))
    codes, customers = pd.factorize(ev["customer_id"].astype("str"), sort=False)
    codes = np.asarray(codes, dtype=np.int64)
    n, k_stages = len(customers), len(journey_map.stages)
    ts = pd.DatetimeIndex(ev["timestamp"]).asi8
    stage = np.maximum(furthest_stage_over_time(ev, journey_map).astype(np.int64), 0) if len(ev) else np.zeros(0, np.int64)
    reach = np.full((n, k_stages), _MISSING, dtype=np.int64)
    for k in range(k_stages):
        idx = np.flatnonzero(stage >= k)
        who, first = np.unique(codes[idx], return_index=True)
        reach[who, k] = ts[idx[first]]
    starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]]) if len(codes) else np.zeros(0, np.int64)
    ends = np.r_[starts[1:] - 1, len(codes) - 1] if len(codes) else np.zeros(0, np.int64)
    exit_mask = is_exit(ev, journey_map)
    exited = np.bincount(codes[exit_mask], minlength=n) > 0
    last = ts[ends] if n else np.zeros(0, np.int64)
    silent = (end.value - last) > journey_map.inactivity_days * _DAY_NS
    conv = is_conversion(ev, journey_map)
    revenue = ev["revenue"].to_numpy(dtype=np.float64, na_value=0.0) if "revenue" in ev.columns else np.zeros(len(ev))
    has_revenue = bool(conv.any() and np.nansum(revenue[conv]) > 0)
    value = np.where(conv, np.nan_to_num(revenue) if has_revenue else 1.0, 0.0)
    unit = "revenue" if has_revenue else ("conversions" if conv.any() else "none")
    return Paths(
        journey_map, ev, end, pd.Index(customers), codes, ts, stage, reach,
        stage[ends] if n else np.zeros(0, np.int64), ts[starts] if n else np.zeros(0, np.int64), last,
        exited, exited | silent, value, unit,
    )  # fmt: skip


def _median_days(delta_ns: np.ndarray) -> float:
    return float(np.median(delta_ns) / _DAY_NS) if len(delta_ns) else float("nan")


def stage_table(paths: Paths, customers: np.ndarray | None = None) -> pd.DataFrame:
    """KPIs per stage for all customers, or those where ``customers`` (bool mask) is set.

    Columns: ``stage``, ``customers`` (reached it), ``share_of_start``, ``to_next``
    (share that reached the next stage), ``median_days_to_next``, ``ended_here``,
    ``dropped_here`` (ended here and gone), ``drop_off_rate`` (``dropped_here`` over
    ``customers``), ``median_days_in_stage`` and ``value`` (revenue or conversions booked
    while in the stage; NaN without conversions).
    """
    mask = np.ones(paths.n, dtype=bool) if customers is None else customers
    names = paths.journey_map.stage_names
    k_stages = len(names)
    reach = paths.reach[mask]
    furthest, gone, last = paths.furthest[mask], paths.gone[mask], paths.last[mask]
    event_mask = mask[paths.codes]
    value = np.bincount(paths.stage[event_mask], weights=paths.value[event_mask], minlength=k_stages)
    rows = []
    for k in range(k_stages):
        here = reach[:, k] != _MISSING
        n_k = int(here.sum())
        nxt = reach[:, k + 1] != _MISSING if k + 1 < k_stages else np.zeros(len(reach), dtype=bool)
        both = here & nxt
        stop = np.where(nxt, reach[:, k + 1] if k + 1 < k_stages else 0, last)
        ended = here & (furthest == k)
        rows.append(
            {
                "stage": names[k],
                "customers": n_k,
                "to_next": float(both.sum() / n_k) if n_k and k + 1 < k_stages else float("nan"),
                "median_days_to_next": _median_days(reach[both, k + 1] - reach[both, k]) if k + 1 < k_stages else float("nan"),
                "ended_here": int(ended.sum()),
                "dropped_here": int((ended & gone).sum()),
                "median_days_in_stage": _median_days(stop[here] - reach[here, k]),
                "value": float(value[k]) if paths.value_unit != "none" else float("nan"),
            }
        )
    out = pd.DataFrame(rows)
    start = max(int(out["customers"].iloc[0]), 1) if len(out) else 1
    out.insert(2, "share_of_start", out["customers"] / start)
    out["drop_off_rate"] = out["dropped_here"] / out["customers"].clip(lower=1)
    return out


def touchpoint_labels(paths: Paths) -> np.ndarray:
    """Per event, its touchpoint: the event type, with the channel when the map splits by it."""
    ev = paths.events
    label = ev["event_type"].astype("str").to_numpy(dtype=object)
    if "channel" in paths.journey_map.touchpoints_by and "channel" in ev.columns:
        label = label + " · " + ev["channel"].astype("str").to_numpy(dtype=object)
    return label


def top_touchpoints(paths: Paths, top: int = 3) -> pd.DataFrame:
    """The ``top`` touchpoints of each stage by events (events while the customer was in it)."""
    if not len(paths.events):
        return pd.DataFrame(columns=["stage", "touchpoint", "events", "customers", "share_of_stage_events"])
    frame = pd.DataFrame({"stage": paths.stage, "touchpoint": touchpoint_labels(paths), "customer": paths.codes})
    grouped = frame.groupby(["stage", "touchpoint"], sort=False)
    counts = grouped.agg(events=("customer", "size"), customers=("customer", "nunique")).reset_index()
    counts["share_of_stage_events"] = counts["events"] / counts.groupby("stage")["events"].transform("sum")
    counts = counts.sort_values(["stage", "events", "touchpoint"], ascending=[True, False, True], kind="stable")
    out = counts.groupby("stage", sort=True).head(top).reset_index(drop=True)
    out["stage"] = np.asarray(paths.journey_map.stage_names, dtype=object)[out["stage"].to_numpy()]
    return out


def moments_of_truth(paths: Paths, top: int = 6, min_customers: int = 10) -> pd.DataFrame:
    """Touchpoints after which progression differs most from the rest of the stage.

    For each stage ``k`` and touchpoint ``t`` met while in it: the share of those customers
    who went on to the next stage (for the last stage: who are still active) against the
    share of the stage's other customers. Kept when both groups have ``min_customers`` and
    the touchpoint reaches 2% of the stage; ranked by the absolute difference.
    """
    cols = ["stage", "touchpoint", "customers", "rate_with", "rate_without", "difference", "outcome"]
    if not len(paths.events):
        return pd.DataFrame(columns=cols)
    names = paths.journey_map.stage_names
    pairs = pd.DataFrame({"stage": paths.stage, "touchpoint": touchpoint_labels(paths), "customer": paths.codes}).drop_duplicates()
    outcomes = np.stack([paths.outcome(k) for k in range(len(names))], axis=1)
    pairs["outcome"] = outcomes[pairs["customer"].to_numpy(), pairs["stage"].to_numpy()]
    agg = pairs.groupby(["stage", "touchpoint"], sort=False).agg(customers=("customer", "size"), hits=("outcome", "sum")).reset_index()
    n_stage = np.array([paths.reached(k).sum() for k in range(len(names))])
    hit_stage = np.array([(paths.reached(k) & outcomes[:, k]).sum() for k in range(len(names))])
    k = agg["stage"].to_numpy()
    n_with = agg["customers"].to_numpy()
    n_without = n_stage[k] - n_with
    keep = (n_with >= max(min_customers, 1)) & (n_without >= min_customers) & (n_with >= 0.02 * n_stage[k])
    agg = agg.loc[keep].copy()
    k, n_with, n_without = k[keep], n_with[keep], n_without[keep]
    agg["rate_with"] = agg["hits"].to_numpy() / n_with
    agg["rate_without"] = (hit_stage[k] - agg["hits"].to_numpy()) / n_without
    agg["difference"] = agg["rate_with"] - agg["rate_without"]
    agg["outcome"] = [f"reached {names[i + 1]}" if i + 1 < len(names) else "still active" for i in k]
    agg["stage"] = np.asarray(names, dtype=object)[k]
    agg = agg.reindex(agg["difference"].abs().sort_values(ascending=False, kind="stable").index)
    return agg.groupby("stage", sort=False).head(2).head(top)[cols].reset_index(drop=True)


def friction_table(paths: Paths, ranking: pd.DataFrame | None = None) -> pd.DataFrame:
    """Each friction: occurrences, customers, the stage where it bites and its amount at stake.

    The stage is the ranking's ``worst_stage`` (where its cost concentrates) when the
    ranking has it, else the stage with most occurrences. ``amount``, ``ci_low``,
    ``ci_high`` and ``unit`` come from the ranking (NaN without one).
    """
    masks = friction_occurrences(paths.events, paths.journey_map) if len(paths.events) else {}
    names = np.asarray(paths.journey_map.stage_names, dtype=object)
    ranked = ranking.set_index("touchpoint") if ranking is not None and len(ranking) else None
    rows = []
    for fr in paths.journey_map.friction:
        hit = masks.get(fr.name, np.zeros(len(paths.events), dtype=bool))
        by_stage = np.bincount(paths.stage[hit], minlength=len(names))
        stage = str(names[int(by_stage.argmax())]) if hit.any() else ""
        row: dict[str, Any] = {
            "friction": fr.name,
            "touchpoint": fr.touchpoint,
            "occurrences": int(hit.sum()),
            "customers": len(np.unique(paths.codes[hit])),
            "amount": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"), "unit": "",
        }  # fmt: skip
        if ranked is not None and fr.name in ranked.index:
            r = ranked.loc[fr.name]
            row.update(amount=float(r["expected_impact"]), ci_low=float(r["ci_low"]), ci_high=float(r["ci_high"]), unit=str(r["unit"]))
            stage = str(r["worst_stage"]) or stage
        row["stage"] = stage
        rows.append(row)
    cols = ["friction", "touchpoint", "stage", "occurrences", "customers", "amount", "ci_low", "ci_high", "unit"]
    return pd.DataFrame(rows, columns=cols)


def stage_flows(paths: Paths) -> pd.DataFrame:
    """Customers moving from each stage to the next one they reached, and how journeys end.

    ``source`` and ``target`` are stage names, or for the last step of a journey one of
    :data:`END_EXIT`, :data:`END_SILENT`, :data:`END_ACTIVE`.
    """
    names = np.asarray(paths.journey_map.stage_names, dtype=object)
    codes, stage = paths.codes, paths.stage
    moved = np.flatnonzero((codes[1:] == codes[:-1]) & (stage[1:] != stage[:-1])) if len(codes) else np.zeros(0, np.int64)
    steps = pd.DataFrame({"source": names[stage[moved]], "target": names[stage[moved + 1]]})
    ending = np.where(paths.exited, END_EXIT, np.where(paths.gone, END_SILENT, END_ACTIVE))
    ends = pd.DataFrame({"source": names[paths.furthest], "target": ending})
    flows = pd.concat([steps, ends], ignore_index=True)
    if flows.empty:
        return pd.DataFrame(columns=["source", "target", "customers"])
    out = flows.value_counts(["source", "target"], sort=False).rename("customers").reset_index()
    order = {s: i for i, s in enumerate([*names, END_EXIT, END_SILENT, END_ACTIVE])}
    key = out["source"].map(order) * 100 + out["target"].map(order)
    return out.iloc[np.argsort(key.to_numpy(), kind="stable")].reset_index(drop=True)


def _period_rule(paths: Paths) -> tuple[str, str]:
    """Weeks for logs up to half a year, else months: (pandas period code, word)."""
    span_days = (paths.ts.max() - paths.ts.min()) / _DAY_NS if len(paths.ts) else 0.0
    return ("W", "week") if span_days <= 183 else ("M", "month")


def _periods(ns: np.ndarray, code: str) -> pd.PeriodIndex:
    return pd.DatetimeIndex(pd.to_datetime(ns, utc=True)).tz_localize(None).to_period(code)


def _label(period: pd.PeriodIndex, code: str) -> np.ndarray:
    """Periods as text: a week by its Monday (``2026-01-05``), a month as ``2026-01``."""
    fmt = "%Y-%m-%d" if code == "W" else "%Y-%m"
    return np.asarray(period.start_time.strftime(fmt), dtype=object)


#: Fewest customers behind a point of the stage trend.
MIN_PERIOD_CUSTOMERS = 10


def stage_trend(paths: Paths) -> pd.DataFrame:
    """Per calendar period and stage step: of the customers who reached stage ``k`` in the
    period, the share who reached ``k+1`` within ``horizon_days`` (periods that ended at
    least ``horizon_days`` before ``at`` only, so every customer had the full horizon;
    periods with fewer than :data:`MIN_PERIOD_CUSTOMERS` customers at ``k`` are left out)."""
    code, _ = _period_rule(paths)
    names = paths.journey_map.stage_names
    horizon = paths.journey_map.horizon_days * _DAY_NS
    out = []
    for k in range(len(names) - 1):
        here = paths.reached(k)
        if not here.any():
            continue
        start = paths.reach[here, k]
        nxt = paths.reach[here, k + 1]
        within = (nxt != _MISSING) & (nxt - start <= horizon)
        period = _periods(start, code)
        complete = np.asarray(period.end_time.tz_localize("UTC").asi8 <= paths.at.value - horizon)
        frame = pd.DataFrame({"period": _label(period, code), "hit": within})[complete]
        agg = frame.groupby("period", sort=True)["hit"].agg(["mean", "size"]).reset_index()
        agg.columns = ["period", "rate", "customers"]
        agg = agg.loc[agg["customers"] >= MIN_PERIOD_CUSTOMERS]  # a rate of a handful of customers is noise
        agg["step"] = f"{names[k]} → {names[k + 1]}"
        out.append(agg)
    if not out:
        return pd.DataFrame(columns=["period", "rate", "customers", "step"])
    return pd.concat(out, ignore_index=True)


def friction_trend(paths: Paths, frictions: pd.DataFrame) -> pd.DataFrame:
    """Per period and friction: customers affected, and the amount at stake estimated as
    those customers times the ranking's amount per affected customer (NaN without it)."""
    code, _ = _period_rule(paths)
    masks = friction_occurrences(paths.events, paths.journey_map) if len(paths.events) else {}
    out = []
    for fr in frictions.itertuples(index=False):
        hit = masks.get(fr.friction)
        if hit is None or not hit.any():
            continue
        frame = pd.DataFrame({"period": _label(_periods(paths.ts[hit], code), code), "customer": paths.codes[hit]})
        agg = frame.groupby("period", sort=True)["customer"].nunique().rename("customers").reset_index()
        per_customer = fr.amount / fr.customers if fr.customers and np.isfinite(fr.amount) else float("nan")
        agg["amount"] = agg["customers"] * per_customer
        agg["friction"] = fr.friction
        out.append(agg)
    if not out:
        return pd.DataFrame(columns=["period", "customers", "amount", "friction"])
    return pd.concat(out, ignore_index=True)


def customer_segments(paths: Paths, column: str, top: int = 6) -> pd.Series:
    """Each customer's segment: the first non-empty value of ``column`` in their events.

    The ``top`` most common values keep their name; the rest are ``other``.
    """
    ev = paths.events
    if column not in ev.columns:
        from journey_ml.exceptions import ConfigError

        raise ConfigError(f"--segment: column '{column}' is not in the events; columns: {sorted(map(str, ev.columns))}")
    values = ev[column]
    ok = values.notna().to_numpy() & (values.astype("str").str.strip() != "").to_numpy()
    first = pd.Series(values.to_numpy()[ok].astype(str), index=paths.codes[ok]).groupby(level=0, sort=True).first()
    seg = pd.Series("(none)", index=np.arange(paths.n), dtype=object)
    seg.loc[first.index] = first.to_numpy()
    common = seg.value_counts().index[:top]
    return seg.where(seg.isin(common), "other")


@dataclass
class JourneyData:
    """Everything the journey map, stage and trend sections draw, computed from the data."""

    paths: Paths
    stages: pd.DataFrame
    touchpoints: pd.DataFrame
    moments: pd.DataFrame
    frictions: pd.DataFrame
    flows: pd.DataFrame
    stage_trend: pd.DataFrame
    friction_trend: pd.DataFrame
    period: str
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """The figures the trend across retrains follows (logged with each training run)."""
        return {
            "at": self.paths.at.isoformat(),
            "customers": int(self.paths.n),
            "stages": {
                r.stage: {"customers": int(r.customers), "to_next": None if not np.isfinite(r.to_next) else round(float(r.to_next), 6)}
                for r in self.stages.itertuples(index=False)
            },
            "frictions": {
                r.friction: {"amount": None if not np.isfinite(r.amount) else round(float(r.amount), 4), "unit": r.unit, "customers": int(r.customers)}
                for r in self.frictions.itertuples(index=False)
            },
        }


def journey_data(events: pd.DataFrame, journey_map: JourneyMap, *, at: Any = None, ranking: pd.DataFrame | None = None) -> JourneyData:
    """The journey map of ``events`` up to ``at``, with the ranking's amounts on its frictions."""
    paths = customer_paths(events, journey_map, at)
    frictions = friction_table(paths, ranking)
    notes = []
    if len(journey_map.stages) == 1:
        notes.append(f"The journey map has one stage ('{journey_map.stage_names[0]}'): there are no stage-to-stage conversions.")
    if paths.value_unit == "conversions":
        notes.append("The log has no revenue: stage value counts conversions.")
    elif paths.value_unit == "none":
        notes.append("The log has no conversions: stage value is not shown.")
    if not journey_map.friction:
        notes.append("The journey map declares no frictions (friction:): there is nothing to fix or rank.")
    if not journey_map.exit_events:
        notes.append("The journey map declares no exit events: drop-off is silence only.")
    return JourneyData(
        paths, stage_table(paths), top_touchpoints(paths), moments_of_truth(paths), frictions,
        stage_flows(paths), stage_trend(paths), friction_trend(paths, frictions), _period_rule(paths)[1], notes,
    )  # fmt: skip
