"""Per-customer reason codes: the feature groups that raise a customer's drop-off risk.

Each reason is a group of drop-off SHAP (:func:`journey_ml.explain.shap.reason_groups`)
turned into probability points on the customer's own base through the model's
calibration, and phrased from the customer's feature values.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from journey_ml.explain.impacts import scoring_time
from journey_ml.explain.shap import Bundle, drop_probability, group_shap, reason_groups, tree_shap
from journey_ml.features import FeatureSpec, features_at

__all__ = ["add_reason_codes", "reason_codes", "reasons_from_shap"]


def _plural(n: float, word: str) -> str:
    k = round(float(n))
    return f"{k} {word}" + ("" if k == 1 else "s")


def _friction_phrase(fr_name: str, cols: list[str], row: dict[str, float]) -> str:
    label = fr_name.replace("_", " ")
    for w in (7, 30, 90):
        c = next((x for x in cols if x.endswith(f"_count_{w}d")), None)
        if c is not None and row.get(c, 0.0) > 0:
            return f"{_plural(row[c], label)} in the last {w} days"
    c = next((x for x in cols if x.endswith("_count_total")), None)
    if c is not None and row.get(c, 0.0) > 0:
        return f"{_plural(row[c], label)} so far"
    return f"no {label} so far"


def _touchpoint_phrase(name: str, cols: list[str], row: dict[str, float]) -> str:
    label = name.replace("_", " ").replace(":", " via ")
    for w in (7, 30, 90):
        c = next((x for x in cols if x.endswith(f"_count_{w}d")), None)
        if c is not None and row.get(c, 0.0) > 0:
            return f"{_plural(row[c], label + ' event')} in the last {w} days"
    return f"no {label} in the last 90 days"


def _phrase(group: str, cols: list[str], row: dict[str, float], spec: FeatureSpec) -> str:
    if group in spec.friction_features:
        return _friction_phrase(group, cols, row)
    if group in spec.feature_groups:
        return _touchpoint_phrase(group, cols, row)
    if group == "recent activity" and "recency_days" in row and np.isfinite(row["recency_days"]):
        return f"last active {row['recency_days']:.0f} days ago"
    if group == "journey stage" and "current_stage" in row:
        names = spec.journey_map.stage_names
        s = int(row["current_stage"])
        return f"still at the {names[s]} stage" if 0 <= s < len(names) else "no stage reached yet"
    return f"{group} pattern"


def reason_codes(
    features: pd.DataFrame, bundle: Bundle, top: int = 3
) -> list[list[dict[str, Any]]]:
    """Top reasons for each feature row's drop-off risk, in probability points.

    Per row, at most ``top`` groups that *raise* the risk, as ``{"touchpoint", "points",
    "text"}`` sorted by ``points`` descending; ``points`` = 100 × (p_drop − p_drop with the
    group's SHAP removed), on the customer's own base through the model's calibration.
    """
    if top < 1:
        raise ValueError(f"top must be >= 1, got {top}")
    Xa = features[bundle.spec.feature_names].to_numpy(dtype=np.float64, na_value=np.nan)
    if not len(Xa):
        return []
    return reasons_from_shap(Xa, tree_shap(bundle.drop_off, Xa), bundle, top)


def reasons_from_shap(
    Xa: np.ndarray, phi: np.ndarray, bundle: Bundle, top: int = 3, groups: dict[str, list[str]] | None = None
) -> list[list[dict[str, Any]]]:
    """:func:`reason_codes` of a float64 feature matrix (``spec.feature_names`` order) and
    its drop-off TreeSHAP ``phi`` (:func:`~journey_ml.explain.shap.tree_shap`); the online
    scorer computes both without a frame and passes the spec's ``reason_groups`` it keeps."""
    spec = bundle.spec
    names = spec.feature_names
    m = phi.sum(axis=1)
    groups = reason_groups(spec) if groups is None else groups
    gphi = group_shap(phi, groups, names)
    p = drop_probability(bundle.drop_off, m)
    # Points per group: only computed for each row's top-k positive groups.
    k = min(top, gphi.shape[1])
    order = np.argsort(-gphi, axis=1, kind="stable")[:, :k]
    top_phi = np.take_along_axis(gphi, order, axis=1)
    without = drop_probability(bundle.drop_off, (m[:, None] - top_phi).ravel()).reshape(
        top_phi.shape
    )
    points = 100.0 * (p[:, None] - without)
    keep = (top_phi > 0) & (points >= 0.05)
    gnames = list(groups)
    gcols = list(groups.values())
    out: list[list[dict[str, Any]]] = [[] for _ in range(len(Xa))]
    col_pos = {c: i for i, c in enumerate(names)}
    extra = [c for c in ("recency_days", "current_stage") if c in col_pos]
    for i in np.flatnonzero(keep.any(axis=1)):
        reasons = []
        for slot in range(k):
            if not keep[i, slot]:
                continue
            g = int(order[i, slot])
            cols = gcols[g]
            row = {c: Xa[i, col_pos[c]] for c in [*cols, *extra]}
            pts = float(points[i, slot])
            amount = f"{pts:.0f}" if pts >= 1 else f"{pts:.1f}"
            text = f"{_phrase(gnames[g], cols, row, spec)}: +{amount} points of drop-off risk"
            reasons.append({"touchpoint": gnames[g], "points": round(pts, 2), "text": text})
        out[i] = reasons
    return out


def add_reason_codes(
    scores: pd.DataFrame, events: pd.DataFrame, bundle: Bundle, at: Any = None, *, top: int = 3
) -> pd.DataFrame:
    """``scores`` with a ``reasons`` column: each customer's reason texts joined by ``"; "``.

    A joined string (not a list) so the column survives CSV as well as Parquet unchanged.

    Parameters
    ----------
    scores : DataFrame
        Output of :func:`journey_ml.registry.scoring.score` (needs ``customer_id``).
    events : DataFrame
        The canonical events the scores came from.
    bundle : Bundle
    at : timestamp-like, optional
        The scoring time used for ``scores`` (default: the latest event).
    top : int, default 3

    Returns
    -------
    DataFrame
        A copy of ``scores`` with ``reasons`` (empty string when nothing raises the risk).
    """
    out = scores.copy()
    if out.empty:
        out["reasons"] = pd.Series([], dtype="str")
        return out
    features = features_at(events, bundle.spec, scoring_time(events, at))
    codes = reason_codes(features, bundle, top=top)
    texts = pd.Series(
        ["; ".join(r["text"] for r in rs) for rs in codes], index=features["customer_id"].to_numpy()
    )
    texts = texts[~texts.index.duplicated()]
    out["reasons"] = out["customer_id"].astype("str").map(texts).fillna("").astype("str").to_numpy()
    return out
