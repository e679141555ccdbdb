"""The deadline setting (common/deadline.py): when a day is due and when it is late."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nightfold.common.config import load_settings
from nightfold.common.deadline import due_at, is_late, parse_deadline
from nightfold.common.errors import ConfigError

DAY = dt.date(2026, 11, 22)
UTC = dt.UTC


def test_parse() -> None:
    assert parse_deadline("07:00") == dt.time(7, 0, tzinfo=UTC)
    assert parse_deadline(" 7:05 ") == dt.time(7, 5, tzinfo=UTC)
    for off in ("", "none", "off"):
        assert parse_deadline(off) is None
    for bad in ("7", "24:00", "07:60", "7am", "07:00:00"):
        with pytest.raises(ConfigError, match="deadline"):
            parse_deadline(bad)


def test_setting_is_validated() -> None:
    assert load_settings({"deadline": "06:30"}, env={}).deadline == "06:30"
    with pytest.raises(ConfigError, match="setting deadline"):
        load_settings(env={"NIGHTFOLD_DEADLINE": "late"})


def test_due_the_next_day_in_utc() -> None:
    due = due_at(DAY, dt.time(7, 0, tzinfo=UTC))
    assert due == dt.datetime(2026, 11, 23, 7, 0, tzinfo=UTC)


def test_late() -> None:
    seven = parse_deadline("07:00")
    before = dt.datetime(2026, 11, 23, 6, 59)
    after = dt.datetime(2026, 11, 23, 7, 1)
    assert not is_late(DAY, seven, succeeded_at=None, now=before)
    assert is_late(DAY, seven, succeeded_at=None, now=after)
    assert not is_late(DAY, seven, succeeded_at=before, now=after)
    assert is_late(DAY, seven, succeeded_at=after, now=after + dt.timedelta(days=3))
    assert not is_late(DAY, None, succeeded_at=None, now=after + dt.timedelta(days=30))


@given(
    st.dates(min_value=dt.date(2000, 1, 1), max_value=dt.date(2100, 1, 1)),
    st.times(),
    st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2100, 1, 1)),
)
def test_late_exactly_past_the_due_time(day: dt.date, t: dt.time, now: dt.datetime) -> None:
    deadline = dt.time(t.hour, t.minute, tzinfo=UTC)
    due = due_at(day, deadline)
    assert due.date() == day + dt.timedelta(days=1)
    assert is_late(day, deadline, succeeded_at=None, now=now) == (now.replace(tzinfo=UTC) > due)
