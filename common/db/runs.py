"""Repository functions for runs: creation, ownership, stage moves, cancel.

Every state change goes through :func:`move`: checked against
``RUN_TRANSITIONS`` first (an illegal move raises IllegalTransition), then one
conditional UPDATE that succeeds for exactly one actor, committed together with
its run_events row.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from nightfold.common.db.clock import db_now, db_now_plus, seconds_between
from nightfold.common.db.events import add_event
from nightfold.common.db.models import Chunk, Run
from nightfold.common.errors import RunConflict
from nightfold.common.params import MAX_CELL_BYTES_LIMIT as MAX_CELL_BYTES_LIMIT  # re-exported
from nightfold.common.params import RunParams as RunParams  # re-exported: it lived here
from nightfold.common.states import TERMINAL_RUN_STATES, ChunkState, RunState, check_run_move


@dataclass(frozen=True)
class RunInfo:
    """A read-only snapshot of a run row."""

    id: int
    job: str
    day: dt.date
    generation: int
    state: RunState
    owner: str | None
    cancel_requested: bool
    params: RunParams
    error: str | None
    hot_groups: str | None = None
    """The plan's hot groups as recorded (``shards.decode_plan_hot``); None before the plan,
    for an unsharded job, or for a run planned before they were recorded in MySQL."""

    @property
    def label(self) -> str:
        return f"{self.job}/{self.day.isoformat()}#{self.generation}"


def run_info(row: Any) -> RunInfo:
    """A RunInfo from a row holding every column of ``runs``."""
    return RunInfo(
        id=row.id,
        job=row.job,
        day=row.day,
        generation=row.generation,
        state=RunState(row.state),
        owner=row.owner,
        cancel_requested=bool(row.cancel_requested),
        params=RunParams.from_json(row.params),
        error=row.error,
        hot_groups=row.hot_groups,
    )


def get_run(conn: Connection, run_id: int) -> RunInfo | None:
    row = conn.execute(select(Run.__table__).where(Run.id == run_id)).one_or_none()
    return run_info(row) if row else None


def latest_run(conn: Connection, job: str, day: dt.date) -> RunInfo | None:
    row = conn.execute(
        select(Run.__table__)
        .where(Run.job == job, Run.day == day)
        .order_by(Run.generation.desc())
        .limit(1)
    ).one_or_none()
    return run_info(row) if row else None


def list_runs(conn: Connection, *, day: dt.date | None = None, limit: int = 20) -> list[RunInfo]:
    q = select(Run.__table__).order_by(Run.id.desc()).limit(limit)
    if day is not None:
        q = q.where(Run.day == day)
    return [run_info(r) for r in conn.execute(q)]


def create_run(
    conn: Connection, job: str, day: dt.date, generation: int, params: RunParams, actor: str
) -> RunInfo | None:
    """Insert generation ``generation`` of (job, day); None if it exists already."""
    try:
        with conn.begin_nested():
            result = conn.execute(
                insert(Run).values(
                    job=job,
                    day=day,
                    generation=generation,
                    state=RunState.PLANNING,
                    params=params.to_json(),
                    cancel_requested=False,
                    chunks_total=0,
                    rows_read=0,
                    rows_malformed=0,
                    created_at=db_now(),
                )
            )
    except IntegrityError:
        return None
    key = result.inserted_primary_key
    assert key is not None
    run_id = int(key[0])
    add_event(conn, run_id, "run_created", actor=actor, detail=params.to_json())
    return get_run(conn, run_id)


def acquire(conn: Connection, run_id: int, me: str, stale_seconds: float, *, force: bool) -> None:
    """Make ``me`` the run's master, unless another master is alive.

    ``force`` takes over regardless (the caller proved the owner dead).
    Raises RunConflict naming the live owner.
    """
    cond = (
        (Run.owner.is_(None)) | (Run.owner == me) | (Run.heartbeat_at < db_now_plus(-stale_seconds))
    )
    stmt = update(Run).where(Run.id == run_id)
    if not force:
        stmt = stmt.where(cond)
    result = conn.execute(stmt.values(owner=me, heartbeat_at=db_now()))
    if result.rowcount != 1:
        row = conn.execute(
            select(Run.owner, Run.heartbeat_at, db_now()).where(Run.id == run_id)
        ).one()
        age = seconds_between(row[1], row[2])
        age = float("inf") if age is None else age
        raise RunConflict(
            f"run {run_id} is owned by master {row[0]} (heartbeat {age:.0f}s ago); refusing "
            f"until its heartbeat is {stale_seconds:.0f}s stale"
        )
    add_event(conn, run_id, "master_acquired", actor=me)


def heartbeat(conn: Connection, run_id: int, me: str) -> None:
    """Extend our ownership; raises RunConflict when another master took over."""
    result = conn.execute(
        update(Run).where(Run.id == run_id, Run.owner == me).values(heartbeat_at=db_now())
    )
    if result.rowcount != 1:
        raise RunConflict(f"run {run_id}: another master took over; this one stops")


def release(conn: Connection, run_id: int, me: str) -> None:
    conn.execute(update(Run).where(Run.id == run_id, Run.owner == me).values(owner=None))


def move(
    conn: Connection,
    run_id: int,
    src: RunState | tuple[RunState, ...],
    dst: RunState,
    *,
    actor: str,
    error: str | None = None,
    **values: object,
) -> bool:
    """Conditionally move a run from ``src`` (one state or several) to ``dst``;
    False if it was not in ``src``.

    Raises IllegalTransition, before touching the row, when any ``src -> dst``
    is not in ``RUN_TRANSITIONS``: a caller naming an illegal move is a bug even
    if the row happens to be elsewhere.
    """
    srcs = (src,) if isinstance(src, RunState) else src
    for s in srcs:
        check_run_move(s, dst)
    extra: dict[str, object] = dict(values)
    if dst in TERMINAL_RUN_STATES:
        extra["finished_at"] = db_now()
    if error is not None:
        extra["error"] = error
    result = conn.execute(
        update(Run)
        .where(Run.id == run_id, Run.state.in_([s.value for s in srcs]))
        .values(state=dst, **extra)
    )
    if result.rowcount != 1:
        return False
    add_event(conn, run_id, f"run_{dst.value}", actor=actor, detail=error)
    return True


def lock_finished(conn: Connection, run_id: int) -> bool:
    """Lock the run row and say whether it is still terminal (a locking read: the
    latest committed state, not the transaction's snapshot).

    ``--rerun`` calls it before creating the next generation, and an operator's
    retry (:func:`nightfold.common.db.chunks.retry_dead`) updates the same row
    first: whichever comes second waits for the first to commit and then sees
    it, so a day never gets two live generations out of a retry racing a rerun.
    """
    state = conn.execute(
        select(Run.state).where(Run.id == run_id).with_for_update()
    ).scalar_one_or_none()
    return state is not None and RunState(state) in TERMINAL_RUN_STATES


def later_generation(conn: Connection, run: RunInfo) -> int | None:
    """The generation of a newer run of the same (job, day), if any (a locking read)."""
    return conn.execute(
        select(Run.generation)
        .where(Run.job == run.job, Run.day == run.day, Run.generation > run.generation)
        .order_by(Run.generation.desc())
        .limit(1)
        .with_for_update()
    ).scalar_one_or_none()


def request_cancel(conn: Connection, run_id: int, actor: str) -> bool:
    result = conn.execute(
        update(Run)
        .where(
            Run.id == run_id,
            Run.state.notin_([s.value for s in TERMINAL_RUN_STATES]),
            Run.cancel_requested.is_(False),
        )
        .values(cancel_requested=True)
    )
    if result.rowcount == 1:
        add_event(conn, run_id, "cancel_requested", actor=actor)
        return True
    return False


def roll_up_counters(conn: Connection, run_id: int) -> tuple[int, int]:
    """Copy the map stage's row counters onto the run row (once, at the end)."""
    rows, malformed = conn.execute(
        select(
            func.coalesce(func.sum(Chunk.rows_read), 0),
            func.coalesce(func.sum(Chunk.rows_malformed), 0),
        ).where(Chunk.run_id == run_id, Chunk.stage == "map", Chunk.state == ChunkState.DONE)
    ).one()
    conn.execute(
        update(Run).where(Run.id == run_id).values(rows_read=rows, rows_malformed=malformed)
    )
    return int(rows), int(malformed)


def generations_between(
    conn: Connection, job: str, first: dt.date, last: dt.date
) -> list[tuple[dt.date, int, RunState]]:
    """(day, generation, state) of every run of ``job`` with ``first <= day <= last``:
    what the nightly master needs to find earlier days left unfinished."""
    rows = conn.execute(
        select(Run.day, Run.generation, Run.state).where(
            Run.job == job, Run.day >= first, Run.day <= last
        )
    )
    return [(_as_date(d), int(g), RunState(s)) for d, g, s in rows]


def _as_date(value: dt.date | str) -> dt.date:
    return dt.date.fromisoformat(value) if isinstance(value, str) else value
