"""``nightfold status --days N``: a job's recent days, one row each, read-only.

Each day shows its latest run (state, generation, map and reduce progress, rows,
how long it took, when it finished) and whether it missed the job's deadline
(:mod:`nightfold.common.deadline`), or that it has no run at all: the gaps a
``master run --from/--to --select missing`` backfill would fill.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import Connection, func, select

from nightfold.common.db.chunks import counts_by_stage, rows_done
from nightfold.common.db.clock import Instant, db_now, seconds_between
from nightfold.common.db.models import Run
from nightfold.common.deadline import due_at, is_late


@dataclass
class DayRow:
    day: str
    state: str
    """The latest run's state, or ``missing`` (no run)."""
    generation: int = 0
    chunks: dict[str, dict[str, int]] = field(default_factory=dict)
    """stage -> {"done": n, "total": n, "dead": n}."""
    rows_read: int = 0
    seconds: float | None = None
    finished_at: str | None = None
    due_at: str | None = None
    late: bool = False
    error: str | None = None


def _as_datetime(value: Instant | None) -> dt.datetime | None:
    if value is None or isinstance(value, dt.datetime):
        return value
    return dt.datetime.fromisoformat(value)


def day_grid(
    conn: Connection, job: str, last: dt.date, days: int, deadline: dt.time | None
) -> list[DayRow]:
    """The ``days`` days ending with ``last``, newest first."""
    first = last - dt.timedelta(days=days - 1)
    now = _as_datetime(conn.execute(select(db_now())).scalar_one())
    assert now is not None
    latest = (
        select(Run.day, func.max(Run.generation).label("generation"))
        .where(Run.job == job, Run.day >= first, Run.day <= last)
        .group_by(Run.day)
        .subquery()
    )
    runs = {
        (r.day if isinstance(r.day, dt.date) else dt.date.fromisoformat(r.day)): r
        for r in conn.execute(
            select(Run)
            .join(
                latest,
                (Run.day == latest.c.day) & (Run.generation == latest.c.generation),
            )
            .where(Run.job == job)
        )
    }
    out = []
    for i in range(days):
        day = last - dt.timedelta(days=i)
        run = runs.get(day)
        row = DayRow(day.isoformat(), "missing")
        if deadline is not None:
            row.due_at = due_at(day, deadline).strftime("%Y-%m-%d %H:%M UTC")
        if run is None:
            row.late = is_late(day, deadline, succeeded_at=None, now=now)
            out.append(row)
            continue
        finished = _as_datetime(run.finished_at)
        row.state, row.generation, row.error = run.state, run.generation, run.error
        row.rows_read = int(run.rows_read or 0)
        for (stage, state), n in counts_by_stage(conn, run.id).items():
            cell = row.chunks.setdefault(stage, {"done": 0, "total": 0, "dead": 0})
            cell["total"] += n
            if state in ("done", "dead"):
                cell[state] += n
        if row.state != "succeeded":  # rolled up onto the run row when it succeeds
            row.rows_read = rows_done(conn, run.id)
        row.seconds = seconds_between(run.started_at, finished or now)
        row.finished_at = finished.strftime("%Y-%m-%d %H:%M") if finished else None
        succeeded_at = finished if run.state == "succeeded" else None
        row.late = is_late(day, deadline, succeeded_at=succeeded_at, now=now)
        out.append(row)
    return out


def as_dict(job: str, deadline: str, rows: list[DayRow]) -> dict[str, Any]:
    return {"job": job, "deadline": deadline or None, "days": [asdict(r) for r in rows]}
