"""The master's view of recent days as metrics: each day's deadline and whether
it succeeded, so Prometheus can tell a late day (the NightfoldDayLate alert).

Exported for the days the master drives and for the earlier days of its window
(``resume_lookback_days``) that have a run: a failed day stays late night after
night until a rerun succeeds, while days from before nightfold was deployed (no
run at all) never alert. The master refreshes them when it starts and after each
day, and pushes them to the Pushgateway with its other metrics.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from sqlalchemy import Engine

from nightfold.common import metrics
from nightfold.common.db import runs as run_repo
from nightfold.common.deadline import due_at
from nightfold.common.states import RunState
from nightfold.master.backfill import latest_by_day


def days_to_export(
    driven: Iterable[dt.date], with_runs: Iterable[dt.date], lookback_days: int
) -> list[dt.date]:
    """The driven days, plus days that have a run within ``lookback_days`` before
    the first driven day (and between the driven days)."""
    driven = sorted(set(driven))
    if not driven:
        return []
    first = driven[0] - dt.timedelta(days=lookback_days)
    return sorted(set(driven) | {d for d in with_runs if first <= d <= driven[-1]})


def export_days(
    engine: Engine,
    job: str,
    driven: Iterable[dt.date],
    deadline: dt.time | None,
    lookback_days: int,
) -> None:
    """Set ``nightfold_day_succeeded`` (and ``nightfold_day_deadline_timestamp_seconds``
    when a deadline is set) for the days :func:`days_to_export` names."""
    driven = sorted(set(driven))
    if not driven:
        return
    first = driven[0] - dt.timedelta(days=lookback_days)
    with engine.connect() as conn:
        rows = run_repo.generations_between(conn, job, first, driven[-1])
    latest = latest_by_day(rows)
    for day in days_to_export(driven, latest, lookback_days):
        label = day.isoformat()
        state = latest.get(day, (0, None))[1]
        metrics.DAY_SUCCEEDED.labels(job, label).set(1 if state is RunState.SUCCEEDED else 0)
        if deadline is not None:
            metrics.DAY_DEADLINE.labels(job, label).set(due_at(day, deadline).timestamp())
