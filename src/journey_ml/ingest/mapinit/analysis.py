"""Per event type statistics the proposals are made from (counts, positions in journeys,
revenue, kind by name), on every row and on a seeded sample of whole customers.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from journey_ml.ingest.mapinit.names import (
    ATTEMPT_WORDS,
    CONVERSION_PAIRS,
    CONVERSION_WORDS,
    EXIT_WORDS,
    FRICTION_WORDS,
    NOT_CONVERSION_WORDS,
    name_tokens,
)


@dataclass
class Analysis:
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
    if tset & FRICTION_WORDS:
        return "friction", f"named like a failure ('{sorted(tset & FRICTION_WORDS)[0]}')"
    pairs = set(itertools.pairwise(tokens))
    exit_words = tset & EXIT_WORDS
    if ("opt", "out") in pairs:
        exit_words.add("opt out")
    if exit_words:
        word = sorted(exit_words)[0]
        if tset & ATTEMPT_WORDS:
            return "friction", f"named like a failed attempt ('{word}' {sorted(tset & ATTEMPT_WORDS)[0]})"
        return "exit", f"named like leaving ('{word}')"
    conv = tset & CONVERSION_WORDS
    conv_pairs = [p for p in CONVERSION_PAIRS if p in pairs]
    if (conv or conv_pairs) and not tset & NOT_CONVERSION_WORDS:
        word = sorted(conv)[0] if conv else " ".join(conv_pairs[0])
        return "conversion", f"named like a conversion ('{word}')"
    return "other", ""


def analyse_events(events: pd.DataFrame, sample: pd.DataFrame, *, has_revenue: bool) -> Analysis:
    """Counts and revenue from every accepted row, positions from the customer sample,
    and each event type's kind by its name."""
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
    return Analysis(
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


def sample_customers(
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
