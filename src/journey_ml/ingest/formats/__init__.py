"""Read the event exports people already have: GA4's BigQuery export and Segment calls.

:func:`read_export` flattens an export into a frame with the canonical column names
(``customer_id``, ``timestamp``, ``event_type``, ``channel``, ``revenue``, ``session_id``)
plus the event's properties as further columns, and sets aside the rows that cannot even
be flattened. The flattened frame then goes through the same validation as any event
file (:func:`journey_ml.ingest.load_events` does this when the journey map says
``format: ga4`` or ``format: segment``), so every input row ends up either accepted or
rejected with exactly one reason.

GA4 (BigQuery export schema; Parquet with nested columns, or newline-delimited JSON,
where INT64 values arrive as strings)

``customer_id``  ``user_id`` when present and not blank, else ``user_pseudo_id``, row by
                 row. Events before a login stay with the device id: the export does not
                 link them, and guessing identity across rows is left to the user (the
                 ``user_pseudo_id`` column is kept for that; ``columns: {customer_id:
                 user_pseudo_id}`` uses the device id throughout).
``timestamp``    ``event_timestamp`` read as integer microseconds since the epoch (a number
                 or a string of digits); anything else there is rejected as
                 ``bad_timestamp`` (and shows as ``<invalid event_timestamp ...>``).
``event_type``   ``event_name``
``channel``      the first non-blank of ``collected_traffic_source.manual_medium`` (the
                 event's own UTM medium), the ``medium`` event parameter, and
                 ``traffic_source.medium`` (the medium that first acquired the user).
``revenue``      ``ecommerce.purchase_revenue``. ``event_value_in_usd`` is not used: it is
                 the ``value`` parameter converted to USD, set on non-purchase events too,
                 and mixing it with local-currency revenue would add unlike amounts (the
                 ``value`` parameter stays a column).
``session_id``   ``"{customer_id}:{ga_session_id}"`` (GA4's session key is the device plus
                 ``ga_session_id``; pairing it with the customer keeps sessions inside one
                 customer's journey); derived from the inactivity gap when absent.
properties       every ``event_params`` key becomes a column named by the key: integers
                 only -> ``Int64``, any float/double -> ``float64``, strings only -> ``str``,
                 strings and numbers mixed -> text. ``user_pseudo_id`` is kept.

Segment (Spec: common fields, track/page/screen calls; newline-delimited JSON, gzipped or
not)

``customer_id``  ``userId`` when present and not blank, else ``anonymousId`` (kept as the
                 ``anonymous_id`` column).
``timestamp``    ``timestamp`` (ISO-8601, read by the usual rules).
``event_type``   ``event`` of a track call; a page call is ``Page Viewed`` and a screen
                 call ``Screen Viewed`` (Segment's Object-Action naming), their ``name``
                 and ``category`` become columns.
``channel``      ``context.campaign.medium``
``revenue``      ``properties.revenue``, else ``properties.total``
``event_id``     ``messageId``: a line repeating the ``messageId`` of an earlier event line
                 is a replay and is rejected as ``duplicate_event_id`` (Segment's own
                 deduplication key), whatever else it holds.
properties       ``properties.*`` flattened (nested objects as ``a.b``, arrays as JSON
                 text); a column holds ``Int64``, ``float64``, ``boolean`` or ``str`` when its
                 values are all of that kind, else their JSON text.

A property or parameter whose name is taken (a canonical column, ``event_id``,
``user_pseudo_id``, ``anonymous_id``, ``source_record``) is prefixed ``param_`` (GA4) or
``property_`` (Segment).

Rows that cannot be flattened are rejected before validation, with the first reason that
applies, in this order:

1. ``bad_json``            the line is not valid JSON (or not UTF-8), or not a JSON object
2. ``not_an_event``        a Segment call that is not an event: ``identify``, ``group``,
                           ``alias`` or an unknown ``type`` (they describe users, not
                           journey steps; they are counted, never dropped)
3. ``bad_structure``       a record field that is not an object (GA4 ``ecommerce``,
                           ``traffic_source``, ``collected_traffic_source``; Segment
                           ``properties``, ``context``, ``context.campaign``), or an id,
                           name, time, medium or revenue that is an object or array
4. ``bad_event_params``    GA4 ``event_params`` that is not a list of ``{key, value}``
                           records: a non-record item, a missing or blank key, a key given
                           twice, a value with several typed fields set, an ``int_value``
                           that is not an integer or a ``float_value``/``double_value``
                           that is not a number
5. ``duplicate_event_id``  Segment: a replayed ``messageId`` (see above)

Blank lines are not rows. ``row_number`` is the 0-based line number (JSON lines) or row
position (Parquet) in the file. Rejected rows carry ``source_record``: the line as it
came, or the Parquet row as JSON.

Examples
--------
>>> import json, os, tempfile
>>> line = {"type": "track", "event": "Order Completed", "userId": "u1",
...         "timestamp": "2026-03-01T10:00:00Z", "messageId": "m1",
...         "properties": {"total": 30, "order_id": "A1"}}
>>> with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as fh:
...     _ = fh.write(json.dumps(line) + "\\n" + json.dumps({"type": "identify"}) + "\\n")
>>> export = read_export(fh.name, "segment")
>>> export.frame[["customer_id", "event_type", "revenue", "order_id"]].values.tolist()
[['u1', 'Order Completed', 30, 'A1']]
>>> export.rejects["reject_reason"].tolist(), export.rows_in
(['not_an_event'], 2)
>>> os.remove(fh.name)
"""

from __future__ import annotations

from journey_ml.ingest.formats.api import detect_format, read_export
from journey_ml.ingest.formats.common import BAD_EVENT_PARAMS as BAD_EVENT_PARAMS
from journey_ml.ingest.formats.common import BAD_JSON as BAD_JSON
from journey_ml.ingest.formats.common import BAD_STRUCTURE as BAD_STRUCTURE
from journey_ml.ingest.formats.common import DUPLICATE_EVENT_ID as DUPLICATE_EVENT_ID
from journey_ml.ingest.formats.common import (
    EVENT_ID,
    EXPORT_FORMATS,
    EXPORT_REJECT_REASONS,
    SOURCE_RECORD,
    ExportFrame,
)
from journey_ml.ingest.formats.common import NOT_AN_EVENT as NOT_AN_EVENT

__all__ = [
    "EVENT_ID",
    "EXPORT_FORMATS",
    "EXPORT_REJECT_REASONS",
    "SOURCE_RECORD",
    "ExportFrame",
    "detect_format",
    "read_export",
]
