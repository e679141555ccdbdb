"""Partition controls of a backfill (master/backfill.py): which days run and how,
their order, and the cap on days run at once."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nightfold.common.states import TERMINAL_RUN_STATES, RunState
from nightfold.master.backfill import (
    Action,
    DayPlan,
    Select,
    latest_by_day,
    plan_days,
    run_days,
)
from nightfold.master.days import days_to_export

D = [dt.date(2026, 11, d) for d in range(1, 8)]
S, F, C, M = RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED, RunState.MAPPING
LATEST = {D[1]: (1, S), D[2]: (2, F), D[3]: (1, C), D[4]: (3, M)}
"""D0 no run, D1 succeeded, D2 failed, D3 cancelled, D4 unfinished, D5..D6 no run."""


def actions(plans: list[DayPlan]) -> dict[dt.date, Action]:
    return {p.day: p.action for p in plans}


def test_missing_runs_only_days_without_a_finished_run() -> None:
    got = actions(plan_days(D, LATEST, select=Select.MISSING))
    assert got == {D[0]: Action.RUN, D[1]: Action.SKIP, D[2]: Action.SKIP,
                   D[3]: Action.SKIP, D[4]: Action.RESUME, D[5]: Action.RUN,
                   D[6]: Action.RUN}  # fmt: skip


def test_failed_also_reruns_failed_and_cancelled_days() -> None:
    got = actions(plan_days(D, LATEST, select=Select.FAILED))
    assert got[D[1]] is Action.SKIP
    assert got[D[2]] is got[D[3]] is Action.RERUN
    assert got[D[4]] is Action.RESUME and got[D[0]] is Action.RUN


def test_all_reruns_every_finished_day_and_resumes_the_live_one() -> None:
    got = actions(plan_days(D, LATEST, select=Select.ALL))
    assert [got[d] for d in D[1:4]] == [Action.RERUN] * 3
    assert got[D[4]] is Action.RESUME, "never a second live generation"


def test_without_select_days_are_driven_as_before() -> None:
    got = actions(plan_days(D, LATEST))
    assert got[D[1]] is got[D[2]] is Action.KEEP and got[D[4]] is Action.RESUME
    rerun = actions(plan_days(D, LATEST, rerun=True))
    assert rerun[D[4]] is Action.RERUN, "the master refuses it, as --rerun always did"
    assert rerun[D[0]] is Action.RUN


def test_order_and_descriptions() -> None:
    plans = plan_days(D, LATEST, select=Select.FAILED, newest_first=True)
    assert [p.day for p in plans] == sorted(D, reverse=True)
    assert [p.day for p in plan_days(reversed(D), LATEST)] == D
    text = {p.day: p.describe() for p in plans}
    assert text[D[2]].endswith("failed (generation 2)      -> rerun as generation 3")
    assert "no run" in text[D[0]] and text[D[0]].endswith("run generation 1")
    assert text[D[1]].endswith("skip")


STATES = st.sampled_from(list(RunState))
DAYS = st.lists(st.sampled_from(D), unique=True, min_size=1)
LATESTS = st.dictionaries(st.sampled_from(D), st.tuples(st.integers(1, 5), STATES))


@given(DAYS, LATESTS, st.sampled_from(list(Select)), st.booleans())
def test_selection_properties(
    days: list[dt.date],
    latest: dict[dt.date, tuple[int, RunState]],
    select: Select,
    newest: bool,
) -> None:
    plans = plan_days(days, latest, select=select, newest_first=newest)
    assert sorted(p.day for p in plans) == sorted(days)
    assert [p.day for p in plans] == sorted(days, reverse=newest)
    for p in plans:
        state = latest.get(p.day, (0, None))[1]
        if state is None:
            assert p.action is Action.RUN
        elif state not in TERMINAL_RUN_STATES:
            assert p.action is Action.RESUME  # a live run is never replaced
        elif state is RunState.SUCCEEDED:
            assert p.action is (Action.RERUN if select is Select.ALL else Action.SKIP)
        else:
            assert p.action is (Action.SKIP if select is Select.MISSING else Action.RERUN)
    # wider selections run a superset of days
    ran = {s: {p.day for p in plan_days(days, latest, select=s) if p.runs} for s in Select}
    assert ran[Select.MISSING] <= ran[Select.FAILED] <= ran[Select.ALL] == set(days)


def test_latest_by_day_takes_the_highest_generation() -> None:
    rows = [(D[0], 1, F), (D[0], 3, M), (D[0], 2, S), (D[1], 1, S)]
    assert latest_by_day(rows) == {D[0]: (3, M), D[1]: (1, S)}


@pytest.mark.parametrize("cap", [1, 2, 3])
def test_run_days_never_runs_more_than_the_cap_at_once(cap: int) -> None:
    plans = plan_days(D, {D[1]: (1, S)}, select=Select.MISSING)
    to_run = [p.day for p in plans if p.runs]
    lock, active, peak, started = threading.Lock(), [0], [0], []
    gate = threading.Barrier(cap)

    def drive(p: DayPlan) -> dt.date:
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
            started.append(p.day)
            nth = len(started)
        if nth <= cap:
            gate.wait(timeout=30)  # the first `cap` days all run together (else: broken)
        with lock:
            active[0] -= 1
        return p.day

    assert run_days(plans, drive, cap) == to_run, "results in plan order"
    assert sorted(started) == to_run and D[1] not in started
    assert peak[0] == cap
    assert set(started[:cap]) == set(to_run[:cap]), "days start in plan order"


def test_run_days_raises_the_first_error_and_starts_no_more_days() -> None:
    plans = plan_days(D, {}, select=Select.MISSING)
    started: list[dt.date] = []

    def drive(p: DayPlan) -> None:
        started.append(p.day)
        if p.day == D[0]:
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        run_days(plans, drive, 1)
    assert started == [D[0]]
    with pytest.raises(RuntimeError, match="boom"):
        run_days(plans, drive, 2)


def test_days_to_export_are_driven_days_and_earlier_days_with_runs() -> None:
    driven = [D[5], D[6]]
    assert days_to_export(driven, [D[0], D[3], D[5]], 3) == [D[3], D[5], D[6]]
    assert days_to_export([], [D[0]], 3) == []
