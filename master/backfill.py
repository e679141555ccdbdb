"""Partition controls of a backfill (``nightfold master run --from/--to``): which
days to run and how, in which order, and how many at once.

The schedulers our users know offer these: Airflow's backfill reruns only missing
days, or missing and failed ones, or all, newest first, with a cap on concurrent
runs and a dry run. :func:`plan_days` is pure (the caller reads each day's latest
run); :func:`run_days` drives the chosen days on at most ``max_active`` threads,
each with its own master.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

from nightfold.common.states import TERMINAL_RUN_STATES, RunState

T = TypeVar("T")


class Select(StrEnum):
    """Which days of the range run."""

    MISSING = "missing"
    """Days without a finished run: never run, or left unfinished (resumed)."""
    FAILED = "failed"
    """Those, and days whose latest run failed or was cancelled (a new generation)."""
    ALL = "all"
    """Every day: finished ones get a new generation (``--rerun`` for the range)."""


class Action(StrEnum):
    RUN = "run"
    """No run yet: generation 1."""
    RESUME = "resume"
    """The latest run is unfinished: drive it on (never a second live generation)."""
    RERUN = "rerun"
    """A new generation replaces a finished one."""
    KEEP = "keep"
    """Finished and not selected for a rerun, without ``--select``: its outcome is
    reported as it is (a failed day keeps the exit code non-zero)."""
    SKIP = "skip"
    """Finished and not selected: left alone."""


@dataclass(frozen=True)
class DayPlan:
    day: dt.date
    action: Action
    state: RunState | None
    """The latest run's state (None: no run)."""
    generation: int
    """The latest run's generation (0: no run)."""

    @property
    def runs(self) -> bool:
        return self.action is not Action.SKIP

    def describe(self) -> str:
        now = f"{self.state.value} (generation {self.generation})" if self.state else "no run"
        what = {
            Action.RUN: "run generation 1",
            Action.RESUME: f"resume generation {self.generation}",
            Action.RERUN: f"rerun as generation {self.generation + 1}",
            Action.KEEP: "report it as it is",
            Action.SKIP: "skip",
        }[self.action]
        return f"{self.day.isoformat()}  {now:<26} -> {what}"


def latest_by_day(
    runs: Iterable[tuple[dt.date, int, RunState]],
) -> dict[dt.date, tuple[int, RunState]]:
    """Each day's latest (generation, state) from (day, generation, state) rows."""
    latest: dict[dt.date, tuple[int, RunState]] = {}
    for day, generation, state in runs:
        if day not in latest or generation > latest[day][0]:
            latest[day] = (generation, state)
    return latest


def plan_days(
    days: Iterable[dt.date],
    latest: Mapping[dt.date, tuple[int, RunState]],
    *,
    select: Select | None = None,
    rerun: bool = False,
    newest_first: bool = False,
) -> list[DayPlan]:
    """What happens to each day, in the order they run. Without ``select`` a day
    is driven as ``--day`` drives it (``rerun``: a new generation of every day that
    has a run, which the master refuses for a live one); with ``select`` an
    unfinished run is always resumed, never replaced."""
    out = []
    for day in sorted(set(days), reverse=newest_first):
        generation, state = latest.get(day, (0, None))
        out.append(DayPlan(day, _action(state, select, rerun), state, generation))
    return out


def _action(state: RunState | None, select: Select | None, rerun: bool) -> Action:
    if state is None:
        return Action.RUN
    if select is None:  # as --day: --rerun of a live run is refused by the master
        if rerun:
            return Action.RERUN
        return Action.KEEP if state in TERMINAL_RUN_STATES else Action.RESUME
    if state not in TERMINAL_RUN_STATES:
        return Action.RESUME
    if select is Select.ALL:
        return Action.RERUN
    if select is Select.FAILED and state is not RunState.SUCCEEDED:
        return Action.RERUN
    return Action.SKIP


def run_days(plans: Iterable[DayPlan], drive: Callable[[DayPlan], T], max_active: int) -> list[T]:
    """``drive`` every day that runs, in order, at most ``max_active`` at once; the
    results in plan order. The first exception stops days not yet started, waits
    for the running ones, and is raised."""
    todo = [p for p in plans if p.runs]
    if max_active <= 1 or len(todo) <= 1:
        return [drive(p) for p in todo]
    with ThreadPoolExecutor(max_workers=max_active, thread_name_prefix="day") as pool:
        futures: list[Future[T]] = [pool.submit(drive, p) for p in todo]
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        failed = [f for f in futures if f in done and f.exception() is not None]
        if failed:
            for f in futures:
                f.cancel()
            wait(futures)
            raise failed[0].exception()  # type: ignore[misc]
        return [f.result() for f in futures]
