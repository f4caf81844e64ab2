"""The one rule for time zones: every timestamp is compared and stored in UTC.

Event logs, ``--at`` options and API requests mix naive and tz-aware times. A naive time
is taken to *be* UTC (localised, never shifted); an aware one is converted to UTC. Both
helpers here apply that rule, so a cutoff means the same instant in every stage.

Examples
--------
>>> to_utc("2026-01-05 12:00")
Timestamp('2026-01-05 12:00:00+0000', tz='UTC')
>>> to_utc(pd.Timestamp("2026-01-05 12:00", tz="Europe/Paris"))
Timestamp('2026-01-05 11:00:00+0000', tz='UTC')
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["to_utc", "utc_ns"]


def to_utc(value: pd.Timestamp | datetime | np.datetime64 | str | int | float) -> pd.Timestamp:
    """``value`` as a nanosecond-unit UTC timestamp: naive means UTC, aware is converted.

    Raises ``ValueError`` for text pandas cannot parse; ``NaT`` stays ``NaT``.
    """
    ts = pd.Timestamp(value)
    if ts is pd.NaT:
        return ts
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return ts.as_unit("ns")


def utc_ns(values: Any) -> np.ndarray:
    """int64 nanoseconds since the epoch (UTC) of many timestamps, with the rule of :func:`to_utc`.

    ``values`` is a datetime Series, index, array or list. A tz-aware ``ns`` Series comes
    back as a read-only view of its data: copying an events-long column costs as much as
    the features computed from it.
    """
    is_aware_series = isinstance(values, pd.Series) and isinstance(values.dtype, pd.DatetimeTZDtype)
    idx = pd.DatetimeIndex(values if is_aware_series else pd.to_datetime(values, utc=True))
    idx = idx.tz_convert("UTC")
    if idx.unit != "ns":
        return idx.as_unit("ns").asi8
    out = idx.asi8.view()
    out.flags.writeable = False
    return out
