"""Durations between database times (:func:`seconds_between`): the one subtraction
that status, the master's ownership check and the bench share."""

from __future__ import annotations

import datetime as dt

from hypothesis import given
from hypothesis import strategies as st

from nightfold.common.db.clock import seconds_between

T0 = dt.datetime(2026, 11, 22, 3, 0, 0)


def test_unknown_times_give_no_duration() -> None:
    assert seconds_between(None, T0) is None
    assert seconds_between(T0, None) is None
    assert seconds_between(None, None) is None


def test_sqlite_text_and_datetimes_mix() -> None:
    later = "2026-11-22 03:00:01.500000"
    assert seconds_between(T0, later) == 1.5
    assert seconds_between(later, T0) == -1.5
    assert seconds_between(T0.isoformat(), T0) == 0.0


times = st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2100, 1, 1))


@given(start=times, end=times, start_text=st.booleans(), end_text=st.booleans())
def test_any_form_gives_the_exact_difference(
    start: dt.datetime, end: dt.datetime, start_text: bool, end_text: bool
) -> None:
    a = start.isoformat(sep=" ") if start_text else start
    b = end.isoformat(sep=" ") if end_text else end
    assert seconds_between(a, b) == (end - start).total_seconds()
