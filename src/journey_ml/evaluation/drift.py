"""Drift between the champion's training window and newer data: features, scores, data quality.

The statistic is the **population stability index** (PSI) of a reference sample ``e``
(the champion's training window) and a current sample ``a`` (the newer data)::

    PSI = Σ_i (a_i - e_i) · ln(a_i / e_i)

over bins ``i``, with ``e_i`` and ``a_i`` the shares of each sample in bin ``i``. It is the
symmetrised Kullback-Leibler divergence ``KL(a‖e) + KL(e‖a)`` of the binned distributions.

Binning (:func:`quantile_edges`, :func:`psi`): a numeric feature is cut at the reference's
``1/B, 2/B, ..., (B-1)/B`` quantiles (``B`` = :data:`BINS`), duplicate edges merged (count
features have a mass at 0), bins closed on the right and open-ended at both sides, so a
current value beyond the reference's range lands in the first or last bin; a missing value
(NaN: "never happened") is a bin of its own. A categorical feature has one bin per category
(:func:`psi_categorical`). A share of 0 is replaced by :data:`EPSILON` so an empty bin gives a
large but finite term.

Thresholds, the usual rule of thumb for PSI from credit-scorecard monitoring (Siddiqi,
*Credit Risk Scorecards*, Wiley 2006; its sampling behaviour under no change is studied in
Yurdakul, *Statistical Properties of Population Stability Index*, PhD thesis, Western
Michigan University 2018, and Yurdakul & Naranjo, *Journal of Risk Model Validation*):
below :data:`PSI_MODERATE` (0.1) no significant change; from 0.1 to :data:`PSI_MAJOR`
(0.25) a moderate change worth watching; 0.25 and above a major shift.
An item is **flagged** at :data:`FLAG_AT` (= the major level) and listed under ``watch`` at
the moderate level. Cumulative features (tenure, lifetime counts) move as a young customer
base ages, which typically stays in the moderate band: that is why flagging waits for 0.25.

What is measured (:func:`measure_drift`):

* per **feature group** — each touchpoint and friction of ``FeatureSpec.feature_groups`` and
  each remaining feature family (activity, rfm, trend, stage, transitions, sessions,
  channel_mix; :func:`feature_groups`) — the largest PSI among the group's features, with
  the feature that drives it;
* on the champion's **scores** (:func:`score_drift`): drop-off risk, expected revenue or
  conversions (when the bundle has a value model) and the predicted next stage (when it has
  a next-stage model);
* **data quality** (:func:`quality_drift`): the event-type mix (PSI), new or vanished event
  types (at least :data:`MIN_EVENT_TYPE_COUNT` occurrences, observed or expected), the stage
  mix of the active customers (PSI) and the share of rejected rows (flagged when it rises by
  :data:`REJECT_SHARE_RISE` or more).

Fewer than :data:`MIN_ROWS` rows on either side: the numbers are reported, nothing is
flagged (the PSI of small samples is dominated by sampling noise).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from journey_ml import features as feats
from journey_ml.features import FeatureSpec

if TYPE_CHECKING:
    from journey_ml.registry.bundle import ModelBundle
    from journey_ml.contract.config import JourneyMap

__all__ = [
    "BINS",
    "EPSILON",
    "FLAG_AT",
    "MIN_EVENT_TYPE_COUNT",
    "MIN_ROWS",
    "PSI_MAJOR",
    "PSI_MODERATE",
    "REJECT_SHARE_RISE",
    "DriftReport",
    "compare_scores",
    "drift_figures",
    "drift_report_html",
    "feature_drift",
    "feature_groups",
    "level",
    "measure_drift",
    "psi",
    "psi_categorical",
    "psi_from_shares",
    "quality_drift",
    "quantile_edges",
    "score_drift",
    "window_rejects",
    "window_rows",
]

#: PSI from which a change is "moderate" (rule of thumb, see the module docstring).
PSI_MODERATE = 0.1
#: PSI from which a change is "major".
PSI_MAJOR = 0.25
#: An item is flagged at this PSI; from :data:`PSI_MODERATE` it is listed under ``watch``.
FLAG_AT = PSI_MAJOR
#: Quantile bins of the reference for a numeric feature.
BINS = 10
#: Share given to an empty bin, so that ``ln(a / e)`` stays finite.
EPSILON = 1e-4
#: Rows needed on each side before anything is flagged.
MIN_ROWS = 100
#: A new event type is flagged from this many occurrences, a vanished one when the
#: reference share predicts at least this many in the current window.
MIN_EVENT_TYPE_COUNT = 20
#: Rise of the rejected-row share (absolute, 0.01 = one percentage point) that is flagged.
REJECT_SHARE_RISE = 0.01

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


# ---------------------------------------------------------------------------- the statistic
def quantile_edges(reference: Any, bins: int = BINS) -> np.ndarray:
    """Interior bin edges: the reference's ``k/bins`` quantiles (``k = 1..bins-1``), deduplicated.

    NaN values are ignored; a reference without any value gives no edge (one bin).
    """
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    values = np.asarray(reference, dtype=np.float64)
    values = values[~np.isnan(values)]
    if not values.size or bins == 1:
        return np.zeros(0)
    return np.unique(np.quantile(values, np.arange(1, bins) / bins))


def _numeric_shares(values: Any, edges: np.ndarray) -> np.ndarray:
    """Shares of ``values`` in the bins ``(-inf, e_1], (e_1, e_2], ..., (e_k, inf)`` and NaN."""
    x = np.asarray(values, dtype=np.float64)
    missing = np.isnan(x)
    idx = np.searchsorted(edges, x[~missing], side="left")
    counts = np.bincount(idx, minlength=len(edges) + 1).astype(np.float64)
    counts = np.append(counts, missing.sum())
    return counts / max(x.size, 1)


def psi_from_shares(expected: Any, actual: Any, eps: float = EPSILON) -> float:
    """PSI of two share vectors over the same bins; shares of 0 become ``eps``."""
    e = np.maximum(np.asarray(expected, dtype=np.float64), eps)
    a = np.maximum(np.asarray(actual, dtype=np.float64), eps)
    if e.shape != a.shape:
        raise ValueError(f"share vectors differ in shape: {e.shape} vs {a.shape}")
    return float(np.sum((a - e) * np.log(a / e)))


def psi(reference: Any, current: Any, *, bins: int = BINS, eps: float = EPSILON) -> float:
    """PSI of a numeric variable on the reference's quantile bins (NaN: its own bin).

    NaN when either sample is empty.

    Examples
    --------
    >>> round(psi(np.arange(1000), np.arange(1000)), 6)
    0.0
    >>> psi(np.arange(1000), np.arange(1000) + 300) > PSI_MAJOR
    True
    """
    ref = np.asarray(reference, dtype=np.float64)
    cur = np.asarray(current, dtype=np.float64)
    if not ref.size or not cur.size:
        return float("nan")
    edges = quantile_edges(ref, bins)
    return psi_from_shares(_numeric_shares(ref, edges), _numeric_shares(cur, edges), eps)


def _category_shares(values: Any, categories: Sequence[Any]) -> np.ndarray:
    s = pd.Series(np.asarray(values, dtype=object))
    missing = s.isna().to_numpy()
    counts = s[~missing].map(str).value_counts()
    out = np.array([counts.get(c, 0) for c in categories] + [missing.sum()], dtype=np.float64)
    return out / max(len(s), 1)


def psi_categorical(reference: Any, current: Any, *, eps: float = EPSILON) -> float:
    """PSI of a categorical variable: one bin per category seen on either side, plus missing.

    NaN when either sample is empty.
    """
    ref = pd.Series(np.asarray(reference, dtype=object))
    cur = pd.Series(np.asarray(current, dtype=object))
    if not len(ref) or not len(cur):
        return float("nan")
    categories = sorted(set(ref.dropna().map(str)) | set(cur.dropna().map(str)))
    return psi_from_shares(_category_shares(ref, categories), _category_shares(cur, categories), eps)


def level(value: float) -> str:
    """``none``, ``moderate`` or ``major`` by the thresholds (``unknown`` for NaN)."""
    if not np.isfinite(value):
        return "unknown"
    if value >= PSI_MAJOR:
        return "major"
    return "moderate" if value >= PSI_MODERATE else "none"


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
    :func:`journey_ml.pipeline.scoring.score_features`): drop-off risk, expected revenue or
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


def _shares(values: pd.Series) -> dict[str, float]:
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
    start = _utc(start)
    boundary = _utc(boundary)
    first = boundary - (int((boundary - start) // step) if boundary >= start else 0) * step
    count = int((last - first) // step) + 1 if last >= first else 0
    cutoffs = pd.DatetimeIndex([first + i * step for i in range(count)]).as_unit("ns")
    rows = build_snapshots(events, journey_map, spec, cutoffs=cutoffs)
    is_ref = (rows["cutoff"] <= boundary).to_numpy()
    return rows.loc[is_ref].reset_index(drop=True), rows.loc[~is_ref].reset_index(drop=True)


def _utc(value: Any) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


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
    bundle: ModelBundle,
    *,
    reference_events: pd.DataFrame,
    current_events: pd.DataFrame,
    reject_shares: Mapping[str, Any] | None = None,
) -> DriftReport:
    """Compare two windows of snapshot rows built with ``bundle.spec`` and their events.

    Features by group (:func:`feature_drift`), the bundle's scores on both windows
    (:func:`score_drift`) and data quality (:func:`quality_drift`), flagged by the
    module's thresholds.
    """
    from journey_ml.pipeline.scoring import score_features

    notes: list[str] = []
    windows = {"reference": _window(reference, reference_events), "current": _window(current, current_events)}
    stage_names = np.asarray(bundle.journey_map.stage_names, dtype=object)
    k = len(stage_names)

    def stages(rows: pd.DataFrame) -> pd.Series:
        return pd.Series(stage_names[np.clip(rows["current_stage"].to_numpy(dtype=np.int64), 0, k - 1)])

    if reference.empty or current.empty:
        side = "reference" if reference.empty else "current"
        notes.append(f"the {side} window has no active customers: drift is not measured")
        return DriftReport({}, {}, {}, {}, [], [], windows, notes)
    groups = feature_drift(reference, current, bundle.spec)
    ref_scores = score_features(reference, bundle)
    cur_scores = score_features(current, bundle)
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


def _window(rows: pd.DataFrame, events: pd.DataFrame) -> dict[str, Any]:
    cut = rows["cutoff"] if "cutoff" in rows.columns else pd.Series([], dtype="datetime64[ns, UTC]")
    ts = events["timestamp"]
    return {
        "first_cutoff": cut.min().isoformat() if len(cut) else None,
        "last_cutoff": cut.max().isoformat() if len(cut) else None,
        "cutoffs": int(cut.nunique()),
        "rows": len(rows),
        "events": len(events),
        "first_event": ts.min().isoformat() if len(ts) else None,
        "last_event": ts.max().isoformat() if len(ts) else None,
    }


# ---------------------------------------------------------------------------- plots and HTML
def drift_figures(report: DriftReport) -> dict[str, Any]:
    """Matplotlib figures by artifact name: PSI per item, score distributions, event and stage mix."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures: dict[str, Any] = {}
    items = {**report.psi, **{f"score:{k}": v for k, v in report.scores.items()}}
    if report.quality:
        items["event_mix"] = report.quality["event_mix"]["psi"]
        items["stage_mix"] = report.quality["stage_mix"]["psi"]
    if items:
        names = sorted(items, key=lambda n: items[n])[-25:]
        values = np.array([items[n] for n in names])
        fig, ax = plt.subplots(figsize=(8, 0.32 * len(names) + 1.4))
        colors = np.where(values >= PSI_MAJOR, "#c0392b", np.where(values >= PSI_MODERATE, "#e6a23c", "#3b6fd8"))
        ax.barh(np.arange(len(names)), values, color=colors)
        ax.set_yticks(np.arange(len(names)), names, fontsize=8)
        for x, style in ((PSI_MODERATE, ":"), (PSI_MAJOR, "--")):
            ax.axvline(x, color="#333", ls=style, lw=0.9)
        ax.set_xlabel(f"PSI (moderate ≥ {PSI_MODERATE}, major ≥ {PSI_MAJOR})")
        ax.set_title("Drift: champion's training window vs newer data")
        fig.tight_layout()
        figures["psi.png"] = fig
    ref, cur = report.reference_scores, report.current_scores
    if ref is not None and cur is not None:
        cols = [c for c in report.scores if c != "next_stage"]
        if cols:
            fig, axes = plt.subplots(1, len(cols), figsize=(5 * len(cols), 3.4), squeeze=False)
            for ax, col in zip(axes[0], cols, strict=True):
                a = ref[col].to_numpy(dtype=np.float64, na_value=np.nan)
                b = cur[col].to_numpy(dtype=np.float64, na_value=np.nan)
                both = np.concatenate([a[np.isfinite(a)], b[np.isfinite(b)]])
                edges = np.histogram_bin_edges(both, bins=30) if both.size else 10
                ax.hist(a[np.isfinite(a)], bins=edges, density=True, alpha=0.55, label="reference", color="#3b6fd8")
                ax.hist(b[np.isfinite(b)], bins=edges, density=True, alpha=0.55, label="current", color="#c0392b")
                ax.set_title(f"{col} (PSI {report.scores[col]:.3f})")
                ax.legend()
            fig.tight_layout()
            figures["scores.png"] = fig
    for key, title, column in (("stage_mix", "Stage mix of active customers", None), ("event_mix", "Event-type mix", "event_type")):
        if not report.quality:
            continue
        if column is None:
            ref_s, cur_s = report.quality[key]["reference"], report.quality[key]["current"]
        else:
            changes = report.quality[key]["largest_changes"]
            ref_s = {c["event_type"]: c["reference_share"] for c in changes}
            cur_s = {c["event_type"]: c["current_share"] for c in changes}
        labels = sorted(set(ref_s) | set(cur_s))
        x = np.arange(len(labels))
        fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(labels) + 2), 3.4))
        ax.bar(x - 0.2, [ref_s.get(s, 0.0) for s in labels], width=0.4, label="reference", color="#3b6fd8")
        ax.bar(x + 0.2, [cur_s.get(s, 0.0) for s in labels], width=0.4, label="current", color="#c0392b")
        ax.set_xticks(x, labels, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel("share")
        suffix = " (largest changes)" if column else ""
        ax.set_title(f"{title}{suffix}, PSI {report.quality[key]['psi']:.3f}")
        ax.legend()
        fig.tight_layout()
        figures[f"{key}.png"] = fig
    return figures


def drift_report_html(report: DriftReport, figures: Mapping[str, Any] | None = None) -> str:
    """A self-contained HTML drift report (inline PNGs, no script); figures are closed."""
    import html

    from journey_ml.report import figure_to_data_uri

    figures = drift_figures(report) if figures is None else figures
    rows = [
        {"item": name, "psi": value, "level": level(value), "driven by": report.features.get(name, "")}
        for name, value in {**report.psi, **{f"score:{k}": v for k, v in report.scores.items()}}.items()
    ]
    table = pd.DataFrame(rows, columns=["item", "psi", "level", "driven by"]).sort_values("psi", ascending=False)
    flagged = ", ".join(report.flagged) or "nothing"
    watch = ", ".join(report.watch) or "nothing"
    quality = report.quality
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>journey-ml drift report</title>",
        "<style>body{font-family:Helvetica,Arial,sans-serif;max-width:1000px;margin:2rem auto;padding:0 1rem;color:#1d2330}"
        "table{border-collapse:collapse;font-size:.9rem}td,th{padding:.3rem .6rem;border-bottom:1px solid #e6e8ef}"
        "img{max-width:100%}</style></head><body>",
        "<h1>Drift report</h1>",
        f"<p>Reference: {html.escape(str(report.windows.get('reference')))}<br>"
        f"Current: {html.escape(str(report.windows.get('current')))}</p>",
        f"<p><b>Flagged</b> (PSI ≥ {FLAG_AT}, or a data-quality rule): {html.escape(flagged)}<br>"
        f"<b>Watch</b> (PSI {PSI_MODERATE}–{PSI_MAJOR}): {html.escape(watch)}</p>",
    ]
    parts += [f"<p class='note'>{html.escape(n)}</p>" for n in report.notes]
    for name, fig in figures.items():
        parts.append(f"<h2>{html.escape(name.removesuffix('.png'))}</h2><img src='{figure_to_data_uri(fig)}'>")
    parts.append("<h2>PSI per feature group and score</h2>")
    parts.append(table.to_html(index=False, float_format=lambda v: f"{v:.4f}", border=0))
    if quality:
        parts.append("<h2>Data quality</h2><pre>")
        parts.append(html.escape(_quality_text(quality)))
        parts.append("</pre>")
    parts.append("</body></html>")
    return "".join(parts)


def _quality_text(quality: Mapping[str, Any]) -> str:
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
