"""Data-quality drift: the event-type mix, new or vanished event types, the stage mix, rejects.

An event type is new or vanished when it counts at least :data:`MIN_EVENT_TYPE_COUNT`
occurrences (observed, or expected from the reference share); the share of rejected rows
is flagged when it rises by :data:`REJECT_SHARE_RISE` or more. Mixes are compared with
:func:`journey_ml.evaluation.psi.psi_categorical`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from journey_ml.evaluation.psi import level, psi_categorical, psi_from_shares

__all__ = ["MIN_EVENT_TYPE_COUNT", "REJECT_SHARE_RISE", "quality_drift", "quality_text", "window_rejects"]

#: A new event type is flagged from this many occurrences, a vanished one when the
#: reference share predicts at least this many in the current window.
MIN_EVENT_TYPE_COUNT = 20
#: Rise of the rejected-row share (absolute, 0.01 = one percentage point) that is flagged.
REJECT_SHARE_RISE = 0.01



def _shares(values: pd.Series) -> dict[str, float]:
    """Share of each distinct value (as text)."""
    counts = values.astype(str).value_counts()
    total = max(int(counts.sum()), 1)
    return {str(k): int(v) / total for k, v in counts.items()}


def quality_drift(
    reference_events: pd.DataFrame,
    current_events: pd.DataFrame,
    reference_stages: pd.Series,
    current_stages: pd.Series,
    reject_shares: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Data-quality changes: event-type mix, new and vanished event types, stage mix, rejects.

    ``*_stages`` are the current-stage names of the active customers (snapshot rows);
    ``reject_shares`` comes from :func:`window_rejects` (None: not measured).
    """
    ref_types, cur_types = reference_events["event_type"].astype(str), current_events["event_type"].astype(str)
    ref_share, cur_share = _shares(ref_types), _shares(cur_types)
    n_cur = len(cur_types)
    cur_counts = cur_types.value_counts()
    ref_counts = ref_types.value_counts()
    new = {str(t): int(n) for t, n in cur_counts.items() if t not in ref_counts.index}
    vanished = {str(t): int(n) for t, n in ref_counts.items() if t not in cur_counts.index}
    # Largest contributions to the event-mix PSI, so the reader sees what moved.
    types = sorted(set(ref_share) | set(cur_share))
    contrib = {
        t: psi_from_shares([ref_share.get(t, 0.0)], [cur_share.get(t, 0.0)]) for t in types
    }
    largest = sorted(types, key=lambda t: -contrib[t])[:6]
    stage_psi = psi_categorical(reference_stages.to_numpy(), current_stages.to_numpy())
    event_psi = psi_categorical(ref_types.to_numpy(), cur_types.to_numpy())
    out: dict[str, Any] = {
        "event_mix": {
            "psi": event_psi,
            "level": level(event_psi),
            "largest_changes": [
                {"event_type": t, "reference_share": ref_share.get(t, 0.0), "current_share": cur_share.get(t, 0.0)}
                for t in largest
            ],
        },
        "event_types": {
            "new": new,
            "vanished": vanished,
            "flagged_new": sorted(t for t, n in new.items() if n >= MIN_EVENT_TYPE_COUNT),
            "flagged_vanished": sorted(
                t for t in vanished if ref_share.get(t, 0.0) * n_cur >= MIN_EVENT_TYPE_COUNT
            ),
        },
        "stage_mix": {
            "psi": stage_psi,
            "level": level(stage_psi),
            "reference": _shares(reference_stages),
            "current": _shares(current_stages),
        },
        "reject_share": dict(reject_shares) if reject_shares is not None else None,
    }
    return out


def window_rejects(
    rejects: pd.DataFrame | None,
    timestamp_column: str,
    boundary: pd.Timestamp,
    ok_reference: int,
    ok_current: int,
) -> dict[str, Any] | None:
    """Share of rejected rows before/after ``boundary``, placing each reject by its raw timestamp.

    A reject whose timestamp does not parse (ISO-8601 or any format pandas reads) cannot be
    placed in a window; those are counted in ``unplaced``. None without a rejects frame.
    """
    if rejects is None:
        return None
    if len(rejects) and timestamp_column in rejects.columns:
        raw = rejects[timestamp_column]
        ts = pd.to_datetime(raw.astype("string"), utc=True, errors="coerce", format="mixed")
    else:
        ts = pd.Series(pd.NaT, index=rejects.index, dtype="datetime64[ns, UTC]")
    before = int((ts <= boundary).sum())
    after = int((ts > boundary).sum())
    unplaced = int(len(rejects) - before - after)

    def share(bad: int, ok: int) -> float:
        return bad / (bad + ok) if bad + ok else 0.0

    return {
        "reference": share(before, ok_reference),
        "current": share(after, ok_current),
        "rejected_reference": before,
        "rejected_current": after,
        "unplaced": unplaced,
    }



def quality_text(quality: Mapping[str, Any]) -> str:
    """Plain-text summary of :func:`quality_drift` (the HTML report shows it in a <pre>)."""
    types = quality["event_types"]
    lines = [
        f"event-type mix PSI {quality['event_mix']['psi']:.4f}",
        f"new event types: {types['new'] or 'none'}",
        f"vanished event types: {types['vanished'] or 'none'}",
        f"stage mix PSI {quality['stage_mix']['psi']:.4f}",
    ]
    rejects = quality.get("reject_share")
    if rejects is None:
        lines.append("reject share: not measured")
    else:
        lines.append(
            f"reject share: {rejects['reference']:.2%} -> {rejects['current']:.2%} "
            f"({rejects['unplaced']} rejects without a usable timestamp)"
        )
    return "\n".join(lines)
