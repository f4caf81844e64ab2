"""Drift between the champion's training window and newer data: features, scores, data quality.

The statistic and its thresholds are in :mod:`journey_ml.evaluation.psi`; the data-quality
rules in :mod:`journey_ml.evaluation.quality`. What is measured (:func:`measure_drift`):

* per **feature group** — each touchpoint and friction of ``FeatureSpec.feature_groups`` and
  each remaining feature family (activity, rfm, trend, stage, transitions, sessions,
  channel_mix; :func:`feature_groups`) — the largest PSI among the group's features, with
  the feature that drives it;
* on the champion's **scores** (:func:`score_drift`): drop-off risk, expected revenue or
  conversions (when the bundle has a value model) and the predicted next stage (when it has
  a next-stage model);
* **data quality** (:func:`~journey_ml.evaluation.quality.quality_drift`): the event-type
  mix, new or vanished event types, the stage mix of the active customers and the share of
  rejected rows.

Fewer than :data:`MIN_ROWS` rows on either side: the numbers are reported, nothing is
flagged (the PSI of small samples is dominated by sampling noise).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pandas as pd

from journey_ml.contract.time import to_utc
from journey_ml.evaluation.psi import (
    BINS,
    EPSILON,
    FLAG_AT,
    PSI_MAJOR,
    PSI_MODERATE,
    level,
    psi,
    psi_categorical,
)
from journey_ml.evaluation.quality import MIN_EVENT_TYPE_COUNT, REJECT_SHARE_RISE, quality_drift
from journey_ml.features import FeatureSpec
from journey_ml.features import families as feats

if TYPE_CHECKING:
    from journey_ml.contract import JourneyMap

__all__ = [
    "MIN_ROWS",
    "SCORE_COLUMNS",
    "Champion",
    "DriftReport",
    "compare_scores",
    "feature_drift",
    "feature_groups",
    "measure_drift",
    "score_drift",
    "window_rows",
    "window_summary",
]

#: Rows needed on each side before anything is flagged.
MIN_ROWS = 100


class Champion(Protocol):
    """What drift needs of the champion: its feature spec and journey map (a ModelBundle has both)."""

    @property
    def spec(self) -> FeatureSpec: ...

    @property
    def journey_map(self) -> JourneyMap: ...


#: Features that keep a customer's whole history (tenure, lifetime totals, first times,
#: transition counts): their distribution moves as the customer base ages, with no change
#: in behaviour. A group driven by one gets a note, not a pass.
_CUMULATIVE = re.compile(
    r"^(tenure_days|events_total|conversions_total|revenue_total|sessions_total|max_gap_days|avg_order_value)$"
    r"|_days_since_first$|_count_total$|^trans_"
)

#: Score columns compared by :func:`score_drift`; ``next_stage`` is categorical.
SCORE_COLUMNS: tuple[str, ...] = ("drop_off_risk", "expected_revenue", "expected_conversions", "next_stage")
#: Score columns compared by category (the others on quantile bins).
_CATEGORICAL_SCORES = frozenset({"next_stage", "current_stage"})


# ---------------------------------------------------------------------------- what is compared
_FAMILIES: dict[str, Callable[[FeatureSpec], list[str]]] = {
    "activity": lambda spec: ["events_total", "recency_days", "tenure_days"],
    "rfm": feats.rfm_names,
    "trend": feats.trend_names,
    "stage": feats.stage_features_names,
    "transitions": feats.transitions_names,
    "sessions": feats.sessions_names,
    "channel_mix": feats.channel_mix_names,
}


def feature_groups(spec: FeatureSpec) -> dict[str, list[str]]:
    """Group name -> feature columns: ``spec.feature_groups`` (touchpoints, frictions) and
    the other feature families (prefixed ``features:`` if a touchpoint has the same name).

    Every column of ``spec.feature_names`` is in at least one group; groups may overlap.
    """
    groups = {name: list(cols) for name, cols in spec.feature_groups.items()}
    names = set(spec.feature_names)
    for family, names_of in _FAMILIES.items():
        cols = [c for c in names_of(spec) if c in names]
        if cols:
            groups[f"features:{family}" if family in groups else family] = cols
    covered = {c for cols in groups.values() for c in cols}
    rest = [c for c in spec.feature_names if c not in covered]
    if rest:  # a family added to features.py without a group here still gets compared
        groups["features:other"] = rest
    return groups


def feature_drift(
    reference: pd.DataFrame, current: pd.DataFrame, spec: FeatureSpec
) -> dict[str, dict[str, Any]]:
    """Per feature group: the largest feature PSI (``psi``), that ``feature`` and its ``level``.

    ``reference`` and ``current`` hold ``spec.feature_names`` columns (snapshot rows).
    Categorical features (``spec.categorical_features``) use :func:`psi_categorical`.
    """
    categorical = set(spec.categorical_features)
    per_feature: dict[str, float] = {}
    for col in spec.feature_names:
        if col not in reference.columns or col not in current.columns:
            continue
        compare = psi_categorical if col in categorical else psi
        per_feature[col] = compare(reference[col].to_numpy(), current[col].to_numpy())
    out: dict[str, dict[str, Any]] = {}
    for group, cols in feature_groups(spec).items():
        values = {c: per_feature[c] for c in cols if c in per_feature and np.isfinite(per_feature[c])}
        if not values:
            continue
        top = max(values, key=lambda c: values[c])
        out[group] = {"psi": values[top], "feature": top, "level": level(values[top])}
    return out


def score_drift(
    reference: pd.DataFrame, current: pd.DataFrame, columns: Sequence[str] = SCORE_COLUMNS
) -> dict[str, float]:
    """PSI of each score column both frames have (``journey-ml score`` output or
    :func:`journey_ml.registry.scoring.score_features`): drop-off risk, expected revenue or
    conversions, predicted next stage. A column that is all missing on a side is skipped
    (a model without revenue writes NaN, never 0)."""
    out: dict[str, float] = {}
    for col in columns:
        if col not in reference.columns or col not in current.columns:
            continue
        a, b = reference[col], current[col]
        if col in _CATEGORICAL_SCORES:
            out[col] = psi_categorical(a.to_numpy(), b.to_numpy())
        elif a.notna().any() and b.notna().any():
            out[col] = psi(a.to_numpy(dtype=np.float64, na_value=np.nan), b.to_numpy(dtype=np.float64, na_value=np.nan))
    return out


def compare_scores(reference: pd.DataFrame, current: pd.DataFrame) -> dict[str, Any]:
    """Score-distribution drift of two score files (``journey-ml monitor``).

    PSI of every score column (:data:`SCORE_COLUMNS`) and of the current-stage mix, each
    with its level; ``flagged`` at :data:`FLAG_AT` (nothing below :data:`MIN_ROWS` rows a
    side), ``watch`` from :data:`PSI_MODERATE`.
    """
    values = score_drift(reference, current, (*SCORE_COLUMNS, "current_stage"))
    enough = min(len(reference), len(current)) >= MIN_ROWS
    flagged = [c for c, v in values.items() if enough and np.isfinite(v) and v >= FLAG_AT]
    notes = [] if enough else [
        f"fewer than {MIN_ROWS} rows on a side ({len(reference)} and {len(current)}): nothing is flagged"
    ]
    return {
        "psi": values,
        "levels": {c: level(v) for c, v in values.items()},
        "flagged": flagged,
        "watch": [c for c, v in values.items() if np.isfinite(v) and v >= PSI_MODERATE and c not in flagged],
        "rows": {"reference": len(reference), "current": len(current)},
        "thresholds": {"statistic": "psi", "moderate": PSI_MODERATE, "major": PSI_MAJOR, "flag_at": FLAG_AT,
                       "bins": BINS, "epsilon": EPSILON, "min_rows": MIN_ROWS},
        "notes": notes,
    }  # fmt: skip


# ---------------------------------------------------------------------------- windows
def window_rows(
    events: pd.DataFrame,
    journey_map: JourneyMap,
    spec: FeatureSpec,
    *,
    start: pd.Timestamp,
    boundary: pd.Timestamp,
    cadence_days: float,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Snapshot rows (features and labels) of the reference and the current window.

    Cutoffs run every ``cadence_days`` on the grid through ``boundary`` (the champion's
    last weekly test cutoff; ``start`` may be an anchored row's time): those from ``start``
    to ``boundary`` form the reference, the later ones up to the last event the current
    window. Labels of a current cutoff are complete only when ``cutoff + horizon`` is at
    or before the last event (the caller filters: drift needs features only).
    """
    from journey_ml.labels.snapshots import build_snapshots

    if events.empty:
        empty = build_snapshots(events, journey_map, spec, cutoffs=[])
        return empty, empty.copy()
    last = pd.Timestamp(events["timestamp"].max())
    step = pd.Timedelta(days=cadence_days)
    start = to_utc(start)
    boundary = to_utc(boundary)
    first = boundary - (int((boundary - start) // step) if boundary >= start else 0) * step
    count = int((last - first) // step) + 1 if last >= first else 0
    cutoffs = pd.DatetimeIndex([first + i * step for i in range(count)]).as_unit("ns")
    rows = build_snapshots(events, journey_map, spec, cutoffs=cutoffs)
    is_ref = (rows["cutoff"] <= boundary).to_numpy()
    return rows.loc[is_ref].reset_index(drop=True), rows.loc[~is_ref].reset_index(drop=True)



# ---------------------------------------------------------------------------- the report
@dataclass
class DriftReport:
    """Drift of every feature group, score and data-quality item, with what is flagged.

    ``flagged`` names items at :data:`FLAG_AT` or above (feature groups by name, scores as
    ``score:<column>``, and ``event_mix``, ``stage_mix``, ``event_types``, ``reject_share``);
    ``watch`` those in the moderate band. ``psi`` is ``{group: value}``.
    """

    psi: dict[str, float]
    features: dict[str, str]
    scores: dict[str, float]
    quality: dict[str, Any]
    flagged: list[str]
    watch: list[str]
    windows: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    #: Score frames of both windows (for the plots; not serialised).
    reference_scores: pd.DataFrame | None = field(default=None, repr=False)
    current_scores: pd.DataFrame | None = field(default=None, repr=False)

    @property
    def thresholds(self) -> dict[str, Any]:
        """The rules the report was flagged by (recorded with it, so old reports stay readable)."""
        return {
            "statistic": "psi",
            "moderate": PSI_MODERATE,
            "major": PSI_MAJOR,
            "flag_at": FLAG_AT,
            "bins": BINS,
            "epsilon": EPSILON,
            "min_rows": MIN_ROWS,
            "reject_share_rise": REJECT_SHARE_RISE,
            "min_event_type_count": MIN_EVENT_TYPE_COUNT,
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``drift.json``; the score frames are left out)."""
        return {
            "flagged": list(self.flagged),
            "watch": list(self.watch),
            "psi": dict(self.psi),
            "features": dict(self.features),
            "scores": dict(self.scores),
            "quality": self.quality,
            "windows": self.windows,
            "thresholds": self.thresholds,
            "notes": list(self.notes),
        }


def measure_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    champion: Champion,
    *,
    score: Callable[[pd.DataFrame], pd.DataFrame],
    reference_events: pd.DataFrame,
    current_events: pd.DataFrame,
    reject_shares: Mapping[str, Any] | None = None,
) -> DriftReport:
    """Compare two windows of snapshot rows built with ``champion.spec`` and their events.

    Features by group (:func:`feature_drift`), the champion's scores on both windows
    (``score(rows)``, e.g. :func:`journey_ml.registry.scoring.score_features` of the bundle;
    compared by :func:`score_drift`) and data quality (:func:`quality_drift`), flagged by
    the thresholds of :mod:`journey_ml.evaluation.psi` and :mod:`journey_ml.evaluation.quality`.
    Scoring is passed in because the bundle and its scorer sit later in the data flow.
    """
    notes: list[str] = []
    windows = {"reference": window_summary(reference, reference_events), "current": window_summary(current, current_events)}
    stage_names = np.asarray(champion.journey_map.stage_names, dtype=object)
    k = len(stage_names)

    def stages(rows: pd.DataFrame) -> pd.Series:
        return pd.Series(stage_names[np.clip(rows["current_stage"].to_numpy(dtype=np.int64), 0, k - 1)])

    if reference.empty or current.empty:
        side = "reference" if reference.empty else "current"
        notes.append(f"the {side} window has no active customers: drift is not measured")
        return DriftReport({}, {}, {}, {}, [], [], windows, notes)
    groups = feature_drift(reference, current, champion.spec)
    ref_scores = score(reference)
    cur_scores = score(current)
    scores = score_drift(ref_scores, cur_scores)
    quality = quality_drift(reference_events, current_events, stages(reference), stages(current), reject_shares)

    items: dict[str, float] = {g: d["psi"] for g, d in groups.items()}
    items.update({f"score:{c}": v for c, v in scores.items()})
    items["event_mix"] = quality["event_mix"]["psi"]
    items["stage_mix"] = quality["stage_mix"]["psi"]
    enough = min(len(reference), len(current)) >= MIN_ROWS
    if not enough:
        notes.append(
            f"fewer than {MIN_ROWS} rows in a window ({len(reference)} reference, {len(current)} current): "
            "PSI is reported but nothing is flagged"
        )
    finite = {name: v for name, v in items.items() if np.isfinite(v)}
    # With too few rows a major PSI is only worth watching: sampling noise alone can reach it.
    flagged = [name for name, v in finite.items() if enough and v >= FLAG_AT]
    watch = [name for name, v in finite.items() if v >= PSI_MODERATE and name not in flagged]
    types = quality["event_types"]
    if types["flagged_new"] or types["flagged_vanished"]:
        flagged.append("event_types")
    rejects = quality["reject_share"]
    if rejects is not None and rejects["current"] - rejects["reference"] >= REJECT_SHARE_RISE:
        flagged.append("reject_share")
    flagged.sort(key=lambda n: -items.get(n, -np.inf))  # the data-quality rules last
    watch.sort(key=lambda n: -items[n])
    aging = [f"{g} ({groups[g]['feature']})" for g in (*flagged, *watch) if g in groups and _CUMULATIVE.search(groups[g]["feature"])]
    if aging:
        notes.append(
            "driven by cumulative features, which grow as the customer base ages even when behaviour does not "
            f"change: {', '.join(aging)}; compare with the customers' tenure before acting"
        )
    return DriftReport(
        psi={g: d["psi"] for g, d in groups.items()},
        features={g: d["feature"] for g, d in groups.items()},
        scores=scores,
        quality=quality,
        flagged=flagged,
        watch=watch,
        windows=windows,
        notes=notes,
        reference_scores=ref_scores,
        current_scores=cur_scores,
    )


def window_summary(rows: pd.DataFrame, events: pd.DataFrame | None = None) -> dict[str, Any]:
    """What a window of snapshot rows covers: first and last cutoff, cutoffs, rows, and with
    ``events`` their count and time range (the one summary drift, backtest and retrain report)."""
    cut = rows["cutoff"] if "cutoff" in rows.columns else pd.Series([], dtype="datetime64[ns, UTC]")
    out: dict[str, Any] = {
        "first_cutoff": cut.min().isoformat() if len(cut) else None,
        "last_cutoff": cut.max().isoformat() if len(cut) else None,
        "cutoffs": int(cut.nunique()),
        "rows": len(rows),
    }
    if events is not None:
        ts = events["timestamp"]
        out.update(
            events=len(events),
            first_event=ts.min().isoformat() if len(ts) else None,
            last_event=ts.max().isoformat() if len(ts) else None,
        )
    return out
