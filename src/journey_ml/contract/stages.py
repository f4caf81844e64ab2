"""Stage model: which stage each event evidences and how far each customer has come.

Rules (from the journey map):

* an event evidences the stage that lists its ``event_type``; other events (friction,
  e-mail opens, support, exits, unknown types) are activity without stage evidence;
* a customer's *current stage* at time t is the furthest stage evidenced by their events
  at or before t;
* a customer's second and later conversion events evidence ``repeat_conversion_stage``
  (retention) instead of the conversion stage;
* an exit event marks an explicit drop-off.

All functions are vectorised over the whole event frame; events must be in canonical
form (see :mod:`journey_ml.ingest.validate`). Nothing here loops over customers in Python.
"""

from __future__ import annotations

from collections.abc import Sequence

import numba
import numpy as np
import pandas as pd

from journey_ml.contract.journey_map import JourneyMap
from journey_ml.contract.time import to_utc
from journey_ml.runtime import per_identity

NO_STAGE = -1
#: The stage of a customer whose events so far evidence no stage (only e-mail opens,
#: support contacts, ...): the first stage. They are known to the brand, so at least
#: aware of it. Features, labels and :func:`customer_stages` all use this.
STAGELESS_STAGE = 0


def sort_events(events: pd.DataFrame) -> pd.DataFrame:
    """Events ordered by customer then time (stable, so ties keep file order)."""
    if _is_sorted(events):
        return events
    return events.sort_values(["customer_id", "timestamp"], kind="stable").reset_index(drop=True)


def _is_sorted(events: pd.DataFrame) -> bool:
    if len(events) < 2:
        return True
    # Integer codes and int64 nanoseconds: comparing tz-aware values would box objects.
    codes, _ = pd.factorize(events["customer_id"], sort=True)
    ts = pd.DatetimeIndex(events["timestamp"]).asi8
    if np.any(codes[1:] < codes[:-1]):
        return False
    same = codes[1:] == codes[:-1]
    return bool(np.all(ts[1:][same] >= ts[:-1][same]))


def event_stage_evidence(events: pd.DataFrame, journey_map: JourneyMap) -> np.ndarray:
    """Stage index each event evidences, ``NO_STAGE`` (-1) for none.

    ``events`` must be sorted by customer and time (see :func:`sort_events`) because the
    repeat-conversion rule depends on the order of a customer's conversions.
    """
    etype = events["event_type"].astype("category")
    codes = etype.cat.codes.to_numpy()
    customers, n_customers = _customer_codes(events)
    new = np.ones(len(customers), dtype=bool)
    new[1:] = customers[1:] != customers[:-1]
    if np.count_nonzero(new) == n_customers or not len(new):
        return stage_evidence_codes(codes, etype.cat.categories, new, journey_map)
    # A customer's events are not contiguous: count earlier conversions per customer.
    stage = stage_evidence_codes(codes, etype.cat.categories, np.zeros(0, dtype=bool), journey_map)
    repeat = journey_map.repeat_stage_index
    if repeat is not None and journey_map.conversion_events:
        conv = is_conversion(events, journey_map)
        prior = pd.Series(conv.astype(np.int32)).groupby(customers).cumsum().to_numpy() - conv
        repeat_mask = conv & (prior > 0)
        stage[repeat_mask] = np.maximum(stage[repeat_mask], repeat)
    return stage


def stage_evidence_codes(
    type_codes: np.ndarray, type_names: Sequence[object], new_customer: np.ndarray, journey_map: JourneyMap
) -> np.ndarray:
    """:func:`event_stage_evidence` on integer codes, without touching strings per event.

    Parameters
    ----------
    type_codes : ndarray of int
        Per event, index into ``type_names`` (-1 = missing type).
    type_names : sequence
        The distinct event types.
    new_customer : ndarray of bool
        True where an event starts a customer's (contiguous, time-ordered) events; an
        empty array skips the repeat-conversion rule (the caller applies it).
    journey_map : JourneyMap

    Returns
    -------
    ndarray of int8
    """
    lookup, conv = _evidence_tables(journey_map, type_names)
    stage = lookup[type_codes]
    repeat = journey_map.repeat_stage_index
    if repeat is None or not journey_map.conversion_events or not len(new_customer):
        return stage
    _raise_repeat_conversions(stage, type_codes, conv, new_customer, np.int8(repeat))
    return stage


def _build_evidence_tables(journey_map: JourneyMap, type_names: Sequence[object]) -> tuple[np.ndarray, np.ndarray]:
    """Per distinct type: the stage it evidences and whether it is a conversion.

    The trailing entry of each is what a missing type (code -1) looks up.
    """
    names = [str(c) for c in type_names]
    lookup = np.array([journey_map.event_stage.get(c, NO_STAGE) for c in names] + [NO_STAGE], dtype=np.int8)
    conv_set = set(journey_map.conversion_events)
    conv = np.array([c in conv_set for c in names] + [False], dtype=bool)
    return lookup, conv


#: Serving encodes a few events per request with the same type list object (one per
#: distinct list), so the tables are built once per (map, type list).
_evidence_tables = per_identity(_build_evidence_tables, kept=64)


@numba.njit(cache=True, nogil=True)
def _raise_repeat_conversions(
    stage: np.ndarray, type_codes: np.ndarray, conv: np.ndarray, new_customer: np.ndarray, repeat: np.int8
) -> None:
    """In place: a customer's second and later conversions evidence at least ``repeat``."""
    seen = False
    for e in range(len(stage)):
        if new_customer[e]:
            seen = False
        if conv[type_codes[e]]:
            if seen and stage[e] < repeat:
                stage[e] = repeat
            seen = True


def is_conversion(events: pd.DataFrame, journey_map: JourneyMap) -> np.ndarray:
    return events["event_type"].isin(journey_map.conversion_events).to_numpy()


def is_exit(events: pd.DataFrame, journey_map: JourneyMap) -> np.ndarray:
    return events["event_type"].isin(journey_map.exit_events).to_numpy()


def furthest_stage_over_time(events: pd.DataFrame, journey_map: JourneyMap) -> np.ndarray:
    """For each (sorted) event, the customer's furthest stage index up to and including it."""
    evidence = event_stage_evidence(events, journey_map)
    return (
        pd.Series(evidence, dtype=np.int8)
        .groupby(_customer_codes(events)[0])
        .cummax()
        .to_numpy(dtype=np.int8)
    )


def customer_stages(
    events: pd.DataFrame, journey_map: JourneyMap, at: pd.Timestamp | None = None
) -> pd.DataFrame:
    """One row per customer with events at or before ``at`` (all events when ``None``).

    Columns: ``customer_id``, ``stage_index`` (furthest; ``STAGELESS_STAGE`` if only
    stage-less events), ``stage`` (its name), ``first_event``, ``last_event``, ``events``,
    ``conversions``, ``exited`` (fired an exit event), ``exit_time``.
    """
    events = sort_events(events)
    if at is not None:
        events = events.loc[events["timestamp"] <= to_utc(at)]
    evidence = event_stage_evidence(events, journey_map)
    exits = is_exit(events, journey_map)
    frame = pd.DataFrame(
        {
            "customer_id": events["customer_id"].to_numpy(),
            "timestamp": events["timestamp"].to_numpy(),
            "stage_index": evidence,
            "conversion": is_conversion(events, journey_map),
            "exit_time": events["timestamp"].where(exits),
        }
    )
    grouped = frame.groupby("customer_id", sort=True, observed=True)
    out = grouped.agg(
        stage_index=("stage_index", "max"),
        first_event=("timestamp", "min"),
        last_event=("timestamp", "max"),
        events=("timestamp", "size"),
        conversions=("conversion", "sum"),
        exit_time=("exit_time", "min"),
    ).reset_index()
    out["stage_index"] = np.maximum(out["stage_index"], STAGELESS_STAGE).astype(np.int8)
    names = np.array(journey_map.stage_names, dtype=object)
    out["stage"] = names[out["stage_index"].to_numpy()]
    out["exited"] = out["exit_time"].notna()
    out["conversions"] = out["conversions"].astype(np.int64)
    return out[
        ["customer_id", "stage_index", "stage", "first_event", "last_event", "events", "conversions", "exited", "exit_time"]
    ]


def stage_reach_counts(events: pd.DataFrame, journey_map: JourneyMap) -> dict[str, int]:
    """Stage -> number of customers who reached it (or a later stage) at any time.

    A funnel count: a customer who reached stage k also counts for every stage before k.
    """
    stages = customer_stages(events, journey_map)["stage_index"].to_numpy()
    return {
        name: int(np.count_nonzero(stages >= i)) for i, name in enumerate(journey_map.stage_names)
    }


def _customer_codes(events: pd.DataFrame) -> tuple[np.ndarray, int]:
    """Integer customer codes and the number of distinct customers."""
    col = events["customer_id"]
    if isinstance(col.dtype, pd.CategoricalDtype):
        return col.cat.codes.to_numpy(), len(col.cat.categories)
    codes, uniques = pd.factorize(col, sort=False)
    return codes, len(uniques)
