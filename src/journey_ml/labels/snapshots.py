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

The cutoffs and the split by cutoff time are in :mod:`journey_ml.labels.cutoffs`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from journey_ml.contract import JourneyMap
from journey_ml.contract.time import utc_ns
from journey_ml.eventlog import EventLog, rank_right, release_freed_memory, segment_reduce
from journey_ml.exceptions import ConfigError
from journey_ml.features import FeatureSpec
from journey_ml.features.compute import features_frame

LABELS: tuple[str, ...] = ("current_stage", "next_stage", "drop_off", "future_revenue", "future_conversions")


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
        Cutoff times (e.g. :func:`~journey_ml.labels.cutoffs.make_cutoffs`); each is expanded to the customers active
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
        ``attrs["horizon_days"]`` records the horizon for :func:`~journey_ml.labels.cutoffs.split_by_cutoff`.
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


__all__ = [
    "LABELS",
    "active_customers",
    "build_snapshots",
]
