"""Comparator attributions: last-touch and first-order Markov removal effect.

Both are the "simple" methods a product team might otherwise use; the report shows them
beside the SHAP-based ranking of :mod:`journey_ml.explain.impacts` so the differences are visible.

Markov removal effect (first order, closed form, deterministic)
---------------------------------------------------------------
States are ``start``, the touchpoints (channels), ``conversion`` and ``null``. Repeated
consecutive touchpoints in a path are collapsed into one (``a > a > b`` is ``a > b``),
as ChannelAttribution does for ``order=1``. Transition counts come from the paths, each
weighted by its number of journeys (conversions + nulls): ``start → first``, consecutive
touchpoints, ``last → conversion`` weighted by the path's conversions and ``last →
null`` by its nulls (an empty path goes ``start → conversion/null`` directly). Row
normalisation gives ``P``; with ``Q`` the transient-to-transient block and ``r`` the
transient-to-conversion column, the conversion probability from every transient state
solves ``(I − Q) x = r`` and ``P(conv) = x[start]``. Removing state ``s`` sends
everything that would enter it to ``null``: solve the same system without ``s``. The
removal effect is ``RE_s = 1 − P(conv without s) / P(conv)`` and the conversions
attributed to ``s`` are ``total conversions × RE_s / Σ RE``.

Relation to ChannelAttribution 2.2.5 ``markov_model(order=1)``: it simulates journeys on
the same chain and reports, as removal effect, the share of simulated *converting*
journeys that visit ``s``. A converting journey either visits ``s`` or not, and removing
``s`` kills exactly the ones that do, so ``P(conv without s) = P(conv) − P(conv, visits
s)`` and the two definitions coincide: ``RE_s = P(visits s | conv)``; it normalises into
conversions the same way. It also drops simulated journeys that have not been absorbed
after ``max_step`` touchpoint visits (default: the longest path in the data + 1);
``max_steps`` reproduces that truncation exactly (``P_L(conv) = Σ_{m≤L} e_start Qᵐ r``).
What remains between the two is ChannelAttribution's Monte Carlo error (see
``benchmarks/bench_attribution.py``).

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

from journey_ml.contract import JourneyMap
from journey_ml.contract.frictions import friction_occurrences as occurrence_masks
from journey_ml.contract.stages import sort_events
from journey_ml.contract.time import utc_ns
from journey_ml.eventlog import EventLog

__all__ = [
    "MarkovChain",
    "event_frictions",
    "friction_comparators",
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
        Self-transitions (the diagonal) are ignored: a repeated touchpoint is one visit.
    total_conversions : float
        Conversions in the data (the amount to distribute).
    longest_path : int, default 0
        Most touchpoints on one (collapsed) path in the data; ``longest_path + 1`` is
        ChannelAttribution's default simulation step cap (see
        :func:`markov_removal_effects`).
    """

    def __init__(
        self,
        states: Sequence[str],
        counts: NDArray[np.float64],
        total_conversions: float,
        longest_path: int = 0,
    ) -> None:
        k = len(states)
        counts = np.asarray(counts, dtype=np.float64)
        if counts.shape != (k + 3, k + 3):
            raise ValueError(f"counts must be ({k + 3}, {k + 3}) for {k} states, got {counts.shape}")
        if (counts < 0).any() or not np.isfinite(counts).all():
            raise ValueError("counts must be finite and >= 0")
        self.states = list(states)
        self.counts = counts
        self.total_conversions = float(total_conversions)
        self.longest_path = int(longest_path)

    def _transient(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """``Q`` (start + touchpoints, self-loops dropped) and ``r`` (→ conversion)."""
        n_t = len(self.states) + 1
        rows = self.counts[:n_t].copy()
        # A self-loop is the same visit repeated: it changes neither absorption
        # probabilities nor (ChannelAttribution collapses repeats) the step count.
        np.fill_diagonal(rows[:, :n_t], 0.0)
        out = rows.sum(axis=1)
        P = np.divide(rows, out[:, None], out=np.zeros_like(rows), where=out[:, None] > 0)
        return P[:, :n_t], P[:, n_t]

    def conversion_probability(self, removed: int | None = None, *, max_steps: int | None = None) -> float:
        """P(reach conversion from start).

        Parameters
        ----------
        removed : int, optional
            Index into :attr:`states` of a touchpoint turned into a dead end (its inflow
            goes to ``null``).
        max_steps : int, optional
            Count only journeys converting after at most ``max_steps`` touchpoint visits
            (ChannelAttribution's ``max_step``); default: no cap (closed form).

        Returns
        -------
        float
        """
        Q, r = self._transient()
        n_t = Q.shape[0]
        keep = np.ones(n_t, dtype=bool)
        if removed is not None:
            if not 0 <= removed < n_t - 1:
                raise ValueError(f"removed must index one of {n_t - 1} states, got {removed}")
            keep[removed + 1] = False
        if max_steps is None:
            Qk = Q[np.ix_(keep, keep)]
            x = np.linalg.solve(np.eye(int(keep.sum())) - Qk, r[keep])
            return float(x[0])
        if max_steps < 0:
            raise ValueError(f"max_steps must be >= 0, got {max_steps}")
        Qk = Q * keep[None, :]
        v = np.zeros(n_t)
        v[0] = 1.0
        total = 0.0
        for _ in range(max_steps + 1):  # v = mass on each state after m touchpoint visits
            total += float(v @ r)
            v = v @ Qk
            if v.sum() <= 1e-18:  # what is left cannot move the sum (in float64)
                break
        return total


def markov_removal_effects(chain: MarkovChain, *, max_steps: int | None = None) -> pd.DataFrame:
    """Removal effect and attributed conversions of every touchpoint of ``chain``.

    Parameters
    ----------
    chain : MarkovChain
    max_steps : int, optional
        Cap on touchpoint visits per journey (see
        :meth:`MarkovChain.conversion_probability`); ``chain.longest_path + 1``
        reproduces ChannelAttribution's default. Default: none (closed form).

    Returns
    -------
    DataFrame
        ``channel``, ``removal_effect`` (``1 − P(conv without s) / P(conv)``, which equals
        ``P(visits s | conv)``), ``conversions`` (``total × RE / Σ RE``; sums to the total
        conversions whenever some channel has an effect), ordered by ``conversions``
        descending.
    """
    base = chain.conversion_probability(max_steps=max_steps)
    if base <= 0:
        re = np.zeros(len(chain.states))
    else:
        re = np.array(
            [1.0 - chain.conversion_probability(i, max_steps=max_steps) / base for i in range(len(chain.states))]
        )
    # Removing a state can only lose conversions; clip round-off (-1e-17) to zero.
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
        Touchpoint separator within a path (surrounding spaces are stripped; empty
        touchpoints are skipped).

    Returns
    -------
    MarkovChain
    """
    for col in (path, conversions, nulls):
        if col not in paths.columns:
            raise ValueError(f"paths need a '{col}' column; got {list(paths.columns)}")
    if not sep:
        raise ValueError("sep must be a non-empty string")
    conv = paths[conversions].to_numpy(dtype=np.float64)
    null = paths[nulls].to_numpy(dtype=np.float64)
    for name, values in ((conversions, conv), (nulls, null)):
        if not np.isfinite(values).all() or (values < 0).any():
            raise ValueError(f"column '{name}' must hold finite counts >= 0")
    steps = paths[path].astype("str").reset_index(drop=True).str.split(sep, regex=False).explode()
    steps = steps.str.strip()
    steps = steps[steps.notna() & (steps != "")]
    return _chain_from_steps(
        path_id=steps.index.to_numpy(dtype=np.int64),
        state=steps.to_numpy(dtype=object),
        conv_weight=conv,
        null_weight=null,
        total_conversions=float(conv.sum()),
    )


def markov_chain_from_sequences(
    journey: NDArray[np.int64], state: NDArray[np.object_], converted: NDArray[np.bool_]
) -> MarkovChain:
    """Chain from one row per step.

    Parameters
    ----------
    journey : ndarray of int
        Journey id of each step; each journey's steps are contiguous and in order.
    state : ndarray of str
        Touchpoint of each step.
    converted : ndarray of bool
        One flag per journey, in order of first appearance in ``journey``.

    Returns
    -------
    MarkovChain
    """
    ids = pd.factorize(journey)[0].astype(np.int64)
    conv = np.asarray(converted, dtype=np.float64)
    n_journeys = int(ids.max()) + 1 if len(ids) else 0
    if len(conv) != n_journeys:
        raise ValueError(f"converted has {len(conv)} flags for {n_journeys} journeys")
    return _chain_from_steps(ids, state, conv, 1.0 - conv, float(conv.sum()))


def _chain_from_steps(
    path_id: NDArray[np.int64],
    state: NDArray[np.object_],
    conv_weight: NDArray[np.float64],
    null_weight: NDArray[np.float64],
    total_conversions: float,
) -> MarkovChain:
    """Vectorised transition counts.

    ``path_id`` indexes ``conv_weight``/``null_weight`` (one entry per journey, including
    journeys without steps); each journey's steps form one contiguous run in order.
    """
    codes, names = pd.factorize(pd.Series(state, dtype="str"), sort=True)
    k = len(names)
    S, C, N = 0, k + 1, k + 2
    node = codes.astype(np.int64) + 1
    # Collapse repeated consecutive touchpoints (ChannelAttribution's order-1 encoding).
    keep = np.ones(len(node), dtype=bool)
    keep[1:] = (node[1:] != node[:-1]) | (path_id[1:] != path_id[:-1])
    node, path_id = node[keep], path_id[keep]
    weight = (conv_weight + null_weight)[path_id]
    first = np.ones(len(path_id), dtype=bool)
    first[1:] = path_id[1:] != path_id[:-1]
    last = np.ones(len(path_id), dtype=bool)
    last[:-1] = path_id[1:] != path_id[:-1]
    inner = ~first[1:]
    src = [np.full(int(first.sum()), S), node[:-1][inner], node[last], node[last]]
    dst = [node[first], node[1:][inner], np.full(int(last.sum()), C), np.full(int(last.sum()), N)]
    w = [weight[first], weight[1:][inner], conv_weight[path_id[last]], null_weight[path_id[last]]]
    size = k + 3
    flat = np.concatenate(src) * size + np.concatenate(dst)
    counts = np.bincount(flat, weights=np.concatenate(w), minlength=size * size).reshape(size, size)
    # Journeys without any touchpoint are absorbed straight from start.
    empty = np.ones(len(conv_weight), dtype=bool)
    empty[path_id] = False
    counts[S, C] += conv_weight[empty].sum()
    counts[S, N] += null_weight[empty].sum()
    lengths = np.bincount(path_id, minlength=len(conv_weight)) if len(path_id) else np.zeros(1, dtype=np.int64)
    return MarkovChain([str(x) for x in names], counts, total_conversions, longest_path=int(lengths.max()))


# ============================================================================ frictions
def event_frictions(events: pd.DataFrame, journey_map: JourneyMap) -> pd.Series:
    """Name of the friction each event is an occurrence of (``""`` when none).

    The occurrence rule is :func:`journey_ml.contract.frictions.friction_occurrences`;
    an event matching several frictions is credited to the first in map order.
    """
    out = np.full(len(events), "", dtype=object)
    for name, hit in occurrence_masks(events, journey_map).items():
        out[hit & (out == "")] = name
    return pd.Series(out, index=events.index, dtype="str")


def _journeys(events: pd.DataFrame, journey_map: JourneyMap, end: pd.Timestamp | None) -> tuple[pd.DataFrame, NDArray[np.bool_]]:
    """Sorted events with a ``state`` column and each customer's drop-off flag."""
    ev = sort_events(events)
    fr = event_frictions(ev, journey_map).to_numpy(dtype=object)
    state = np.where(fr != "", fr, ev["event_type"].astype("str").to_numpy(dtype=object))
    end_ts = pd.Timestamp(ev["timestamp"].max()) if end is None else pd.Timestamp(end)
    codes, customers = pd.factorize(ev["customer_id"].astype("str"))
    # Dropped off by the end: not active then, by the one activity rule (exit or silence).
    log = EventLog.build(ev, journey_map)
    known = np.arange(len(log.customers), dtype=np.int64)
    active = log.activity(known, np.full(len(known), utc_ns([end_ts])[0], dtype=np.int64)).active
    dropped = ~pd.Series(active, index=log.customers).reindex(customers).to_numpy(dtype=bool)
    frame = pd.DataFrame({"journey": codes, "state": state, "friction": fr})
    return frame, dropped


def last_touch(events: pd.DataFrame, journey_map: JourneyMap, *, end: pd.Timestamp | None = None) -> pd.DataFrame:
    """Drop-offs credited to the last friction each dropped customer met.

    A customer dropped off when they are not active at ``end`` (default: the latest
    event): they fired an exit event or have been silent for over ``inactivity_days``.
    Returns ``touchpoint`` (friction name) and ``drop_offs`` credited, every friction listed.
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
