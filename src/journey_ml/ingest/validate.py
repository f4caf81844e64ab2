"""Validate raw events row by row: canonical events plus every rejected row with its reason.

The canonical event frame (what every downstream function takes) has the columns

``customer_id``  pandas ``str``; never parsed as a number (``"00042"`` stays ``"00042"``)
``timestamp``    ``datetime64[ns, UTC]``
``event_type``   ``str``
``channel``      ``str``; ``"unknown"`` when missing
``revenue``      ``float64`` >= 0; ``0.0`` when missing
``session_id``   ``str``; derived from an inactivity gap when absent or null
friction cols    ``float64`` with NaN where not applicable (every column a friction rule reads)
other columns    kept as they came in (event properties)

sorted stably by (``customer_id``, ``timestamp``) with index ``0..n-1``.

Bad rows are never dropped silently or coerced: each one goes to ``LoadResult.rejects``
with exactly one ``reject_reason`` -- the first failing check in this order:

1. ``missing_customer_id``  null, empty or whitespace-only id
2. ``missing_timestamp``    null, empty or whitespace-only timestamp
3. ``bad_timestamp``        unparseable, or outside [1990-01-01, 2100-01-01)
4. ``missing_event_type``   null, empty or whitespace-only event type
5. ``bad_revenue``          revenue present but not a finite number
6. ``negative_revenue``     revenue < 0
7. ``bad_<column>``         a friction measure column present but not a finite number
                            (checked in journey-map order)
8. ``duplicate``            exact copy of an earlier accepted row (same customer, time,
                            event type, channel, revenue, session id and properties); the
                            first occurrence in the input is kept

GA4 and Segment exports (journey map ``format: ga4`` or ``format: segment``) are flattened
by :mod:`journey_ml.ingest.formats` first (:func:`journey_ml.ingest.readers.load_events`); a
row that cannot even be flattened is rejected there, before the checks above, with ``bad_json`` (not a JSON object), ``not_an_event`` (a Segment
``identify``/``group``/``alias`` call), ``bad_structure`` (a record field of the wrong
JSON shape), ``bad_event_params`` (GA4 parameters that are not a list of ``{key, value}``
records) or ``duplicate_event_id`` (a replayed Segment ``messageId``). Their rejects carry
the flattened columns and ``source_record`` (the line as it came).

Timestamp rules
---------------
* Datetime columns (e.g. Parquet timestamps): tz-aware values are converted to UTC,
  naive values are taken to be UTC.
* Strings: ISO-8601 with or without a UTC offset (``Z``, ``+02:00``, ``-0530``), with
  ``T`` or a space, optional fractional seconds, or date only (midnight). Offsets may
  differ row by row. **Naive strings are taken to be UTC.** Other unambiguous formats are
  tried per value by pandas' ``format="mixed"`` parser as a last resort.
* Numbers, and strings that are plain numbers, are epoch times. The unit is chosen per
  value by magnitude: ``|v| < 1e11`` seconds, ``< 1e14`` milliseconds, ``< 1e17``
  microseconds, otherwise nanoseconds. (Any date in 1990..2100 is unambiguous under this
  rule: seconds stop at ~4.1e9, milliseconds start at ~6.3e11.)

Leading/trailing whitespace is stripped from ``customer_id``, ``event_type``,
``channel`` and ``session_id``.

Examples
--------
>>> import pandas as pd
>>> from journey_ml.contract import JourneyMap
>>> jm = JourneyMap.from_dict({"stages": [{"name": "visit", "events": ["view"]}]})
>>> raw = pd.DataFrame({
...     "customer_id": ["007", "007", ""],
...     "timestamp": ["2026-01-01T10:00:00+02:00", "2026-01-01T09:30:00Z", "2026-01-01"],
...     "event_type": ["view", "view", "view"],
... })
>>> result = validate_events(raw, jm, max_reject_share=1.0)
>>> result.events["timestamp"].dt.strftime("%H:%M").tolist()
['08:00', '09:30']
>>> result.summary["reasons"]
{'missing_customer_id': 1}
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from journey_ml.contract import CANONICAL_COLUMNS, REQUIRED_COLUMNS, JourneyMap
from journey_ml.contract.stages import stage_reach_counts
from journey_ml.exceptions import EventValidationError, did_you_mean
from journey_ml.ingest.order import session_ids, sort_accepted, take_floats
from journey_ml.ingest.parse import Factor, parse_floats, parse_timestamps, take_strings
from journey_ml.runtime import gc_paused

__all__ = [
    "DUPLICATE",
    "REJECT_REASONS",
    "UNKNOWN_CHANNEL",
    "Accepted",
    "Checked",
    "LoadResult",
    "check_frame",
    "check_share",
    "require_columns",
    "summarize",
    "validate_events",
    "validate_frame",
]

#: Fixed reasons, in check order; ``bad_<column>`` for friction columns sits before
#: ``duplicate``.
REJECT_REASONS: tuple[str, ...] = (
    "missing_customer_id",
    "missing_timestamp",
    "bad_timestamp",
    "missing_event_type",
    "bad_revenue",
    "negative_revenue",
)
DUPLICATE = "duplicate"
UNKNOWN_CHANNEL = "unknown"


class _Counts:
    """The counts of a load (``rejects`` and ``rows_in`` are the dataclass's fields)."""

    rejects: pd.DataFrame
    rows_in: int

    @property
    def summary(self) -> dict[str, Any]:
        """``rows_in``, ``rows_ok``, ``rows_rejected`` and ``reasons`` (count, descending)."""
        rejects, rows_in = self.rejects, self.rows_in
        counts = rejects["reject_reason"].value_counts(sort=False) if len(rejects) else {}
        reasons = sorted(((str(k), int(v)) for k, v in dict(counts).items()), key=lambda kv: (-kv[1], kv[0]))
        return {"rows_in": rows_in, "rows_ok": rows_in - len(rejects), "rows_rejected": len(rejects), "reasons": dict(reasons)}

    @property
    def reject_share(self) -> float:
        """Share of input rows rejected (0.0 for an empty input)."""
        return len(self.rejects) / self.rows_in if self.rows_in else 0.0


@dataclass(frozen=True)
class LoadResult(_Counts):
    """Canonical events and rejected rows of one load.

    Attributes
    ----------
    events : pandas.DataFrame
        Accepted rows in canonical form (see module docstring).
    rejects : pandas.DataFrame
        Rejected rows exactly as they came in, plus ``reject_reason`` and ``row_number``
        (0-based position in the input), ordered by ``row_number``.
    rows_in : int
        Number of input rows; always ``len(events) + len(rejects)``.
    """

    events: pd.DataFrame
    rejects: pd.DataFrame
    rows_in: int

    def __post_init__(self) -> None:
        if self.rows_in != len(self.events) + len(self.rejects):
            raise AssertionError(
                f"rows not conserved: {self.rows_in} in, {len(self.events)} ok, "
                f"{len(self.rejects)} rejected"
            )



@dataclass(frozen=True)
class Accepted:
    """The accepted rows in (customer, time) order, as codes and arrays.

    The canonical events frame (:meth:`Checked.events`) and the event log
    (``EventLog.from_accepted``) are both built from this, so a load that only feeds an
    event log never materialises millions of strings.
    """

    rows: np.ndarray  # input position of each accepted row
    customer: np.ndarray  # int64 code into customer_ids, non-decreasing
    customer_ids: pa.Array  # distinct cleaned ids in lexical order (some only in rejected rows)
    ts: np.ndarray  # int64 ns UTC
    event_type: Factor  # per input row
    channel: Factor  # per input row, never missing
    session: Factor | None  # per input row; None without a session_id column
    floats: dict[str, tuple[np.ndarray, float]]  # revenue, friction measures: (per input row, fill)
    session_gap_minutes: float

    @property
    def in_input_order(self) -> bool:
        """Every input row accepted, already in (customer, time) order: ``rows`` is 0..n-1."""
        return len(self.rows) == len(self.event_type.codes) and (not len(self.rows) or int(self.rows[-1]) == len(self.rows) - 1)

    def at_rows(self, values: np.ndarray) -> np.ndarray:
        """``values[rows]`` for a per-input-row array (no copy when rows are the input)."""
        return values if self.in_input_order else values[self.rows]

    def session_ids(self) -> pd.Series:
        """The session id of each accepted row: given, else derived from the inactivity gap."""
        given = None if self.session is None else ~self.session.missing[self.rows]
        if given is not None and given.all():
            return self.session.take(self.rows)  # type: ignore[union-attr]
        derived = session_ids(self.customer_ids, self.customer, self.ts, self.session_gap_minutes)
        if given is not None and given.any():
            return derived.where(~given, self.session.take(self.rows))  # type: ignore[union-attr]
        return derived


@dataclass(frozen=True)
class Checked(_Counts):
    """Validation's outcome before the events frame is built: :meth:`result` builds it."""

    accepted: Accepted
    rejects: pd.DataFrame
    rows_in: int
    frame: Any  # the validated input (for its property columns)
    property_columns: list[str]

    def result(self) -> LoadResult:
        """The :class:`LoadResult`, with the canonical events frame."""
        return LoadResult(events=_events_frame(self), rejects=self.rejects, rows_in=self.rows_in)


def validate_events(
    frame: pd.DataFrame, journey_map: JourneyMap, *, max_reject_share: float | None = None
) -> LoadResult:
    """Validate an in-memory event frame (canonical column names) row by row.

    Parameters
    ----------
    frame : pandas.DataFrame
        Raw events; values may be strings (as read from CSV), numbers or datetimes.
        Must contain ``customer_id``, ``timestamp`` and ``event_type``.
    journey_map : JourneyMap
        Supplies friction columns, ``session_gap_minutes`` and ``max_reject_share``.
    max_reject_share : float, optional
        Overrides ``journey_map.max_reject_share``.

    Returns
    -------
    LoadResult

    Raises
    ------
    EventValidationError
        A required column is missing, or the reject share exceeds the limit.
    """
    require_columns(frame, journey_map, source=None)
    with gc_paused():
        result = validate_frame(frame, journey_map)
    check_share(result, journey_map, max_reject_share)
    return result


def summarize(result: LoadResult, journey_map: JourneyMap) -> dict[str, Any]:
    """``result.summary`` plus what was accepted.

    Adds ``customers`` (distinct accepted customers), ``stages`` (stage -> customers who
    reached it, a funnel via :func:`journey_ml.contract.stages.stage_reach_counts`), ``time_range``
    (``{"min", "max"}`` ISO-8601 UTC, ``None`` when empty) and ``event_types``
    (event type -> count, descending).
    """
    events = result.events
    out = dict(result.summary)
    out["customers"] = int(events["customer_id"].nunique())
    out["stages"] = stage_reach_counts(events, journey_map) if len(events) else dict.fromkeys(journey_map.stage_names, 0)
    if len(events):
        ts = events["timestamp"]
        out["time_range"] = {"min": ts.min().isoformat(), "max": ts.max().isoformat()}
    else:
        out["time_range"] = {"min": None, "max": None}
    counts = events["event_type"].value_counts()
    out["event_types"] = {str(k): int(v) for k, v in counts.items()}
    return out


def require_columns(frame: pd.DataFrame, journey_map: JourneyMap, *, source: str | None) -> None:
    """Refuse a frame without a required column; ``source`` (a file) means source names."""
    present = [str(c) for c in frame.columns]
    for canon in REQUIRED_COLUMNS:
        name = journey_map.source_column(canon) if source is not None else canon
        if name in present:
            continue
        mapped = f" (the journey map's columns.{canon})" if name != canon else ""
        where = f" in {source}" if source else ""
        raise EventValidationError(
            f"required column '{name}'{mapped} is missing{where}"
            f"{did_you_mean(name, present)}; columns present: {present}",
            column=canon,
        )


def validate_frame(frame: pd.DataFrame, journey_map: JourneyMap, ids: Future[Factor] | None = None) -> LoadResult:
    """Validate ``frame`` (canonical names, no share check) into a :class:`LoadResult`.

    ``ids``, when given, yields ``Factor.of(frame["customer_id"], sort=True)`` (started
    early by the file reader).
    """
    return check_frame(frame, journey_map, ids).result()


def check_frame(frame: Any, journey_map: JourneyMap, ids: Future[Factor] | None = None) -> Checked:
    """:func:`validate_frame` up to the accepted rows' codes and the rejects (no events frame).

    ``frame`` is a pandas frame or a file's columns (``readers.ArrowColumns``): string
    columns may come as Arrow arrays, which :class:`Factor` encodes without pandas.
    """
    n = len(frame)
    reason = np.zeros(n, dtype=np.int16)  # 0 = accepted, k = k-th reason in `names`
    names: list[str] = [*REJECT_REASONS, *(f"bad_{c}" for c in journey_map.friction_columns), DUPLICATE]
    code = {name: i + 1 for i, name in enumerate(names)}

    # String columns are handled as (codes, distinct values): cleaning, comparing and
    # reordering int codes is far cheaper than touching millions of strings.
    # The two costliest conversions run in threads (Arrow and numpy release the GIL)
    # while this thread parses the other columns; results do not depend on scheduling.
    checks: list[tuple[np.ndarray, str]] = []  # (failing rows, reason) after the id and time checks
    with ThreadPoolExecutor(max_workers=2) as pool:
        cid_job = ids if ids is not None else pool.submit(Factor.of, frame["customer_id"], sort=True)
        ts_job = pool.submit(parse_timestamps, frame["timestamp"])
        etype = Factor.of(frame["event_type"])
        checks.append((etype.missing, "missing_event_type"))
        if "revenue" in frame.columns:
            revenue, rev_missing, rev_bad = parse_floats(frame["revenue"])
            checks.append((rev_bad, "bad_revenue"))
            revenue = np.where(rev_missing, 0.0, revenue)
            checks.append((revenue < 0, "negative_revenue"))
        else:
            revenue = np.zeros(n)
        friction: dict[str, np.ndarray] = {}
        for col in journey_map.friction_columns:
            if col in frame.columns:
                values, _, bad = parse_floats(frame[col])
                checks.append((bad, f"bad_{col}"))
                friction[col] = values
            else:
                friction[col] = np.full(n, np.nan)
        channel = Factor.of(frame["channel"]) if "channel" in frame.columns else Factor.constant(n, UNKNOWN_CHANNEL)
        channel = channel.fill_missing(UNKNOWN_CHANNEL)
        session = Factor.of(frame["session_id"]) if "session_id" in frame.columns else None
        cid = cid_job.result()
        ts_ns, ts_missing, ts_bad = ts_job.result()
    checks[:0] = [
        (cid.missing, "missing_customer_id"), (ts_missing, "missing_timestamp"), (ts_bad, "bad_timestamp"),
    ]
    # The first failing check wins: apply them last to first, each overwriting the later ones.
    for mask, name in reversed(checks):
        np.putmask(reason, mask, code[name])
    del checks

    # ---- order the accepted rows by (customer, time); rejects never influence sorting
    rows, cid_sorted, ts_sorted = sort_accepted(cid.codes, ts_ns, reason == 0, len(cid.values))

    property_cols = [c for c in frame.columns if c not in CANONICAL_COLUMNS and c not in friction]
    compare: dict[str, Any] = {
        "event_type": etype.codes, "channel": channel.codes, "revenue": revenue, **friction,
    }
    if session is not None:
        compare["session_id"] = session.codes
    compare.update({c: frame[c] for c in property_cols})
    dup = _duplicates(rows, cid_sorted, ts_sorted, compare)
    if dup.any():
        reason[rows[dup]] = code[DUPLICATE]
        keep = ~dup
        rows, cid_sorted, ts_sorted = rows[keep], cid_sorted[keep], ts_sorted[keep]
    accepted = Accepted(
        rows=rows, customer=cid_sorted, customer_ids=cid.values, ts=ts_sorted, event_type=etype, channel=channel,
        session=session, floats={"revenue": (revenue, 0.0), **{c: (v, np.nan) for c, v in friction.items()}},
        session_gap_minutes=journey_map.session_gap_minutes,
    )
    rejects = _rejects_frame(frame, reason, names)
    return Checked(accepted=accepted, rejects=rejects, rows_in=n, frame=frame, property_columns=property_cols)


def _events_frame(checked: Checked) -> pd.DataFrame:
    """The canonical events frame (see the module docstring) of the accepted rows."""
    acc, frame = checked.accepted, checked.frame
    rows = acc.rows
    with ThreadPoolExecutor(max_workers=2) as pool:
        # Arrow and the compiled session writer release the GIL: the four string columns
        # are built side by side while this thread gathers the numeric ones.
        sess_job = pool.submit(acc.session_ids)
        cid_job = pool.submit(take_strings, acc.customer_ids, acc.customer)
        etype_job = pool.submit(acc.event_type.take, rows)
        channel_job = pool.submit(acc.channel.take, rows)
        if len(rows) < 2 or bool(np.all(rows[1:] > rows[:-1])):
            gathered = {col: values[rows] for col, (values, _) in acc.floats.items()}  # sequential reads
        else:
            gathered = take_floats(acc.floats, rows)
        sess_out, cid_out = sess_job.result(), cid_job.result()
        etype_out, channel_out = etype_job.result(), channel_job.result()
    data: dict[str, Any] = {
        "customer_id": cid_out,
        # Naive ns read as UTC with one copy (tz_localize would copy them a second time).
        # (The input's own times, when every row was accepted in order, are copied first.)
        "timestamp": pd.DatetimeIndex(
            (acc.ts if acc.ts.flags.owndata else acc.ts.copy()).view("datetime64[ns]"), dtype="datetime64[ns, UTC]", copy=False
        ),
        "event_type": etype_out,
        "channel": channel_out,
        "revenue": gathered.pop("revenue"),
        "session_id": sess_out,
        **gathered,
    }
    for col in checked.property_columns:
        data[col] = frame[col].iloc[rows].reset_index(drop=True)
    return pd.DataFrame(data, copy=False)  # fresh arrays: skip pandas' consolidation copy


def _rejects_frame(frame: Any, reason: np.ndarray, names: list[str]) -> pd.DataFrame:
    """Rejected rows as they came in, plus ``reject_reason`` and ``row_number``."""
    bad = np.flatnonzero(reason)
    rejects = frame.iloc[bad].reset_index(drop=True) if isinstance(frame, pd.DataFrame) else frame.take_rows(bad)
    for col in rejects.columns:
        if isinstance(rejects[col].dtype, pd.CategoricalDtype):  # read as categories, kept as text
            rejects[col] = rejects[col].astype("str")  # missing stays missing
    reason_names = np.array(["", *names], dtype=object)
    rejects["reject_reason"] = pd.Series(reason_names[reason[bad]], dtype="str")
    rejects["row_number"] = bad.astype(np.int64)
    return rejects


def check_share(result: LoadResult | Checked, journey_map: JourneyMap, limit: float | None) -> None:
    """Fail when more than ``limit`` (default: the map's) of the rows were rejected."""
    limit = journey_map.max_reject_share if limit is None else float(limit)
    if not 0.0 <= limit <= 1.0:
        raise EventValidationError(f"max_reject_share must be within [0, 1], got {limit}")
    share = result.reject_share
    if share <= limit:
        return
    s = result.summary
    top = ", ".join(f"{k}: {v}" for k, v in list(s["reasons"].items())[:3])
    raise EventValidationError(
        f"too many rejected rows: {s['rows_rejected']} of {s['rows_in']} rejected "
        f"({s['rows_ok']} ok), share {share:.2%} exceeds max_reject_share {limit:.2%}; "
        f"top reasons: {top}"
    )


def _duplicates(
    rows: np.ndarray, codes: np.ndarray, ts: np.ndarray, columns: Mapping[str, Any]
) -> np.ndarray:
    """Mask (in output order) of rows that exactly repeat an earlier input row.

    Duplicates share customer and time, so after sorting they sit in runs of equal
    (code, ts); only rows in such runs are compared on every column.
    """
    n = len(rows)
    dup = np.zeros(n, dtype=bool)
    if n < 2:
        return dup
    tie = (codes[1:] == codes[:-1]) & (ts[1:] == ts[:-1])
    if not tie.any():
        return dup
    cand = np.zeros(n, dtype=bool)
    cand[1:] |= tie
    cand[:-1] |= tie
    pos = np.flatnonzero(cand)
    src = rows[pos]
    sub = {"_code": codes[pos], "_ts": ts[pos]}
    for name, col in columns.items():
        values = col.iloc[src] if isinstance(col, pd.Series) else np.asarray(col)[src]
        values = pd.Series(values).reset_index(drop=True)
        if pd.api.types.is_object_dtype(values.dtype):
            # Unhashable JSON values (lists, dicts) compare by their text.
            values = values.map(lambda v: v if v is None or isinstance(v, (str, int, float, bool)) else repr(v))
        sub[name] = values.reset_index(drop=True)
    frame = pd.DataFrame(sub)
    # Compare in input order so the first occurrence in the file is the one kept.
    by_input = np.argsort(src, kind="stable")
    is_dup = frame.iloc[by_input].duplicated(keep="first").to_numpy()
    dup[pos[by_input]] = is_dup
    return dup
