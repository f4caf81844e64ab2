"""The entry points of ``journey-ml init``: read the file, profile it, guess roles, make
the proposals and render the draft.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from journey_ml.contract import JourneyMap
from journey_ml.exceptions import EventValidationError
from journey_ml.ingest.formats import detect_format, read_export
from journey_ml.ingest.mapinit.analysis import analyse_events, sample_customers
from journey_ml.ingest.mapinit.names import ID_WORDS, MONEY_WORDS, name_tokens
from journey_ml.ingest.mapinit.profile import profile_columns
from journey_ml.ingest.mapinit.proposals import (
    choose_conversions,
    event_profile,
    propose_frictions,
    propose_settings,
    propose_stages,
    review_checks,
)
from journey_ml.ingest.mapinit.render import journey_map_dict, render_yaml
from journey_ml.ingest.mapinit.results import Draft
from journey_ml.ingest.mapinit.roles import canonical_frame, guess_roles, measure_columns, role_list
from journey_ml.ingest.readers import read_event_file
from journey_ml.ingest.validate import validate_events

DEFAULT_MAX_SAMPLE_ROWS = 200_000
DEFAULT_MAX_SAMPLE_CUSTOMERS = 20_000


def read_for_init(path: str | Path) -> tuple[pd.DataFrame, str, dict[str, int]]:
    """Read an event file for profiling and say which map ``format`` reads it.

    Returns ``(frame, format, set_aside)``. A GA4 or Segment export (recognised by
    :func:`journey_ml.ingest.formats.detect_format`) is flattened by
    :func:`journey_ml.ingest.formats.read_export` into canonical column names, and
    ``set_aside`` counts the rows its reader could not flatten, by reason (they count as
    rejected when the map is used). Any other file is read as it is (``format`` ``auto``).
    """
    fmt = detect_format(path)
    if fmt is None:
        return read_event_file(path), "auto", {}
    export = read_export(path, fmt)
    reasons = export.rejects["reject_reason"].value_counts() if len(export.rejects) else pd.Series(dtype="int64")
    return export.frame, fmt, {str(k): int(v) for k, v in reasons.items()}


def draft_journey_map(
    path: str | Path,
    *,
    columns: Mapping[str, str] | None = None,
    seed: int = 0,
    max_sample_rows: int = DEFAULT_MAX_SAMPLE_ROWS,
    max_sample_customers: int = DEFAULT_MAX_SAMPLE_CUSTOMERS,
) -> Draft:
    """Profile the event file at ``path`` and draft a journey map for it.

    Parameters
    ----------
    path : str or Path
        CSV, Parquet or JSON lines, as ``journey-ml validate`` reads them.
    columns : mapping, optional
        Roles fixed by the user (canonical name -> source column); the rest are guessed.
    seed : int
        Seeds the customer sample (positions) and the value samples (type checks).
    max_sample_rows, max_sample_customers : int
        Size limits of the customer sample used for positions.

    Raises
    ------
    EventValidationError
        The file cannot be read, or a required role cannot be guessed (the message lists
        the columns and how to name the role).
    """
    frame, fmt, set_aside = read_for_init(path)
    return draft_from_frame(
        frame, source=str(path), fmt=fmt, set_aside=set_aside, columns=columns, seed=seed,
        max_sample_rows=max_sample_rows, max_sample_customers=max_sample_customers,
    )


def draft_from_frame(
    frame: pd.DataFrame,
    *,
    source: str = "events",
    fmt: str = "auto",
    set_aside: Mapping[str, int] | None = None,
    columns: Mapping[str, str] | None = None,
    seed: int = 0,
    max_sample_rows: int = DEFAULT_MAX_SAMPLE_ROWS,
    max_sample_customers: int = DEFAULT_MAX_SAMPLE_CUSTOMERS,
) -> Draft:
    """Draft a journey map for an in-memory raw event frame (see :func:`draft_journey_map`).

    ``fmt`` other than ``auto`` means the frame is a flattened export, already in
    canonical column names: the map then names the format instead of a ``columns:``
    rename. ``set_aside`` counts rows its reader rejected before this frame (by reason).
    """
    if len(frame.columns) == 0 or len(frame) == 0:
        raise EventValidationError(f"{source}: no rows to profile")
    if fmt != "auto" and columns:
        # As the export reader does with a map's columns: a named column replaces the
        # flattened default of that canonical name.
        frame = frame.drop(columns=[r for r, c in columns.items() if c != r and r in frame.columns])
    rng = np.random.default_rng(seed)
    profiles = profile_columns(frame, rng)
    roles, role_notes = guess_roles(profiles, columns or {}, fmt)
    warn: list[str] = list(role_notes)
    checks: list[str] = []

    by_name = {p.name: p for p in profiles}
    measures = measure_columns(profiles, roles)
    canon = canonical_frame(frame, roles, by_name)
    vmap = JourneyMap.from_dict(
        {"stages": [{"name": "all", "events": []}], "friction": {f"m{i}": {"column": c} for i, c in enumerate(measures)}}
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = validate_events(canon, vmap, max_reject_share=1.0)
    events = loaded.events
    if events.empty:
        raise EventValidationError(
            f"{source}: every row was rejected with these columns ({role_list(roles)}); "
            f"reasons: {loaded.summary['reasons']}"
        )
    # Rows an export reader set aside count as rejected when the map is used, too.
    reasons: dict[str, int] = dict(loaded.summary["reasons"])
    for reason, count in (set_aside or {}).items():
        reasons[reason] = reasons.get(reason, 0) + count
    reasons = dict(sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0])))
    rows_in = loaded.rows_in + sum((set_aside or {}).values())
    reject_share = (rows_in - len(events)) / rows_in
    sample, sampling = sample_customers(events, seed, max_sample_rows, max_sample_customers)
    analysis = analyse_events(events, sample, has_revenue="revenue" in roles)

    conversions, conv_reasons, conv_notes = choose_conversions(analysis, "revenue" in roles)
    warn += conv_notes
    exits = tuple(e for e in analysis.names if analysis.kind[e] == "exit")
    friction_events = tuple(e for e in analysis.names if analysis.kind[e] == "friction")
    stages, stage_of, repeat = propose_stages(analysis, conversions)
    frictions = propose_frictions(friction_events, measures, events, analysis)
    settings, setting_notes = propose_settings(events, sample, reject_share, reasons)
    warn += setting_notes

    event_profiles = tuple(
        event_profile(e, analysis, conversions, conv_reasons, stage_of) for e in analysis.names
    )
    unused = tuple(
        p.name
        for p in profiles
        if p.name not in {g.column for g in roles.values()}
        and p.name not in measures
        and p.non_blank > 0
        and (p.kind in ("integer", "float", "bool") or (p.kind == "string" and p.numeric_share == 1.0))
        and not set(name_tokens(p.name)) & (ID_WORDS | MONEY_WORDS)
    )
    checks += review_checks(roles, analysis, conversions, exits, frictions, sampling, unused, fmt)

    map_dict = journey_map_dict(source, fmt, roles, stages, conversions, repeat, exits, frictions, settings)
    time_range = (
        events["timestamp"].min().isoformat(timespec="seconds"),
        events["timestamp"].max().isoformat(timespec="seconds"),
    )
    draft_args: dict[str, Any] = {
        "source": source,
        "format": fmt,
        "rows_in": rows_in,
        "rows_ok": len(events),
        "reject_reasons": reasons,
        "customers": analysis.customers_total,
        "time_range": time_range,
        "columns": profiles,
        "roles": roles,
        "event_types": event_profiles,
        "stages": stages,
        "conversion_events": conversions,
        "repeat_conversion_stage": repeat,
        "exit_events": exits,
        "friction": frictions,
        "settings": settings,
        "sampling": sampling,
        "warnings": tuple(warn),
        "checks": tuple(checks),
        "unused_numeric": unused,
    }
    text = render_yaml(map_dict, draft_args)
    journey_map = JourneyMap.from_dict(map_dict)
    # The comments must not change what the map says: the YAML text is what users get.
    if JourneyMap.from_dict(yaml.safe_load(text)) != journey_map:
        raise AssertionError("drafted YAML does not load to the drafted journey map")
    return Draft(journey_map=journey_map, yaml_text=text, **draft_args)
