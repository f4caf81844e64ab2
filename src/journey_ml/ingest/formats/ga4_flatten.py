"""The GA4 table (``_GA4_TABLE`` of :mod:`journey_ml.ingest.formats.ga4`) flattened into the
canonical columns plus one column per ``event_params`` key, with the rows whose
parameters are bad marked.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from journey_ml.ingest.formats.common import RESERVED

# Microsecond times Arrow formats as four-digit years (0001..9999); further out is invalid.
_US_MIN = -62_135_596_800 * 10**6
_US_MAX = 253_402_300_800 * 10**6


def flatten_ga4(table: pa.Table) -> tuple[pd.DataFrame, np.ndarray]:
    """(canonical frame of every row, mask of rows whose ``event_params`` are bad)."""
    n = table.num_rows
    col = {name: table.column(name).combine_chunks() for name in table.column_names}
    params: pa.ListArray = col["event_params"]
    parent = np.asarray(pc.list_parent_indices(params), dtype=np.int64)
    items = pc.list_flatten(params)
    key, value = items.flatten()
    values = value.flatten()  # string, int, float, double (null where the item or value is)
    key_codes, key_names = _encode(key)
    # Item checks on the distinct keys only; code -1 (a null key) is blank too.
    blank = np.array([not k.strip() for k in key_names] + [True], dtype=bool)
    count = np.zeros(len(items), dtype=np.int8)
    for v in values:
        count += np.asarray(v.is_valid(), dtype=np.int8)
    bad_item = np.asarray(items.is_null(), dtype=bool) | blank[key_codes] | (count > 1)
    bad = np.zeros(n, dtype=bool)
    bad[parent[bad_item]] = True
    # Items grouped by key, each group in row order (a stable sort of small codes is a
    # radix sort); a key twice in one row shows as the same row twice in a row.
    narrow = np.int16 if len(key_names) < 2**15 else np.int64
    order = np.argsort(key_codes.astype(narrow), kind="stable")
    bounds = np.searchsorted(key_codes[order], np.arange(len(key_names) + 1))
    groups = [order[bounds[code] : bounds[code + 1]] for code in range(len(key_names))]
    for members in groups:
        rows = parent[members]
        bad[rows[1:][rows[1:] == rows[:-1]]] = True

    customer = pc.if_else(
        pc.fill_null(pc.not_equal(pc.utf8_trim_whitespace(col["user_id"]), ""), False),
        col["user_id"], col["user_pseudo_id"],
    )
    data: dict[str, Any] = {
        "customer_id": customer,
        "timestamp": _ga4_times(col["timestamp_us"], col["timestamp_raw"]),
        "event_type": col["event_name"],
        "channel": None,  # after the parameters (the `medium` parameter is one source)
        "revenue": col["purchase_revenue"],
        "session_id": None,
        "user_pseudo_id": col["user_pseudo_id"],
    }
    keep = ~bad[parent]
    texts: dict[str, pa.Array] = {}
    for name, members in zip(key_names, groups, strict=True):
        members = members[keep[members]]
        if not len(members):
            continue
        column, text = _param_column(values, members, parent[members], n, text=name in ("medium", "ga_session_id"))
        if text is not None:
            texts[name] = text
        target = name
        while target in data or target in RESERVED:  # named like a canonical (or taken) column
            target = f"param_{target}"
        data[target] = column
    data["channel"] = _first_filled(
        [col["collected_medium"], texts.get("medium", pa.nulls(n, pa.string())), col["traffic_medium"]]
    )
    session = texts.get("ga_session_id")
    if session is None:
        data["session_id"] = pa.nulls(n, pa.string())
    else:
        data["session_id"] = pc.binary_join_element_wise(pc.utf8_trim_whitespace(customer), session, ":")
    return pd.DataFrame({k: _to_pandas(v) for k, v in data.items()}), bad


def _encode(arr: pa.Array) -> tuple[np.ndarray, list[str]]:
    """(codes, -1 for null; distinct values in order of first appearance)."""
    encoded = pc.dictionary_encode(arr)
    codes = np.asarray(pc.fill_null(encoded.indices, -1), dtype=np.int64)
    return codes, encoded.dictionary.to_pylist()


def _param_column(
    values: list[pa.Array], members: np.ndarray, rows: np.ndarray, n: int, *, text: bool
) -> tuple[Any, pa.Array | None]:
    """One parameter as an ``n``-row column typed by the value fields it uses, and (when
    ``text``) as text."""
    index = np.full(n, -1, dtype=np.int64)
    index[rows] = members
    take = pa.array(index, mask=index < 0)
    used = [v.take(pa.array(members)).null_count < len(members) for v in values]
    string, integer, single, double = (v.take(take) if u else None for v, u in zip(values, used, strict=True))
    numbers = [a for a in (integer, single, double) if a is not None]
    as_text = None
    if text or (string is not None and numbers):
        as_text = pc.coalesce(*([string] if string is not None else []), *(a.cast(pa.string()) for a in numbers)) \
            if (string is not None or numbers) else pa.nulls(n, pa.string())
    if string is not None and numbers:
        return as_text, as_text  # strings and numbers: text
    if string is not None or not numbers:
        return (string if string is not None else pa.nulls(n, pa.string())), as_text
    if integer is not None and len(numbers) == 1:
        return pd.array(integer.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get), dtype="Int64"), as_text
    return pc.coalesce(*(a.cast(pa.float64()) for a in numbers)), as_text


def _first_filled(candidates: list[pa.Array]) -> pa.Array:
    """Per row, the first candidate that is not null or blank."""
    cleaned = [pc.if_else(pc.fill_null(pc.equal(pc.utf8_trim_whitespace(c), ""), True), pa.scalar(None, pa.string()), c) for c in candidates]
    return pc.coalesce(*cleaned)


def _ga4_times(micros: pa.Array, raw: pa.Array) -> pa.Array:
    """``event_timestamp`` for validation: UTC times from the integer microseconds (null
    where the source is missing or blank). When some source value is not integer
    microseconds, the column is text instead: ISO-8601 for the good values and
    ``<invalid event_timestamp ...>`` (which validation rejects) for the others."""
    blank = pc.fill_null(pc.equal(pc.utf8_trim_whitespace(raw), ""), True)
    invalid = pc.and_(pc.is_null(micros), pc.invert(blank))
    if not pc.any(invalid).as_py():
        return micros.cast(pa.timestamp("us", tz="UTC"))
    fits = pc.and_(pc.greater_equal(micros, _US_MIN), pc.less(micros, _US_MAX))
    in_range = pc.if_else(pc.fill_null(fits, False), micros, pa.scalar(None, pa.int64()))
    iso = in_range.cast(pa.timestamp("us", tz="UTC")).cast(pa.string())
    out_of_range = pc.and_(pc.is_valid(micros), pc.invert(pc.fill_null(fits, False)))
    marked = pc.if_else(pc.or_(invalid, out_of_range), pc.binary_join_element_wise("<invalid event_timestamp ", raw, ">", ""), pa.scalar(None, pa.string()))
    return pc.coalesce(iso, marked)


def _to_pandas(values: Any) -> Any:
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
            return pd.Series(values.to_pandas(), dtype="str")
        return values.to_pandas()
    return values
