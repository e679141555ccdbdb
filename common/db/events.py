"""The run_events log: one append-only row per transition, for status and audit."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, insert

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
    """Append one event per chunk, as a single multi-row INSERT."""
    if not chunk_ids:
        return
    rows: list[dict[str, Any]] = [
        {"run_id": run_id, "chunk_id": cid, "kind": kind, "actor": actor} for cid in chunk_ids
    ]
    conn.execute(insert(RunEvent).values(at=db_now()), rows)
