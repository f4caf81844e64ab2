"""Comparator attributions: last-touch and first-order Markov removal effect.

Both are the "simple" methods a product team might otherwise use; the report shows them
beside the SHAP-based ranking of :mod:`journey_ml.ranking` so the differences are visible.

Markov removal effect (first order, closed form, deterministic)
---------------------------------------------------------------
States are ``start``, the touchpoints (channels), ``conversion`` and ``null``. Transition
counts come from the paths (``start → first``, consecutive touchpoints, ``last →
conversion`` for converting paths and ``last → null`` otherwise). With ``Q`` the
transient-to-transient probabilities and ``r`` the transient-to-conversion ones, the
conversion probability from every transient state solves ``(I − Q) x = r``;
``P(conv) = x[start]``. Removing state ``s`` sends everything that would enter it to
``null``: solve the same system without ``s``. The removal effect is
``RE_s = 1 − P(conv without s) / P(conv)`` and the conversions attributed to ``s`` are
``total conversions × RE_s / Σ RE``. Self-loops do not change ``x`` (``x_s`` solves
``x_s = p_ss x_s + …``), so repeated touchpoints need no special handling.

For frictions (:func:`friction_comparators`) the chain's "success" state is **drop-off**:
each customer's journey is the sequence of touchpoints (a friction occurrence becomes
the friction's state) ending in ``drop-off`` (exit event, or silent for longer than the
inactivity window before the data's end) or ``null`` (still active). The removal effect
of a friction state is then the share of drop-offs that route through it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from journey_ml.config import JourneyMap
from journey_ml.stages import sort_events

__all__ = [
    "MarkovChain",
    "friction_comparators",
    "friction_occurrences",
    "last_touch",
    "markov_chain_from_paths",
    "markov_chain_from_sequences",
    "markov_removal_effects",
]

START, CONVERSION, NULL = "(start)", "(conversion)", "(null)"


class MarkovChain:
    """First-order transition counts over ``start``, touchpoints, ``conversion``, ``null``.

    Parameters
    ----------
    states : sequence of str
        Touchpoint names (transient states besides ``start``).
    counts : ndarray of shape (k + 3, k + 3)
        Weighted transition counts, state order ``[start, *states, conversion, null]``.
    total_conversions : float
        Conversions in the data (the amount to distribute).
    """

    def __init__(self, states: Sequence[str], counts: NDArray[np.float64], total_conversions: float) -> None:
        k = len(states)
        if counts.shape != (k + 3, k + 3):
            raise ValueError(f"counts must be ({k + 3}, {k + 3}) for {k} states, got {counts.shape}")
        self.states = list(states)
        self.counts = np.asarray(counts, dtype=np.float64)
        self.total_conversions = float(total_conversions)

    def conversion_probability(self, removed: int | None = None) -> float:
        """P(reach conversion from start), optionally with touchpoint ``removed`` (index into
        :attr:`states`) turned into a dead end (its inflow goes to ``null``)."""
        k = len(self.states)
        n_t = k + 1  # start + touchpoints
        rows = self.counts[:n_t]
        out = rows.sum(axis=1)
        P = np.divide(rows, out[:, None], out=np.zeros_like(rows), where=out[:, None] > 0)
        Q, r = P[:, :n_t], P[:, n_t]
        keep = np.ones(n_t, dtype=bool)
        if removed is not None:
            keep[removed + 1] = False
        Qk = Q[np.ix_(keep, keep)]
        x = np.linalg.solve(np.eye(int(keep.sum())) - Qk, r[keep])
        return float(x[0])


def markov_removal_effects(chain: MarkovChain) -> pd.DataFrame:
    """Removal effect and attributed conversions of every touchpoint of ``chain``.

    Parameters
    ----------
    chain : MarkovChain

    Returns
    -------
    DataFrame
        ``channel``, ``removal_effect``, ``conversions`` (sums to the total conversions),
        ordered by ``conversions`` descending.
    """
    base = chain.conversion_probability()
    if base <= 0:
        re = np.zeros(len(chain.states))
    else:
        re = np.array([1.0 - chain.conversion_probability(i) / base for i in range(len(chain.states))])
    re = np.clip(re, 0.0, None)
    share = re / re.sum() if re.sum() > 0 else np.zeros_like(re)
    df = pd.DataFrame(
        {"channel": chain.states, "removal_effect": re, "conversions": chain.total_conversions * share}
    )
    return df.sort_values(["conversions", "channel"], ascending=[False, True], kind="stable").reset_index(drop=True)


def markov_chain_from_paths(
    paths: pd.DataFrame,
    *,
    path: str = "path",
    conversions: str = "total_conversions",
    nulls: str = "total_null",
    sep: str = ">",
) -> MarkovChain:
    """Chain from aggregated path data (ChannelAttribution's ``Data.csv`` layout).

    Parameters
    ----------
    paths : DataFrame
        One row per distinct path: ``path`` like ``"eta > iota > alpha"``, the number of
        journeys on it that converted and that did not.
    path, conversions, nulls : str
        Column names.
    sep : str, default ">"
        Touchpoint separator within a path (surrounding spaces are stripped).

    Returns
    -------
    MarkovChain
    """
    for col in (path, conversions, nulls):
        if col not in paths.columns:
            raise ValueError(f"paths need a '{col}' column; got {list(paths.columns)}")
    conv = paths[conversions].to_numpy(dtype=np.float64)
    null = paths[nulls].to_numpy(dtype=np.float64)
    steps = paths[path].astype("str").str.split(sep).explode()
    steps = steps.str.strip()
    steps = steps[steps != ""]
    path_id = steps.index.to_numpy()
    return _chain_from_steps(
        path_id=pd.factorize(path_id)[0] if len(path_id) else np.zeros(0, dtype=np.int64),
        state=steps.to_numpy(dtype=object),
        conv_weight=conv[pd.unique(path_id)] if len(path_id) else np.zeros(0),
        null_weight=null[pd.unique(path_id)] if len(path_id) else np.zeros(0),
        total_conversions=float(conv.sum()),
    )


def markov_chain_from_sequences(
    journey: NDArray[np.int64], state: NDArray[np.object_], converted: NDArray[np.bool_]
) -> MarkovChain:
    """Chain from one row per step: journey id (non-decreasing), state name; one
    ``converted`` flag per journey (in order of first appearance)."""
    ids = pd.factorize(journey)[0]
    conv = np.asarray(converted, dtype=np.float64)
    return _chain_from_steps(ids, state, conv, 1.0 - conv, float(conv.sum()))


def _chain_from_steps(
    path_id: NDArray[np.int64],
    state: NDArray[np.object_],
    conv_weight: NDArray[np.float64],
    null_weight: NDArray[np.float64],
    total_conversions: float,
) -> MarkovChain:
    """Vectorised transition counts: every journey ``path_id`` (0..J-1, contiguous runs)."""
    codes, names = pd.factorize(pd.Series(state, dtype="str"), sort=True)
    k = len(names)
    S, C, N = 0, k + 1, k + 2
    node = codes.astype(np.int64) + 1
    weight = (conv_weight + null_weight)[path_id] if len(path_id) else np.zeros(0)
    first = np.ones(len(path_id), dtype=bool)
    first[1:] = path_id[1:] != path_id[:-1]
    last = np.ones(len(path_id), dtype=bool)
    last[:-1] = path_id[1:] != path_id[:-1]
    src = [np.full(int(first.sum()), S), node[:-1][~first[1:]], node[last], node[last]]
    dst = [node[first], node[1:][~first[1:]], np.full(int(last.sum()), C), np.full(int(last.sum()), N)]
    w = [weight[first], weight[1:][~first[1:]], conv_weight[path_id[last]], null_weight[path_id[last]]]
    size = k + 3
    flat = np.concatenate(src) * size + np.concatenate(dst)
    counts = np.bincount(flat, weights=np.concatenate(w), minlength=size * size).reshape(size, size)
    return MarkovChain([str(x) for x in names], counts, total_conversions)


# ============================================================================ frictions
def friction_occurrences(events: pd.DataFrame, journey_map: JourneyMap) -> pd.Series:
    """Name of the friction each event is an occurrence of (``""`` when none).

    An event is an occurrence when its ``event_type`` matches (if the friction names one)
    and its ``column`` is at least ``min`` (``> 0`` without a threshold), as in
    :class:`journey_ml.config.Friction`. The first matching friction wins.
    """
    out = np.full(len(events), "", dtype=object)
    for fr in journey_map.friction:
        hit = np.ones(len(events), dtype=bool)
        if fr.event_type is not None:
            hit &= (events["event_type"] == fr.event_type).to_numpy()
        if fr.column is not None:
            if fr.column not in events.columns:
                raise ValueError(f"friction '{fr.name}' reads column '{fr.column}', which the events lack")
            v = events[fr.column].to_numpy(dtype=np.float64, na_value=np.nan)
            hit &= (v >= fr.min) if fr.min is not None else (v > 0)
        out[hit & (out == "")] = fr.name
    return pd.Series(out, index=events.index, dtype="str")


def _journeys(events: pd.DataFrame, journey_map: JourneyMap, end: pd.Timestamp | None) -> tuple[pd.DataFrame, NDArray[np.bool_]]:
    """Sorted events with a ``state`` column and each customer's drop-off flag."""
    ev = sort_events(events)
    fr = friction_occurrences(ev, journey_map).to_numpy(dtype=object)
    state = np.where(fr != "", fr, ev["event_type"].astype("str").to_numpy(dtype=object))
    end_ts = pd.Timestamp(ev["timestamp"].max()) if end is None else pd.Timestamp(end)
    cust = ev["customer_id"].astype("str")
    codes, _ = pd.factorize(cust)
    last_ts = ev.groupby(codes, sort=True)["timestamp"].max()
    exited = pd.Series(ev["event_type"].isin(list(journey_map.exit_events)).to_numpy()).groupby(codes).any()
    silent = (end_ts - last_ts) > pd.Timedelta(days=journey_map.inactivity_days)
    dropped = (exited.to_numpy() | silent.to_numpy()).astype(bool)
    frame = pd.DataFrame({"journey": codes, "state": state, "friction": fr})
    return frame, dropped


def last_touch(events: pd.DataFrame, journey_map: JourneyMap, *, end: pd.Timestamp | None = None) -> pd.DataFrame:
    """Drop-offs credited to the last friction each dropped customer met.

    Parameters
    ----------
    events : DataFrame
        Canonical events.
    journey_map : JourneyMap
    end : timestamp, optional
        End of the data (default: the latest event); a customer silent for more than
        ``inactivity_days`` before it, or who fired an exit event, dropped off.

    Returns
    -------
    DataFrame
        ``touchpoint`` (friction name) and ``drop_offs`` credited, every friction listed.
    """
    frame, dropped = _journeys(events, journey_map, end)
    names = [f.name for f in journey_map.friction]
    hits = frame[frame["friction"] != ""]
    last = hits.groupby("journey", sort=True)["friction"].last()
    last = last[dropped[last.index.to_numpy()]]
    counts = last.value_counts()
    return pd.DataFrame({"touchpoint": names, "drop_offs": [float(counts.get(n, 0)) for n in names]})


def friction_comparators(
    events: pd.DataFrame,
    journey_map: JourneyMap,
    *,
    end: pd.Timestamp | None = None,
    value_per_drop_off: float | None = None,
) -> pd.DataFrame:
    """Last-touch and Markov removal-effect attribution of drop-offs to frictions, in money.

    Parameters
    ----------
    events : DataFrame
        Canonical events.
    journey_map : JourneyMap
    end : timestamp, optional
        End of the data (default: the latest event).
    value_per_drop_off : float, optional
        Revenue lost per drop-off; default the mean revenue per customer in ``events``
        (both comparators use the same value, so it scales and never reorders them).

    Returns
    -------
    DataFrame
        One row per friction: ``touchpoint``, ``last_touch_drop_offs``,
        ``last_touch_revenue``, ``markov_removal_effect``, ``markov_drop_offs``,
        ``markov_revenue``, ``last_touch_rank``, ``markov_rank``.
    """
    names = [f.name for f in journey_map.friction]
    lt = last_touch(events, journey_map, end=end)
    frame, dropped = _journeys(events, journey_map, end)
    chain = markov_chain_from_sequences(frame["journey"].to_numpy(), frame["state"].to_numpy(dtype=object), dropped)
    mk = markov_removal_effects(chain).set_index("channel")
    if value_per_drop_off is None:
        n_cust = max(int(frame["journey"].nunique()), 1)
        value_per_drop_off = float(events["revenue"].sum()) / n_cust if "revenue" in events.columns else 1.0
    out = pd.DataFrame({"touchpoint": names})
    out["last_touch_drop_offs"] = lt["drop_offs"].to_numpy()
    out["last_touch_revenue"] = out["last_touch_drop_offs"] * value_per_drop_off
    out["markov_removal_effect"] = [float(mk["removal_effect"].get(n, 0.0)) for n in names]
    out["markov_drop_offs"] = [float(mk["conversions"].get(n, 0.0)) for n in names]
    out["markov_revenue"] = out["markov_drop_offs"] * value_per_drop_off
    out["last_touch_rank"] = out["last_touch_revenue"].rank(ascending=False, method="first").astype(int)
    out["markov_rank"] = out["markov_revenue"].rank(ascending=False, method="first").astype(int)
    return out
