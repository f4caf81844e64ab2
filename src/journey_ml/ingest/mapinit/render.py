"""The drafted map as a dict (what it says) and as commented YAML (why it says it)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from journey_ml.ingest.mapinit.results import (
    EventTypeProfile,
    FrictionProposal,
    RoleGuess,
    StageProposal,
)
from journey_ml.ingest.mapinit.roles import ROLES

_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")


def journey_map_dict(
    source: str,
    fmt: str,
    roles: Mapping[str, RoleGuess],
    stages: Sequence[StageProposal],
    conversions: Sequence[str],
    repeat: str | None,
    exits: Sequence[str],
    frictions: Sequence[FrictionProposal],
    settings: Mapping[str, tuple[float, str]],
) -> dict[str, Any]:
    """The drafted journey map as the dict :meth:`JourneyMap.from_dict` reads."""
    out: dict[str, Any] = {"name": _map_name(source)}
    if fmt != "auto":
        out["format"] = fmt
        renamed = {role: g.column for role, g in roles.items() if g.column != role}
        if renamed:
            out["columns"] = renamed
    else:
        out["columns"] = {role: g.column for role, g in roles.items()}
    out["stages"] = [{"name": s.name, "events": list(s.events)} for s in stages]
    out["conversion_events"] = list(conversions)
    if repeat is not None:
        out["repeat_conversion_stage"] = repeat
    out["exit_events"] = list(exits)
    out["touchpoints"] = {"by": ["event_type", "channel"] if "channel" in roles else ["event_type"]}
    out["friction"] = {f.name: f.spec() for f in frictions}
    for key, (value, _) in settings.items():
        out[key] = value
    return out


def _map_name(source: str) -> str:
    stem = Path(source).name.split(".")[0]
    return re.sub(r"[^A-Za-z0-9_]+", "_", stem).strip("_") or "journey"


def _q(value: str) -> str:
    """A YAML scalar for ``value``: plain when it reads back as the same string."""
    if _PLAIN.match(value):
        try:
            if yaml.safe_load(value) == value:
                return value
        except yaml.YAMLError:
            pass
    return json.dumps(value, ensure_ascii=False)


def _flow(values: Sequence[str]) -> str:
    return "[" + ", ".join(_q(v) for v in values) + "]"


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _comment(text: str) -> str:
    return " ".join(str(text).split())


def render_yaml(m: Mapping[str, Any], d: Mapping[str, Any]) -> str:
    """The drafted map as YAML, every guess explained in a comment."""
    lines: list[str] = []
    add = lines.append
    time_range = d["time_range"]
    add(f"# Draft journey map written by `journey-ml init` from {_comment(d['source'])}.")
    add(
        f"# {d['rows_in']:,} rows ({d['rows_ok']:,} accepted, {d['rows_in'] - d['rows_ok']:,} rejected), "
        f"{d['customers']:,} customers, {time_range[0]} .. {time_range[1]}."
    )
    add("# Every value below is a guess with its reason: check it, fix it, then run")
    add(f"#   journey-ml validate {_comment(d['source'])} --journey-map <this file>")
    sampling = d["sampling"]
    if sampling.get("sampled"):
        add(
            f"# Positions come from a seeded sample of {sampling['sample_customers']:,} customers "
            f"({sampling['sample_rows']:,} rows); counts use every row."
        )
    add("")
    add(f"name: {_q(m['name'])}")
    add("")
    roles: Mapping[str, RoleGuess] = d["roles"]
    if "format" in m:
        add(f"# The file is a {m['format']} export: its reader flattens it into the canonical columns")
        add("# (no columns: section). What it holds:")
        for role, g in roles.items():
            add(f"#   {role} <- '{_comment(g.column)}': {_comment(g.reason)}")
        add(f"format: {m['format']}")
    else:
        add("# canonical name: source column, and why")
        add("columns:")
        for role, g in roles.items():
            add(f"  {role}: {_q(g.column)}   # {_comment(g.reason)}")
        missing = [r for r in ROLES if r not in roles]
        if missing:
            add(f"  # not found: {', '.join(missing)} (optional)")
    add("")
    add("# Event types: rows, customers, median position of the first occurrence in a journey")
    add("# (0 = a customer's first event, 1 = the last), and what the draft makes of each:")
    profiles: Sequence[EventTypeProfile] = d["event_types"]
    width = max(len(e.name) for e in profiles)
    for e in profiles:
        pos = f"{e.median_position:.2f}" if e.median_position is not None else "  - "
        add(
            f"#   {_comment(e.name):<{width}} {e.count:>10,} {e.customers:>9,}  {pos}  "
            f"{e.proposal}: {_comment(e.reason)}"
        )
    add("")
    add("stages:   # ordered, earliest first; a customer's stage is the furthest one their events evidence")
    for s in d["stages"]:
        add(f"  - {{name: {_q(s.name)}, events: {_flow(s.events)}}}   # {_comment(s.reason)}")
    add("")
    conversions = m["conversion_events"]
    if conversions:
        why = "; ".join(f"{e}: {_comment(p.reason)}" for e in conversions for p in profiles if p.name == e)
        add(f"conversion_events: {_flow(conversions)}   # {why}")
    else:
        add("conversion_events: []   # none found: name your conversion events (each must be in a stage)")
    if "repeat_conversion_stage" in m:
        add(f"repeat_conversion_stage: {_q(m['repeat_conversion_stage'])}   # a second conversion promotes here")
    if m["exit_events"]:
        add(f"exit_events: {_flow(m['exit_events'])}   # explicit drop-off; never stage events")
    else:
        add("exit_events: []   # none named like unsubscribe/cancel/declined/churn: add yours")
    add("")
    by = m["touchpoints"]["by"]
    note = "" if "channel" in by else "   # no channel column: touchpoints are event types"
    add(f"touchpoints: {{by: {_flow(by)}}}{note}")
    add("")
    frictions: Sequence[FrictionProposal] = d["friction"]
    if frictions:
        add("# An event is friction when event_type matches and `column` >= `min`. Candidates:")
        add("friction:")
        for f in frictions:
            parts = []
            if f.event_type is not None:
                parts.append(f"event_type: {_q(f.event_type)}")
            if f.column is not None:
                parts.append(f"column: {_q(f.column)}")
            if f.min is not None:
                parts.append(f"min: {_num(f.min)}")
            add(f"  {_q(f.name)}: {{{', '.join(parts)}}}   # {_comment(f.reason)}")
    else:
        add("friction: {}   # no event named like an error/timeout/failure and no wait/delay column found")
    unused = d["unused_numeric"]
    if unused:
        add(f"# numeric columns not used: {', '.join(_comment(u) for u in unused)}")
    add("")
    settings: Mapping[str, tuple[float, str]] = d["settings"]
    for key, (value, why) in settings.items():
        add(f"{key}: {_num(value)}   # {_comment(why)}")
    if "revenue" not in roles:
        add("")
        add("# The log has no revenue column: rankings count conversions. To value them in money,")
        add("# set what one conversion is worth and uncomment:")
        add("# value_per_conversion: 50")
    return "\n".join(lines) + "\n"
