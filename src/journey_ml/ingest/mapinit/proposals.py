"""The proposals of a draft: conversion events, stages, frictions and settings, each with
its reason, plus what a person should check before training on it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from journey_ml.ingest.mapinit.analysis import Analysis
from journey_ml.ingest.mapinit.results import (
    EventTypeProfile,
    FrictionProposal,
    RoleGuess,
    StageProposal,
)

#: A repeat-conversion stage is proposed above this share of converters converting again.
REPEAT_SHARE = 0.05
FRICTION_QUANTILE = 0.9
_MAX_PRE_STAGES = 3
_PRE_STAGE_NAMES: dict[int, tuple[str, ...]] = {
    1: ("engagement",),
    2: ("awareness", "consideration"),
    3: ("awareness", "consideration", "decision"),
}


def choose_conversions(a: Analysis, has_revenue: bool) -> tuple[tuple[str, ...], dict[str, str], list[str]]:
    """Conversion events with a reason each, plus notes on revenue left out."""
    named = [e for e in a.names if a.kind[e] == "conversion"]
    notes: list[str] = []
    if has_revenue and a.revenue_rows >= 0.5:
        notes.append(
            f"the revenue column is non-zero on {a.revenue_rows:.0%} of all rows: it looks like an attribute of the "
            "customer or case (an amount requested, a plan price), not order revenue; conversions are chosen by "
            "name, and revenue counts only on them: check that is what a conversion is worth"
        )
        has_revenue = False
    carriers = [
        e for e in a.names
        if has_revenue and (a.revenue_share[e] or 0.0) >= 0.5 and a.kind[e] in ("conversion", "other")
    ]
    reasons: dict[str, str] = {}
    confirmed = [e for e in named if e in carriers]
    if confirmed:
        pool, chosen = confirmed, _not_superseded(confirmed, a)
        for e in chosen:
            reasons[e] = f"{a.kind_reason[e]} and carries revenue on {a.revenue_share[e]:.0%} of its rows"
    elif carriers:
        pool, chosen = carriers, carriers
        for e in chosen:
            reasons[e] = f"carries revenue on {a.revenue_share[e]:.0%} of its rows"
    else:
        pool, chosen = named, _not_superseded(named, a)
        for e in chosen:
            reasons[e] = a.kind_reason[e] + (" (no revenue on it)" if has_revenue else "")
    for e in named:
        if e not in chosen:
            a.kind[e] = "other"
            why = "followed by another conversion-like event in most journeys" if e in pool else "carries no revenue while others do"
            a.kind_reason[e] = f"{a.kind_reason[e]}, but {why}"
    if has_revenue:
        for e in a.names:
            share = a.revenue_share[e] or 0.0
            if e not in chosen and share > 0:
                notes.append(
                    f"'{e}' carries revenue on {share:.0%} of its rows but is not a proposed conversion: "
                    "revenue counts only on conversion events"
                )
    for e in chosen:
        a.kind[e] = "conversion"
    return tuple(chosen), reasons, notes


def _not_superseded(candidates: Sequence[str], a: Analysis) -> list[str]:
    """Drop candidates that most of their customers follow with another candidate.

    ``A_ACCEPTED`` followed by ``A_ACTIVATED`` in most cases is a step towards the
    conversion, not a second conversion (which would count as a repeat conversion).
    """
    if len(candidates) < 2:
        return list(candidates)
    fr = a.first_rank[a.first_rank["e"].isin(candidates)]
    wide = fr.pivot_table(index="c", columns="e", values="rank", aggfunc="min")
    keep = []
    for c in candidates:
        if c not in wide.columns:
            keep.append(c)
            continue
        mine = wide[c].dropna()
        others = wide.loc[mine.index, [d for d in wide.columns if d != c]]
        followed = (others.gt(mine, axis=0)).any(axis=1)
        if not len(mine) or followed.mean() < 0.5:
            keep.append(c)
    return keep or list(candidates)


def propose_stages(
    a: Analysis, conversions: Sequence[str]
) -> tuple[tuple[StageProposal, ...], dict[str, str], str | None]:
    """Stages (earliest first), event -> stage name, and the repeat-conversion stage."""
    stage_events = [e for e in a.names if a.kind[e] == "other"]
    after: dict[str, float | None] = dict.fromkeys(a.names)
    post: list[str] = []
    if conversions:
        fr = a.first_rank
        conv_first = fr[fr["e"].isin(conversions)].groupby("c")["rank"].min()
        conv_rows = fr[fr["c"].isin(conv_first.index)]
        later = conv_rows["rank"].to_numpy() > conv_first.reindex(conv_rows["c"]).to_numpy()
        share = pd.Series(later).groupby(conv_rows["e"].to_numpy()).agg(["mean", "size"])
        for e in a.names:
            if e in share.index:
                after[e] = float(share.loc[e, "mean"])
        post = [e for e in stage_events if after[e] is not None and after[e] > 0.5]
    a.after = after
    pre = [e for e in stage_events if e not in post]
    groups = _split_by_position(pre, a)
    stages: list[StageProposal] = []
    names = _PRE_STAGE_NAMES.get(len(groups), ())
    for name, group in zip(names, groups, strict=True):
        pos = [a.position[e] for e in group if a.position[e] is not None]
        if not pos:
            why = "position unknown (one-event journeys)"
        elif min(pos) == max(pos):
            why = f"median first position {min(pos):.2f}"
        else:
            why = f"median first positions {min(pos):.2f}-{max(pos):.2f}"
        stages.append(StageProposal(name, tuple(group), why))
    repeat: str | None = None
    if conversions:
        stages.append(StageProposal("conversion", tuple(conversions), "the conversion events"))
        if post:
            stages.append(
                StageProposal(
                    "post_conversion",
                    tuple(post),
                    "first met after converting by most converting customers",
                )
            )
        ev = a.events
        per = ev[ev["event_type"].isin(conversions)].groupby("customer_id").size()
        converters = len(per)
        repeaters = int((per > 1).sum())
        if converters and repeaters >= 2 and repeaters / converters >= REPEAT_SHARE:
            repeat = "repeat_conversion"
            stages.append(
                StageProposal(
                    repeat,
                    (),
                    f"{repeaters:,} of {converters:,} converting customers ({repeaters / converters:.0%}) convert again",
                )
            )
    if not stages:
        stages.append(StageProposal("journey", (), "no event type evidences progress"))
    stage_of = {e: s.name for s in stages for e in s.events}
    return tuple(stages), stage_of, repeat


def _split_by_position(events: Sequence[str], a: Analysis) -> list[list[str]]:
    """Order event types by median position and cut at the largest gaps (<= 3 groups)."""
    if not events:
        return []
    ordered = sorted(events, key=lambda e: (a.position[e] if a.position[e] is not None else 0.0, -a.count[e], e))
    pos = [a.position[e] if a.position[e] is not None else 0.0 for e in ordered]
    gaps = sorted(
        ((pos[i + 1] - pos[i], i) for i in range(len(pos) - 1) if pos[i + 1] - pos[i] > 0.02),
        key=lambda g: (-g[0], g[1]),
    )
    cuts = sorted(i for _, i in gaps[: _MAX_PRE_STAGES - 1])
    groups, start = [], 0
    for i in cuts:
        groups.append(list(ordered[start : i + 1]))
        start = i + 1
    groups.append(list(ordered[start:]))
    return groups


def _nice(value: float) -> float:
    """Two significant digits: a threshold a person would write."""
    if value == 0 or not math.isfinite(value):
        return float(value)
    return float(f"{value:.2g}")


def propose_frictions(
    friction_events: Sequence[str], measures: Sequence[str], events: pd.DataFrame, a: Analysis
) -> tuple[FrictionProposal, ...]:
    """Friction candidates: each failure-named event type, then each measure column with
    its 90th percentile (1 for a 0/1 flag) as the threshold."""
    out: list[FrictionProposal] = []
    used: set[str] = set()
    for e in friction_events:
        out.append(FrictionProposal(e, e, None, None, f"{a.kind_reason[e]}; {_rows(a.count[e])}"))
        used.add(e)
    for col in measures:
        values = events[col].to_numpy(dtype=np.float64)
        present = ~np.isnan(values)
        if not present.any():
            continue
        vals = values[present]
        carriers = events.loc[present, "event_type"].value_counts()
        event_type = str(carriers.index[0]) if carriers.iloc[0] / present.sum() >= 0.95 else None
        on = f"on '{event_type}' events" if event_type else f"on {len(carriers)} event types"
        flag = bool(np.isin(vals, (0.0, 1.0)).all())
        if flag:
            threshold: float | None = 1.0
            why = f"0/1 flag named like a failure, set on {int((vals == 1).sum()):,} rows {on}"
            name = col
        else:
            q = float(np.quantile(vals, FRICTION_QUANTILE))
            threshold = _nice(q) if q > 0 else None
            why = (
                f"measure named like a wait or delay, {present.sum():,} values {on}; "
                + (f"min is the 90th percentile ({q:.4g})" if threshold is not None else "90th percentile is 0: any value > 0")
            )
            name = f"high_{col}"
        while name in used:
            name += "_"
        used.add(name)
        out.append(FrictionProposal(name, event_type, col, threshold, why))
    return tuple(out)


def propose_settings(
    events: pd.DataFrame, sample: pd.DataFrame, reject_share: float, reasons: Mapping[str, int]
) -> tuple[dict[str, tuple[float, str]], list[str]]:
    """inactivity_days, horizon_days and max_reject_share from the data, with reasons."""
    notes: list[str] = []
    ts = sample["timestamp"].astype("int64").to_numpy()
    codes = pd.factorize(sample["customer_id"])[0]
    same = codes[1:] == codes[:-1]
    # Gaps between visits (over an hour), not between clicks of one visit.
    gaps = (ts[1:] - ts[:-1])[same] / 86_400e9
    gaps = gaps[gaps > 1 / 24]
    if len(gaps):
        p99 = float(np.quantile(gaps, 0.99))
        inactivity = float(min(90, max(7, math.ceil(p99))))
        inact_why = f"99% of the gaps between a customer's visits (over an hour apart) are under {p99:.1f} days (kept within 7..90)"
    else:
        inactivity, inact_why = 30.0, "no customer comes back after more than an hour: the default"
    span = (events["timestamp"].max() - events["timestamp"].min()).total_seconds() / 86_400
    days = f"{span:.0f} days" if span >= 2 else f"{span:.1f} days"
    if span >= 84:
        horizon, hor_why = 14.0, f"the default; the log spans {days}"
    else:
        horizon = float(max(1, math.floor(span / 6)))
        hor_why = f"the log spans only {days}: a sixth of it, at least 1"
        notes.append(
            f"the log spans {days}: training needs several weekly cutoffs, each followed by a full "
            "horizon; a longer log gives better models"
        )
    settings = {
        "inactivity_days": (inactivity, inact_why),
        "horizon_days": (horizon, hor_why),
        "session_gap_minutes": (30.0, "a new session starts after this much silence (where the log has no session ids)"),
    }
    if reject_share > 0.05:
        limit = round(min(1.0, math.ceil(reject_share * 100) / 100 + 0.01), 2)
        top = ", ".join(f"{k}: {v:,}" for k, v in list(reasons.items())[:3])
        settings["max_reject_share"] = (limit, f"{reject_share:.1%} of rows are rejected ({top})")
        why = (
            " (Segment identify/group/alias calls describe users, not journey steps)" if "not_an_event" in reasons else ""
        )
        notes.append(
            f"{reject_share:.1%} of rows are rejected ({top}){why}; max_reject_share is raised to {limit:g} so the "
            "draft loads: look at them with `journey-ml validate --rejects rejects.csv`"
        )
    else:
        settings["max_reject_share"] = (0.05, "fail a load when more than this share of rows is rejected")
    return settings, notes


def event_profile(
    e: str, a: Analysis, conversions: Sequence[str], conv_reasons: Mapping[str, str], stage_of: Mapping[str, str]
) -> EventTypeProfile:
    """One event type's profile: what the draft makes of it (conversion, exit, friction or
    its stage) and why."""
    kind = a.kind[e]
    after = a.after.get(e)
    if e in conversions:
        proposal, reason = "conversion", conv_reasons[e]
    elif kind in ("exit", "friction"):
        proposal, reason = kind, a.kind_reason[e]
        if kind == "exit" and a.last_share[e] is not None:
            reason += f"; the last event of {a.last_share[e]:.0%} of sampled customers who have it"
    else:
        stage = stage_of.get(e, "")
        proposal = f"stage:{stage}"
        pos = a.position[e]
        reason = f"median first position {pos:.2f}" if pos is not None else "position unknown (one-event journeys)"
        if stage == "post_conversion" and after is not None:
            reason += f"; {after:.0%} of converting customers first meet it after converting"
        if a.kind_reason[e]:
            reason = f"{a.kind_reason[e]}; {reason}"
    return EventTypeProfile(
        name=e,
        count=a.count[e],
        customers=a.customers[e],
        median_position=a.position[e],
        after_conversion_share=after,
        revenue_rows_share=a.revenue_share[e],
        last_event_share=a.last_share[e],
        proposal=proposal,
        reason=reason,
    )


def review_checks(
    roles: Mapping[str, RoleGuess],
    a: Analysis,
    conversions: Sequence[str],
    exits: Sequence[str],
    frictions: Sequence[FrictionProposal],
    sampling: Mapping[str, Any],
    unused: Sequence[str],
    fmt: str,
) -> list[str]:
    """What a person should look at before training on the draft."""
    out: list[str] = []
    for role, g in roles.items():
        if g.score < 100 and fmt == "auto":
            how = "by its values only" if not g.by_name else "by a partial name match" if g.score < 90 else ""
            if how:
                out.append(f"{role} <- '{g.column}' was chosen {how}: check it")
    out.append("stages are grouped by where event types first appear in journeys: check the order and rename them")
    if not conversions:
        out.append("no conversion event found: list yours under conversion_events (and in a stage)")
    elif "revenue" not in roles:
        out.append(f"conversion events {list(conversions)} are chosen by name only: check them")
    if "revenue" not in roles:
        out.append(
            "the log has no revenue column: rankings count conversions; set value_per_conversion to value them in money"
        )
    if not exits:
        out.append("no exit event found (unsubscribe, cancel, ...): list yours under exit_events if there are any")
    rarely_last = [e for e in exits if (a.last_share[e] or 0.0) < 0.5]
    if rarely_last:
        out.append(
            f"exit events {rarely_last} are the last event of fewer than half the customers who have them: "
            "an exit ends a journey, so check they are exits (or make them friction)"
        )
    if any(f.column for f in frictions):
        out.append("friction thresholds are the 90th percentile of each measure: set the level that hurts customers")
    if not frictions:
        out.append("no friction found: add the errors, waits and delays your customers meet under friction")
    if unused:
        out.append(f"numeric columns not used: {', '.join(unused)} (add one as a friction column if it measures a bad experience)")
    if sampling.get("sampled"):
        out.append(
            f"positions come from a sample of {sampling['sample_customers']:,} of {sampling['customers']:,} customers "
            f"({sampling['sample_rows']:,} rows); counts use every row"
        )
    return out


def _rows(n: int) -> str:
    return f"{n:,} row" + ("" if n == 1 else "s")
