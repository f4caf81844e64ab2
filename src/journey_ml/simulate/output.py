"""A simulation's result: the canonical event frame, the customer table, and their files.

The run loop works on codes; this module turns its chunks into the canonical events
(sorted by customer then time, string ids and labels) and writes them with ``truth.json``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from journey_ml.exceptions import ConfigError, did_you_mean
from journey_ml.simulate.config import SimulationConfig
from journey_ml.simulate.run import RunOutcome
from journey_ml.simulate.vocab import CHANNELS, EVENT_TYPES, KIND_LETTERS

__all__ = ["SimulationResult", "assemble", "write_simulation"]


@dataclass(frozen=True)
class SimulationResult:
    """A simulated event log.

    Attributes
    ----------
    config : SimulationConfig
        What was simulated.
    removed : frozenset of str
        Frictions removed in this run (empty for the factual run).
    events : pandas.DataFrame
        Canonical events: ``customer_id``, ``timestamp``, ``event_type``, ``channel``,
        ``revenue``, ``session_id``, ``wait_minutes``, ``delay_days``, ``irrelevant``;
        sorted by customer then time, index ``0..n-1``.
    customers : pandas.DataFrame
        One row per customer: ``customer_id``, ``persona``, ``first_seen``, ``revenue``,
        ``purchases``, ``churned`` (went silent), ``exited`` (unsubscribed), and
        ``friction_<name>`` occurrence counts.
    truth : dict or None
        Ground truth (the ``truth.json`` content) when requested.
    """

    config: SimulationConfig
    removed: frozenset[str]
    events: pd.DataFrame
    customers: pd.DataFrame
    truth: dict[str, Any] | None = None

    @property
    def revenue(self) -> pd.Series:
        """Revenue per customer, indexed by ``customer_id``."""
        return self.customers.set_index("customer_id")["revenue"]

    @property
    def total_revenue(self) -> float:
        """Total revenue of the run."""
        return float(self.customers["revenue"].sum())


def _string_column(values: pa.Array) -> pd.Series:
    """A pandas ``str``-dtype column from a pyarrow string array (no Python objects)."""
    return pd.Series(pd.array(values, dtype="str"))


def _customer_ids(n: int) -> pa.Array:
    """``C0000000``..: zero-padded, so index order is string order."""
    width = max(7, len(str(n - 1)))
    digits = pc.utf8_lpad(pa.array(np.arange(n, dtype=np.int64)).cast(pa.string()), width, "0")
    return pc.binary_join_element_wise("C", digits, "")


def assemble(config: SimulationConfig, run: RunOutcome) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(canonical events, customer table) of a run."""
    chunks = run.chunks
    cust = np.concatenate([c.cust for c in chunks]) if chunks else np.zeros(0, np.int32)
    sec = np.concatenate([c.sec for c in chunks]) if chunks else np.zeros(0, np.int64)
    # Chunks are generated in time order (days in turn, and within a day the activity
    # windows are disjoint and visited in clock order), so a stable sort by customer
    # yields (customer_id, timestamp) order; zero-padded ids make index order string order.
    order = np.argsort(cust, kind="stable")

    def gather(name: str, dtype: type, fill: float) -> np.ndarray:
        parts = [
            getattr(c, name) if getattr(c, name) is not None else np.full(len(c.cust), fill, dtype)
            for c in chunks
        ]
        return (np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype))[order]

    cust = cust[order]
    ids = _customer_ids(config.customers)
    cust_col = ids.take(pa.array(cust))
    etype = gather("etype", np.int8, 0)
    channel = gather("channel", np.int8, 0)
    skey = gather("skey", np.int32, 0)
    # Session ids: "<customer>-<day><kind>", e.g. C0000042-0123S1 (unique per customer).
    day_width = max(3, len(str(config.days - 1)))
    suffix_vocab = pa.array(
        [f"-{d:0{day_width}d}{k}" for d in range(config.days) for k in KIND_LETTERS], type=pa.string()
    )
    session = pc.binary_join_element_wise(cust_col, suffix_vocab.take(pa.array(skey)), "")
    start_ns = config.start_ts.value
    ts = (sec[order] * 1_000_000_000 + start_ns).view("M8[ns]")
    events = pd.DataFrame(
        {
            "customer_id": _string_column(cust_col),
            "timestamp": pd.Series(ts).dt.tz_localize("UTC"),
            "event_type": _string_column(pa.array(EVENT_TYPES, pa.string()).take(pa.array(etype))),
            "channel": _string_column(pa.array(CHANNELS, pa.string()).take(pa.array(channel))),
            "revenue": gather("revenue", np.float64, 0.0),
            "session_id": _string_column(session),
            "wait_minutes": gather("wait", np.float64, np.nan),
            "delay_days": gather("delay", np.float64, np.nan),
            "irrelevant": gather("irrelevant", np.float64, np.nan),
        }
    )
    customers = pd.DataFrame(
        {
            "customer_id": _string_column(ids),
            "persona": pd.Series(pd.Categorical.from_codes(run.persona, [p.name for p in config.personas])),
            "first_seen": pd.Series(
                (run.arrival.astype(np.int64) * 86_400_000_000_000 + start_ns).view("M8[ns]")
            ).dt.tz_localize("UTC"),
            "revenue": run.revenue,
            "purchases": run.purchases.astype(np.int64),
            "churned": run.churned,
            "exited": run.exited,
            **{f"friction_{name}": run.friction[name].astype(np.int64) for name in config.frictions},
        }
    )
    return events, customers


def write_simulation(result: SimulationResult, out_path: str | Path) -> tuple[Path, Path | None]:
    """Write the events and, when the result carries it, ``truth.json`` beside them.

    Parameters
    ----------
    result : SimulationResult
        A simulation (with ``truth`` from ``simulate(..., truth=True)`` to write it).
    out_path : str or Path
        Events file; the format follows the suffix: ``.parquet``, ``.csv`` or
        ``.jsonl`` / ``.ndjson``. Parent directories are created.

    Returns
    -------
    tuple of Path
        The events path and the ``truth.json`` path (``None`` when there is no truth).

    Raises
    ------
    ConfigError
        For an unsupported suffix.
    """
    out = Path(out_path)
    suffix = out.suffix.lower()
    if suffix not in (".parquet", ".csv", ".jsonl", ".ndjson"):
        raise ConfigError(
            f"unsupported events file suffix '{out.suffix}'{did_you_mean(suffix, ('.parquet', '.csv', '.jsonl'))}; "
            "use .parquet, .csv or .jsonl",
            key="out",
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    events = result.events
    if suffix == ".parquet":
        events.to_parquet(out, index=False)
    else:
        text = events.copy()
        # ISO-8601 with offset: unambiguous for any reader.
        text["timestamp"] = events["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
        if suffix == ".csv":
            text.to_csv(out, index=False)
        else:
            text.to_json(out, orient="records", lines=True)
    truth_path: Path | None = None
    if result.truth is not None:
        truth_path = out.parent / "truth.json"
        payload = {**result.truth, "events_file": out.name}
        truth_path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return out, truth_path
