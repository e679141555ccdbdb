"""The run_events log: one append-only row per transition, for status and audit."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, insert, select

from nightfold.common.db.clock import db_now
from nightfold.common.db.models import RunEvent


def add_event(
    conn: Connection,
    run_id: int,
    kind: str,
    *,
    chunk_id: int | None = None,
    actor: str | None = None,
    attempt: int | None = None,
    detail: str | None = None,
) -> None:
    """Append one event in the caller's transaction (so it commits with the change)."""
    conn.execute(
        insert(RunEvent).values(
            run_id=run_id,
            chunk_id=chunk_id,
            at=db_now(),
            kind=kind,
            actor=actor,
            attempt=attempt,
            detail=detail,
        )
    )


def add_chunk_events(
    conn: Connection, run_id: int, kind: str, chunk_ids: Sequence[int], *, actor: str | None
) -> None:
    """Append one event per chunk, as a multi-row INSERT.

    The database's clock is read once and sent as a plain value: with
    ``at=db_now()`` in the statement PyMySQL cannot batch the executemany and
    sends one INSERT per row (30k rows took 2.7 s, now a few hundred ms).
    """
    if not chunk_ids:
        return
    at = conn.execute(select(db_now())).scalar_one()
    rows: list[dict[str, Any]] = [
        {"run_id": run_id, "chunk_id": cid, "at": at, "kind": kind, "actor": actor}
        for cid in chunk_ids
    ]
    conn.execute(insert(RunEvent), rows)


@dataclass(frozen=True)
class AttemptEvent:
    """One chunk's event of a batch: which run and chunk, which attempt, any detail."""

    run_id: int
    chunk_id: int
    attempt: int
    detail: str | None = None


def add_attempt_events(
    conn: Connection, kind: str, actor: str, events: Sequence[AttemptEvent]
) -> None:
    """Append one ``kind`` event per chunk in ONE multi-row INSERT, each row
    stamped by the database's clock in the statement (a batch of claims or
    completions writes its events in one statement, not one per chunk)."""
    if not events:
        return
    conn.execute(
        insert(RunEvent).values(
            [
                {
                    "run_id": e.run_id,
                    "chunk_id": e.chunk_id,
                    "at": db_now(),
                    "kind": kind,
                    "actor": actor,
                    "attempt": e.attempt,
                    "detail": e.detail,
                }
                for e in events
            ]
        )
    )
