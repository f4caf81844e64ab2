"""Snapshot cutoffs and the split by cutoff time.

Cutoffs come on a regular cadence, each with a complete label window ``(t, t + H]``
(:func:`make_cutoffs`). Splitting is by cutoff time, never by random rows, with an
embargo so that no training label window reaches into the validation period, and no
validation one into the test period (:func:`split_by_cutoff`).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from journey_ml.contract import JourneyMap
from journey_ml.contract.time import to_utc
from journey_ml.exceptions import ConfigError

__all__ = ["Split", "make_cutoffs", "split_by_cutoff"]


def make_cutoffs(
    events: pd.DataFrame,
    journey_map: JourneyMap,
    cadence_days: float = 7,
    start: Any = None,
    end: Any = None,
    *,
    min_history_days: float = 28,
) -> pd.DatetimeIndex:
    """Cutoff times on a regular cadence, each with a complete label window.

    Parameters
    ----------
    events : DataFrame
        Canonical events.
    journey_map : JourneyMap
        Gives the horizon ``H``.
    cadence_days : float, default 7
        Days between cutoffs (weekly by default).
    start : timestamp-like, optional
        First cutoff; default: first event + ``min_history_days``, rounded up to midnight UTC.
    end : timestamp-like, optional
        Latest allowed cutoff; default and upper bound: last event time - ``H``, so
        that every label window ``(t, t + H]`` is fully observed.
    min_history_days : float, default 28
        History required before the first default cutoff.

    Returns
    -------
    DatetimeIndex
        UTC cutoffs, ascending (empty when the data span is too short).
    """
    if cadence_days <= 0:
        raise ConfigError(f"must be > 0, got {cadence_days}", key="cadence_days")
    if events.empty:
        return pd.DatetimeIndex([], tz="UTC")
    ts = pd.DatetimeIndex(events["timestamp"]).tz_convert("UTC")
    horizon = pd.Timedelta(days=journey_map.horizon_days)
    first = (
        (ts.min() + pd.Timedelta(days=min_history_days)).ceil("D")
        if start is None
        else to_utc(start)
    )
    last = ts.max() - horizon
    if end is not None:
        last = min(last, to_utc(end))
    if first > last:
        return pd.DatetimeIndex([], tz="UTC")
    step = pd.Timedelta(days=cadence_days)
    count = int((last - first) // step) + 1
    return pd.DatetimeIndex([first + i * step for i in range(count)]).as_unit("ns")


class Split(tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]):
    """``(train, valid, test)`` snapshot rows; ``.embargoed`` holds the cutoffs left out.

    Unpacks as a 3-tuple: ``train, valid, test = split_by_cutoff(...)``.
    """

    embargoed: pd.DatetimeIndex

    def __new__(
        cls, train: pd.DataFrame, valid: pd.DataFrame, test: pd.DataFrame, embargoed: pd.DatetimeIndex
    ) -> Split:
        obj = super().__new__(cls, (train, valid, test))
        obj.embargoed = embargoed
        return obj

    @property
    def train(self) -> pd.DataFrame:
        return self[0]

    @property
    def valid(self) -> pd.DataFrame:
        return self[1]

    @property
    def test(self) -> pd.DataFrame:
        return self[2]


def split_by_cutoff(
    snapshots: pd.DataFrame,
    journey_map: JourneyMap | None = None,
    *,
    valid_cutoffs: int = 1,
    test_cutoffs: int = 1,
    horizon_days: float | None = None,
) -> Split:
    """Split snapshots by cutoff time with an embargo between the periods.

    The last ``test_cutoffs`` cutoffs are the test set. Because a row's labels look
    ``H`` days ahead, a cutoff ``t`` whose label window ``(t, t + H]`` extends past the
    first cutoff of the next period would leak that period's events into training
    labels, so such cutoffs are *embargoed* (dropped): validation is the last
    ``valid_cutoffs`` cutoffs with ``t + H <= first test cutoff``, and training is every
    cutoff with ``t + H <= first validation cutoff``.

    Parameters
    ----------
    snapshots : DataFrame
        Output of :func:`build_snapshots` (needs a ``cutoff`` column).
    valid_cutoffs, test_cutoffs : int, default 1
        Number of distinct cutoffs in the validation and test sets (``valid_cutoffs``
        may be 0: no validation set, the embargo then sits between train and test).
    journey_map : JourneyMap, optional
        Gives the label horizon ``H``.
    horizon_days : float, optional
        Label horizon when no journey map is given; default ``snapshots.attrs["horizon_days"]``.

    Returns
    -------
    Split
        ``(train, valid, test)`` frames; ``.embargoed`` lists the dropped cutoffs.
    """
    if journey_map is not None:
        horizon_days = journey_map.horizon_days
    if horizon_days is None:
        horizon_days = snapshots.attrs.get("horizon_days")
        if horizon_days is None:
            raise ConfigError(
                "snapshots carry no attrs['horizon_days']; pass horizon_days=", key="horizon_days"
            )
    if test_cutoffs < 1 or valid_cutoffs < 0:
        raise ConfigError(
            f"need test_cutoffs >= 1 and valid_cutoffs >= 0, got {test_cutoffs} and {valid_cutoffs}",
            key="test_cutoffs" if test_cutoffs < 1 else "valid_cutoffs",
        )
    cut = pd.DatetimeIndex(snapshots["cutoff"])
    times = cut.unique().sort_values()
    h = pd.Timedelta(days=float(horizon_days))
    if len(times) < test_cutoffs + valid_cutoffs + 1:
        raise ConfigError(
            f"{len(times)} distinct cutoffs cannot give {test_cutoffs} test, {valid_cutoffs} "
            "validation and at least one training cutoff",
            key="cutoffs",
        )
    test_t = times[-test_cutoffs:]
    before_test = times[: len(times) - test_cutoffs]
    clear_of_test = before_test[before_test + h <= test_t[0]]
    if valid_cutoffs:
        valid_t = clear_of_test[len(clear_of_test) - valid_cutoffs :] if len(clear_of_test) >= valid_cutoffs else clear_of_test[:0]
        if len(valid_t) < valid_cutoffs:
            raise ConfigError(
                f"only {len(clear_of_test)} cutoffs end their label window before the first "
                f"test cutoff {test_t[0]}; cannot pick {valid_cutoffs} validation cutoffs",
                key="valid_cutoffs",
            )
        next_start = valid_t[0]
    else:
        valid_t = times[:0]
        next_start = test_t[0]
    train_t = times[(times + h <= next_start) & (times < next_start)]
    if len(train_t) == 0:
        raise ConfigError(
            f"no training cutoff has its label window end by {next_start}; need more cutoffs "
            f"(horizon {horizon_days} days)",
            key="cutoffs",
        )
    used = train_t.append(valid_t).append(test_t)
    embargoed = times[~times.isin(used)]
    return Split(
        train=snapshots.loc[cut.isin(train_t)],
        valid=snapshots.loc[cut.isin(valid_t)],
        test=snapshots.loc[cut.isin(test_t)],
        embargoed=embargoed,
    )
