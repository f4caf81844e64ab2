"""Column profiles: what each raw column holds (kind, blanks, numbers, how much of it
parses as a time by the loader's own rules), as role guessing needs to know.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd

from journey_ml.contract import JourneyMap
from journey_ml.ingest.mapinit.results import ColumnProfile
from journey_ml.ingest.validate import validate_events

#: Values sampled per column for the type checks.
_TYPE_SAMPLE = 2000


def profile_columns(frame: pd.DataFrame, rng: np.random.Generator | None = None) -> tuple[ColumnProfile, ...]:
    """Profile every column of a raw frame (counts on all rows, date parsing on a sample)."""
    rng = rng if rng is not None else np.random.default_rng(0)
    return tuple(_profile(str(name), frame[name], rng) for name in frame.columns)


def _profile(name: str, series: pd.Series, rng: np.random.Generator) -> ColumnProfile:
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype):
        kind = "bool"
    elif isinstance(dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(dtype):
        kind = "datetime"
    elif pd.api.types.is_integer_dtype(dtype):
        kind = "integer"
    elif pd.api.types.is_float_dtype(dtype):
        kind = "float"
    else:
        kind = "string"
    try:
        codes, uniques = pd.factorize(series)
    except TypeError:  # lists or dicts from JSON
        kind = "nested"
        series = series.map(lambda v: v if v is None or isinstance(v, (str, int, float)) else json.dumps(v, default=str))
        codes, uniques = pd.factorize(series)
    uniq = pd.Series(uniques)
    if kind in ("string", "nested") and len(uniq) and pd.api.types.infer_dtype(uniq, skipna=True) in (
        "datetime", "datetime64", "date",
    ):
        kind = "datetime"
    if kind in ("integer", "float", "bool", "datetime"):
        texts = None
        blank_u = uniq.isna().to_numpy(dtype=bool)
        nums_u = (
            np.full(len(uniq), np.nan) if kind == "datetime" else uniq.to_numpy(dtype=np.float64, na_value=np.nan)
        )
    else:
        texts = uniq.astype("str").str.strip()
        blank_u = (texts == "").to_numpy(dtype=bool) | uniq.isna().to_numpy(dtype=bool)
        nums_u = _numbers(texts, blank_u, rng)
    valid = codes >= 0
    blank = np.ones(len(codes), dtype=bool)
    blank[valid] = blank_u[codes[valid]]
    nums = np.full(len(codes), np.nan)
    nums[valid] = nums_u[codes[valid]]
    non_blank = int((~blank).sum())
    finite = np.isfinite(nums) & ~blank
    n_num = int(finite.sum())
    numeric_share = n_num / non_blank if non_blank else 0.0
    fin_vals = nums[finite]
    integral = bool(n_num) and bool(np.all(fin_vals == np.round(fin_vals)))
    distinct = int(np.count_nonzero(~blank_u))
    first_seen = [str((texts if texts is not None else uniq).iloc[i]) for i in np.flatnonzero(~blank_u)[:3]]
    examples = tuple(e if len(e) <= 30 else e[:27] + "..." for e in first_seen)

    date_share = 0.0
    rows = np.flatnonzero(~blank)
    too_small = kind in ("integer", "float") and n_num and np.nanmax(np.abs(fin_vals)) < 6.3e8
    if len(rows) and kind not in ("bool", "nested") and not too_small:
        take = np.sort(rng.choice(rows, size=min(_TYPE_SAMPLE, len(rows)), replace=False))
        date_share = _date_share(series.iloc[take].reset_index(drop=True))
    return ColumnProfile(
        name=name, kind=kind, non_blank=non_blank, distinct=distinct, numeric_share=numeric_share,
        integral=integral, negatives=int((fin_vals < 0).sum()), zeros=int((fin_vals == 0).sum()),
        date_share=date_share, examples=examples,
    )


def _numbers(texts: pd.Series, blank: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Distinct texts as numbers (NaN where not a number or blank).

    Many distinct values (ids, times) are tried on a sample first: when none of the
    sample is a number, the column is not numeric and parsing millions of strings is
    skipped.
    """
    out = np.full(len(texts), np.nan)
    todo = np.flatnonzero(~blank)
    if len(todo) > 100_000:
        probe = rng.choice(todo, size=20_000, replace=False)
        if np.isnan(pd.to_numeric(texts.iloc[probe], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)).all():
            return out
    out[todo] = pd.to_numeric(texts.iloc[todo], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    return out


def _date_share(values: pd.Series) -> float:
    """Share of ``values`` (none blank) the loader accepts as timestamps.

    Uses :func:`journey_ml.ingest.validate_events` itself, so the draft's timestamp
    column parses by exactly the rules ``journey-ml validate`` applies. Each distinct
    value is parsed once (event names repeat; unparseable text is the slow path).
    """
    n = len(values)
    if not n:
        return 0.0
    codes, uniques = pd.factorize(values)
    probe = pd.DataFrame({
        "customer_id": [str(i) for i in range(len(uniques))],
        "timestamp": pd.Series(uniques, dtype=values.dtype) if len(uniques) else values.iloc[:0],
        "event_type": "probe",
    })
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = validate_events(probe, _PROBE_MAP, max_reject_share=1.0)
    bad = np.zeros(len(uniques), dtype=bool)
    bad[result.rejects["row_number"].to_numpy(dtype=np.int64)] = True
    return 1.0 - float(bad[codes].sum()) / n


_PROBE_MAP = JourneyMap.from_dict({"stages": [{"name": "all", "events": []}]})
