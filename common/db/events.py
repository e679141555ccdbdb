"""The run_events log: one append-only row per transition, for status and audit."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Connection,
    Executable,
    String,
    Table,
    bindparam,
    insert,
    literal,
    null,
    select,
)

from nightfold.common.db.clock import db_now
from nightfold.common.db.models import Chunk, RunEvent


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
        _ONE_EVENT,
        {
            "run_id": run_id,
            "chunk_id": chunk_id,
            "kind": kind,
            "actor": actor,
            "attempt": attempt,
            "detail": detail,
        },
    )


_ONE_EVENT = insert(cast(Table, RunEvent.__table__)).values(at=db_now())
"""Built once: the values come with each execution (building the statement anew took
more client time than sending it)."""


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


def add_chunk_row_events(
    conn: Connection,
    kind: str,
    chunk_ids: Sequence[int],
    detail: ColumnElement[str] | None = None,
) -> None:
    """Append one ``kind`` event per chunk in ONE ``INSERT ... SELECT`` from the
    chunk rows themselves: their run, their owner as the actor, their attempt,
    the database's clock (and ``detail``, an expression over the row).

    For a batch of claims or completions, right after the UPDATE that moved
    them (same transaction: the rows read are the ones just written). One
    cached statement whatever the batch's size, with no row built in Python.
    """
    if not chunk_ids:
        return
    key = (kind, id(detail))
    cached = _ROW_EVENTS.get(key)
    if cached is None or cached[0] is not detail:
        cached = _ROW_EVENTS[key] = (detail, _row_events_statement(kind, detail))
    conn.execute(cached[1], {"chunk_ids": sorted(chunk_ids)})


_ROW_EVENTS: dict[tuple[str, int], tuple[ColumnElement[str] | None, Executable]] = {}
"""The statements of :func:`add_chunk_row_events`, built once per kind and detail (callers
pass a module-level detail expression; the detail is kept so its id stays its own)."""


def _row_events_statement(kind: str, detail: ColumnElement[str] | None) -> Executable:
    return insert(cast(Table, RunEvent.__table__)).from_select(
        ["run_id", "chunk_id", "at", "kind", "actor", "attempt", "detail"],
        select(
            Chunk.run_id,
            Chunk.id,
            db_now(),
            literal(kind, String),
            Chunk.owner,
            Chunk.attempt,
            null() if detail is None else detail,
        ).where(Chunk.id.in_(bindparam("chunk_ids", expanding=True))),
    )
