"""Validated request events to scores: a small event log, the feature families, the models.

The event log of a request is built straight from each customer's arrays (no DataFrame,
no sort detection: each customer's events are sorted on their own, customers by id), with
the encoding rules of :class:`journey_ml.eventlog.EventLog` (stage evidence, friction,
conversion, exit and session flags). The feature families of
:mod:`journey_ml.features.families` then run on it exactly as the batch driver runs them
on one chunk, into one float64 matrix in ``spec.feature_names`` order (values pass
through float32, as the batch feature block stores them). Predictions call each
LightGBM booster once for all rows with one thread (LightGBM's single-row fast C path for
a few rows, :mod:`journey_ml.serving.fast_predict`); reason codes come from the drop-off
model's TreeSHAP through :func:`journey_ml.explain.reasons.reasons_from_shap`.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

import numpy as np
import pandas as pd

from journey_ml.contract.journey_map import JourneyMap
from journey_ml.contract.stages import stage_evidence_codes
from journey_ml.eventlog import EventLog, Rows, friction_flags
from journey_ml.explain.reasons import reasons_from_shap
from journey_ml.explain.shap import reason_groups, with_fixed_margin
from journey_ml.features.compute import ROW_OFFSETS
from journey_ml.features.context import Context
from journey_ml.features.families import FEATURE_FAMILIES
from journey_ml.features.spec import FeatureSpec
from journey_ml.registry.bundle import ModelBundle
from journey_ml.serving.fast_predict import fast_model

__all__ = ["CustomerEvents", "OnlineScores", "feature_matrix", "request_log", "score_logs"]

#: Reason codes per customer, as in batch scoring.
TOP_REASONS = 3
#: The object dtype as an instance (pandas resolves it faster than the ``object`` type).
_OBJECT = np.dtype(object)


@dataclass(frozen=True)
class _SpecTables:
    """What every request needs from a feature spec, computed once per spec."""

    column: dict[str, int]
    categorical: frozenset[str]
    groups: dict[str, list[str]]


_TABLES: dict[int, tuple[FeatureSpec, _SpecTables]] = {}


def _tables(spec: FeatureSpec) -> _SpecTables:
    """The spec's tables (kept with the spec, so its id cannot be reused while cached)."""
    hit = _TABLES.get(id(spec))
    if hit is None or hit[0] is not spec:
        tables = _SpecTables(
            column={name: k for k, name in enumerate(spec.feature_names)},
            categorical=frozenset(spec.categories),
            groups=reason_groups(spec),
        )
        if len(_TABLES) > 8:  # a few reloads' worth
            _TABLES.clear()
        hit = _TABLES[id(spec)] = (spec, tables)
    return hit[1]


@dataclass
class CustomerEvents:
    """One customer's validated events, canonical values, in the order they were given.

    ``ts`` is int64 ns UTC; ``channel`` is ``"unknown"`` where missing; ``revenue`` is 0.0
    where missing; ``session_id`` is None where missing (derived from the inactivity gap
    when the log is built); ``measures`` holds every friction measure column of the
    journey map (NaN where missing).
    """

    customer_id: str
    ts: np.ndarray
    event_type: list[str]
    channel: list[str]
    revenue: np.ndarray
    session_id: list[str | None]
    measures: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.event_type)

    def sorted(self) -> CustomerEvents:
        """The events in time order (stable: ties keep their given order), as the loader sorts."""
        order = np.argsort(self.ts, kind="stable")
        if len(order) < 2 or bool(np.all(order[1:] > order[:-1])):
            return self
        pick = order.tolist()
        return CustomerEvents(
            customer_id=self.customer_id,
            ts=self.ts[order],
            event_type=[self.event_type[k] for k in pick],
            channel=[self.channel[k] for k in pick],
            revenue=self.revenue[order],
            session_id=[self.session_id[k] for k in pick],
            measures={c: v[order] for c, v in self.measures.items()},
        )


@dataclass
class OnlineScores:
    """Scores of a request's customers (request order).

    ``status`` per customer; ``row`` maps a scored customer to its entry in ``values``
    (the response fields) and ``reasons``.
    """

    status: list[str]
    row: dict[int, int]
    values: list[dict[str, Any]]
    reasons: list[list[dict[str, Any]]]


@functools.lru_cache(maxsize=1024)
def _names_index(names: tuple[str, ...]) -> pd.Index:
    """``pd.Index(names, dtype=object)``, kept for name lists seen before (requests mostly
    repeat the same few event type and channel lists; building an Index costs about as
    much as a feature family)."""
    return pd.Index(list(names), dtype=_OBJECT)


@functools.lru_cache(maxsize=1024)
def _type_member(types: tuple[str, ...], names: tuple[str, ...]) -> np.ndarray:
    """Read-only bool per distinct event type (and False for a missing one): is it one of
    ``names``? Kept for type lists seen before, as :func:`_names_index`."""
    member = np.array([name in names for name in types] + [False], dtype=bool)
    member.flags.writeable = False
    return member


def _factorize(values: list[str]) -> tuple[np.ndarray, list[str]]:
    """int16 codes by first appearance, and the distinct values (pandas' factorize order)."""
    distinct = list(dict.fromkeys(values))
    index = {v: k for k, v in enumerate(distinct)}
    return np.array([index[v] for v in values], dtype=np.int16).reshape(len(values)), distinct


def _session_starts(customers: Sequence[CustomerEvents], new: np.ndarray, gap_minutes: float) -> np.ndarray:
    """Where a session starts: a new customer or a new session id. Missing ids are the
    loader's ``"{customer_id}#{k}"``, ``k`` counting gaps longer than ``gap_minutes`` (so
    without any id given, a session starts after each such gap)."""
    gap_ns = round(gap_minutes * 60 * 10**9)
    start = new.copy()
    at = 0
    for ev in customers:
        m = len(ev)
        if m > 1:
            if all(given is None for given in ev.session_id):
                start[at + 1 : at + m] |= np.diff(ev.ts) > gap_ns
            else:
                ids = _session_ids(ev, gap_ns)
                start[at + 1 : at + m] |= np.array([x != y for x, y in pairwise(ids)], dtype=bool)
        at += m
    return start


def _session_ids(ev: CustomerEvents, gap_ns: int) -> list[str]:
    """A customer's session ids, the missing ones derived as the loader derives them."""
    if None not in ev.session_id:
        return ev.session_id  # type: ignore[return-value]  # every id given
    ids: list[str] = []
    k = 1
    ts = ev.ts.tolist()
    for j, given in enumerate(ev.session_id):
        if j and ts[j] - ts[j - 1] > gap_ns:
            k += 1
        ids.append(given if given is not None else f"{ev.customer_id}#{k}")
    return ids


def request_log(customers: Sequence[CustomerEvents], journey_map: JourneyMap) -> EventLog:
    """The event log of customers whose events are each sorted by time, in the given
    (customer id) order; every customer has at least one event."""
    counts = np.fromiter((len(ev) for ev in customers), dtype=np.int64, count=len(customers))
    start = np.zeros(len(customers) + 1, dtype=np.int64)
    np.cumsum(counts, out=start[1:])
    n = int(start[-1])
    ts = np.concatenate([ev.ts for ev in customers]) if customers else np.zeros(0, np.int64)
    et_codes, et_names = _factorize([x for ev in customers for x in ev.event_type])
    ch_codes, ch_names = _factorize([x for ev in customers for x in ev.channel])
    revenue = np.concatenate([ev.revenue for ev in customers]) if customers else np.zeros(0)
    new = np.zeros(n, dtype=bool)
    new[start[:-1][counts > 0]] = True
    stage = stage_evidence_codes(et_codes, et_names, new, journey_map)

    types = tuple(et_names)

    def where_type(names: Sequence[str] | None) -> np.ndarray:
        if names is None:
            return np.arange(n, dtype=np.int32)
        return np.flatnonzero(_type_member(types, tuple(names))[et_codes]).astype(np.int32)

    flags, measure = friction_flags(journey_map, where_type, lambda column: np.concatenate([ev.measures[column] for ev in customers]))
    conv = where_type(list(journey_map.conversion_events))
    flags["conversion"] = conv
    flags["exit"] = where_type(list(journey_map.exit_events))
    flags["session_start"] = np.flatnonzero(_session_starts(customers, new, journey_map.session_gap_minutes)).astype(np.int32)
    return EventLog(
        journey_map=journey_map,
        customers=pd.Index([ev.customer_id for ev in customers], dtype=_OBJECT),
        start=start,
        ts=ts,
        event_type=et_codes,
        event_types=_names_index(types),
        channel=ch_codes,
        channel_names=_names_index(tuple(ch_names)),
        stage=stage,
        flags=flags,
        conv_value=revenue[conv],
        measure=measure,
    )


def feature_matrix(log: EventLog, code: np.ndarray, t: np.ndarray, spec: FeatureSpec, rows: Rows | None = None) -> np.ndarray:
    """Features of rows (customer code, cutoff ns) as a float64 (rows x features) matrix in
    ``spec.feature_names`` order: the batch driver's values, written as it writes them (into
    a float32 features x rows block, the categorical codes into int32 columns). ``rows``:
    ``log.locate(code, t, ROW_OFFSETS)`` when the caller has it already."""
    tables = _tables(spec)
    col = tables.column
    block = np.empty((len(col), len(t)), dtype=np.float32)
    cats: dict[int, np.ndarray] = {}
    ctx = Context(log, log.codes(spec), log.locate(code, t, ROW_OFFSETS) if rows is None else rows, spec)
    for compute, _ in FEATURE_FAMILIES:
        for key, values in compute(ctx).items():
            if isinstance(key, tuple):
                c0 = col[key[0]]
                block[c0 : c0 + len(key)] = values
            elif key in tables.categorical:
                cats[col[key]] = np.asarray(values).astype(np.int32)
            else:
                block[col[key]] = values
    X = block.T.astype(np.float64, order="C")
    for c, values in cats.items():
        X[:, c] = values
    return X


def _predictions(X: np.ndarray, bundle: ModelBundle) -> list[dict[str, Any]]:
    """The response fields of each feature row: :func:`journey_ml.registry.scoring.score_features`
    on a matrix, each booster called once with one thread."""
    stages = list(bundle.journey_map.stage_names)
    n = len(X)
    if bundle.next_stage is not None:
        next_stage = fast_model(bundle.next_stage)
        proba = next_stage.calibrated(next_stage.raw_margin(X, num_threads=1))
    else:  # one stage: nothing to progress to
        proba = np.ones((n, len(stages)))
    drop_off = fast_model(bundle.drop_off)
    drop = np.asarray(drop_off.calibrated(drop_off.raw_margin(X, num_threads=1)), dtype=np.float64)
    drop = drop[:, 1] if drop.ndim == 2 else drop
    current = np.clip(X[:, _tables(bundle.spec).column["current_stage"]].astype(np.int64), 0, len(stages) - 1)
    reachable = np.arange(len(stages))[None, :] >= current[:, None]
    nxt = np.where(reachable, proba, -1.0).argmax(axis=1)
    unit = bundle.value_unit
    value = None
    if bundle.revenue is not None:
        revenue = fast_model(bundle.revenue)
        value = np.maximum(revenue.calibrated(revenue.raw_margin(X, num_threads=1)), 0.0)
    out = []
    for r in range(n):
        v = None if value is None else float(value[r])
        out.append({
            "current_stage": stages[int(current[r])],
            "next_stage": stages[int(nxt[r])],
            "next_stage_probabilities": dict(zip(stages, proba[r].tolist(), strict=True)),
            "drop_off_risk": float(drop[r]),
            "expected_revenue": v if unit == "revenue" else None,
            "expected_conversions": v if unit == "conversions" else None,
        })  # fmt: skip
    return out


def score_logs(customers: Sequence[CustomerEvents], cutoffs: np.ndarray, bundle: ModelBundle) -> OnlineScores:
    """Status, scores and reason codes of customers (each sorted by time) at their cutoffs (ns).

    A customer not active at the cutoff (the batch activity rule,
    :meth:`journey_ml.eventlog.EventLog.activity`) is ``no_history``, ``inactive`` or
    ``exited`` and gets no scores, as batch scoring leaves them out.
    """
    order = sorted(range(len(customers)), key=lambda k: customers[k].customer_id)
    log = request_log([customers[k] for k in order], bundle.journey_map)
    code = np.empty(len(customers), dtype=np.int64)
    code[order] = np.arange(len(customers), dtype=np.int64)
    t = np.asarray(cutoffs, dtype=np.int64)
    rows = log.locate(code, t, ROW_OFFSETS)  # the activity rule's and the features' positions
    act = log.activity(code, t, rows)
    status = [_status(h, r, x) for h, r, x in zip(act.has_history.tolist(), act.recent.tolist(), act.exited.tolist(), strict=True)]
    active = np.array([k for k, s in enumerate(status) if s == "scored"], dtype=np.int64)
    values: list[dict[str, Any]] = []
    reasons: list[list[dict[str, Any]]] = []
    if len(active):
        every = len(active) == len(customers)
        X = feature_matrix(log, code[active], t[active], bundle.spec, rows if every else None)
        values = _predictions(X, bundle)
        drop = fast_model(bundle.drop_off)
        phi = with_fixed_margin(drop, X, np.asarray(
            drop.booster_.predict(X, pred_contrib=True, num_iteration=drop.best_iteration_, num_threads=1), dtype=np.float64
        ))  # fmt: skip
        reasons = reasons_from_shap(X, phi, bundle, TOP_REASONS, _tables(bundle.spec).groups)
    return OnlineScores(status=status, row={k: r for r, k in enumerate(active.tolist())}, values=values, reasons=reasons)


def _status(has_history: bool, recent: bool, exited: bool) -> str:
    """A customer's status by the batch activity rule (no history, then exited, then inactive)."""
    if not has_history:
        return "no_history"
    if exited:
        return "exited"
    return "scored" if recent else "inactive"
