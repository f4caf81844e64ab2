"""Each friction's amount from the data itself: occurrences against friction-free controls.

The SHAP amount (:mod:`journey_ml.explain.impacts`) is what the models learned, and a model
under-learns a rare friction. Where a friction strikes at random among comparable events
(a checkout error among checkout starts, a late delivery among deliveries), the outcome
after its occurrences against the outcome after friction-free *control* events
(:func:`journey_ml.labels.anchors.anchor_cutoffs`) measures its effect without the model.
The amount estimates what a product team means by fixing the friction: the value gained
over the period if it never happened.

* outcome ``y``: the value (revenue, or conversions) the customer brought from the event
  to the period end;
* the *own effect* of the occurrences: ``Σ_occ (ȳ_controls − y)``, the difference in means
  (the friction strikes at random among its control events, so the controls' mean is the
  occurrences' friction-free outcome). The models' expectation is not used as a baseline:
  they were fitted on this period's outcomes, and at an occurrence's pre-friction state
  their prediction already carries the friction (a delivery that is days overdue, a
  checkout start whose failed sale was a training label), so adjusting on it moves the
  estimate away from the truth, not toward it;
* *reach*: the own effect is measured with the customer's later life as it is, later
  occurrences of the same friction included; fixing the friction removes those too, and
  every fixed occurrence lets the customer live into ``r`` more of them (fewer churn
  after it). ``r`` is the same difference in means on the outcome "later occurrences of
  the friction", and the amount is the own effect times ``1 / (1 − r)``
  (:func:`uplift_from_sums`).

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
from journey_ml.explain.rows import ANCHOR_COLUMN
from journey_ml.explain.shap import Bundle
from journey_ml.labels.anchors import anchor_cutoffs

__all__ = [
    "REACH_BOUNDS",
    "UPLIFT_STATS",
    "UpliftRows",
    "combine_estimates",
    "later_occurrences",
    "outcome_to_end",
    "reach_factor",
    "uplift_from_sums",
    "uplift_parts",
    "uplift_rows",
    "uplift_stats",
]

#: Per-customer sums behind one friction's uplift: controls' count, Σy, Σc; occurrences'
#: (weighted) count, Σy, Σc (``c``: the friction's later occurrences).
UPLIFT_STATS: tuple[str, ...] = ("nc", "yc", "cc", "no", "yo", "co")
#: Bounds of the share of later occurrences a fixed one lets happen (``r``,
#: :func:`uplift_from_sums`): a noisy ``r`` near 1 would blow the amount up.
REACH_BOUNDS: tuple[float, float] = (-0.5, 0.5)
# Fewer controls or occurrences than this in a resample: no uplift for the friction.
_MIN_ROWS = 20
_Z95 = 1.959963984540054


def _between(
    log: EventLog, code: NDArray[np.int64], t: NDArray[np.int64], end: Any,
    positions: NDArray[np.int64], values: NDArray[np.float64],
) -> NDArray[np.float64]:
    """Per row, the sum of ``values`` at the event ``positions`` (sorted) of the row's
    customer in ``(t, end]``."""
    cum = np.concatenate([[0.0], np.cumsum(values, dtype=np.float64)])
    end_ns = np.full(len(t), to_utc(end).value, dtype=np.int64)
    at_t = log.locate(code, np.asarray(t, dtype=np.int64), (0,))
    at_end = log.locate(code, end_ns, (0,))

    # Sum over the positions <= the customer's last event at or before a time.
    def upto(rows: Any) -> NDArray[np.float64]:
        last = np.where(rows.last[0] >= rows.first, rows.last[0], rows.first - 1)
        return cum[np.searchsorted(positions, last, side="right")]

    return upto(at_end) - upto(at_t)


def outcome_to_end(
    log: EventLog, customer_id: Any, t: NDArray[np.int64], end: Any, unit: str
) -> NDArray[np.float64]:
    """Value each customer brought in ``(t, end]``: revenue, or conversions (``unit``)."""
    conv = np.asarray(log.flags["conversion"], dtype=np.int64)
    value = log.conv_value if unit == "revenue" else np.ones(len(conv))
    return _between(log, log.codes_of(pd.Series(customer_id)), t, end, conv, value)


def later_occurrences(
    log: EventLog, customer_id: Any, t: NDArray[np.int64], end: Any, friction: NDArray[np.int64]
) -> NDArray[np.float64]:
    """Per row, how often the row's friction (``friction``: index into the map's frictions)
    struck its customer again in ``(t, end]``."""
    out = np.zeros(len(t))
    code = log.codes_of(pd.Series(customer_id))
    for j in np.unique(friction):
        on = np.flatnonzero(friction == j)
        pos = np.asarray(log.flags[f"friction:{int(j)}"], dtype=np.int64)
        out[on] = _between(log, code[on], np.asarray(t)[on], end, pos, np.ones(len(pos)))
    return out


@dataclass
class UpliftRows:
    """Occurrences and controls of the uplift estimate, one entry per row.

    ``friction`` indexes the map's frictions; ``weight`` is how many occurrences a row
    stands for (1, or more when occurrences were sampled; controls weigh 1); ``y`` the
    value to the period end; ``later`` the friction's later occurrences.
    """

    customer_id: NDArray[Any]
    friction: NDArray[np.int64]
    control: NDArray[np.bool_]
    weight: NDArray[np.float64]
    y: NDArray[np.float64]
    later: NDArray[np.float64]


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
    """Outcomes of ``occurrences`` (rows with ``customer_id``, ``cutoff`` and the ``anchor``
    friction, e.g. :func:`~journey_ml.explain.rows.anchored_features`) and of seeded
    controls drawn in ``(start, end]``: ``controls_per_anchor`` per occurrence of each
    friction; with each row's later occurrences of its friction up to ``end``."""
    spec = bundle.spec
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
    ids = np.concatenate(
        [
            occurrences["customer_id"].astype("str").to_numpy(dtype=object),
            ctrl["customer_id"].astype("str").to_numpy(dtype=object),
        ]
    )
    t = np.concatenate([utc_ns(occurrences["cutoff"]), utc_ns(ctrl["cutoff"])])
    index = {f: j for j, f in enumerate(frictions)}
    names = np.concatenate(
        [occurrences[ANCHOR_COLUMN].astype("str").to_numpy(), ctrl["anchor"].astype("str").to_numpy()]
    )
    friction = np.array([index[a] for a in names], dtype=np.int64)
    n_occ, n_ctrl = len(occurrences), len(ctrl)
    unit = "revenue" if bundle.value_unit == "revenue" else "conversions"
    return UpliftRows(
        customer_id=ids,
        friction=friction,
        control=np.concatenate([np.zeros(n_occ, bool), np.ones(n_ctrl, bool)]),
        weight=np.concatenate([np.asarray(occurrence_weight, dtype=np.float64), np.ones(n_ctrl)]),
        y=outcome_to_end(log, ids, t, end, unit),
        later=later_occurrences(log, ids, t, end, friction),
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
    w, y, later = rows.weight, rows.y, rows.later
    parts = {
        "nc": (c, np.ones_like(y)), "yc": (c, y), "cc": (c, later),
        "no": (o, w), "yo": (o, w * y), "co": (o, w * later),
    }  # fmt: skip
    k = len(UPLIFT_STATS)
    for s, name in enumerate(UPLIFT_STATS):
        mask, values = parts[name]
        for j in range(n_frictions):
            on = mask & (rows.friction == j)
            out[:, j * k + s] = np.bincount(codes[on], weights=values[on], minlength=n_customers)
    return out


def uplift_parts(sums: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """From summed :data:`UPLIFT_STATS` (``(..., F·6)``): the occurrences' own effect
    ``Σ_occ (ȳ_controls − y)`` and their reach ``r = Σ_occ (c̄_controls − c) / n_occ``, the
    later occurrences each one prevents; NaN where a friction has fewer than 20 controls
    or occurrences."""
    k = len(UPLIFT_STATS)
    s = sums.reshape(*sums.shape[:-1], -1, k)
    nc, yc, cc, no, yo, co = (s[..., i] for i in range(k))
    ok = (nc >= _MIN_ROWS) & (no >= _MIN_ROWS)
    with np.errstate(divide="ignore", invalid="ignore"):
        own = no * yc / nc - yo
        reach = (no * cc / nc - co) / no
    return np.where(ok, own, np.nan), np.where(ok, reach, np.nan)


def reach_factor(reach: NDArray[np.float64]) -> NDArray[np.float64]:
    """Occurrences without the friction per occurrence seen, ``1 / (1 − r)``, with ``r``
    (:func:`uplift_parts`) within :data:`REACH_BOUNDS`; 1 where ``r`` is unknown (too few rows)."""
    return np.where(np.isfinite(reach), 1.0 / (1.0 - np.clip(np.nan_to_num(reach), *REACH_BOUNDS)), 1.0)


def uplift_from_sums(sums: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Uplift amounts and the reach factor (:func:`reach_factor`) from summed
    :data:`UPLIFT_STATS`; the amount is NaN where a friction has too few rows.

    Fixing the friction removes the occurrences that happened and the ``r`` per fixed
    occurrence that the customers it kept would then have met: the period's gain is
    the occurrences that would happen without the fix, ``n / (1 − r)``, times the own
    effect of each, ``own / n``.
    """
    own, reach = uplift_parts(sums)
    factor = reach_factor(reach)
    return own * factor, factor


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
