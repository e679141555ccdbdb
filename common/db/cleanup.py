"""Repository functions for garbage collection of map partials (``master/gc.py``).

The database says which generations of a (job, day) exist and whether they are
finished; each collection is recorded as a run event, for status and audit.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import Connection, select

from nightfold.common.db.events import add_event
from nightfold.common.db.models import Run
from nightfold.common.states import RunState


@dataclass(frozen=True)
class Generation:
    """One run (generation) of a (job, day), as far as gc needs it."""

    run_id: int
    generation: int
    state: RunState


def generations(conn: Connection, job: str, day: dt.date) -> list[Generation]:
    """Every run of ``job`` for ``day``, oldest generation first."""
    rows = conn.execute(
        select(Run.id, Run.generation, Run.state)
        .where(Run.job == job, Run.day == day)
        .order_by(Run.generation)
    )
    return [Generation(int(i), int(g), RunState(s)) for i, g, s in rows]


def record_partials_collected(conn: Connection, run_id: int, rows: int, actor: str) -> None:
    """Record that gc deleted ``rows`` partial rows of the run (in the caller's transaction)."""
    add_event(conn, run_id, "partials_collected", actor=actor, detail=f"rows={rows}")
