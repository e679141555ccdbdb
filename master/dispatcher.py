"""Dispatch: the outbox. Open the window of queued chunks, then publish the
hints of queued chunks that were never published (or went unclaimed too long).

The row commits before its hint is published, so a crash in between loses
nothing: the next step publishes it again. Hints are idempotent.
"""

from __future__ import annotations

from sqlalchemy import Engine

from nightfold.common.db import chunks as chunk_repo
from nightfold.common.db.runs import RunInfo
from nightfold.common.states import Stage
from nightfold.common.transport import Hint, Publisher


def dispatch(engine: Engine, publisher: Publisher, run: RunInfo, stage: Stage, me: str) -> int:
    """One outbox step for ``stage`` of ``run``; returns how many hints went out.

    A queued chunk nobody claimed for ``republish_seconds`` may have lost its
    hint, so it is published again, unless the broker still holds at least as
    many ready hints as the run has queued chunks: then the hints are merely
    waiting for a free worker, and republishing would only grow the queue.
    """
    params = run.params
    with engine.begin() as conn:
        chunk_repo.open_window(conn, run.id, stage, params.max_in_flight, me)
    with engine.connect() as conn:
        due = chunk_repo.due_for_publish(conn, run.id, params.republish_seconds)
        queued = chunk_repo.queued_count(conn, run.id) if any(d.republish for d in due) else 0
        conn.rollback()
    if not due:
        return 0
    send = due
    if queued:
        backlog = publisher.backlog()
        if backlog is not None and backlog >= queued:
            send = [d for d in due if not d.republish]
    if send:
        publisher.publish([Hint(run.id, d.chunk_id, d.stage, d.idx) for d in send])
    with engine.begin() as conn:
        # the hints held back count as published now: look again after republish_seconds
        chunk_repo.mark_published(conn, [d.chunk_id for d in due])
    return len(send)
