"""Which earlier days the nightly master resumes before its own.

A master killed with no wrapper left to restart it (a reboot, a dead cron
wrapper, a pod evicted past its back-off) strands its day: the next night's
``--day yesterday`` names another day. So the nightly kick-off first resumes
the days of its look-back window whose latest run is unfinished. Pure: the
caller reads the runs and drives the days.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from nightfold.common.states import TERMINAL_RUN_STATES, RunState


def lookback_window(day: dt.date, lookback_days: int) -> tuple[dt.date, dt.date] | None:
    """The earlier days to look at, ``(first, last)`` inclusive; None when off."""
    if lookback_days <= 0:
        return None
    return day - dt.timedelta(days=lookback_days), day - dt.timedelta(days=1)


def days_to_resume(
    day: dt.date, lookback_days: int, runs: Iterable[tuple[dt.date, int, RunState]]
) -> list[dt.date]:
    """Days before ``day`` (at most ``lookback_days`` back) whose LATEST generation
    is not terminal, oldest first. ``runs`` holds (day, generation, state) rows.

    A day whose latest generation finished (even failed or cancelled) is left
    alone: only an operator's ``--rerun`` starts a new generation.
    """
    window = lookback_window(day, lookback_days)
    if window is None:
        return []
    first, last = window
    latest: dict[dt.date, tuple[int, RunState]] = {}
    for d, generation, state in runs:
        if first <= d <= last and (d not in latest or generation > latest[d][0]):
            latest[d] = (generation, state)
    return sorted(d for d, (_, state) in latest.items() if state not in TERMINAL_RUN_STATES)
