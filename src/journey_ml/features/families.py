"""The feature set: named feature functions with their column names beside them.

A scalar feature's function name is its column. A *family* (per touchpoint, per stage,
...) returns several columns and has a ``*_names(spec)`` function right after it;
:data:`FEATURE_FAMILIES` fixes the column order. A family may return a (k x rows)
matrix under a tuple of k names: they become consecutive columns.

Missing values: time-since features are NaN when the event never happened; categorical
codes are -1 when there is no event (LightGBM treats negative categories as missing).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from journey_ml.eventlog import NS_PER_DAY, EventLog, segment_reduce
from journey_ml.features.btyd import conversion_days, expected_conversions, p_alive, p_no_conversion
from journey_ml.features.context import Context, f32, ratio
from journey_ml.features.kernels import first_stage_table, max_gap_seconds, shares
from journey_ml.features.vocabulary import WINDOWS, Vocabulary, slugs
from journey_ml.runtime import per_identity

__all__ = [
    "BTYD_NAMES",
    "FEATURE_FAMILIES",
    "btyd_names",
    "channel_mix_names",
    "first_stage_index",
    "friction_features_names",
    "friction_names_of",
    "rfm_names",
    "sessions_names",
    "stage_features_names",
    "touchpoint_features_names",
    "touchpoint_names_of",
    "transitions_names",
    "trend_names",
]


def events_total(ctx: Context) -> np.ndarray:
    """Number of events at or before the cutoff."""
    return f32(ctx.rows.last[0] + 1 - ctx.rows.first)


def recency_days(ctx: Context) -> np.ndarray:
    """Days since the last event."""
    return ctx.days_since(ctx.rows.last[0], ctx.some)


def tenure_days(ctx: Context) -> np.ndarray:
    """Days since the first event."""
    return ctx.days_since(ctx.rows.first, ctx.some)


def rfm(ctx: Context) -> dict[str, np.ndarray]:
    """Event counts per window, conversions, revenue, order value, conversion recency."""
    rows = ctx.rows
    out: dict[str, np.ndarray] = {}
    for w in WINDOWS:
        out[f"events_{w}d"] = f32(rows.last[0] - rows.last[w])
    conv_total = ctx.flag_window("conversion", None)
    values = ctx.log.conv_value
    revenue_total = segment_reduce(np.add, values, *ctx.flag_range("conversion", None), 0.0)
    last_conv, has_conv = ctx.flag_last("conversion")
    out["conversions_total"] = f32(conv_total)
    out["conversions_90d"] = f32(ctx.flag_window("conversion", 90))
    out["revenue_total"] = f32(revenue_total)
    out["revenue_90d"] = f32(segment_reduce(np.add, values, *ctx.flag_range("conversion", 90), 0.0))
    out["avg_order_value"] = ratio(revenue_total, conv_total)
    out["days_since_last_conversion"] = ctx.days_since(last_conv, has_conv)
    return out


def rfm_names(spec: Vocabulary) -> list[str]:
    return [
        *(f"events_{w}d" for w in WINDOWS),
        "conversions_total",
        "conversions_90d",
        "revenue_total",
        "revenue_90d",
        "avg_order_value",
        "days_since_last_conversion",
    ]


def trend(ctx: Context) -> dict[str, np.ndarray]:
    """Events in the last 7 days against the 7 days before."""
    last7 = ctx.rows.last[0] - ctx.rows.last[7]
    prev7 = ctx.rows.last[7] - ctx.rows.last[14]
    return {
        "events_prev_7d": f32(prev7),
        "trend_7d": f32(last7 - prev7),
        "trend_ratio_7d": f32((last7 + 1) / (prev7 + 1)),
    }


def trend_names(spec: Vocabulary) -> list[str]:
    return ["events_prev_7d", "trend_7d", "trend_ratio_7d"]


def stage_features(ctx: Context) -> dict[str | tuple[str, ...], np.ndarray]:
    """Current stage (code), dwell time in it, and per-stage counts and first/last times.

    A customer with only stage-less events (e-mail opens, support, ...) is in
    ``STAGELESS_STAGE`` (:mod:`journey_ml.contract.stages`): the first stage.
    """
    enc, rows, spec = ctx.log, ctx.rows, ctx.spec
    n_st = len(spec.journey_map.stages)
    fam = ctx.codes("stage", enc.stage, n_st, (None,), last=True)
    assert fam.last is not None
    counts = fam.count[None]
    has = counts > 0
    # A stage's first event at or before t is the customer's first event of that stage
    # whenever there is one by t, so it comes from a per-customer table.
    first_idx = first_stage_index(enc, n_st)[np.maximum(rows.code, 0)].T
    last_idx = fam.last
    current = enc.current_stage(rows)
    reached = np.where(has, enc.ts_safe[np.where(has, first_idx, 0)], -1)[current, np.arange(ctx.n_rows)]
    since = np.where(reached >= 0, reached, enc.ts_safe[np.where(ctx.some, rows.first, 0)])
    dwell = ((rows.t - since) / NS_PER_DAY).astype(np.float32)
    dwell[~ctx.some] = np.nan
    names = _stage_names_by_kind(spec)
    # First and last times in one pass of the kernel (each value depends on its own index only).
    since_first_last = ctx.days_since(np.concatenate([first_idx, last_idx]), np.concatenate([has, has]))
    return {
        "current_stage": np.where(ctx.some, current, -1).astype(np.int32),
        "stage_dwell_days": dwell,
        names[0]: counts,
        names[1]: since_first_last[:n_st],
        names[2]: since_first_last[n_st:],
    }


def first_stage_index(enc: EventLog, n_st: int) -> np.ndarray:
    """(customers x stages) index of each customer's first event evidencing each stage (0 if none)."""
    if "first_stage" not in enc.cache:
        table = np.zeros((max(len(enc.customers), 1), n_st), dtype=np.int32 if enc.n < 2**31 - 1 else np.int64)
        first_stage_table(enc.stage, enc.start, table)
        enc.cache["first_stage"] = table
    return enc.cache["first_stage"]


@per_identity
def _stage_names_by_kind(spec: Vocabulary) -> list[tuple[str, ...]]:
    kinds = ("events", "days_since_first", "days_since_last")
    return [tuple(f"stage_{slug}_{kind}" for slug in spec.stage_slugs) for kind in kinds]


def stage_features_names(spec: Vocabulary) -> list[str]:
    return ["current_stage", "stage_dwell_days", *(n for group in _stage_names_by_kind(spec) for n in group)]


def touchpoint_features(ctx: Context) -> dict[str | tuple[str, ...], np.ndarray]:
    """Per touchpoint: counts in 7/30/90 days, share of the last 90 days' events, days since last."""
    k = len(ctx.spec.touchpoint_slugs)
    fam = ctx.codes("touchpoint", ctx.vocab.touchpoint, k, WINDOWS, last=True)
    assert fam.last is not None
    names = _touchpoint_names_by_kind(ctx.spec)
    out: dict[str | tuple[str, ...], np.ndarray] = {names[i]: fam.count[w] for i, w in enumerate(WINDOWS)}
    out[names[3]] = shares(fam.count[90], ctx.rows.last[0] - ctx.rows.last[90])
    out[names[4]] = ctx.days_since(*ctx.last_index(fam.last))
    return out


def touchpoint_names_of(slug: str) -> list[str]:
    # One share window only: shares over 7/30 days repeat the counts' information at the
    # cost of 2 x (touchpoints + 1) float columns per row.
    names = [f"tp_{slug}_count_{w}d" for w in WINDOWS]
    return [*names, f"tp_{slug}_share_90d", f"tp_{slug}_days_since_last"]


@per_identity
def _touchpoint_names_by_kind(spec: Vocabulary) -> list[tuple[str, ...]]:
    # Grouped by kind (all 7-day counts, then all 30-day counts, ...) so that each
    # (touchpoints x rows) matrix lands in consecutive columns with one write.
    per_tp = [touchpoint_names_of(slug) for slug in spec.touchpoint_slugs]
    return [tuple(one[i] for one in per_tp) for i in range(len(per_tp[0]))]


def touchpoint_features_names(spec: Vocabulary) -> list[str]:
    return [n for group in _touchpoint_names_by_kind(spec) for n in group]


def friction_features(ctx: Context) -> dict[str | tuple[str, ...], np.ndarray]:
    """Per friction: counts in 7/30/90 days and overall, days since last; for a measured
    friction also the mean of the measure over 90 days, its maximum and its last value
    (over the friction touchpoint's events, whether or not above the threshold)."""
    enc, spec = ctx.log, ctx.spec
    n_fr = len(spec.journey_map.friction)
    out: dict[str | tuple[str, ...], np.ndarray] = {}
    if not n_fr:
        return out
    flags = [f"friction:{i}" for i in range(n_fr)]
    groups = _friction_count_names(spec)
    for names, counts in zip(groups, ctx.flag_windows(flags, [*WINDOWS, None]), strict=False):
        out[names] = counts
    out[groups[-1]] = ctx.days_since(*ctx.flag_lasts(flags))
    for i, slug in enumerate(spec.friction_slugs):
        values = enc.measure[i]
        if values is None:
            continue
        col = spec.journey_map.friction[i].column
        m = f"measured:{i}"
        a90, b = ctx.flag_range(m, 90)
        out[f"friction_{slug}_{col}_mean_90d"] = ratio(segment_reduce(np.add, values, a90, b, 0.0), b - a90)
        a, b = ctx.flag_range(m, None)
        out[f"friction_{slug}_{col}_max"] = f32(segment_reduce(np.maximum, values, a, b, np.nan))
        lastv = values[np.clip(b - 1, 0, max(len(values) - 1, 0))] if len(values) else np.zeros(ctx.n_rows)
        out[f"friction_{slug}_{col}_last"] = f32(np.where(b > a, lastv, np.nan))
    return out


@per_identity
def _friction_count_names(spec: Vocabulary) -> list[tuple[str, ...]]:
    kinds = [*(f"count_{w}d" for w in WINDOWS), "count_total", "days_since_last"]
    return [tuple(f"friction_{slug}_{kind}" for slug in spec.friction_slugs) for kind in kinds]


def friction_names_of(spec: Vocabulary, i: int) -> list[str]:
    slug = spec.friction_slugs[i]
    names = [f"friction_{slug}_count_{w}d" for w in WINDOWS]
    names += [f"friction_{slug}_count_total", f"friction_{slug}_days_since_last"]
    col = spec.journey_map.friction[i].column
    if col is not None:
        names += [f"friction_{slug}_{col}_mean_90d", f"friction_{slug}_{col}_max", f"friction_{slug}_{col}_last"]
    return names


def friction_features_names(spec: Vocabulary) -> list[str]:
    names = [n for group in _friction_count_names(spec) for n in group] if spec.friction_slugs else []
    for i, slug in enumerate(spec.friction_slugs):
        col = spec.journey_map.friction[i].column
        if col is not None:
            names += [f"friction_{slug}_{col}_mean_90d", f"friction_{slug}_{col}_max", f"friction_{slug}_{col}_last"]
    return names


def transitions(ctx: Context) -> dict[str | tuple[str, ...], np.ndarray]:
    """Counts of stage transitions and event-type bigrams so far."""
    out: dict[str | tuple[str, ...], np.ndarray] = {}
    for family, codes, names in (
        ("stage_bigram", ctx.vocab.stage_bigram, _stage_bigram_names(ctx.spec)),
        ("event_bigram", ctx.vocab.event_bigram, _event_bigram_names(ctx.spec)),
    ):
        if not names:
            continue
        out[names] = ctx.codes(family, codes, len(names), (None,), last=False).count[None]
    return out


@per_identity
def _stage_bigram_names(spec: Vocabulary) -> tuple[str, ...]:
    s = spec.stage_slugs
    return tuple(f"trans_stage_{s[a]}__{s[b]}" for a, b in spec.stage_bigrams)


@per_identity
def _event_bigram_names(spec: Vocabulary) -> tuple[str, ...]:
    raw = [f"trans_event_{a}__{b}" for a, b in spec.event_bigrams]
    return tuple(slugs(raw))


def transitions_names(spec: Vocabulary) -> list[str]:
    return [*_stage_bigram_names(spec), *_event_bigram_names(spec)]


def sessions(ctx: Context) -> dict[str, np.ndarray]:
    """Sessions so far and in 30 days, events per session, mean/last/max gap between events."""
    enc, rows = ctx.log, ctx.rows
    total = ctx.flag_window("session_start", None)
    s30 = ctx.flag_window("session_start", 30)
    n = rows.last[0] + 1 - rows.first
    ts = enc.ts_safe
    li = np.maximum(rows.last[0], 0)
    span = np.where(ctx.some, ts[li] - ts[np.where(ctx.some, rows.first, 0)], 0)
    mean_gap = ratio(span / 3.6e12, n - 1)
    two = n >= 2
    l1 = np.maximum(rows.last[0], 1)
    last_gap = np.where(two, (ts[np.minimum(l1, len(ts) - 1)] - ts[np.minimum(l1 - 1, len(ts) - 1)]) / 3.6e12, np.nan)
    max_gap = np.where(two, max_gap_seconds(enc.ts_safe, rows.first, rows.last[0]) / 86_400, np.nan)
    return {
        "sessions_total": f32(total),
        "sessions_30d": f32(s30),
        "events_per_session": ratio(n, total),
        "mean_gap_hours": mean_gap,
        "last_gap_hours": f32(last_gap),
        "max_gap_days": f32(max_gap),
    }


def sessions_names(spec: Vocabulary) -> list[str]:
    return ["sessions_total", "sessions_30d", "events_per_session", "mean_gap_hours", "last_gap_hours", "max_gap_days"]


def channel_mix(ctx: Context) -> dict[str | tuple[str, ...], np.ndarray]:
    """Share of each channel among the events of the last 90 days, plus first/last channel
    and last event type as categorical codes (-1 when there is no event)."""
    enc, rows = ctx.log, ctx.rows
    total = rows.last[0] - rows.last[90]
    out: dict[str | tuple[str, ...], np.ndarray] = {}
    fam = ctx.codes("channel", ctx.vocab.channel, len(ctx.spec.channel_slugs), (90,), last=False)
    names = tuple(f"channel_{slug}_share_90d" for slug in ctx.spec.channel_slugs)
    out[names] = shares(fam.count[90], total)
    some = ctx.some
    li = np.where(some, rows.last[0], 0)
    fi = np.where(some, rows.first, 0)
    if enc.n:
        out["last_event_type"] = np.where(some, ctx.vocab.etype[li], -1).astype(np.int32)
        out["last_channel"] = np.where(some, ctx.vocab.channel[li], -1).astype(np.int32)
        out["first_channel"] = np.where(some, ctx.vocab.channel[fi], -1).astype(np.int32)
    else:
        for name in ("last_event_type", "last_channel", "first_channel"):
            out[name] = np.full(ctx.n_rows, -1, dtype=np.int32)
    return out


def channel_mix_names(spec: Vocabulary) -> list[str]:
    share_names = [f"channel_{slug}_share_90d" for slug in spec.channel_slugs]
    return [*share_names, "last_event_type", "last_channel", "first_channel"]


#: The BTYD / sparse-purchase columns (maps with a repeat conversion stage only).
BTYD_NAMES: tuple[str, ...] = (
    "btyd_frequency",
    "btyd_recency_days",
    "btyd_age_days",
    "btyd_p_alive",
    "btyd_expected_conversions",
    "btyd_p_no_conversion",
    "ipt_mean_days",
    "ipt_std_days",
    "ipt_max_days",
    "ipt_last_days",
    "conversion_days_180d",
    "conversion_days_365d",
    "since_conversion_over_mean_ipt",
    "since_conversion_over_max_ipt",
)


def btyd(ctx: Context) -> dict[str, np.ndarray]:
    """BG/NBD quantities and sparse-purchase statistics from the conversions at or before ``t``.

    In whole days (:mod:`journey_ml.features.btyd`): BTYD's frequency ``x``, recency
    ``t_x`` and age ``T`` (days since the first conversion: the customer's cohort age);
    P(alive), expected conversions and P(no conversion) in the horizon from the spec's
    latest BG/NBD fit made at or before ``t`` (NaN before the first fit); inter-purchase
    times (mean, standard deviation, longest, last), distinct conversion days in the last
    180 and 365 days (BG/NBD assumes a constant rate; these see it change), and the days
    since the last conversion relative to the customer's own mean and longest gap. NaN
    without a conversion (and the gap statistics without a repeat one).
    """
    spec = ctx.spec
    if spec.journey_map.repeat_conversion_stage is None:
        return {}
    nan = np.full(ctx.n_rows, np.nan)
    a, b = ctx.flag_range("conversion", None)
    has = b > a
    conv = conversion_days(ctx.log)
    if not has.any():
        counts = ("conversion_days_180d", "conversion_days_365d")
        return {name: f32(np.zeros(ctx.n_rows) if name in counts else nan) for name in BTYD_NAMES}
    head, tail = np.where(has, a, 0), np.where(has, b - 1, 0)
    x = (conv.cum_new[b] - conv.cum_new[a] - 1).astype(np.float64)
    t_x = (conv.day[tail] - conv.day[head]).astype(np.float64)
    today = ctx.rows.t // NS_PER_DAY
    age = (today - conv.day[head]).astype(np.float64)
    x, t_x, age = (np.where(has, v, np.nan) for v in (x, t_x, age))
    alive, expected, quiet = nan.copy(), nan.copy(), nan.copy()
    fit_of = np.searchsorted(np.array([f.at_ns for f in spec.btyd], dtype=np.int64), ctx.rows.t, side="right") - 1
    horizon = float(spec.journey_map.horizon_days)
    for k, fit in enumerate(spec.btyd):
        sel = np.flatnonzero(has & (fit_of == k))
        alive[sel] = p_alive(fit, x[sel], t_x[sel], age[sel])
        expected[sel] = expected_conversions(fit, x[sel], t_x[sel], age[sel], horizon)
        quiet[sel] = p_no_conversion(fit, x[sel], t_x[sel], age[sel], horizon)
    repeat = x > 0
    gaps = np.where(repeat, x, 1.0)
    mean = np.where(repeat, t_x / gaps, np.nan)
    sq = (conv.cum_gap2[b] - conv.cum_gap2[a]).astype(np.float64)
    std = np.where(x >= 2, np.sqrt(np.maximum(sq / gaps - mean * mean, 0.0)), np.nan)
    longest = np.where(repeat, segment_reduce(np.maximum, conv.gap.astype(np.float64), a, b, np.nan), np.nan)
    since = age - t_x
    return {
        "btyd_frequency": f32(x),
        "btyd_recency_days": f32(t_x),
        "btyd_age_days": f32(age),
        "btyd_p_alive": f32(alive),
        "btyd_expected_conversions": f32(expected),
        "btyd_p_no_conversion": f32(quiet),
        "ipt_mean_days": f32(mean),
        "ipt_std_days": f32(std),
        "ipt_max_days": f32(longest),
        "ipt_last_days": f32(np.where(repeat, conv.gap[tail], np.nan)),
        "conversion_days_180d": f32(conv.new_days_after(a, b, today - 180)),
        "conversion_days_365d": f32(conv.new_days_after(a, b, today - 365)),
        "since_conversion_over_mean_ipt": ratio(np.where(repeat, since, np.nan), mean),
        "since_conversion_over_max_ipt": ratio(np.where(repeat, since, np.nan), longest),
    }


def btyd_names(spec: Vocabulary) -> list[str]:
    return list(BTYD_NAMES) if spec.journey_map.repeat_conversion_stage is not None else []


def _scalar(fn: Callable[[Context], np.ndarray]) -> tuple[Callable[[Context], dict[str, np.ndarray]], Callable[[Vocabulary], list[str]]]:
    return (lambda ctx: {fn.__name__: fn(ctx)}), (lambda spec: [fn.__name__])


# The feature set: (compute, names) pairs, in column order. Versioned by git.
# A family may return a (k x rows) matrix under a tuple of k names: consecutive columns.
FEATURE_FAMILIES: tuple[tuple[Callable[[Context], Mapping[Any, np.ndarray]], Callable[[Vocabulary], list[str]]], ...] = (
    _scalar(events_total),
    _scalar(recency_days),
    _scalar(tenure_days),
    (rfm, rfm_names),
    (trend, trend_names),
    (stage_features, stage_features_names),
    (touchpoint_features, touchpoint_features_names),
    (friction_features, friction_features_names),
    (transitions, transitions_names),
    (sessions, sessions_names),
    (channel_mix, channel_mix_names),
    (btyd, btyd_names),
)
