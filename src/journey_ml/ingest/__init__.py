"""Ingest: read event files and exports, validate every row, draft journey maps.

``readers`` reads files and loads them; ``validate`` checks rows (every rejected row kept
with its reason); ``parse`` and ``order`` are their column parsers and sort kernels;
``formats`` flattens GA4 and Segment exports; ``mapinit`` drafts a journey map.
"""

from journey_ml.ingest.readers import (
    CSV_SUFFIXES,
    JSON_SUFFIXES,
    PARQUET_SUFFIXES,
    load_checked,
    load_events,
    read_event_file,
    write_rejects,
)
from journey_ml.ingest.validate import REJECT_REASONS, LoadResult, summarize, validate_events

__all__ = [
    "CSV_SUFFIXES",
    "JSON_SUFFIXES",
    "PARQUET_SUFFIXES",
    "REJECT_REASONS",
    "LoadResult",
    "load_checked",
    "load_events",
    "read_event_file",
    "summarize",
    "validate_events",
    "write_rejects",
]
