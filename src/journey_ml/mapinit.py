"""Draft a journey map from a raw event log: what ``journey-ml init`` runs.

Someone with an event log and no journey map gets a commented draft that
``journey-ml validate`` accepts on the same file. Every guess says why, in the YAML
comments and in :attr:`Draft.checks`, because a draft is for a person to review.

How the guesses are made
------------------------
* **Column roles** (:func:`guess_roles`): each column name is split into lower-case
  tokens (``userId`` -> ``user id``, ``case:concept:name`` -> ``case concept name``) and
  scored per role: a known name (``user_id``, ``concept:name``, ``ts``) beats a token
  match (``visitor_key``, ``order_total``). Type checks back the names: a timestamp must
  parse by the loader's own rules on >= 90% of sampled values, an id must not be
  fractional floats, event types and channels must be few distinct labels, revenue must
  be numeric. A column named after a canonical column always takes that role (the loader
  reads it as such whatever the map says). A timestamp may also be found by its values
  alone. Roles go to the highest scores first, one column per role.
* **Conversion events**: event types named like a conversion (purchase, order, signup,
  subscribe, activated, accepted, ...) that also carry revenue; else the revenue
  carriers (revenue on >= half their rows); else the names alone. A named candidate
  that is followed by another candidate in most journeys (``A_ACCEPTED`` then
  ``A_ACTIVATED``) is a step before the conversion, not the conversion.
* **Exit events**: named like leaving (unsubscribe, cancel, declined, churn, refund,
  delete, ...). **Friction**: event types named like a failure (error, timeout, fail,
  exception, or a declined/rejected payment, card or login) and numeric measure columns
  (wait, delay, latency, duration, ...) with their 90th percentile as the threshold.
* **Stages**: the remaining event types, ordered by the median normalised position
  (0 = a customer's first event, 1 = the last) of their first occurrence in each journey
  and cut at the largest gaps into at most three stages before the conversion stage.
  Event types that converting customers first meet after converting form a
  ``post_conversion`` stage; a ``repeat_conversion`` stage follows when at least 5% of
  converting customers convert more than once.
* **Settings**: ``inactivity_days`` from the 99th percentile of the gaps between a
  customer's visits (kept within 7..90), ``horizon_days`` 14 unless the log is short,
  and ``max_reject_share`` raised just above the file's reject share (with a warning)
  so that the draft loads on the file it was drafted from.

Counts use every accepted row; positions use a seeded sample of whole customers (at most
``max_sample_customers`` customers and ``max_sample_rows`` rows), chosen by a hash of
their id so the same file always gives the same draft.

Examples
--------
>>> import pandas as pd
>>> raw = pd.DataFrame({
...     "visitorid": ["a", "a", "b", "b"],
...     "ts": ["2026-01-01T10:00Z", "2026-01-01T10:05Z", "2026-01-02T09:00Z", "2026-01-02T09:01Z"],
...     "action": ["view", "purchase", "view", "unsubscribe"],
...     "amount": ["", "20", "", ""],
... })
>>> draft = draft_from_frame(raw, source="example")
>>> {role: g.column for role, g in draft.roles.items()}
{'customer_id': 'visitorid', 'timestamp': 'ts', 'event_type': 'action', 'revenue': 'amount'}
>>> draft.conversion_events, draft.exit_events
(('purchase',), ('unsubscribe',))
"""

from __future__ import annotations

import itertools
import json
import math
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from journey_ml.config import CANONICAL_COLUMNS, REQUIRED_COLUMNS, Friction, JourneyMap
from journey_ml.events import read_event_file, validate_events
from journey_ml.exceptions import EventValidationError, did_you_mean
from journey_ml.formats import detect_format, read_export

__all__ = [
    "ColumnProfile",
    "Draft",
    "EventTypeProfile",
    "FrictionProposal",
    "RoleGuess",
    "StageProposal",
    "draft_from_frame",
    "draft_journey_map",
    "guess_roles",
    "name_tokens",
    "profile_columns",
    "read_for_init",
]

#: Roles in the order they are reported (the canonical columns).
ROLES: tuple[str, ...] = CANONICAL_COLUMNS
DEFAULT_MAX_SAMPLE_ROWS = 200_000
DEFAULT_MAX_SAMPLE_CUSTOMERS = 20_000
#: A timestamp column must parse (loader rules) on at least this share of sampled values.
MIN_DATE_SHARE = 0.9
#: Values sampled per column for the type checks.
_TYPE_SAMPLE = 2000
#: A repeat-conversion stage is proposed above this share of converters converting again.
REPEAT_SHARE = 0.05
FRICTION_QUANTILE = 0.9
_MAX_PRE_STAGES = 3
_PRE_STAGE_NAMES: dict[int, tuple[str, ...]] = {
    1: ("engagement",),
    2: ("awareness", "consideration"),
    3: ("awareness", "consideration", "decision"),
}

# ---------------------------------------------------------------------- name vocabulary
def _words(text: str) -> list[str]:
    """Vocabulary written as one space-separated string (easier to read and extend)."""
    return text.split()


# Exact names are token strings joined by "_" (see name_tokens).
_EXACT: dict[str, dict[str, int]] = {
    "customer_id": dict.fromkeys(
        [
            "user_id", "userid", "user_pseudo_id", "case_concept_name", "customerid", "customer",
            "client_id", "clientid", "visitor_id", "visitorid", "account_id", "accountid",
            "cust_id", "custid", "uid", "anonymous_id", "distinct_id", "member_id", "person_id",
            "case_id", "caseid", "shopper_id", "subscriber_id", "contact_id", "buyer_id", "user",
            "visitor", "client", "customer_key", "user_key", "customer_number", "case",
        ],
        90,
    ),
    "event_type": {
        **dict.fromkeys(
            [
                "event", "event_name", "eventname", "eventtype", "concept_name", "action",
                "activity", "event_action", "activity_name", "action_name", "action_type",
                "activity_type", "interaction", "interaction_type", "event_category",
            ],
            90,
        ),
        **dict.fromkeys(["type", "step", "name"], 70),
    },
    "timestamp": {
        **dict.fromkeys(
            [
                "ts", "time", "event_timestamp", "time_timestamp", "datetime", "date_time",
                "event_time", "eventtime", "event_ts", "timestamp_utc", "time_stamp",
                "occurred_at", "created_at", "event_datetime", "logged_at", "happened_at",
                "received_at", "original_timestamp", "sent_at", "when", "epoch",
            ],
            90,
        ),
        **dict.fromkeys(["date", "event_date", "day"], 80),  # date only: loses the order within a day
    },
    "revenue": dict.fromkeys(
        [
            "value", "amount", "price", "total", "order_value", "sales", "gmv",
            "purchase_revenue", "order_total", "total_price", "event_value", "purchase_value",
            "transaction_revenue", "sale_amount", "payment_amount", "net_revenue",
            "gross_revenue", "spend", "monetary", "revenue_usd", "value_usd",
        ],
        90,
    ),
    "channel": {
        **dict.fromkeys(
            [
                "medium", "utm_medium", "marketing_channel", "channel_grouping",
                "default_channel_group", "source_medium", "traffic_medium", "traffic_source_medium",
            ],
            90,
        ),
        **dict.fromkeys(["source", "utm_source", "traffic_source", "traffic_source_source"], 75),
    },
    "session_id": dict.fromkeys(
        ["sessionid", "session", "ga_session_id", "visit_id", "visitid", "session_key"], 90
    ),
}
_ENTITY = frozenset(
    _words(
        "customer user client visitor account member person shopper subscriber contact buyer "
        "cust case patient player"
    )
)
_IDISH = frozenset(_words("id key uuid guid number no hash pseudo"))
_EVENT_WORDS = frozenset(_words("event action activity interaction step hit"))
_TIME_WORDS = frozenset(_words("timestamp ts time datetime date when epoch"))
_MEASURE_WORDS = frozenset(
    _words(
        "wait waiting delay delayed latency duration lag load response elapsed queue late lateness "
        "ttfb rtt"
    )
)
_MONEY_WORDS = frozenset(_words("revenue value amount price total sales gmv spend monetary subtotal"))
_NOT_MONEY = frozenset(
    _words(
        "id count qty quantity number time date ts timestamp score rating views page session rank "
        "index position tax shipping discount fee cost"
    )
) | _MEASURE_WORDS
_NOT_ID = frozenset(_words("session event order product item transaction campaign page sku"))
_NOT_EVENT = _TIME_WORDS | _IDISH | _MONEY_WORDS | frozenset(_words("at count number params param properties"))
_NOT_SESSION = frozenset(_words("number count engaged duration length start time timestamp ts date"))

# Event-type vocabulary. Priority: strong friction > exit > conversion.
_FRICTION_WORDS = frozenset(
    _words(
        "error errors timeout timeouts timedout fail failed failure failures fails failing bug bugs "
        "exception crash crashed invalid"
    )
)
_EXIT_WORDS = frozenset(
    _words(
        "unsubscribe unsubscribed unsub optout cancel canceled cancelled cancellation churn churned "
        "refund refunded delete deleted deactivate deactivated uninstall uninstalled declined denied "
        "rejected terminated withdraw withdrawn closed"
    )
)
# A declined payment is a friction, a declined application an exit.
_ATTEMPT_WORDS = frozenset(
    _words("payment card transaction checkout login otp captcha auth pay coupon promo voucher code discount")
)
_CONVERSION_WORDS = frozenset(
    _words(
        "purchase purchased buy bought transaction subscribe subscribed signup registered "
        "activated activation accepted approved converted conversion won paid booked booking "
        "order ordered"
    )
)
_NOT_CONVERSION = frozenset(_words("view views viewed page status history search track tracking list"))
# Token pairs that name a conversion together ("sign up", "checkout completed").
_CONVERSION_PAIRS = (("sign", "up"), ("signed", "up"), ("checkout", "completed"), ("checkout", "complete"),
                     ("checkout", "success"), ("payment", "succeeded"), ("payment", "success"))

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")


def name_tokens(name: str) -> tuple[str, ...]:
    """Lower-case word tokens of a column or event name.

    >>> name_tokens("userId"), name_tokens("case:concept:name"), name_tokens("A_SUBMITTED")
    (('user', 'id'), ('case', 'concept', 'name'), ('a', 'submitted'))
    """
    spaced = _CAMEL.sub("_", str(name))
    return tuple(t for t in re.split(r"[^0-9a-zA-Z]+", spaced.lower()) if t)


# ---------------------------------------------------------------------- results
@dataclass(frozen=True)
class ColumnProfile:
    """What a source column holds, as far as role guessing needs to know.

    ``kind`` is ``string``, ``integer``, ``float``, ``bool``, ``datetime`` or ``nested``;
    shares are over non-blank values; ``date_share`` is measured on a sample with the
    loader's own timestamp rules (numbers count as epoch times).
    """

    name: str
    kind: str
    non_blank: int
    distinct: int
    numeric_share: float
    integral: bool
    negatives: int
    zeros: int
    date_share: float
    examples: tuple[str, ...]

    def describe(self) -> str:
        """One line for error messages: name, kind, distinct values, examples."""
        ex = ", ".join(repr(e) for e in self.examples) or "all blank"
        return f"'{self.name}' ({self.kind}, {self.distinct:,} distinct, e.g. {ex})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "non_blank": self.non_blank,
            "distinct": self.distinct,
            "numeric_share": round(self.numeric_share, 4),
            "date_share": round(self.date_share, 4),
            "examples": list(self.examples),
        }


@dataclass(frozen=True)
class RoleGuess:
    """The column chosen for a role, the score it won with and why (said in the draft)."""

    role: str
    column: str
    score: int
    reason: str
    by_name: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {"column": self.column, "score": self.score, "reason": self.reason, "by_name": self.by_name}


@dataclass(frozen=True)
class EventTypeProfile:
    """One event type: counts, where it sits in journeys, and what the draft makes of it.

    ``median_position`` is the median normalised position (0 first event, 1 last) of its
    first occurrence per sampled customer; ``after_conversion_share`` the share of
    converting customers who first meet it after their first conversion; ``proposal``
    is ``conversion``, ``exit``, ``friction`` or ``stage:<name>``.
    """

    name: str
    count: int
    customers: int
    median_position: float | None
    after_conversion_share: float | None
    revenue_rows_share: float | None
    last_event_share: float | None
    proposal: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "count": self.count,
            "customers": self.customers,
            "median_position": _round(self.median_position),
            "after_conversion_share": _round(self.after_conversion_share),
            "revenue_rows_share": _round(self.revenue_rows_share),
            "last_event_share": _round(self.last_event_share),
            "proposal": self.proposal,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class StageProposal:
    """A proposed stage, its event types and why they were grouped there."""

    name: str
    events: tuple[str, ...]
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "events": list(self.events), "reason": self.reason}


@dataclass(frozen=True)
class FrictionProposal:
    """A candidate friction: an event type, a measure column over a threshold, or both."""

    name: str
    event_type: str | None
    column: str | None
    min: float | None
    reason: str

    def spec(self) -> dict[str, Any]:
        """The journey map's ``friction.<name>`` entry (its touchpoint left to the default)."""
        rule = Friction(self.name, self.event_type, self.column, self.min).to_dict()
        return {k: v for k, v in rule.items() if k != "touchpoint"}

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, **self.spec(), "reason": self.reason}


@dataclass(frozen=True)
class Draft:
    """A drafted journey map with the profile behind it.

    ``journey_map`` is the validated map, ``yaml_text`` the commented YAML that loads to
    it; ``warnings`` say what looks wrong in the data, ``checks`` what a person should
    review before training on the map.
    """

    source: str
    format: str
    rows_in: int
    rows_ok: int
    reject_reasons: Mapping[str, int]
    customers: int
    time_range: tuple[str, str] | None
    columns: tuple[ColumnProfile, ...]
    roles: Mapping[str, RoleGuess]
    event_types: tuple[EventTypeProfile, ...]
    stages: tuple[StageProposal, ...]
    conversion_events: tuple[str, ...]
    repeat_conversion_stage: str | None
    exit_events: tuple[str, ...]
    friction: tuple[FrictionProposal, ...]
    settings: Mapping[str, tuple[float, str]]
    sampling: Mapping[str, Any]
    journey_map: JourneyMap
    yaml_text: str
    warnings: tuple[str, ...] = ()
    checks: tuple[str, ...] = ()
    unused_numeric: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        """The machine-readable profile (``journey-ml init --json``)."""
        return {
            "source": self.source,
            "format": self.format,
            "rows_in": self.rows_in,
            "rows_ok": self.rows_ok,
            "rows_rejected": self.rows_in - self.rows_ok,
            "reject_reasons": dict(self.reject_reasons),
            "customers": self.customers,
            "time_range": None if self.time_range is None else {"min": self.time_range[0], "max": self.time_range[1]},
            "sampling": dict(self.sampling),
            "columns": [c.to_dict() for c in self.columns],
            "roles": {role: g.to_dict() for role, g in self.roles.items()},
            "event_types": [e.to_dict() for e in self.event_types],
            "proposals": {
                "stages": [s.to_dict() for s in self.stages],
                "conversion_events": list(self.conversion_events),
                "repeat_conversion_stage": self.repeat_conversion_stage,
                "exit_events": list(self.exit_events),
                "friction": [f.to_dict() for f in self.friction],
                "settings": {k: {"value": v, "reason": r} for k, (v, r) in self.settings.items()},
            },
            "unused_numeric_columns": list(self.unused_numeric),
            "journey_map": self.journey_map.to_dict(),
            "warnings": list(self.warnings),
            "checks": list(self.checks),
        }


# ---------------------------------------------------------------------- entry points
def read_for_init(path: str | Path) -> tuple[pd.DataFrame, str, dict[str, int]]:
    """Read an event file for profiling and say which map ``format`` reads it.

    Returns ``(frame, format, set_aside)``. A GA4 or Segment export (recognised by
    :func:`journey_ml.formats.detect_format`) is flattened by
    :func:`journey_ml.formats.read_export` into canonical column names, and
    ``set_aside`` counts the rows its reader could not flatten, by reason (they count as
    rejected when the map is used). Any other file is read as it is (``format`` ``auto``).
    """
    fmt = detect_format(path)
    if fmt is None:
        return read_event_file(path), "auto", {}
    export = read_export(path, fmt)
    reasons = export.rejects["reject_reason"].value_counts() if len(export.rejects) else pd.Series(dtype="int64")
    return export.frame, fmt, {str(k): int(v) for k, v in reasons.items()}


def draft_journey_map(
    path: str | Path,
    *,
    columns: Mapping[str, str] | None = None,
    seed: int = 0,
    max_sample_rows: int = DEFAULT_MAX_SAMPLE_ROWS,
    max_sample_customers: int = DEFAULT_MAX_SAMPLE_CUSTOMERS,
) -> Draft:
    """Profile the event file at ``path`` and draft a journey map for it.

    Parameters
    ----------
    path : str or Path
        CSV, Parquet or JSON lines, as ``journey-ml validate`` reads them.
    columns : mapping, optional
        Roles fixed by the user (canonical name -> source column); the rest are guessed.
    seed : int
        Seeds the customer sample (positions) and the value samples (type checks).
    max_sample_rows, max_sample_customers : int
        Size limits of the customer sample used for positions.

    Raises
    ------
    EventValidationError
        The file cannot be read, or a required role cannot be guessed (the message lists
        the columns and how to name the role).
    """
    frame, fmt, set_aside = read_for_init(path)
    return draft_from_frame(
        frame,
        source=str(path),
        fmt=fmt,
        set_aside=set_aside,
        columns=columns,
        seed=seed,
        max_sample_rows=max_sample_rows,
        max_sample_customers=max_sample_customers,
    )


def draft_from_frame(
    frame: pd.DataFrame,
    *,
    source: str = "events",
    fmt: str = "auto",
    set_aside: Mapping[str, int] | None = None,
    columns: Mapping[str, str] | None = None,
    seed: int = 0,
    max_sample_rows: int = DEFAULT_MAX_SAMPLE_ROWS,
    max_sample_customers: int = DEFAULT_MAX_SAMPLE_CUSTOMERS,
) -> Draft:
    """Draft a journey map for an in-memory raw event frame (see :func:`draft_journey_map`).

    ``fmt`` other than ``auto`` means the frame is a flattened export, already in
    canonical column names: the map then names the format instead of a ``columns:``
    rename. ``set_aside`` counts rows its reader rejected before this frame (by reason).
    """
    if len(frame.columns) == 0 or len(frame) == 0:
        raise EventValidationError(f"{source}: no rows to profile")
    if fmt != "auto" and columns:
        # As the export reader does with a map's columns: a named column replaces the
        # flattened default of that canonical name.
        frame = frame.drop(columns=[r for r, c in columns.items() if c != r and r in frame.columns])
    rng = np.random.default_rng(seed)
    profiles = profile_columns(frame, rng)
    roles, role_notes = guess_roles(profiles, columns or {}, fmt)
    warn: list[str] = list(role_notes)
    checks: list[str] = []

    by_name = {p.name: p for p in profiles}
    measures = _measure_columns(profiles, roles)
    canon = _canonical_frame(frame, roles, by_name)
    vmap = JourneyMap.from_dict(
        {"stages": [{"name": "all", "events": []}], "friction": {f"m{i}": {"column": c} for i, c in enumerate(measures)}}
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = validate_events(canon, vmap, max_reject_share=1.0)
    events = loaded.events
    if events.empty:
        raise EventValidationError(
            f"{source}: every row was rejected with these columns ({_role_list(roles)}); "
            f"reasons: {loaded.summary['reasons']}"
        )
    # Rows an export reader set aside count as rejected when the map is used, too.
    reasons: dict[str, int] = dict(loaded.summary["reasons"])
    for reason, count in (set_aside or {}).items():
        reasons[reason] = reasons.get(reason, 0) + count
    reasons = dict(sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0])))
    rows_in = loaded.rows_in + sum((set_aside or {}).values())
    reject_share = (rows_in - len(events)) / rows_in
    sample, sampling = _sample_customers(events, seed, max_sample_rows, max_sample_customers)
    analysis = _analyse_events(events, sample, has_revenue="revenue" in roles)

    conversions, conv_reasons, conv_notes = _choose_conversions(analysis, "revenue" in roles)
    warn += conv_notes
    exits = tuple(e for e in analysis.names if analysis.kind[e] == "exit")
    friction_events = tuple(e for e in analysis.names if analysis.kind[e] == "friction")
    stages, stage_of, repeat = _propose_stages(analysis, conversions)
    frictions = _propose_frictions(friction_events, measures, events, analysis)
    settings, setting_notes = _propose_settings(events, sample, reject_share, reasons)
    warn += setting_notes

    event_profiles = tuple(
        _event_profile(e, analysis, conversions, conv_reasons, stage_of) for e in analysis.names
    )
    unused = tuple(
        p.name
        for p in profiles
        if p.name not in {g.column for g in roles.values()}
        and p.name not in measures
        and p.non_blank > 0
        and (p.kind in ("integer", "float", "bool") or (p.kind == "string" and p.numeric_share == 1.0))
        and not set(name_tokens(p.name)) & (_IDISH | _MONEY_WORDS)
    )
    checks += _checks(roles, analysis, conversions, exits, frictions, sampling, unused, fmt)

    map_dict = _map_dict(source, fmt, roles, stages, conversions, repeat, exits, frictions, settings)
    time_range = (
        events["timestamp"].min().isoformat(timespec="seconds"),
        events["timestamp"].max().isoformat(timespec="seconds"),
    )
    draft_args: dict[str, Any] = {
        "source": source,
        "format": fmt,
        "rows_in": rows_in,
        "rows_ok": len(events),
        "reject_reasons": reasons,
        "customers": analysis.customers_total,
        "time_range": time_range,
        "columns": profiles,
        "roles": roles,
        "event_types": event_profiles,
        "stages": stages,
        "conversion_events": conversions,
        "repeat_conversion_stage": repeat,
        "exit_events": exits,
        "friction": frictions,
        "settings": settings,
        "sampling": sampling,
        "warnings": tuple(warn),
        "checks": tuple(checks),
        "unused_numeric": unused,
    }
    text = _render_yaml(map_dict, draft_args)
    journey_map = JourneyMap.from_dict(map_dict)
    # The comments must not change what the map says: the YAML text is what users get.
    if JourneyMap.from_dict(yaml.safe_load(text)) != journey_map:
        raise AssertionError("drafted YAML does not load to the drafted journey map")
    return Draft(journey_map=journey_map, yaml_text=text, **draft_args)


# ---------------------------------------------------------------------- column profiles
def profile_columns(frame: pd.DataFrame, rng: np.random.Generator | None = None) -> tuple[ColumnProfile, ...]:
    """Profile every column of a raw frame (counts on all rows, date parsing on a sample)."""
    rng = rng if rng is not None else np.random.default_rng(0)
    return tuple(_profile(str(name), frame[name], rng) for name in frame.columns)


def _profile(name: str, series: pd.Series, rng: np.random.Generator) -> ColumnProfile:
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype):
        kind = "bool"
    elif isinstance(dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(dtype):
        kind = "datetime"
    elif pd.api.types.is_integer_dtype(dtype):
        kind = "integer"
    elif pd.api.types.is_float_dtype(dtype):
        kind = "float"
    else:
        kind = "string"
    try:
        codes, uniques = pd.factorize(series)
    except TypeError:  # lists or dicts from JSON
        kind = "nested"
        series = series.map(lambda v: v if v is None or isinstance(v, (str, int, float)) else json.dumps(v, default=str))
        codes, uniques = pd.factorize(series)
    uniq = pd.Series(uniques)
    if kind in ("string", "nested") and len(uniq) and pd.api.types.infer_dtype(uniq, skipna=True) in (
        "datetime", "datetime64", "date",
    ):
        kind = "datetime"
    if kind in ("integer", "float", "bool", "datetime"):
        texts = None
        blank_u = uniq.isna().to_numpy(dtype=bool)
        nums_u = (
            np.full(len(uniq), np.nan) if kind == "datetime" else uniq.to_numpy(dtype=np.float64, na_value=np.nan)
        )
    else:
        texts = uniq.astype("str").str.strip()
        blank_u = (texts == "").to_numpy(dtype=bool) | uniq.isna().to_numpy(dtype=bool)
        nums_u = _numbers(texts, blank_u, rng)
    valid = codes >= 0
    blank = np.ones(len(codes), dtype=bool)
    blank[valid] = blank_u[codes[valid]]
    nums = np.full(len(codes), np.nan)
    nums[valid] = nums_u[codes[valid]]
    non_blank = int((~blank).sum())
    finite = np.isfinite(nums) & ~blank
    n_num = int(finite.sum())
    numeric_share = n_num / non_blank if non_blank else 0.0
    fin_vals = nums[finite]
    integral = bool(n_num) and bool(np.all(fin_vals == np.round(fin_vals)))
    distinct = int(np.count_nonzero(~blank_u))
    first_seen = [str((texts if texts is not None else uniq).iloc[i]) for i in np.flatnonzero(~blank_u)[:3]]
    examples = tuple(e if len(e) <= 30 else e[:27] + "..." for e in first_seen)

    date_share = 0.0
    rows = np.flatnonzero(~blank)
    too_small = kind in ("integer", "float") and n_num and np.nanmax(np.abs(fin_vals)) < 6.3e8
    if len(rows) and kind not in ("bool", "nested") and not too_small:
        take = np.sort(rng.choice(rows, size=min(_TYPE_SAMPLE, len(rows)), replace=False))
        date_share = _date_share(series.iloc[take].reset_index(drop=True))
    return ColumnProfile(
        name=name,
        kind=kind,
        non_blank=non_blank,
        distinct=distinct,
        numeric_share=numeric_share,
        integral=integral,
        negatives=int((fin_vals < 0).sum()),
        zeros=int((fin_vals == 0).sum()),
        date_share=date_share,
        examples=examples,
    )


def _numbers(texts: pd.Series, blank: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Distinct texts as numbers (NaN where not a number or blank).

    Many distinct values (ids, times) are tried on a sample first: when none of the
    sample is a number, the column is not numeric and parsing millions of strings is
    skipped.
    """
    out = np.full(len(texts), np.nan)
    todo = np.flatnonzero(~blank)
    if len(todo) > 100_000:
        probe = rng.choice(todo, size=20_000, replace=False)
        if np.isnan(pd.to_numeric(texts.iloc[probe], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)).all():
            return out
    out[todo] = pd.to_numeric(texts.iloc[todo], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    return out


def _date_share(values: pd.Series) -> float:
    """Share of ``values`` (none blank) the loader accepts as timestamps.

    Uses :func:`journey_ml.events.validate_events` itself, so the draft's timestamp
    column parses by exactly the rules ``journey-ml validate`` applies. Each distinct
    value is parsed once (event names repeat; unparseable text is the slow path).
    """
    n = len(values)
    if not n:
        return 0.0
    codes, uniques = pd.factorize(values)
    probe = pd.DataFrame({
        "customer_id": [str(i) for i in range(len(uniques))],
        "timestamp": pd.Series(uniques, dtype=values.dtype) if len(uniques) else values.iloc[:0],
        "event_type": "probe",
    })
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = validate_events(probe, _PROBE_MAP, max_reject_share=1.0)
    bad = np.zeros(len(uniques), dtype=bool)
    bad[result.rejects["row_number"].to_numpy(dtype=np.int64)] = True
    return 1.0 - float(bad[codes].sum()) / n


_PROBE_MAP = JourneyMap.from_dict({"stages": [{"name": "all", "events": []}]})


# ---------------------------------------------------------------------- roles
def guess_roles(
    profiles: Sequence[ColumnProfile], fixed: Mapping[str, str] | None = None, fmt: str = "auto"
) -> tuple[dict[str, RoleGuess], list[str]]:
    """Assign columns to canonical roles; ``(roles, notes)``.

    ``fixed`` (role -> column, from the user) wins, then columns already named after a
    canonical column, then the best-scoring name matches backed by type checks. Notes
    say which plausible columns were turned down and why. ``fmt`` names the export reader
    that made the canonical columns of a flattened export (``auto``: none).

    Raises
    ------
    EventValidationError
        A fixed role or column is unknown, or a required role has no candidate.
    """
    by_name = {p.name: p for p in profiles}
    names = [p.name for p in profiles]
    roles: dict[str, RoleGuess] = {}
    notes: list[str] = []
    for role, column in (fixed or {}).items():
        if role not in ROLES:
            raise EventValidationError(
                f"--column {role}={column}: '{role}' is not a role{did_you_mean(role, ROLES)}; roles: {list(ROLES)}"
            )
        if column not in by_name:
            raise EventValidationError(
                f"--column {role}={column}: no column '{column}'{did_you_mean(column, names)}; columns: {names}",
                column=role,
            )
        if column in ROLES and column != role:
            raise EventValidationError(
                f"--column {role}={column}: '{column}' is itself a canonical column name and is always read as "
                f"{column}; rename it in the file",
                column=role,
            )
        ok, _, note = _type_check(role, by_name[column])
        if not ok:
            notes.append(f"--column {role}={column}: '{column}' {note}")
        roles[role] = RoleGuess(role, column, 1000, f"given with --column, {_detail(role, by_name[column])}")
    for role in ROLES:
        if role in by_name and role not in roles:
            if role in {g.column for g in roles.values()}:
                continue
            if role not in REQUIRED_COLUMNS and by_name[role].non_blank == 0:
                continue  # an empty optional column: the loader's default (unknown, 0, derived)
            ok, _, note = _type_check(role, by_name[role])
            if not ok:
                notes.append(f"'{role}' is read as the {role} by the loader whatever the map says, but {note}")
            origin = "the canonical name" if fmt == "auto" else f"made by the {fmt} reader"
            roles[role] = RoleGuess(role, role, 100, f"{origin}, {_detail(role, by_name[role])}")
    # A canonical-named column not used for its own role would clash with the rename.
    for role, guess in roles.items():
        if guess.column != role and role in by_name:
            raise EventValidationError(
                f"column '{role}' exists, but {role} is set to '{guess.column}': the loader would read both; "
                f"rename or drop '{role}'",
                column=role,
            )

    candidates: list[tuple[int, int, int, str, str, str, bool]] = []
    rejected: dict[str, list[str]] = {r: [] for r in ROLES}
    taken = {g.column for g in roles.values()}
    for pi, prof in enumerate(profiles):
        if prof.name in taken or prof.name in ROLES:
            continue
        tokens = name_tokens(prof.name)
        for ri, role in enumerate(ROLES):
            if role in roles:
                continue
            named = _name_score(role, tokens)
            by_values = False
            if named is None and role == "timestamp" and prof.date_share >= 0.99 and prof.kind != "bool":
                named = (30, "values parse as times")
                by_values = True
            if named is None:
                continue
            score, why = named
            ok, penalty, note = _type_check(role, prof)
            if not ok:
                rejected[role].append(f"'{prof.name}' ({why}) {note}")
                continue
            detail = _detail(role, prof)
            reason = f"{why}, {detail}" + (f"; {note}" if note else "")
            candidates.append((-(score - penalty), ri, pi, role, prof.name, reason, not by_values))
    for neg_score, _, _, role, column, reason, by_name_flag in sorted(candidates):
        if role in roles or column in taken:
            continue
        roles[role] = RoleGuess(role, column, -neg_score, reason, by_name_flag)
        taken.add(column)
    for role in ROLES:
        if role not in roles and rejected[role]:
            notes.append(f"no {role} column: turned down " + "; ".join(rejected[role]))
    missing = [r for r in REQUIRED_COLUMNS if r not in roles]
    if missing:
        raise EventValidationError(_missing_message(missing, profiles, rejected, roles), column=missing[0])
    return {r: roles[r] for r in ROLES if r in roles}, notes


_ROLE_HINTS = {
    "customer_id": "customer_id, user_id, userId, user_pseudo_id, visitor_id or case:concept:name",
    "timestamp": "timestamp, ts, time, event_time or time:timestamp (ISO-8601 or epoch numbers)",
    "event_type": "event_type, event, event_name, action, activity or concept:name",
}


def _missing_message(
    missing: Sequence[str], profiles: Sequence[ColumnProfile], rejected: Mapping[str, list[str]], roles: Mapping[str, RoleGuess]
) -> str:
    lines = [f"cannot tell which column is the {' / '.join(missing)} (required)."]
    for role in missing:
        if rejected[role]:
            lines.append(f"  {role}: turned down " + "; ".join(rejected[role]))
    found = ", ".join(f"{r} <- '{g.column}'" for r, g in roles.items())
    if found:
        lines.append(f"  found: {found}")
    lines.append("  columns: " + ", ".join(p.describe() for p in profiles))
    for role in missing:
        lines.append(
            f"  name the {role} column like {_ROLE_HINTS[role]}, or say which it is: --column {role}=<column>"
        )
    return "\n".join(lines)


def _role_list(roles: Mapping[str, RoleGuess]) -> str:
    return ", ".join(f"{r} <- '{g.column}'" for r, g in roles.items())


def _name_score(role: str, tokens: tuple[str, ...]) -> tuple[int, str] | None:
    """(score, why) when the tokens name ``role``; exact known names score highest."""
    joined = "_".join(tokens)
    exact = _EXACT.get(role, {})
    if joined in exact:
        return exact[joined], "name match"
    tset = set(tokens)
    if role == "customer_id":
        if tset & _NOT_ID:
            return None
        glued = any(t.endswith("id") and t[:-2] in _ENTITY for t in tokens)
        if glued or (tset & _ENTITY and tset & _IDISH):
            return 70, "name like an id of a customer"
        if len(tokens) == 1 and tokens[0] in _ENTITY:
            return 60, "name of a kind of customer"
    elif role == "event_type":
        if tset & _NOT_EVENT:
            return None
        if tset & _EVENT_WORDS:
            return 60, "name like an event"
        if tokens and tokens[-1] == "type":
            return 40, "name like a type"
    elif role == "timestamp":
        if tset & _MEASURE_WORDS or tset & {"on", "to", "since", "until"}:
            return None
        if tset & _TIME_WORDS or (len(tokens) > 1 and tokens[-1] == "at") or any(
            t.endswith(("time", "timestamp")) for t in tokens
        ):
            return 70, "name like a time"
    elif role == "revenue":
        if tset & _NOT_MONEY:
            return None
        if tset & _MONEY_WORDS:
            return 70, "name like money"
    elif role == "channel":
        if tset & (_IDISH | _TIME_WORDS):
            return None
        if tset & {"channel", "medium"}:
            return 70, "name like a channel"
        if "source" in tset:
            return 50, "name like a traffic source"
    elif role == "session_id":
        if tset & _NOT_SESSION:
            return None
        if "session" in tset or any(t.startswith("session") for t in tokens):
            return 70, "name like a session"
    return None


def _type_check(role: str, p: ColumnProfile) -> tuple[bool, int, str]:
    """(acceptable, score penalty, note) for column ``p`` in ``role``."""
    if p.non_blank == 0:
        return False, 0, "is always blank"
    if role in ("customer_id", "session_id"):
        if p.kind in ("datetime", "bool", "nested"):
            return False, 0, f"holds {p.kind} values, not ids"
        if p.kind == "float" and not p.integral:
            return False, 0, "holds fractional numbers, not ids"
        if role == "customer_id" and p.distinct == 1 and p.non_blank > 1:
            return False, 0, "has a single value for every row"
        if p.kind == "float":
            return True, 20, "ids stored as floats (leading zeros and long ids may be lost; store ids as text)"
        return True, 0, ""
    if role == "timestamp":
        if p.date_share < MIN_DATE_SHARE:
            return False, 0, f"parses as a time on only {p.date_share:.0%} of sampled values"
        return True, 0, ""
    if role == "event_type":
        if p.kind in ("float", "bool", "datetime", "nested"):
            return False, 0, f"holds {p.kind} values, not event names"
        if p.date_share >= MIN_DATE_SHARE:
            return False, 0, "holds times, not event names"
        if p.non_blank >= 100 and p.distinct > 0.5 * p.non_blank:
            return False, 0, f"has {p.distinct:,} distinct values in {p.non_blank:,} rows: too many for event types"
        return True, (30 if p.distinct > 500 else 0), ""
    if role == "revenue":
        if p.kind in ("datetime", "bool", "nested") or p.numeric_share < 0.95:
            return False, 0, f"is numeric on only {p.numeric_share:.0%} of values"
        if p.zeros == p.non_blank:
            return False, 0, "is always 0"
        note = f"{p.negatives:,} negative values (the loader rejects those rows)" if p.negatives else ""
        return True, (20 if p.negatives else 0), note
    if role == "channel":
        if p.kind not in ("string",):
            return False, 0, f"holds {p.kind} values, not channel names"
        if p.distinct > 1000 or (p.non_blank >= 100 and p.distinct > 0.2 * p.non_blank):
            return False, 0, f"has {p.distinct:,} distinct values: too many for channels"
        return True, 0, ""
    return True, 0, ""


def _detail(role: str, p: ColumnProfile) -> str:
    if role == "timestamp":
        return f"parses as a time on {p.date_share:.0%} of sampled values"
    if role == "revenue":
        return f"numeric, non-zero on {p.non_blank - p.zeros:,} rows"
    return f"{p.distinct:,} distinct values"


def _measure_columns(profiles: Sequence[ColumnProfile], roles: Mapping[str, RoleGuess]) -> tuple[str, ...]:
    """Numeric columns named like a wait/delay/latency or a failure flag: friction measures.

    Only columns whose every non-blank value is a finite number, so declaring them
    friction measures rejects no row.
    """
    taken = {g.column for g in roles.values()}
    out = []
    for p in profiles:
        if p.name in taken or p.name in ROLES or p.non_blank == 0:
            continue
        if p.kind not in ("integer", "float", "bool", "string") or p.numeric_share < 1.0:
            continue
        tokens = set(name_tokens(p.name))
        if tokens & (_MEASURE_WORDS | _FRICTION_WORDS):
            out.append(p.name)
    return tuple(out)


def _canonical_frame(frame: pd.DataFrame, roles: Mapping[str, RoleGuess], by_name: Mapping[str, ColumnProfile]) -> pd.DataFrame:
    """The raw frame renamed to canonical names, integer ids as their decimal strings
    (what :func:`journey_ml.events.load_events` does for Parquet)."""
    out = frame.rename(columns={g.column: role for role, g in roles.items() if g.column != role})
    for role in ("customer_id", "session_id"):
        if role in roles and by_name[roles[role].column].kind == "integer":
            col = out[role]
            out[role] = col.astype("Int64").astype("str").where(col.notna(), None)
    return out


# ---------------------------------------------------------------------- event analysis
@dataclass
class _Analysis:
    """Per event type statistics the proposals are made from."""

    names: list[str]
    count: dict[str, int]
    customers: dict[str, int]
    position: dict[str, float | None]
    revenue_share: dict[str, float | None]
    last_share: dict[str, float | None]
    kind: dict[str, str]
    kind_reason: dict[str, str]
    customers_total: int
    first_rank: pd.DataFrame  # sampled: customer code, event, rank of first occurrence
    events: pd.DataFrame  # all accepted events (customer_id, event_type, revenue)
    has_revenue: bool
    #: Share of all rows with revenue > 0 (a per-customer amount repeated on every row
    #: is an attribute, not order revenue, and says nothing about conversions).
    revenue_rows: float = 0.0
    #: Share of converting customers who first meet the event type after converting.
    after: dict[str, float | None] = field(default_factory=dict)


def _classify(name: str) -> tuple[str, str]:
    """(``friction``/``exit``/``conversion``/``other``, why) from an event name."""
    tokens = name_tokens(name)
    tset = set(tokens)
    if tset & _FRICTION_WORDS:
        return "friction", f"named like a failure ('{sorted(tset & _FRICTION_WORDS)[0]}')"
    pairs = set(itertools.pairwise(tokens))
    exit_words = tset & _EXIT_WORDS
    if ("opt", "out") in pairs:
        exit_words.add("opt out")
    if exit_words:
        word = sorted(exit_words)[0]
        if tset & _ATTEMPT_WORDS:
            return "friction", f"named like a failed attempt ('{word}' {sorted(tset & _ATTEMPT_WORDS)[0]})"
        return "exit", f"named like leaving ('{word}')"
    conv = tset & _CONVERSION_WORDS
    conv_pairs = [p for p in _CONVERSION_PAIRS if p in pairs]
    if (conv or conv_pairs) and not tset & _NOT_CONVERSION:
        word = sorted(conv)[0] if conv else " ".join(conv_pairs[0])
        return "conversion", f"named like a conversion ('{word}')"
    return "other", ""


def _analyse_events(events: pd.DataFrame, sample: pd.DataFrame, *, has_revenue: bool) -> _Analysis:
    etype = events["event_type"]
    counts = etype.value_counts()
    names = sorted(counts.index.astype(str), key=lambda e: (-int(counts[e]), e))
    per_customer = events.drop_duplicates(["customer_id", "event_type"])["event_type"].value_counts()
    revenue_share: dict[str, float | None] = dict.fromkeys(names)
    if has_revenue:
        paid = (events["revenue"] > 0).groupby(etype, sort=False).mean()
        revenue_share = {e: float(paid[e]) for e in names}

    codes = pd.factorize(sample["customer_id"])[0]
    size = np.bincount(codes)[codes] if len(codes) else np.zeros(0, dtype=np.int64)
    rank = pd.Series(codes).groupby(codes, sort=False).cumcount().to_numpy()
    pos = np.where(size > 1, rank / np.maximum(size - 1, 1), np.nan)
    frame = pd.DataFrame({"c": codes, "e": sample["event_type"].to_numpy(), "rank": rank, "pos": pos})
    first = frame.drop_duplicates(["c", "e"])
    med = first.dropna(subset=["pos"]).groupby("e", sort=False)["pos"].median()
    last = frame[rank == size - 1]
    last_counts = last["e"].value_counts()
    sample_customers = first["e"].value_counts()
    kind: dict[str, str] = {}
    kind_reason: dict[str, str] = {}
    for e in names:
        kind[e], kind_reason[e] = _classify(e)
    return _Analysis(
        names=names,
        count={e: int(counts[e]) for e in names},
        customers={e: int(per_customer.get(e, 0)) for e in names},
        position={e: (float(med[e]) if e in med.index else None) for e in names},
        revenue_share=revenue_share,
        last_share={
            e: (int(last_counts.get(e, 0)) / int(sample_customers[e]) if e in sample_customers.index else None)
            for e in names
        },
        kind=kind,
        kind_reason=kind_reason,
        customers_total=int(events["customer_id"].nunique()),
        first_rank=first[["c", "e", "rank"]].reset_index(drop=True),
        events=events[["customer_id", "event_type", "revenue"]],
        has_revenue=has_revenue,
        revenue_rows=float((events["revenue"] > 0).mean()) if has_revenue else 0.0,
    )


def _choose_conversions(a: _Analysis, has_revenue: bool) -> tuple[tuple[str, ...], dict[str, str], list[str]]:
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


def _not_superseded(candidates: Sequence[str], a: _Analysis) -> list[str]:
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


def _propose_stages(
    a: _Analysis, conversions: Sequence[str]
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


def _split_by_position(events: Sequence[str], a: _Analysis) -> list[list[str]]:
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


def _propose_frictions(
    friction_events: Sequence[str], measures: Sequence[str], events: pd.DataFrame, a: _Analysis
) -> tuple[FrictionProposal, ...]:
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


def _propose_settings(
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


def _sample_customers(
    events: pd.DataFrame, seed: int, max_rows: int, max_customers: int
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Whole customers in an order fixed by a seeded hash of their id, up to both limits."""
    sizes = events.groupby("customer_id", sort=True).size()
    total_c, total_r = len(sizes), len(events)
    info: dict[str, Any] = {
        "customers": total_c,
        "rows": total_r,
        "max_customers": max_customers,
        "max_rows": max_rows,
        "seed": seed,
    }
    if total_c <= max_customers and total_r <= max_rows:
        return events, {**info, "sampled": False, "sample_customers": total_c, "sample_rows": total_r}
    key = f"{seed:016d}"[-16:]
    order = np.argsort(pd.util.hash_array(sizes.index.to_numpy(dtype=object), hash_key=key), kind="stable")
    cum = np.cumsum(sizes.to_numpy()[order])
    n = int(min(max_customers, max(1, np.searchsorted(cum, max_rows, side="right"))))
    chosen = sizes.index[order[:n]]
    sample = events[events["customer_id"].isin(chosen)].reset_index(drop=True)
    return sample, {**info, "sampled": True, "sample_customers": n, "sample_rows": len(sample)}


def _event_profile(
    e: str, a: _Analysis, conversions: Sequence[str], conv_reasons: Mapping[str, str], stage_of: Mapping[str, str]
) -> EventTypeProfile:
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


def _checks(
    roles: Mapping[str, RoleGuess],
    a: _Analysis,
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


# ---------------------------------------------------------------------- the map and its YAML
def _map_dict(
    source: str,
    fmt: str,
    roles: Mapping[str, RoleGuess],
    stages: Sequence[StageProposal],
    conversions: Sequence[str],
    repeat: str | None,
    exits: Sequence[str],
    frictions: Sequence[FrictionProposal],
    settings: Mapping[str, tuple[float, str]],
) -> dict[str, Any]:
    out: dict[str, Any] = {"name": _map_name(source)}
    if fmt != "auto":
        out["format"] = fmt
        renamed = {role: g.column for role, g in roles.items() if g.column != role}
        if renamed:
            out["columns"] = renamed
    else:
        out["columns"] = {role: g.column for role, g in roles.items()}
    out["stages"] = [{"name": s.name, "events": list(s.events)} for s in stages]
    out["conversion_events"] = list(conversions)
    if repeat is not None:
        out["repeat_conversion_stage"] = repeat
    out["exit_events"] = list(exits)
    out["touchpoints"] = {"by": ["event_type", "channel"] if "channel" in roles else ["event_type"]}
    out["friction"] = {f.name: f.spec() for f in frictions}
    for key, (value, _) in settings.items():
        out[key] = value
    return out


def _map_name(source: str) -> str:
    stem = Path(source).name.split(".")[0]
    return re.sub(r"[^A-Za-z0-9_]+", "_", stem).strip("_") or "journey"


def _q(value: str) -> str:
    """A YAML scalar for ``value``: plain when it reads back as the same string."""
    if _PLAIN.match(value):
        try:
            if yaml.safe_load(value) == value:
                return value
        except yaml.YAMLError:
            pass
    return json.dumps(value, ensure_ascii=False)


def _flow(values: Sequence[str]) -> str:
    return "[" + ", ".join(_q(v) for v in values) + "]"


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _comment(text: str) -> str:
    return " ".join(str(text).split())


def _render_yaml(m: Mapping[str, Any], d: Mapping[str, Any]) -> str:
    """The drafted map as YAML, every guess explained in a comment."""
    lines: list[str] = []
    add = lines.append
    time_range = d["time_range"]
    add(f"# Draft journey map written by `journey-ml init` from {_comment(d['source'])}.")
    add(
        f"# {d['rows_in']:,} rows ({d['rows_ok']:,} accepted, {d['rows_in'] - d['rows_ok']:,} rejected), "
        f"{d['customers']:,} customers, {time_range[0]} .. {time_range[1]}."
    )
    add("# Every value below is a guess with its reason: check it, fix it, then run")
    add(f"#   journey-ml validate {_comment(d['source'])} --journey-map <this file>")
    sampling = d["sampling"]
    if sampling.get("sampled"):
        add(
            f"# Positions come from a seeded sample of {sampling['sample_customers']:,} customers "
            f"({sampling['sample_rows']:,} rows); counts use every row."
        )
    add("")
    add(f"name: {_q(m['name'])}")
    add("")
    roles: Mapping[str, RoleGuess] = d["roles"]
    if "format" in m:
        add(f"# The file is a {m['format']} export: its reader flattens it into the canonical columns")
        add("# (no columns: section). What it holds:")
        for role, g in roles.items():
            add(f"#   {role} <- '{_comment(g.column)}': {_comment(g.reason)}")
        add(f"format: {m['format']}")
    else:
        add("# canonical name: source column, and why")
        add("columns:")
        for role, g in roles.items():
            add(f"  {role}: {_q(g.column)}   # {_comment(g.reason)}")
        missing = [r for r in ROLES if r not in roles]
        if missing:
            add(f"  # not found: {', '.join(missing)} (optional)")
    add("")
    add("# Event types: rows, customers, median position of the first occurrence in a journey")
    add("# (0 = a customer's first event, 1 = the last), and what the draft makes of each:")
    profiles: Sequence[EventTypeProfile] = d["event_types"]
    width = max(len(e.name) for e in profiles)
    for e in profiles:
        pos = f"{e.median_position:.2f}" if e.median_position is not None else "  - "
        add(
            f"#   {_comment(e.name):<{width}} {e.count:>10,} {e.customers:>9,}  {pos}  "
            f"{e.proposal}: {_comment(e.reason)}"
        )
    add("")
    add("stages:   # ordered, earliest first; a customer's stage is the furthest one their events evidence")
    for s in d["stages"]:
        add(f"  - {{name: {_q(s.name)}, events: {_flow(s.events)}}}   # {_comment(s.reason)}")
    add("")
    conversions = m["conversion_events"]
    if conversions:
        why = "; ".join(f"{e}: {_comment(p.reason)}" for e in conversions for p in profiles if p.name == e)
        add(f"conversion_events: {_flow(conversions)}   # {why}")
    else:
        add("conversion_events: []   # none found: name your conversion events (each must be in a stage)")
    if "repeat_conversion_stage" in m:
        add(f"repeat_conversion_stage: {_q(m['repeat_conversion_stage'])}   # a second conversion promotes here")
    if m["exit_events"]:
        add(f"exit_events: {_flow(m['exit_events'])}   # explicit drop-off; never stage events")
    else:
        add("exit_events: []   # none named like unsubscribe/cancel/declined/churn: add yours")
    add("")
    by = m["touchpoints"]["by"]
    note = "" if "channel" in by else "   # no channel column: touchpoints are event types"
    add(f"touchpoints: {{by: {_flow(by)}}}{note}")
    add("")
    frictions: Sequence[FrictionProposal] = d["friction"]
    if frictions:
        add("# An event is friction when event_type matches and `column` >= `min`. Candidates:")
        add("friction:")
        for f in frictions:
            parts = []
            if f.event_type is not None:
                parts.append(f"event_type: {_q(f.event_type)}")
            if f.column is not None:
                parts.append(f"column: {_q(f.column)}")
            if f.min is not None:
                parts.append(f"min: {_num(f.min)}")
            add(f"  {_q(f.name)}: {{{', '.join(parts)}}}   # {_comment(f.reason)}")
    else:
        add("friction: {}   # no event named like an error/timeout/failure and no wait/delay column found")
    unused = d["unused_numeric"]
    if unused:
        add(f"# numeric columns not used: {', '.join(_comment(u) for u in unused)}")
    add("")
    settings: Mapping[str, tuple[float, str]] = d["settings"]
    for key, (value, why) in settings.items():
        add(f"{key}: {_num(value)}   # {_comment(why)}")
    if "revenue" not in roles:
        add("")
        add("# The log has no revenue column: rankings count conversions. To value them in money,")
        add("# set what one conversion is worth and uncomment:")
        add("# value_per_conversion: 50")
    return "\n".join(lines) + "\n"


def _rows(n: int) -> str:
    return f"{n:,} row" + ("" if n == 1 else "s")


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)
