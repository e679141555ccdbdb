"""Which earlier days the nightly master resumes (master/resume.py)."""

from __future__ import annotations

import datetime as dt

from hypothesis import given
from hypothesis import strategies as st

from nightfold.common.states import TERMINAL_RUN_STATES, RunState
from nightfold.master.resume import days_to_resume, lookback_window

DAY = dt.date(2026, 11, 28)
M, S, F, C, P, R = (
    RunState.MAPPING,
    RunState.SUCCEEDED,
    RunState.FAILED,
    RunState.CANCELLED,
    RunState.PLANNING,
    RunState.REDUCING,
)


def ago(n: int) -> dt.date:
    return DAY - dt.timedelta(days=n)


def test_unfinished_earlier_days_oldest_first() -> None:
    runs = [(ago(1), 1, M), (ago(3), 1, R), (ago(5), 1, P), (ago(2), 1, S)]
    assert days_to_resume(DAY, 7, runs) == [ago(5), ago(3), ago(1)]


def test_only_the_latest_generation_counts() -> None:
    # a failed first generation rerun and left mapping: resumed
    # a mapping first generation superseded by a succeeded rerun: left alone
    runs = [(ago(2), 1, F), (ago(2), 2, M), (ago(4), 1, M), (ago(4), 2, S)]
    assert days_to_resume(DAY, 7, runs) == [ago(2)]


def test_finished_runs_are_left_alone() -> None:
    runs = [(ago(1), 1, F), (ago(2), 1, C), (ago(3), 1, S)]
    assert days_to_resume(DAY, 7, runs) == []


def test_the_window_excludes_the_day_itself_later_days_and_older_days() -> None:
    runs = [(DAY, 1, M), (DAY + dt.timedelta(days=1), 1, M), (ago(7), 1, M), (ago(8), 1, M)]
    assert days_to_resume(DAY, 7, runs) == [ago(7)]
    assert lookback_window(DAY, 7) == (ago(7), ago(1))


def test_zero_look_back_is_off() -> None:
    assert days_to_resume(DAY, 0, [(ago(1), 1, M)]) == []
    assert lookback_window(DAY, 0) is None


runs_strategy = st.lists(
    st.tuples(st.integers(-3, 12).map(ago), st.integers(1, 4), st.sampled_from(list(RunState))),
    max_size=30,
)


@given(runs_strategy, st.integers(0, 10))
def test_property_exactly_the_unfinished_latest_generations_in_the_window(
    runs: list[tuple[dt.date, int, RunState]], lookback: int
) -> None:
    got = days_to_resume(DAY, lookback, runs)
    assert got == sorted(set(got))
    latest: dict[dt.date, tuple[int, RunState]] = {}
    for d, g, s in runs:
        if d not in latest or g > latest[d][0]:
            latest[d] = (g, s)
    want = [
        d
        for d, (_, s) in sorted(latest.items())
        if 1 <= (DAY - d).days <= lookback and s not in TERMINAL_RUN_STATES
    ]
    assert got == want
