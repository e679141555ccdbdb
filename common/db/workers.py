"""Repository functions for the workers table: who is alive and doing what."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import Connection, delete, insert, select, update

from nightfold.common.db.clock import db_now, db_now_plus
from nightfold.common.db.models import Worker


@dataclass(frozen=True)
class WorkerInfo:
    id: str
    host: str
    pid: int
    last_seen_at: dt.datetime
    current_chunk_id: int | None


def register(conn: Connection, worker_id: str, host: str, pid: int) -> None:
    conn.execute(delete(Worker).where(Worker.id == worker_id))
    conn.execute(
        insert(Worker).values(
            id=worker_id, host=host, pid=pid, started_at=db_now(), last_seen_at=db_now()
        )
    )


def seen(conn: Connection, worker_id: str, current_chunk_id: int | None) -> None:
    conn.execute(
        update(Worker)
        .where(Worker.id == worker_id)
        .values(last_seen_at=db_now(), current_chunk_id=current_chunk_id)
    )


def stopped(conn: Connection, worker_id: str) -> None:
    conn.execute(
        update(Worker)
        .where(Worker.id == worker_id)
        .values(stopped_at=db_now(), current_chunk_id=None)
    )


def alive(conn: Connection, within_seconds: float) -> list[WorkerInfo]:
    rows = conn.execute(
        select(Worker.id, Worker.host, Worker.pid, Worker.last_seen_at, Worker.current_chunk_id)
        .where(Worker.stopped_at.is_(None), Worker.last_seen_at >= db_now_plus(-within_seconds))
        .order_by(Worker.id)
    )
    return [WorkerInfo(r[0], r[1], int(r[2]), r[3], r[4]) for r in rows]
