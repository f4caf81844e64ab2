"""Each friction's amount from the data itself: occurrences against matched friction-free controls.

The SHAP amount (:mod:`journey_ml.explain.impacts`) is what the models learned, and a model
under-learns a rare friction. Where a friction strikes at random among comparable events
(a checkout error among checkout starts, a late delivery among deliveries), the outcome
after its occurrences against the outcome after friction-free *control* events
(:func:`journey_ml.labels.anchors.anchor_cutoffs`) measures its effect without the model:

* outcome ``y``: the value (revenue, or conversions) the customer brought from the event
  to the period end -- what the true gain of fixing the friction is counted in;
* baseline ``g``: the models' expectation over the same span,
  ``E[rev] + E[rev]/(1 - p) · (A − 1)`` (:func:`annuity`), from what precedes the friction
  only (a covariate it cannot change): the state at a pure friction event's preceding
  event (a checkout start) against a control event's own row; the state just before a
  measured friction's event (a support contact) and just before its control's;
* per friction, ``y ≈ a + b·g`` fitted on the controls (regression adjustment: it removes
  the differences in customers and time left that ``g`` sees, and it corrects ``g``'s bias);
  the *uplift* amount is ``Σ_occurrences (a + b·g − y)``, the value fixing them brings back.

Customers are resampled (all their rows together) for the uplift's standard error, with
the same resamples as the SHAP amount's, and the two are combined
(:func:`combine_estimates`): the SHAP amount stays where the uplift agrees with it within
noise; where they differ by more than noise explains, the estimate moves to the uplift;
the interval spans both amounts' intervals.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from journey_ml.contract.time import to_utc, utc_ns
from journey_ml.eventlog import EventLog
from journey_ml.explain.rows import ANCHOR_COLUMN, BEFORE_PREFIX
from journey_ml.explain.shap import Bundle, drop_probability, expected_revenue
from journey_ml.features import compute_rows
from journey_ml.labels.anchors import anchor_cutoffs

__all__ = [
    "UPLIFT_STATS",
    "UpliftRows",
    "annuity",
    "combine_estimates",
    "friction_free_value",
    "outcome_to_end",
    "uplift_from_sums",
    "uplift_rows",
    "uplift_stats",
]

#: Per-customer sums behind one friction's uplift: controls' count, Σg, Σy, Σg², Σgy;
#: occurrences' (weighted) count, Σg, Σy.
UPLIFT_STATS: tuple[str, ...] = ("nc", "gc", "yc", "ggc", "gyc", "no", "go", "yo")
# Fewer controls or occurrences than this in a resample: no uplift for the friction.
_MIN_ROWS = 20
_Z95 = 1.959963984540054


def annuity(
    features: pd.DataFrame,
    rows: NDArray[np.int64],
    p_drop: NDArray[np.float64],
    horizon_days: float,
    period_end: Any,
) -> NDArray[np.float64]:
    """Expected number of horizons a customer retained at the row's cutoff stays, to the period end.

    With the customer's current per-horizon drop-off risk ``p`` held constant and
    ``K = max(remaining days / H, 1)`` horizons left: ``Σ_{k<K} (1 − p)^k = (1 − (1 − p)^K) / p``.
    """
    cut = (
        pd.DatetimeIndex(features["cutoff"].to_numpy()[rows])
        if "cutoff" in features.columns
        else None
    )
    if cut is None or not len(rows):
        return np.ones(len(rows))
    end = (
        pd.Timestamp(period_end)
        if period_end is not None
        else pd.Timestamp(features["cutoff"].max())
    )
    end = to_utc(end)
    remaining = np.asarray((end - cut) / pd.Timedelta(days=1), dtype=np.float64)
    horizons = np.maximum(remaining / float(horizon_days), 1.0)
    p = np.clip(p_drop, 1e-6, 1.0)
    return (1.0 - (1.0 - p) ** horizons) / p


def _raw(model: Any, X: NDArray[np.float64], names: list[str]) -> NDArray[np.float64]:
    if not len(X):
        return np.zeros(0)
    frame = pd.DataFrame(X, columns=pd.Index(names, dtype=object))
    return np.asarray(model.predict_raw(frame), dtype=np.float64)


def friction_free_value(
    bundle: Bundle, X: NDArray[np.float64], cutoffs: pd.DataFrame, period_end: Any
) -> NDArray[np.float64]:
    """The models' expected value from each row's cutoff to the period end (``g``, module docstring)."""
    names = bundle.spec.feature_names
    p = np.clip(drop_probability(bundle.drop_off, _raw(bundle.drop_off, X, names)), 0.0, 1.0 - 1e-6)
    assert bundle.revenue is not None
    rev = expected_revenue(bundle.revenue, _raw(bundle.revenue, X, names))
    ann = annuity(cutoffs, np.arange(len(X)), p, bundle.journey_map.horizon_days, period_end)
    return rev + rev / (1.0 - p) * (ann - 1.0)


def outcome_to_end(
    log: EventLog, customer_id: Any, t: NDArray[np.int64], end: Any, unit: str
) -> NDArray[np.float64]:
    """Value each customer brought in ``(t, end]``: revenue, or conversions (``unit``)."""
    conv = np.asarray(log.flags["conversion"], dtype=np.int64)
    value = log.conv_value if unit == "revenue" else np.ones(len(conv))
    cum = np.concatenate([[0.0], np.cumsum(value, dtype=np.float64)])
    code = log.codes_of(pd.Series(customer_id))
    end_ns = np.full(len(t), to_utc(end).value, dtype=np.int64)
    at_t = log.locate(code, np.asarray(t, dtype=np.int64), (0,))
    at_end = log.locate(code, end_ns, (0,))

    # Value of the conversions at positions <= the customer's last event at or before a time.
    def upto(rows: Any) -> NDArray[np.float64]:
        last = np.where(rows.last[0] >= rows.first, rows.last[0], rows.first - 1)
        return cum[np.searchsorted(conv, last, side="right")]

    return upto(at_end) - upto(at_t)


@dataclass
class UpliftRows:
    """Occurrences and controls of the uplift estimate, one entry per row.

    ``friction`` indexes the map's frictions; ``weight`` is how many occurrences a row
    stands for (1, or more when occurrences were sampled; controls weigh 1).
    """

    customer_id: NDArray[Any]
    friction: NDArray[np.int64]
    control: NDArray[np.bool_]
    weight: NDArray[np.float64]
    y: NDArray[np.float64]
    g: NDArray[np.float64]


def uplift_rows(
    events: pd.DataFrame | EventLog,
    bundle: Bundle,
    occurrences: pd.DataFrame,
    occurrence_weight: NDArray[np.float64],
    *,
    start: Any = None,
    end: Any,
    controls_per_anchor: float = 2.0,
    seed: int = 0,
) -> UpliftRows:
    """Outcomes and baselines of ``occurrences`` (anchored rows with ``before:`` columns,
    :func:`~journey_ml.explain.rows.anchored_features`) and of seeded controls drawn in
    ``(start, end]``: ``controls_per_anchor`` per occurrence of each friction."""
    spec = bundle.spec
    names = spec.feature_names
    frictions = [f.name for f in spec.journey_map.friction]
    log = events if isinstance(events, EventLog) else EventLog.build(events, spec)
    anchors = anchor_cutoffs(
        log,
        spec.journey_map,
        start=start,
        end=end,
        controls_per_anchor=controls_per_anchor,
        seed=seed,
    )
    ctrl = anchors.loc[anchors["is_control"].to_numpy(dtype=bool)].reset_index(drop=True)
    ctrl = ctrl.loc[_clean_controls(log, ctrl, frictions)].reset_index(drop=True)
    ctrl_ids = ctrl["customer_id"].astype("str").array
    ctrl_t = utc_ns(ctrl["cutoff"])
    occ_ids = occurrences["customer_id"].astype("str").to_numpy()
    occ_t = utc_ns(occurrences["cutoff"])
    # The baseline sees only what precedes the friction (a covariate it cannot change):
    # a pure friction event's preceding event (the ``before:`` row) against the control
    # event's own row; a measured friction's event (a support contact) and its control
    # both just before the event.
    pure = [
        f.name for f in spec.journey_map.friction if f.column is None and f.event_type is not None
    ]
    c_pure = np.isin(ctrl["anchor"].astype("str").to_numpy(), pure)
    o_pure = np.isin(occurrences[ANCHOR_COLUMN].astype("str").to_numpy(), pure)
    Xc = compute_rows(log, spec, ctrl_ids, np.where(c_pure, ctrl_t, ctrl_t - 1))[names]
    Xc = Xc.to_numpy(dtype=np.float64, na_value=np.nan)
    Xo = occurrences[[BEFORE_PREFIX + c for c in names]].to_numpy(dtype=np.float64, na_value=np.nan)
    measured = np.flatnonzero(~o_pure)
    if len(measured):
        prior = compute_rows(log, spec, occ_ids[measured], occ_t[measured] - 1)[names]
        Xo[measured] = prior.to_numpy(dtype=np.float64, na_value=np.nan)
    g_c = friction_free_value(bundle, Xc, ctrl[["cutoff"]], end)
    g_o = friction_free_value(bundle, Xo, occurrences[["cutoff"]], end)
    unit = "revenue" if bundle.value_unit == "revenue" else "conversions"
    y_o = outcome_to_end(log, occ_ids, occ_t, end, unit)
    y_c = outcome_to_end(log, np.asarray(ctrl_ids, dtype=object), ctrl_t, end, unit)
    index = {f: j for j, f in enumerate(frictions)}
    f_o = np.array([index[a] for a in occurrences[ANCHOR_COLUMN].astype("str")], dtype=np.int64)
    f_c = np.array([index[a] for a in ctrl["anchor"].astype("str")], dtype=np.int64)
    return UpliftRows(
        customer_id=np.concatenate([occ_ids, np.asarray(ctrl_ids, dtype=object)]),
        friction=np.concatenate([f_o, f_c]),
        control=np.concatenate([np.zeros(len(f_o), bool), np.ones(len(f_c), bool)]),
        weight=np.concatenate([np.asarray(occurrence_weight, dtype=np.float64), np.ones(len(f_c))]),
        y=np.concatenate([y_o, y_c]),
        g=np.concatenate([g_o, g_c]),
    )


def _clean_controls(log: EventLog, ctrl: pd.DataFrame, frictions: list[str]) -> NDArray[np.bool_]:
    """Controls of a pure friction event that its friction neither follows nor precedes.

    A checkout start that an error follows is the error's own preceding event, and a
    checkout start after an error (the retry) is already past it: neither is friction-free.
    (Training controls must not look ahead; an uplift over a closed period may.)
    """
    keep = np.ones(len(ctrl), dtype=bool)
    if not len(ctrl):
        return keep
    pos = log.locate(
        log.codes_of(ctrl["customer_id"].astype("str")), utc_ns(ctrl["cutoff"]), (0,)
    ).last[0]
    anchor = ctrl["anchor"].astype("str").to_numpy()
    for j, fr in enumerate(log.journey_map.friction):
        if fr.column is not None or fr.event_type is None:
            continue
        on = np.flatnonzero(anchor == frictions[j])
        occ = np.zeros(log.n + 2, dtype=bool)
        occ[np.asarray(log.flags[f"friction:{j}"], dtype=np.int64) + 1] = True  # shifted by one
        p = pos[on]
        same_next = (p + 1 < log.n) & (
            np.searchsorted(log.start, p + 1, side="right")
            == np.searchsorted(log.start, p, side="right")
        )
        same_prev = (p >= 1) & (
            np.searchsorted(log.start, p - 1, side="right")
            == np.searchsorted(log.start, p, side="right")
        )
        keep[on] = ~((occ[p + 2] & same_next) | (occ[np.maximum(p, 0)] & same_prev))
    return keep


def uplift_stats(
    rows: UpliftRows, codes: NDArray[np.int64], n_customers: int, n_frictions: int
) -> NDArray[np.float64]:
    """(customers, frictions x :data:`UPLIFT_STATS`) per-customer sums (``codes``: customer codes of the rows)."""
    out = np.zeros((n_customers, n_frictions * len(UPLIFT_STATS)))
    c, o = rows.control, ~rows.control
    w, g, y = rows.weight, rows.g, rows.y
    parts = {
        "nc": (c, np.ones_like(g)), "gc": (c, g), "yc": (c, y), "ggc": (c, g * g), "gyc": (c, g * y),
        "no": (o, w), "go": (o, w * g), "yo": (o, w * y),
    }  # fmt: skip
    k = len(UPLIFT_STATS)
    for s, name in enumerate(UPLIFT_STATS):
        mask, values = parts[name]
        for j in range(n_frictions):
            on = mask & (rows.friction == j)
            out[:, j * k + s] = np.bincount(codes[on], weights=values[on], minlength=n_customers)
    return out


def uplift_from_sums(sums: NDArray[np.float64]) -> NDArray[np.float64]:
    """Uplift amounts ``Σ_occ (a + b·g − y)`` from summed :data:`UPLIFT_STATS` (``(..., F·8)``);
    NaN where a friction has fewer than 20 controls or occurrences."""
    k = len(UPLIFT_STATS)
    s = sums.reshape(*sums.shape[:-1], -1, k)
    nc, gc, yc, ggc, gyc, no, go, yo = (s[..., i] for i in range(k))
    with np.errstate(divide="ignore", invalid="ignore"):
        sxx = ggc - gc * gc / nc
        sxy = gyc - gc * yc / nc
        b = np.where(sxx > 1e-12 * np.maximum(ggc, 1e-300), sxy / sxx, 0.0)
        a = (yc - b * gc) / nc
        out = no * a + b * go - yo
    return np.where((nc >= _MIN_ROWS) & (no >= _MIN_ROWS), out, np.nan)


def combine_estimates(
    shap: NDArray[np.float64],
    shap_sd: NDArray[np.float64],
    shap_interval: tuple[NDArray[np.float64], NDArray[np.float64]],
    uplift: NDArray[np.float64],
    uplift_sd: NDArray[np.float64],
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """The amount and 95% interval of each friction from its SHAP and uplift amounts.

    The uplift is shrunk toward the SHAP amount by its standard error: ``S + w (U − S)``,
    ``w = max(0, 1 − 1.96² (sd_U² + sd_S²) / (U − S)²)``, so the SHAP amount stays unless
    the data contradict it beyond their 95% noise band, and moves by the part beyond it. The interval spans the SHAP amount's
    resampling interval and the uplift's ``U ± 1.96 sd_U``: the uplift's holds whatever the
    models learned (the friction strikes at random among its controls), the SHAP one
    holds when the models learned the friction fully, and no data tell which is the case
    when the two agree within noise. Without an uplift: the SHAP amount and its interval.
    """
    ok = np.isfinite(uplift) & np.isfinite(uplift_sd)
    u = np.where(ok, uplift, shap)
    sd_u = np.where(ok, uplift_sd, 0.0)
    gap2 = (u - shap) ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.where(gap2 > 0, np.maximum(0.0, 1.0 - _Z95**2 * (sd_u**2 + shap_sd**2) / gap2), 0.0)
    est = shap + w * (u - shap)
    low = np.minimum(shap_interval[0], np.where(ok, u - _Z95 * sd_u, np.inf))
    high = np.maximum(shap_interval[1], np.where(ok, u + _Z95 * sd_u, -np.inf))
    return est, np.minimum(low, est), np.maximum(high, est)
