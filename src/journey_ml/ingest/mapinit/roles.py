"""Column roles: which raw column is the customer id, timestamp, event type, revenue,
channel and session, by name scores backed by type checks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from journey_ml.contract import CANONICAL_COLUMNS, REQUIRED_COLUMNS
from journey_ml.exceptions import EventValidationError, did_you_mean
from journey_ml.ingest.mapinit.names import (
    ENTITY_WORDS,
    EVENT_WORDS,
    EXACT_NAMES,
    FRICTION_WORDS,
    ID_WORDS,
    MEASURE_WORDS,
    MONEY_WORDS,
    NOT_EVENT_WORDS,
    NOT_ID_WORDS,
    NOT_MONEY_WORDS,
    NOT_SESSION_WORDS,
    TIME_WORDS,
    name_tokens,
)
from journey_ml.ingest.mapinit.results import ColumnProfile, RoleGuess

#: Roles in the order they are reported (the canonical columns).
ROLES: tuple[str, ...] = CANONICAL_COLUMNS
#: A timestamp column must parse (loader rules) on at least this share of sampled values.
MIN_DATE_SHARE = 0.9


def guess_roles(
    profiles: Sequence[ColumnProfile], fixed: Mapping[str, str] | None = None, fmt: str = "auto"
) -> tuple[dict[str, RoleGuess], list[str]]:
    """Assign columns to canonical roles; ``(roles, notes)``.

    ``fixed`` (role -> column, from the user) wins, then columns already named after a
    canonical column, then the best-scoring name matches backed by type checks. Notes
    say which plausible columns were turned down and why. ``fmt`` names the export reader
    that made the canonical columns of a flattened export (``auto``: none).

    Raises
    ------
    EventValidationError
        A fixed role or column is unknown, or a required role has no candidate.
    """
    by_name = {p.name: p for p in profiles}
    names = [p.name for p in profiles]
    roles: dict[str, RoleGuess] = {}
    notes: list[str] = []
    for role, column in (fixed or {}).items():
        if role not in ROLES:
            raise EventValidationError(
                f"--column {role}={column}: '{role}' is not a role{did_you_mean(role, ROLES)}; roles: {list(ROLES)}"
            )
        if column not in by_name:
            raise EventValidationError(
                f"--column {role}={column}: no column '{column}'{did_you_mean(column, names)}; columns: {names}",
                column=role,
            )
        if column in ROLES and column != role:
            raise EventValidationError(
                f"--column {role}={column}: '{column}' is itself a canonical column name and is always read as "
                f"{column}; rename it in the file",
                column=role,
            )
        ok, _, note = _type_check(role, by_name[column])
        if not ok:
            notes.append(f"--column {role}={column}: '{column}' {note}")
        roles[role] = RoleGuess(role, column, 1000, f"given with --column, {_detail(role, by_name[column])}")
    for role in ROLES:
        if role in by_name and role not in roles:
            if role in {g.column for g in roles.values()}:
                continue
            if role not in REQUIRED_COLUMNS and by_name[role].non_blank == 0:
                continue  # an empty optional column: the loader's default (unknown, 0, derived)
            ok, _, note = _type_check(role, by_name[role])
            if not ok:
                notes.append(f"'{role}' is read as the {role} by the loader whatever the map says, but {note}")
            origin = "the canonical name" if fmt == "auto" else f"made by the {fmt} reader"
            roles[role] = RoleGuess(role, role, 100, f"{origin}, {_detail(role, by_name[role])}")
    # A canonical-named column not used for its own role would clash with the rename.
    for role, guess in roles.items():
        if guess.column != role and role in by_name:
            raise EventValidationError(
                f"column '{role}' exists, but {role} is set to '{guess.column}': the loader would read both; "
                f"rename or drop '{role}'",
                column=role,
            )

    candidates: list[tuple[int, int, int, str, str, str, bool]] = []
    rejected: dict[str, list[str]] = {r: [] for r in ROLES}
    taken = {g.column for g in roles.values()}
    for pi, prof in enumerate(profiles):
        if prof.name in taken or prof.name in ROLES:
            continue
        tokens = name_tokens(prof.name)
        for ri, role in enumerate(ROLES):
            if role in roles:
                continue
            named = _name_score(role, tokens)
            by_values = False
            if named is None and role == "timestamp" and prof.date_share >= 0.99 and prof.kind != "bool":
                named = (30, "values parse as times")
                by_values = True
            if named is None:
                continue
            score, why = named
            ok, penalty, note = _type_check(role, prof)
            if not ok:
                rejected[role].append(f"'{prof.name}' ({why}) {note}")
                continue
            detail = _detail(role, prof)
            reason = f"{why}, {detail}" + (f"; {note}" if note else "")
            candidates.append((-(score - penalty), ri, pi, role, prof.name, reason, not by_values))
    for neg_score, _, _, role, column, reason, by_name_flag in sorted(candidates):
        if role in roles or column in taken:
            continue
        roles[role] = RoleGuess(role, column, -neg_score, reason, by_name_flag)
        taken.add(column)
    for role in ROLES:
        if role not in roles and rejected[role]:
            notes.append(f"no {role} column: turned down " + "; ".join(rejected[role]))
    missing = [r for r in REQUIRED_COLUMNS if r not in roles]
    if missing:
        raise EventValidationError(_missing_message(missing, profiles, rejected, roles), column=missing[0])
    return {r: roles[r] for r in ROLES if r in roles}, notes


_ROLE_HINTS = {
    "customer_id": "customer_id, user_id, userId, user_pseudo_id, visitor_id or case:concept:name",
    "timestamp": "timestamp, ts, time, event_time or time:timestamp (ISO-8601 or epoch numbers)",
    "event_type": "event_type, event, event_name, action, activity or concept:name",
}


def _missing_message(
    missing: Sequence[str], profiles: Sequence[ColumnProfile], rejected: Mapping[str, list[str]], roles: Mapping[str, RoleGuess]
) -> str:
    lines = [f"cannot tell which column is the {' / '.join(missing)} (required)."]
    for role in missing:
        if rejected[role]:
            lines.append(f"  {role}: turned down " + "; ".join(rejected[role]))
    found = ", ".join(f"{r} <- '{g.column}'" for r, g in roles.items())
    if found:
        lines.append(f"  found: {found}")
    lines.append("  columns: " + ", ".join(p.describe() for p in profiles))
    for role in missing:
        lines.append(
            f"  name the {role} column like {_ROLE_HINTS[role]}, or say which it is: --column {role}=<column>"
        )
    return "\n".join(lines)


def role_list(roles: Mapping[str, RoleGuess]) -> str:
    """The roles as ``role <- 'column'`` pairs, for messages."""
    return ", ".join(f"{r} <- '{g.column}'" for r, g in roles.items())


def _name_score(role: str, tokens: tuple[str, ...]) -> tuple[int, str] | None:
    """(score, why) when the tokens name ``role``; exact known names score highest."""
    joined = "_".join(tokens)
    exact = EXACT_NAMES.get(role, {})
    if joined in exact:
        return exact[joined], "name match"
    tset = set(tokens)
    if role == "customer_id":
        if tset & NOT_ID_WORDS:
            return None
        glued = any(t.endswith("id") and t[:-2] in ENTITY_WORDS for t in tokens)
        if glued or (tset & ENTITY_WORDS and tset & ID_WORDS):
            return 70, "name like an id of a customer"
        if len(tokens) == 1 and tokens[0] in ENTITY_WORDS:
            return 60, "name of a kind of customer"
    elif role == "event_type":
        if tset & NOT_EVENT_WORDS:
            return None
        if tset & EVENT_WORDS:
            return 60, "name like an event"
        if tokens and tokens[-1] == "type":
            return 40, "name like a type"
    elif role == "timestamp":
        if tset & MEASURE_WORDS or tset & {"on", "to", "since", "until"}:
            return None
        if tset & TIME_WORDS or (len(tokens) > 1 and tokens[-1] == "at") or any(
            t.endswith(("time", "timestamp")) for t in tokens
        ):
            return 70, "name like a time"
    elif role == "revenue":
        if tset & NOT_MONEY_WORDS:
            return None
        if tset & MONEY_WORDS:
            return 70, "name like money"
    elif role == "channel":
        if tset & (ID_WORDS | TIME_WORDS):
            return None
        if tset & {"channel", "medium"}:
            return 70, "name like a channel"
        if "source" in tset:
            return 50, "name like a traffic source"
    elif role == "session_id":
        if tset & NOT_SESSION_WORDS:
            return None
        if "session" in tset or any(t.startswith("session") for t in tokens):
            return 70, "name like a session"
    return None


def _type_check(role: str, p: ColumnProfile) -> tuple[bool, int, str]:
    """(acceptable, score penalty, note) for column ``p`` in ``role``."""
    if p.non_blank == 0:
        return False, 0, "is always blank"
    if role in ("customer_id", "session_id"):
        if p.kind in ("datetime", "bool", "nested"):
            return False, 0, f"holds {p.kind} values, not ids"
        if p.kind == "float" and not p.integral:
            return False, 0, "holds fractional numbers, not ids"
        if role == "customer_id" and p.distinct == 1 and p.non_blank > 1:
            return False, 0, "has a single value for every row"
        if p.kind == "float":
            return True, 20, "ids stored as floats (leading zeros and long ids may be lost; store ids as text)"
        return True, 0, ""
    if role == "timestamp":
        if p.date_share < MIN_DATE_SHARE:
            return False, 0, f"parses as a time on only {p.date_share:.0%} of sampled values"
        return True, 0, ""
    if role == "event_type":
        if p.kind in ("float", "bool", "datetime", "nested"):
            return False, 0, f"holds {p.kind} values, not event names"
        if p.date_share >= MIN_DATE_SHARE:
            return False, 0, "holds times, not event names"
        if p.non_blank >= 100 and p.distinct > 0.5 * p.non_blank:
            return False, 0, f"has {p.distinct:,} distinct values in {p.non_blank:,} rows: too many for event types"
        return True, (30 if p.distinct > 500 else 0), ""
    if role == "revenue":
        if p.kind in ("datetime", "bool", "nested") or p.numeric_share < 0.95:
            return False, 0, f"is numeric on only {p.numeric_share:.0%} of values"
        if p.zeros == p.non_blank:
            return False, 0, "is always 0"
        note = f"{p.negatives:,} negative values (the loader rejects those rows)" if p.negatives else ""
        return True, (20 if p.negatives else 0), note
    if role == "channel":
        if p.kind not in ("string",):
            return False, 0, f"holds {p.kind} values, not channel names"
        if p.distinct > 1000 or (p.non_blank >= 100 and p.distinct > 0.2 * p.non_blank):
            return False, 0, f"has {p.distinct:,} distinct values: too many for channels"
        return True, 0, ""
    return True, 0, ""


def _detail(role: str, p: ColumnProfile) -> str:
    if role == "timestamp":
        return f"parses as a time on {p.date_share:.0%} of sampled values"
    if role == "revenue":
        return f"numeric, non-zero on {p.non_blank - p.zeros:,} rows"
    return f"{p.distinct:,} distinct values"


def measure_columns(profiles: Sequence[ColumnProfile], roles: Mapping[str, RoleGuess]) -> tuple[str, ...]:
    """Numeric columns named like a wait/delay/latency or a failure flag: friction measures.

    Only columns whose every non-blank value is a finite number, so declaring them
    friction measures rejects no row.
    """
    taken = {g.column for g in roles.values()}
    out = []
    for p in profiles:
        if p.name in taken or p.name in ROLES or p.non_blank == 0:
            continue
        if p.kind not in ("integer", "float", "bool", "string") or p.numeric_share < 1.0:
            continue
        tokens = set(name_tokens(p.name))
        if tokens & (MEASURE_WORDS | FRICTION_WORDS):
            out.append(p.name)
    return tuple(out)


def canonical_frame(frame: pd.DataFrame, roles: Mapping[str, RoleGuess], by_name: Mapping[str, ColumnProfile]) -> pd.DataFrame:
    """The raw frame renamed to canonical names, integer ids as their decimal strings
    (what :func:`journey_ml.ingest.load_events` does for Parquet)."""
    out = frame.rename(columns={g.column: role for role, g in roles.items() if g.column != role})
    for role in ("customer_id", "session_id"):
        if role in roles and by_name[roles[role].column].kind == "integer":
            col = out[role]
            out[role] = col.astype("Int64").astype("str").where(col.notna(), None)
    return out
