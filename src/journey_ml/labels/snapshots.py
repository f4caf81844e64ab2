"""Leak-safe training snapshots: customer x cutoff rows with features and labels.

For a customer ``c`` and a cutoff ``t`` with horizon ``H = journey_map.horizon_days``:

* **features** use only ``c``'s events at or before ``t`` (:func:`journey_ml.features.compute_features`);
* **labels** use only ``c``'s events in ``(t, t + H]``;
* a row exists only when ``c`` is *active* at ``t``: their last event at or before ``t``
  is at most ``inactivity_days`` before ``t`` and they fired no exit event at or before ``t``.

Labels
------
``current_stage``
    Furthest stage evidenced by events ``<= t`` (:func:`journey_ml.contract.stages.event_stage_evidence`,
    so a repeat conversion evidences the retention stage). A customer with only stage-less
    events (e-mail opens, support contacts, ...) is placed in the first stage: they are
    known to the brand, hence at least aware of it. Equal to the ``current_stage`` feature.
``next_stage``
    Furthest stage reached by ``t + H``; ``>= current_stage`` ("stays" when equal).
``drop_off``
    1 if ``c`` does not progress to a later stage in ``(t, t + H]`` **and** either fires
    an exit event in ``(t, t + H]`` or has no activity at all in ``(t, t + H]``; else 0.
    Progressing wins: a customer who moves on and then unsubscribes is not a drop-off.
``future_revenue``
    Revenue of conversion events in ``(t, t + H]``.
``future_conversions``
    Number of conversion events in ``(t, t + H]`` (the value label of a log without revenue).

Splitting is by cutoff time, never by random rows, with an embargo so that no training
label window reaches into the validation period (see :func:`split_by_cutoff`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from journey_ml.contract import JourneyMap
from journey_ml.contract.time import to_utc, utc_ns
from journey_ml.eventlog import EventLog, rank_right, release_freed_memory, segment_reduce
from journey_ml.exceptions import ConfigError
from journey_ml.features import FeatureSpec
from journey_ml.features.compute import features_frame

LABELS: tuple[str, ...] = ("current_stage", "next_stage", "drop_off", "future_revenue", "future_conversions")


def make_cutoffs(
    events: pd.DataFrame,
    journey_map: JourneyMap,
    cadence_days: float = 7,
    start: Any = None,
    end: Any = None,
    *,
    min_history_days: float = 28,
) -> pd.DatetimeIndex:
    """Cutoff times on a regular cadence, each with a complete label window.

    Parameters
    ----------
    events : DataFrame
        Canonical events.
    journey_map : JourneyMap
        Gives the horizon ``H``.
    cadence_days : float, default 7
        Days between cutoffs (weekly by default).
    start : timestamp-like, optional
        First cutoff; default: first event + ``min_history_days``, rounded up to midnight UTC.
    end : timestamp-like, optional
        Latest allowed cutoff; default and upper bound: last event time - ``H``, so
        that every label window ``(t, t + H]`` is fully observed.
    min_history_days : float, default 28
        History required before the first default cutoff.

    Returns
    -------
    DatetimeIndex
        UTC cutoffs, ascending (empty when the data span is too short).
    """
    if cadence_days <= 0:
        raise ConfigError(f"must be > 0, got {cadence_days}", key="cadence_days")
    if events.empty:
        return pd.DatetimeIndex([], tz="UTC")
    ts = pd.DatetimeIndex(events["timestamp"]).tz_convert("UTC")
    horizon = pd.Timedelta(days=journey_map.horizon_days)
    first = (
        (ts.min() + pd.Timedelta(days=min_history_days)).ceil("D")
        if start is None
        else to_utc(start)
    )
    last = ts.max() - horizon
    if end is not None:
        last = min(last, to_utc(end))
    if first > last:
        return pd.DatetimeIndex([], tz="UTC")
    step = pd.Timedelta(days=cadence_days)
    count = int((last - first) // step) + 1
    return pd.DatetimeIndex([first + i * step for i in range(count)]).as_unit("ns")


def active_customers(events: pd.DataFrame | EventLog, journey_map: JourneyMap, at: Any) -> pd.DataFrame:
    """Customers active at ``at`` (:meth:`EventLog.activity`): columns ``customer_id``, ``cutoff`` (= ``at``)."""
    log = events if isinstance(events, EventLog) else EventLog.build(events, journey_map)
    return log.active_frame([at])


def build_snapshots(
    events: pd.DataFrame | EventLog,
    journey_map: JourneyMap,
    spec: FeatureSpec,
    *,
    cutoffs: Sequence[Any] | pd.DatetimeIndex | pd.DataFrame,
) -> pd.DataFrame:
    """Labelled snapshot rows: every customer active at every cutoff, with features.

    Parameters
    ----------
    events : DataFrame or EventLog
        Canonical events covering the features' history and the label windows.
    journey_map : JourneyMap
        Gives the horizon, the inactivity limit and exit/conversion events.
    spec : FeatureSpec
        Fitted feature spec (fit it on the training period only).
    cutoffs : sequence of times, DatetimeIndex or DataFrame
        Cutoff times (e.g. :func:`make_cutoffs`); each is expanded to the customers active
        then. A DataFrame with ``customer_id`` and ``cutoff`` is used row for row instead
        (no activity filter).

    Returns
    -------
    DataFrame
        ``customer_id``, ``cutoff``, every ``spec.feature_names`` column, the labels
        ``next_stage`` (int), ``drop_off`` (int 0/1), ``future_revenue`` (float),
        ``future_conversions`` (int)
        (``current_stage``, int32, is both a feature and a label) and ``n_events``
        (events so far).
        Sorted by customer then cutoff unless ``cutoffs`` was a DataFrame.
        ``attrs["horizon_days"]`` records the horizon for :func:`split_by_cutoff`.
    """
    if journey_map.stage_names != spec.journey_map.stage_names:
        raise ConfigError(
            f"the feature spec was fitted for stages {list(spec.journey_map.stage_names)}, "
            f"not {list(journey_map.stage_names)}",
            key="stages",
        )
    log = events if isinstance(events, EventLog) else EventLog.build(events, spec)
    if isinstance(cutoffs, pd.DataFrame):
        code = log.codes_of(cutoffs["customer_id"])
        t = utc_ns(cutoffs["cutoff"])
    else:
        code, t = log.active_at(utc_ns(list(cutoffs)))
    horizon = -float(journey_map.horizon_days)
    rows = log.locate(code, t, (0, horizon))

    # Labels and ids before the features: their temporaries are freed before the big
    # feature block is allocated, which sets the peak memory.
    now, later = rows.last[0], rows.last[horizon]
    current = log.current_stage(rows, 0)
    reached = np.where(later >= rows.first, log.running_stage()[np.maximum(later, 0)], -1)
    # Compact dtypes until the feature block is built; widened when inserted.
    next_stage = np.maximum(current, reached)
    progressed = next_stage > current
    del current, reached
    active_in_window = later > now
    exits = log.flags["exit"]
    exit_in_window = rank_right(exits, later) > rank_right(exits, now)
    drop_off = ~progressed & (exit_in_window | ~active_in_window)
    del progressed, active_in_window, exit_in_window
    # Revenue in (t, t + H]: the conversions between the two boundaries, summed in order,
    # so the value depends only on the events in the window (no global float prefix sum).
    conv = log.flags["conversion"]
    lo = rank_right(conv, np.maximum(now, rows.first - 1))
    hi = rank_right(conv, np.maximum(later, rows.first - 1))
    future_revenue = segment_reduce(np.add, log.conv_value, lo, np.maximum(hi, lo), 0.0)
    # Summed directly over the window (never a difference of prefix sums), so it cannot
    # come out slightly negative; the clamp only guards against negative source revenue.
    np.maximum(future_revenue, 0.0, out=future_revenue)
    future_conversions = np.maximum(hi - lo, 0)
    del lo, hi, later
    n_events = now + 1 - rows.first
    customers = log.customers

    del rows, now
    out = features_frame(log, code, t, spec)
    del log
    release_freed_memory()  # the encoded events (unless the caller keeps the log)
    # Arrow-backed string arrays throughout: an object array of Python strings would
    # cost ~60 bytes per row at the moment memory peaks.
    if isinstance(cutoffs, pd.DataFrame):
        ids = cutoffs["customer_id"].astype("str").array
    elif len(customers):
        ids = customers.take(np.maximum(code, 0)).array
    else:
        ids = pd.array([], dtype="str")
    # Inserting columns adds blocks; pd.concat would copy the float block.
    out.insert(0, "customer_id", ids)
    out.insert(1, "cutoff", pd.to_datetime(t, utc=True))
    # The current_stage feature (int32 code) is the current_stage label: same definition.
    out["next_stage"] = next_stage.astype(np.int64)
    out["drop_off"] = drop_off.astype(np.int64)
    out["future_revenue"] = future_revenue
    out["future_conversions"] = future_conversions.astype(np.int64)
    out["n_events"] = n_events.astype(np.int64)
    out.attrs["horizon_days"] = float(journey_map.horizon_days)
    return out


class Split(tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]):
    """``(train, valid, test)`` snapshot rows; ``.embargoed`` holds the cutoffs left out.

    Unpacks as a 3-tuple: ``train, valid, test = split_by_cutoff(...)``.
    """

    embargoed: pd.DatetimeIndex

    def __new__(
        cls, train: pd.DataFrame, valid: pd.DataFrame, test: pd.DataFrame, embargoed: pd.DatetimeIndex
    ) -> Split:
        obj = super().__new__(cls, (train, valid, test))
        obj.embargoed = embargoed
        return obj

    @property
    def train(self) -> pd.DataFrame:
        return self[0]

    @property
    def valid(self) -> pd.DataFrame:
        return self[1]

    @property
    def test(self) -> pd.DataFrame:
        return self[2]


def split_by_cutoff(
    snapshots: pd.DataFrame,
    journey_map: JourneyMap | None = None,
    *,
    valid_cutoffs: int = 1,
    test_cutoffs: int = 1,
    horizon_days: float | None = None,
) -> Split:
    """Split snapshots by cutoff time with an embargo between the periods.

    The last ``test_cutoffs`` cutoffs are the test set. Because a row's labels look
    ``H`` days ahead, a cutoff ``t`` whose label window ``(t, t + H]`` extends past the
    first cutoff of the next period would leak that period's events into training
    labels, so such cutoffs are *embargoed* (dropped): validation is the last
    ``valid_cutoffs`` cutoffs with ``t + H <= first test cutoff``, and training is every
    cutoff with ``t + H <= first validation cutoff``.

    Parameters
    ----------
    snapshots : DataFrame
        Output of :func:`build_snapshots` (needs a ``cutoff`` column).
    valid_cutoffs, test_cutoffs : int, default 1
        Number of distinct cutoffs in the validation and test sets (``valid_cutoffs``
        may be 0: no validation set, the embargo then sits between train and test).
    journey_map : JourneyMap, optional
        Gives the label horizon ``H``.
    horizon_days : float, optional
        Label horizon when no journey map is given; default ``snapshots.attrs["horizon_days"]``.

    Returns
    -------
    Split
        ``(train, valid, test)`` frames; ``.embargoed`` lists the dropped cutoffs.
    """
    if journey_map is not None:
        horizon_days = journey_map.horizon_days
    if horizon_days is None:
        horizon_days = snapshots.attrs.get("horizon_days")
        if horizon_days is None:
            raise ConfigError(
                "snapshots carry no attrs['horizon_days']; pass horizon_days=", key="horizon_days"
            )
    if test_cutoffs < 1 or valid_cutoffs < 0:
        raise ConfigError(
            f"need test_cutoffs >= 1 and valid_cutoffs >= 0, got {test_cutoffs} and {valid_cutoffs}",
            key="test_cutoffs" if test_cutoffs < 1 else "valid_cutoffs",
        )
    cut = pd.DatetimeIndex(snapshots["cutoff"])
    times = cut.unique().sort_values()
    h = pd.Timedelta(days=float(horizon_days))
    if len(times) < test_cutoffs + valid_cutoffs + 1:
        raise ConfigError(
            f"{len(times)} distinct cutoffs cannot give {test_cutoffs} test, {valid_cutoffs} "
            "validation and at least one training cutoff",
            key="cutoffs",
        )
    test_t = times[-test_cutoffs:]
    before_test = times[: len(times) - test_cutoffs]
    clear_of_test = before_test[before_test + h <= test_t[0]]
    if valid_cutoffs:
        valid_t = clear_of_test[len(clear_of_test) - valid_cutoffs :] if len(clear_of_test) >= valid_cutoffs else clear_of_test[:0]
        if len(valid_t) < valid_cutoffs:
            raise ConfigError(
                f"only {len(clear_of_test)} cutoffs end their label window before the first "
                f"test cutoff {test_t[0]}; cannot pick {valid_cutoffs} validation cutoffs",
                key="valid_cutoffs",
            )
        next_start = valid_t[0]
    else:
        valid_t = times[:0]
        next_start = test_t[0]
    train_t = times[(times + h <= next_start) & (times < next_start)]
    if len(train_t) == 0:
        raise ConfigError(
            f"no training cutoff has its label window end by {next_start}; need more cutoffs "
            f"(horizon {horizon_days} days)",
            key="cutoffs",
        )
    used = train_t.append(valid_t).append(test_t)
    embargoed = times[~times.isin(used)]
    return Split(
        train=snapshots.loc[cut.isin(train_t)],
        valid=snapshots.loc[cut.isin(valid_t)],
        test=snapshots.loc[cut.isin(test_t)],
        embargoed=embargoed,
    )


__all__ = [
    "LABELS",
    "Split",
    "active_customers",
    "build_snapshots",
    "make_cutoffs",
    "split_by_cutoff",
]
