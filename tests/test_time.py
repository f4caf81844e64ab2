"""The UTC rule: naive times are UTC, aware times are converted, one instant everywhere."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from journey_ml.contract.time import to_utc, utc_ns

NAIVE = st.datetimes(min_value=datetime(1980, 1, 1), max_value=datetime(2200, 1, 1))
OFFSETS = st.integers(-14 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m)))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-01-05", "2026-01-05T00:00:00+00:00"),
        ("2026-01-05T12:00:00+02:00", "2026-01-05T10:00:00+00:00"),
        (pd.Timestamp("2026-01-05 12:00", tz="America/New_York"), "2026-01-05T17:00:00+00:00"),
        (datetime(2026, 1, 5, 12), "2026-01-05T12:00:00+00:00"),
        (np.datetime64("2026-01-05T12:00"), "2026-01-05T12:00:00+00:00"),
    ],
)
def test_to_utc_localises_naive_and_converts_aware(value: object, expected: str) -> None:
    got = to_utc(value)  # type: ignore[arg-type]
    assert got == pd.Timestamp(expected)
    assert str(got.tz) == "UTC" and got.unit == "ns"


def test_to_utc_refuses_garbage_and_keeps_nat() -> None:
    with pytest.raises(ValueError):
        to_utc("not a time")
    assert to_utc(None) is pd.NaT  # type: ignore[arg-type]


@given(NAIVE)
def test_naive_is_taken_as_utc_not_shifted(value: datetime) -> None:
    got = to_utc(value)
    assert got.tz_localize(None) == pd.Timestamp(value)
    assert got == to_utc(value.replace(tzinfo=UTC))


@given(NAIVE, OFFSETS)
def test_aware_keeps_its_instant(value: datetime, tz: timezone) -> None:
    aware = value.replace(tzinfo=tz)
    got = to_utc(aware)
    assert got == pd.Timestamp(aware)
    assert to_utc(got) == got  # idempotent
    assert got.value == utc_ns([aware])[0]


@given(st.lists(NAIVE, min_size=1, max_size=20), OFFSETS)
def test_utc_ns_agrees_with_to_utc_for_every_container(values: list[datetime], tz: timezone) -> None:
    expected = np.array([to_utc(v).value for v in values], dtype=np.int64)
    naive = pd.Series(pd.to_datetime(values))
    aware = naive.dt.tz_localize("UTC").dt.tz_convert(tz)
    for container in (values, naive, pd.DatetimeIndex(naive), aware, aware.dt.as_unit("us")):
        np.testing.assert_array_equal(utc_ns(container), expected)


def test_utc_ns_is_a_read_only_view_of_an_aware_ns_column() -> None:
    col = pd.Series(pd.to_datetime(["2026-01-01", "2026-01-02"], utc=True)).dt.as_unit("ns")
    out = utc_ns(col)
    assert not out.flags.writeable
    assert np.shares_memory(out, col.array._ndarray)
